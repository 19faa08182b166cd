r"""Monte-Carlo Gauss-Newton: one extra backward per sample of labels drawn from the model.

For the mean softmax cross-entropy on a batch of ``B`` inputs with logits ``z``, ``(B, classes)``,
the Gauss-Newton matrix in parameters ``theta`` is ``G = (1/B) J^T blockdiag(Lambda_b) J`` with
``J = dz/dtheta`` of the whole batch, ``(B * classes, S)``, and
``Lambda_b = diag(p_b) - p_b p_b^T``.

Draw ``yhat_b ~ Categorical(p_b)`` independently for each sample and let
``r_b = d log p(yhat_b | z_b) / dz_b = e_{yhat_b} - p_b``. Then ``E[r_b] = 0`` and
``E[r_b r_b^T] = Lambda_b``; for ``b != b'`` the draws are independent, so
``E[r_b r_b'^T] = E[r_b] E[r_b']^T = 0``. Stacking ``r = (r_1, ..., r_B)``::

    E[r r^T] = blockdiag(Lambda_1, ..., Lambda_B)

and the gradient ``g = J^T r = d/dtheta sum_b log p(yhat_b | x_b)`` (one backward) satisfies
``E[g g^T] = J^T blockdiag(Lambda_b) J = B G``. Hence ``(1 / (B M)) sum_m g_m g_m^T`` over ``M``
independent draws is unbiased for ``G``, and its diagonal ``(1 / (B M)) sum_m g_m^2`` for
``diag(G)``, also when BatchNorm in train mode couples the samples (``J`` is the whole batch's
Jacobian; only the label draws must be independent).

The backward of ``sum_b log p(yhat_b | x_b)`` is run as ``autograd.grad(z, theta, r)``: the
gradient of the log-likelihood in the logits is ``r`` itself, so both are the same pass; several
draws share one vmapped backward (``is_grads_batched``).

BatchNorm running statistics are not updated (one forward, ``M`` backwards through it).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from bayesnas_book.curvature.exact import _check_names, batchnorm_stats_frozen

__all__ = ["mc_ggn"]


def mc_ggn(
    model: nn.Module,
    x: torch.Tensor,
    parameter_names: Sequence[str],
    *,
    num_samples: int = 1,
    generator: torch.Generator | None = None,
    full: bool = False,
    chunk_size: int = 64,
) -> torch.Tensor:
    """Monte-Carlo estimate of the Gauss-Newton matrix of the mean softmax CE.

    Args:
        model: returns logits ``(B, classes)``.
        x: one batch of inputs, e.g. ``(B, C, H, W)``.
        parameter_names: names from ``model.named_parameters()``; ``S`` flattened entries.
        num_samples: ``M``, label draws (one backward each), a positive integer.
        generator: a seeded ``torch.Generator`` for the draws (its device is where they are
            drawn); ``None`` uses the global RNG.
        full: return the ``(S, S)`` estimate instead of the diagonal (the squared gradient).
        chunk_size: draws whose backward passes run together (``is_grads_batched``, a vmap
            over the backward); 1 runs them one by one. Memory grows with it.

    Returns:
        float64 ``(S,)`` (non-negative) or ``(S, S)`` (PSD, rank <= M).

    Raises:
        ValueError: for a ``num_samples`` or ``chunk_size`` that is not a positive integer, bad
            names, or a model that does not return 2-D logits.
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"`num_samples` must be a positive integer, got {num_samples!r}")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"`chunk_size` must be a positive integer, got {chunk_size!r}")
    selected = _check_names(model, parameter_names)
    # leaves of our own: the model's parameters get no .grad and keep requires_grad as it is
    leaves = {n: p.detach().requires_grad_(True) for n, p in selected.items()}
    with torch.enable_grad(), batchnorm_stats_frozen(model):
        logits = functional_call(model, leaves, (x,))
        if logits.ndim != 2:
            raise ValueError(
                f"the model must return logits (B, classes), got {tuple(logits.shape)}"
            )
        B = logits.shape[0]
        p = torch.softmax(logits.detach().to(torch.float64), dim=1)  # (B, classes)
        device = generator.device if generator is not None else p.device
        yhat = torch.multinomial(p.to(device), num_samples, replacement=True, generator=generator)
        yhat = yhat.to(logits.device)  # (B, M), yhat_b ~ Categorical(p_b)
        S = sum(t.numel() for t in leaves.values())
        acc = torch.zeros((S, S) if full else (S,), dtype=torch.float64, device=logits.device)
        onehot = F.one_hot(yhat.T, logits.shape[1]).to(logits.dtype)  # (M, B, classes)
        r = onehot - p.to(logits.dtype)  # r_b = d log p(yhat_b | z_b) / dz_b = e_yhat - p_b
        for start in range(0, num_samples, chunk_size):
            r_chunk = r[start : start + chunk_size]  # (m, B, classes)
            # g = J^T r = d/dtheta sum_b log p(yhat_b | x_b): one backward per draw, m at once
            grads = torch.autograd.grad(
                logits,
                list(leaves.values()),
                grad_outputs=r_chunk,
                retain_graph=start + chunk_size < num_samples,
                is_grads_batched=True,
            )
            g = torch.cat([t.reshape(len(r_chunk), -1) for t in grads], 1).to(torch.float64)
            acc += g.T @ g if full else g.square().sum(0)  # sum_m g g^T  or  sum_m g^2
    return acc / (B * num_samples)  # E[g g^T] = B G
