"""Which CPU code paths are safe on this machine: oneDNN's instruction set, bf16, and a known oneDNN fault.

PyTorch runs CPU convolutions through oneDNN, which picks its kernels by the instruction set the
CPU offers (AVX-512, AVX2, SSE4.1; capped by the ``ONEDNN_MAX_CPU_ISA`` environment variable).
Two CPU variants the library offers depend on that choice:

- **channels_last (NHWC) training.** oneDNN v3 as shipped with PyTorch 2.x has a heap corruption
  in its AVX2 backward-weights kernel for a 1x1 convolution with stride 2 in NHWC when the
  convolution has fewer than 8 input channels per group (one AVX2 register holds 8 floats):
  ``jit_1x1:avx2`` / ``brgconv_strided:avx2`` writes past its buffers, and the process dies
  later with "corrupted double-linked list", "free(): invalid next size" or a segmentation fault.
  The search space's factorized reduce (two 1x1 stride-2 convolutions) has such convolutions
  whenever the network is narrow (the tests' tiny nets; a cell with ``C < 16``). The AVX-512
  kernels (16-float registers) take other code paths and have not shown it. Reproduce on any x86
  CPU with ``ONEDNN_MAX_CPU_ISA=AVX2`` (:func:`channels_last_hazard` names the fault).
- **bfloat16 autocast.** Runs everywhere, but oneDNN has bf16 kernels only from AVX-512 on
  (``torch.ops.mkldnn._is_mkldnn_bf16_supported``); elsewhere it is emulated, slowly.

Training code asks :func:`channels_last_hazard` before it moves a model to NHWC, and falls back to
NCHW with a warning that names the reason; benchmarks report such a variant as skipped.
"""

from __future__ import annotations

import os
import platform
import warnings

import torch
from torch import nn

__all__ = ["NARROW_CHANNELS", "channels_last_hazard", "cpu_bf16_unsupported", "onednn_isa", "resolve_channels_last"]

#: A 1x1 stride-2 NHWC convolution with fewer input channels per group than this hits the AVX2 fault.
NARROW_CHANNELS = 8

# oneDNN's ISA names (ONEDNN_MAX_CPU_ISA values), lowest first; AVX2_VNNI* sit with AVX2.
_ISA_RANK = {"DEFAULT": 0, "SSE41": 1, "AVX": 2, "AVX2": 3, "AVX2_VNNI": 3, "AVX2_VNNI_2": 3,
             "AVX512_CORE": 4, "AVX512_CORE_VNNI": 4, "AVX512_CORE_BF16": 4, "AVX10_1_512": 4,
             "AVX512_CORE_FP16": 4, "AVX512_CORE_AMX": 4, "AVX10_1_512_AMX": 4, "AVX512_CORE_AMX_FP16": 4,
             "AVX10_1_512_AMX_FP16": 4, "AVX10_2_512": 4, "AVX10_2_512_AMX_2": 4, "ALL": 4}
_RANK_NAME = {0: "default", 1: "sse41", 2: "avx", 3: "avx2", 4: "avx512"}


# oneDNN reads its ISA cap once, at its first use in the process; so does this module (at import).
# A cap set later in the same process (a test's monkeypatched environment) changes neither.
_ONEDNN_CAP = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")


def _is_x86() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


def onednn_isa() -> str:
    """The instruction set oneDNN's CPU kernels use here: ``"avx512"``, ``"avx2"``, ``"avx"``,
    ``"sse41"``, ``"default"``, or ``"non-x86"``.

    What the CPU offers (ATen's own dispatch level, :func:`torch.backends.cpu.get_cpu_capability`)
    capped by ``ONEDNN_MAX_CPU_ISA`` (or its old name ``DNNL_MAX_CPU_ISA``) as the process
    started with it (oneDNN latches the cap at its first use). A lower
    ``ATEN_CPU_CAPABILITY`` also lowers the answer, which errs on the safe side.
    """
    if not _is_x86():
        return "non-x86"
    capability = torch.backends.cpu.get_cpu_capability().upper()
    rank = 4 if capability.startswith("AVX512") else 3 if capability == "AVX2" else 1
    if _ONEDNN_CAP:
        rank = min(rank, _ISA_RANK.get(_ONEDNN_CAP.strip().upper(), rank))
    return _RANK_NAME[rank]


def _narrow_strided_pointwise(model: nn.Module) -> list[str]:
    """Names of the 1x1, stride > 1 convolutions of ``model`` with < NARROW_CHANNELS inputs per group."""
    return [name for name, m in model.named_modules()
            if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and max(m.stride) > 1
            and m.in_channels // m.groups < NARROW_CHANNELS]


def channels_last_hazard(model: nn.Module, device: torch.device | str) -> str | None:
    """Why training ``model`` in NHWC on ``device`` may crash the process natively, or ``None`` if safe.

    Args:
        model: the network that would be trained with ``memory_format=torch.channels_last``.
        device: where it trains; only CPUs whose oneDNN runs its AVX2 (or lower) kernels are at risk.

    Returns:
        ``None``, or one sentence naming the fault, the first offending layer and the way out.
    """
    if torch.device(device).type != "cpu" or not torch.backends.mkldnn.is_available():
        return None
    if not torch.backends.mkldnn.enabled or onednn_isa() in ("avx512", "non-x86"):
        return None
    narrow = _narrow_strided_pointwise(model)
    if not narrow:
        return None
    return (f"channels_last training on this CPU (oneDNN {onednn_isa()} kernels) corrupts the heap in the "
            f"backward of 1x1 stride-2 convolutions with < {NARROW_CHANNELS} input channels "
            f"({len(narrow)} here, e.g. {narrow[0]!r}); NCHW is used instead (widen the network or use a GPU)")


def cpu_bf16_unsupported() -> str | None:
    """Why bfloat16 autocast has no native kernels on this CPU, or ``None`` where it has them."""
    if not _is_x86():
        supported = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    else:
        supported = onednn_isa() == "avx512" and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    if supported:
        return None
    return (f"this CPU has no native bfloat16 kernels (oneDNN {onednn_isa()}); "
            "bf16 autocast would be emulated, so it is not measured here")


def resolve_channels_last(model: nn.Module, device: torch.device | str, requested: bool) -> bool:
    """Whether to train ``model`` in NHWC: ``requested``, unless :func:`channels_last_hazard` objects.

    Warns (``RuntimeWarning``) with the hazard's reason when it overrides a request.
    """
    if not requested:
        return False
    reason = channels_last_hazard(model, device)
    if reason is not None:
        warnings.warn(reason, RuntimeWarning, stacklevel=2)
        return False
    return True
