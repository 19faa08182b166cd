"""The Laplace posterior of the switches and the BayesNAS update of gamma and omega.

BayesNAS (Zhou et al., ICML 2019) is iterative reweighted group-l2 ARD (Wipf and Nagarajan): the
switches of one cell type, ``s`` of shape ``(N, E, 1 + K)`` (layout in
:mod:`bayesnas_book.bayes.hard`), are trained with the cost::

    mean NLL(s)  +  sum_{parent groups g} lambda_o * omega_g * ||s_g||_2
                 +  sum_{child groups g}  lambda_c * omega_g * ||s_g||_2

and after a switch epoch every group g updates its prior variance ``gamma_g`` and its penalty
weight ``omega_g`` from a Laplace approximation of the posterior (the paper's update, per switch as in the official code)::

    H      = curvature of the NLL in the switches, divided by lambda       (H_i / lambda_i)
    C      = (1 / gamma + H)^-1                 Laplace posterior variance, per cell
    omega  = sqrt( sum_{cells n} | 1/gamma - C_n / gamma^2 | )
    gamma  = ||s_g||_2 / omega
    gamma_child <- (1 / gamma_child + 1 / gamma_parent)^-1                  (HARD coupling)

``lambda_i`` is ``lambda_o`` for a parent switch and ``lambda_c`` for a child switch. Why divide:
dividing the cost by lambda gives ``NLL / lambda + sum_g omega_g ||s_g||``, Wipf and Nagarajan's
form with lambda in the role of the noise variance sigma^2, and the curvature of ``NLL / lambda``
is ``H / lambda``. ``curvature`` is the curvature of the same NLL term as in the cost (the mean
over the data). In the diagonal form omega is computed as ``|H| C / gamma``, algebraically equal
to ``|1/gamma - C/gamma^2|`` but free of the cancellation that ruins it in float32 when
``gamma * H`` is tiny. With a full
curvature matrix over the ``S = E * (1 + K)`` switches of one cell the same update reads

    Sigma    = (Gamma^-1 + H)^-1,  C = diag(Sigma)
    omega^2  = sum_{cells} | [Gamma^-1 - Gamma^-1 Sigma Gamma^-1]_ii |

which for ``H = Phi^T Phi / sigma^2`` equals ``phi_i^T (sigma^2 I + Phi Gamma Phi^T)^-1 phi_i``, the
Wipf-Nagarajan weight (matrix inversion lemma). For a diagonal H both forms are the scalar rule.

Notation (one identifier per symbol, here and in the book):

=================  ============================  =====================================
symbol             argument / field              shape
=================  ============================  =====================================
s                  ``switches``                  ``(N, E, 1 + K)``
H                  ``curvature``                 ``(N, E, 1 + K)`` or ``(N, S, S)``
gamma              ``prior_variance``            ``(E, 1 + K)``
omega              ``reweighting``               ``(E, 1 + K)``
C                  ``posterior_variance``        ``(N, E, 1 + K)``
lambda_o, lambda_c ``lambda_o``, ``lambda_c``    scalars
=================  ============================  =====================================

**Flattening.** A full curvature matrix indexes the switches of one cell in row-major order of
``(E, 1 + K)``: switch ``i = e * (1 + K) + c`` (edge e, column c; ``switches[n].reshape(S)``).

**Initial state.** :func:`initial_state` gives ``gamma_0 = 1`` and ``omega_0 = 1``: the first switch
epoch then minimises the plain group lasso ``lambda * sum_g ||s_g||`` (the standard first step
of reweighted l1), and ``gamma_0 = 1`` is the prior under which the initial switch value 1 is
one standard deviation, well above the pruning threshold 0.0585. With a positive semi-definite
curvature the first update gives ``omega_1^2 = sum_n H_n / (1 + H_n) < N``, so each penalty
weight moves from 1 to at most ``sqrt(N)`` (2.45 for 6 normal cells), driven by the data.

.. note::
    The official code starts from random gamma and omega, so the penalty jumps by about 10x at
    the first update; we start deterministically as above.

.. note::
    The official code divides a diagonal H by lambda per switch. For a full matrix with two
    lambdas we use the symmetric scaling ``H_ij / sqrt(lambda_i * lambda_j)``: its diagonal is
    ``H_ii / lambda_i`` and it is ``H / lambda`` when ``lambda_o == lambda_c``.

.. note::
    The official code computes omega from the last cell's gamma only; here omega sums over all
    cells of the group as the formula says.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from bayesnas_book.bayes.hard import SwitchGroups, describe_switch, group_norms, hard_coupling
from bayesnas_book.space.graph import CellGraph
from bayesnas_book.validation import check_positive

__all__ = [
    "INITIAL_GAMMA",
    "INITIAL_OMEGA",
    "LaplaceResult",
    "initial_state",
    "laplace_update",
    "laplace_update_all",
    "penalty_weights",
    "switch_penalty",
]

#: gamma_0, the prior variance of every group before the first update (see module docstring).
INITIAL_GAMMA = 1.0
#: omega_0, the penalty weight of every group during the first switch epoch.
INITIAL_OMEGA = 1.0


@dataclass(frozen=True)
class LaplaceResult:
    """Result of one Laplace update of one cell type.

    Attributes:
        prior_variance: gamma after the HARD coupling, ``(E, 1 + K)``; the next update's input.
        uncoupled_variance: gamma before the coupling, ``||s_g|| / omega_g``, ``(E, 1 + K)``.
        reweighting: omega, the penalty weights' factor for the next switch epoch, ``(E, 1 + K)``.
        posterior_variance: C, the Laplace posterior variance of each switch, ``(N, E, 1 + K)``.
        norms: ``||s_g||_2`` over the cells, ``(E, 1 + K)``.
    """

    prior_variance: Tensor
    uncoupled_variance: Tensor
    reweighting: Tensor
    posterior_variance: Tensor
    norms: Tensor

    @property
    def gamma(self) -> Tensor:
        """Alias of :attr:`prior_variance` (the paper's symbol)."""
        return self.prior_variance

    @property
    def omega(self) -> Tensor:
        """Alias of :attr:`reweighting` (the paper's symbol)."""
        return self.reweighting

    @property
    def C(self) -> Tensor:  # noqa: N802 - the paper's symbol
        """Alias of :attr:`posterior_variance` (the paper's symbol)."""
        return self.posterior_variance


def initial_state(graph: CellGraph, *, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    """The deterministic start ``(gamma_0, omega_0)``, both all ones of shape ``(E, 1 + K)``."""
    shape = (graph.num_edges, 1 + graph.num_ops)
    return torch.full(shape, INITIAL_GAMMA, dtype=dtype), torch.full(
        shape, INITIAL_OMEGA, dtype=dtype
    )


# -- input checks ---------------------------------------------------------------------------------
_check_lambda = check_positive


def _first_bad(mask: Tensor) -> tuple[int, ...]:
    return tuple(int(i) for i in mask.nonzero()[0])


def _lambda_columns(lambda_o: float, lambda_c: float, columns: int, like: Tensor) -> Tensor:
    """``(1 + K,)``: lambda_o for column 0, lambda_c for the op columns."""
    lam = torch.full((columns,), lambda_c, dtype=like.dtype, device=like.device)
    lam[0] = lambda_o
    return lam


def _check_inputs(
    switches: Tensor,
    curvature: Tensor,
    gamma: Tensor,
    cell_type: str,
    graph: CellGraph | None,
) -> bool:
    """Validate shapes and values; return whether ``curvature`` is a full matrix."""
    if not isinstance(switches, Tensor) or switches.dim() != 3:
        shape = tuple(switches.shape) if isinstance(switches, Tensor) else type(switches).__name__
        raise ValueError(f"`switches` must have shape (N, E, 1 + K), got {shape}")
    N, E, C1 = switches.shape
    if N == 0:
        raise ValueError(
            f"empty group: `switches` of the {cell_type} cell has N = 0 cells; every group "
            "needs at least one switch value"
        )
    if E == 0 or C1 < 2:
        raise ValueError(f"`switches` must have E >= 1 and 1 + K >= 2, got {tuple(switches.shape)}")
    if graph is not None and (E, C1) != (graph.num_edges, 1 + graph.num_ops):
        raise ValueError(
            f"`switches` must have shape (N, {graph.num_edges}, {1 + graph.num_ops}) for "
            f"{graph.name}, got {tuple(switches.shape)}"
        )
    if tuple(gamma.shape) != (E, C1):
        raise ValueError(f"`prior_variance` must have shape ({E}, {C1}), got {tuple(gamma.shape)}")
    S = E * C1
    full = tuple(curvature.shape) == (N, S, S)
    if not full and tuple(curvature.shape) != (N, E, C1):
        raise ValueError(
            f"`curvature` must have shape (N, E, 1 + K) = {(N, E, C1)} (diagonal) or "
            f"(N, S, S) = {(N, S, S)} (full), got {tuple(curvature.shape)}"
        )
    bad = ~torch.isfinite(switches)
    if bad.any():
        n, e, c = _first_bad(bad)
        raise ValueError(
            f"`switches` has a non-finite value in {describe_switch(cell_type, graph, e, c)}, "
            f"cell {n}"
        )
    bad = torch.isnan(gamma) | (gamma < 0)
    if bad.any():
        e, c = _first_bad(bad)
        raise ValueError(
            f"`prior_variance` must be >= 0 and not NaN, got {gamma[e, c].item()} in "
            f"{describe_switch(cell_type, graph, e, c)}"
        )
    bad = ~torch.isfinite(curvature)
    if bad.any():
        if full:
            n, i, j = _first_bad(bad)
            gi = describe_switch(cell_type, graph, i // C1, i % C1)
            gj = describe_switch(cell_type, graph, j // C1, j % C1)
            where = f"entry ({i}, {j}) of cell {n}: {gi} x {gj}"
        else:
            n, e, c = _first_bad(bad)
            where = f"{describe_switch(cell_type, graph, e, c)}, cell {n}"
        raise ValueError(
            f"`curvature` is {curvature[bad][0].item()} (not finite) at {where}; check the "
            "curvature pass (a diverged loss or a zero variance upstream)"
        )
    if full:
        tol = 1e-6 * float(curvature.abs().max()) + 1e-12
        if (curvature - curvature.transpose(1, 2)).abs().max() > tol:
            raise ValueError("a full `curvature` must be symmetric in its last two dimensions")
    return full


# -- the update -----------------------------------------------------------------------------------
def laplace_update(
    switches: Tensor,
    curvature: Tensor,
    prior_variance: Tensor,
    lambda_o: float,
    lambda_c: float,
    *,
    cell_type: str = "normal",
    graph: CellGraph | None = None,
    min_variance: float = 1e-10,
    max_variance: float = 1e10,
    couple: bool = True,
) -> LaplaceResult:
    """One BayesNAS update of gamma and omega for the switches of one cell type.

    Args:
        switches: s, switch values ``(N, E, 1 + K)`` (column 0 parent); not differentiated.
        curvature: H, curvature of the (mean) NLL in the switches, positive semi-definite
            (Gauss-Newton): diagonal ``(N, E, 1 + K)`` or a full matrix per cell ``(N, S, S)``,
            ``S = E * (1 + K)`` in the flattening order of the module docstring. The shape picks
            the form. It is divided by lambda inside (module docstring).
        prior_variance: gamma of the previous update (or :func:`initial_state`), ``(E, 1 + K)``.
        lambda_o: penalty strength of the parent switches (the paper's lambda_w^o), > 0.
        lambda_c: penalty strength of the child switches, > 0.
        cell_type: name used in error messages.
        graph: the cell graph, to name edges and ops in error messages and check shapes.
        min_variance: floor for gamma (input and output) and for C, > 0.
        max_variance: ceiling for gamma and C (a group with ``omega = 0`` and ``s != 0`` gets it).
        couple: apply the HARD coupling to the new gamma.

    Returns:
        A :class:`LaplaceResult`.

    Raises:
        ValueError: for a non-positive or non-finite lambda, bad floors, wrong shapes, an empty
            group (N = 0), NaN/Inf in the switches or curvature (the message names the group:
            cell type, edge, switch kind), a negative gamma, a non-symmetric full curvature, or
            a curvature so negative that the posterior precision ``1/gamma + H`` is not positive.
    """
    lambda_o = _check_lambda("lambda_o", lambda_o)
    lambda_c = _check_lambda("lambda_c", lambda_c)
    if not 0 < min_variance < max_variance < math.inf:
        raise ValueError(
            f"`min_variance` and `max_variance` must satisfy 0 < min < max < inf, "
            f"got {min_variance} and {max_variance}"
        )
    full = _check_inputs(switches, curvature, prior_variance, cell_type, graph)
    s = switches.detach()
    N, E, C1 = s.shape
    H = curvature.detach().to(s.dtype)
    gamma = prior_variance.detach().to(s.dtype).clamp(min_variance, max_variance)  # (E, 1+K)
    lam = _lambda_columns(lambda_o, lambda_c, C1, s)  # (1+K,)

    if full:
        C, omega2 = _full_posterior(H, gamma, lam, cell_type, graph)
    else:
        C, omega2 = _diagonal_posterior(H, gamma, lam, cell_type, graph)

    omega = omega2.sum(dim=0).sqrt()  # (N, E, 1+K) -> (E, 1+K): sqrt of the sum over cells
    norms = group_norms(s)  # (E, 1+K)
    # gamma = ||s_g|| / omega; a zero switch has gamma 0 even when omega = 0
    ratio = torch.where(norms > 0, norms / omega, torch.zeros_like(norms))
    uncoupled = ratio.clamp(min_variance, max_variance)
    coupled = hard_coupling(uncoupled).clamp(min_variance, max_variance) if couple else uncoupled
    return LaplaceResult(
        prior_variance=coupled,
        uncoupled_variance=uncoupled,
        reweighting=omega,
        posterior_variance=C.clamp(min_variance, max_variance),
        norms=norms,
    )


def _precision_error(where: str) -> ValueError:
    return ValueError(
        f"the posterior precision 1/gamma + H is not positive definite ({where}); the curvature "
        "is too negative: use a positive semi-definite curvature (Gauss-Newton), not the exact "
        "Hessian"
    )


def _diagonal_posterior(
    H: Tensor, gamma: Tensor, lam: Tensor, cell_type: str, graph: CellGraph | None
) -> tuple[Tensor, Tensor]:
    """Per-switch C and omega^2 terms, both ``(N, E, 1 + K)``, for a diagonal curvature."""
    H = H / lam  # (N, E, 1+K) / (1+K,): H_i / lambda_i
    precision = 1.0 / gamma + H  # (N, E, 1+K): 1/gamma + H
    if not bool((precision > 0).all()):
        n, e, c = _first_bad(~(precision > 0))
        raise _precision_error(f"{describe_switch(cell_type, graph, e, c)}, cell {n}")
    C = 1.0 / precision  # (1/gamma + H)^-1
    # |1/gamma - C/gamma^2| = |H| C / gamma exactly; this form has no cancellation when gamma*H << 1
    omega2 = H.abs() * C / gamma
    return C, omega2


def _full_posterior(
    H: Tensor, gamma: Tensor, lam: Tensor, cell_type: str, graph: CellGraph | None
) -> tuple[Tensor, Tensor]:
    """Per-switch C and omega^2 terms, both ``(N, E, 1 + K)``, for a full curvature."""
    N, S, _ = H.shape
    E, C1 = gamma.shape
    H = 0.5 * (H + H.transpose(1, 2))  # remove rounding asymmetry
    lam_s = lam.repeat(E)  # (1+K,) -> (S,), switch i = e*(1+K) + c
    H = H / torch.sqrt(lam_s[:, None] * lam_s[None, :])  # H_ij / sqrt(lambda_i lambda_j)
    r = gamma.reshape(S).sqrt()  # (S,): Gamma^(1/2)
    # Sigma = (Gamma^-1 + H)^-1 = Gamma^(1/2) (I + Gamma^(1/2) H Gamma^(1/2))^-1 Gamma^(1/2)
    A = torch.eye(S, dtype=H.dtype, device=H.device) + r[:, None] * H * r[None, :]  # (N, S, S)
    L, info = torch.linalg.cholesky_ex(A)
    if bool((info != 0).any()):
        n = int((info != 0).nonzero()[0, 0])
        raise _precision_error(f"{cell_type} cell {n}, full matrix")
    Sigma = r[:, None] * torch.cholesky_inverse(L) * r[None, :]  # (N, S, S)
    C = torch.diagonal(Sigma, dim1=1, dim2=2)  # (N, S)
    # Gamma^-1 - Gamma^-1 Sigma Gamma^-1 = H - H Sigma H (substitute Gamma^-1 = Sigma^-1 - H)
    omega2 = torch.diagonal(H - H @ Sigma @ H, dim1=1, dim2=2).abs()  # (N, S)
    return C.reshape(N, E, C1), omega2.reshape(N, E, C1)


def laplace_update_all(
    groups: SwitchGroups,
    switches: Mapping[str, Tensor],
    curvature: Mapping[str, Tensor],
    prior_variance: Mapping[str, Tensor],
    lambda_o: float,
    lambda_c: float,
    **kwargs: float | bool,
) -> dict[str, LaplaceResult]:
    """:func:`laplace_update` for every cell type of ``groups``.

    Args:
        groups: the supernet's groups (graphs and cell counts).
        switches: ``{cell_type: (N, E, 1 + K)}``.
        curvature: ``{cell_type: (N, E, 1 + K) or (N, S, S)}``.
        prior_variance: ``{cell_type: (E, 1 + K)}``.
        lambda_o: parent penalty strength, > 0.
        lambda_c: child penalty strength, > 0.
        **kwargs: ``min_variance``, ``max_variance``, ``couple``.

    Returns:
        ``{cell_type: LaplaceResult}``.

    Raises:
        ValueError: as :func:`laplace_update`; also if a cell type is missing or a switch tensor
            does not have the shape :meth:`SwitchGroups.shape` gives.
    """
    out = {}
    for cell_type in groups.cell_types:
        for name, mapping in (
            ("switches", switches),
            ("curvature", curvature),
            ("prior_variance", prior_variance),
        ):
            if cell_type not in mapping:
                raise ValueError(f"`{name}` is missing cell type {cell_type!r}")
        if tuple(switches[cell_type].shape) != groups.shape(cell_type):
            raise ValueError(
                f"`switches[{cell_type!r}]` must have shape {groups.shape(cell_type)}, "
                f"got {tuple(switches[cell_type].shape)}"
            )
        out[cell_type] = laplace_update(
            switches[cell_type],
            curvature[cell_type],
            prior_variance[cell_type],
            lambda_o,
            lambda_c,
            cell_type=cell_type,
            graph=groups.graphs[cell_type],
            **kwargs,  # type: ignore[arg-type]
        )
    return out


# -- the penalty of the next switch epoch ---------------------------------------------------------
def penalty_weights(reweighting: Tensor, lambda_o: float, lambda_c: float) -> Tensor:
    """Penalty weights: ``lambda_o * omega_g`` on parents, ``lambda_c * omega_g`` on children.

    Args:
        reweighting: omega, ``(E, 1 + K)``, finite and >= 0.
        lambda_o: parent penalty strength, > 0.
        lambda_c: child penalty strength, > 0.

    Returns:
        ``(E, 1 + K)``.

    Raises:
        ValueError: for a bad lambda, or an omega that is not 2-D, negative or not finite.
    """
    lambda_o = _check_lambda("lambda_o", lambda_o)
    lambda_c = _check_lambda("lambda_c", lambda_c)
    if reweighting.dim() != 2 or reweighting.shape[1] < 2:
        raise ValueError(
            f"`reweighting` must have shape (E, 1 + K), got {tuple(reweighting.shape)}"
        )
    if not bool(torch.isfinite(reweighting).all()) or bool((reweighting < 0).any()):
        raise ValueError("`reweighting` (omega) must be finite and >= 0")
    lam = _lambda_columns(lambda_o, lambda_c, reweighting.shape[1], reweighting)  # (1+K,)
    return lam * reweighting  # (E, 1+K)


def switch_penalty(switches: Tensor, weights: Tensor) -> Tensor:
    """The penalty ``sum_g weight_g * ||s_g||_2``, differentiable in the switches.

    Args:
        switches: s, ``(N, E, 1 + K)`` (the supernet's parameters, with grad).
        weights: from :func:`penalty_weights`, ``(E, 1 + K)``; treated as constants.

    Returns:
        A scalar tensor. At ``s_g = 0`` torch's norm has gradient 0 (a subgradient).

    Raises:
        ValueError: if the shapes do not match.
    """
    if switches.dim() != 3 or tuple(weights.shape) != tuple(switches.shape[1:]):
        raise ValueError(
            f"`weights` must have shape (E, 1 + K) matching `switches` (N, E, 1 + K), got "
            f"{tuple(weights.shape)} and {tuple(switches.shape)}"
        )
    return (weights.detach() * group_norms(switches)).sum()  # sum_g w_g ||s_g||_2
