"""Which CPU kernels are safe: the oneDNN ISA, the AVX2 NHWC fault and the guard that avoids it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bayesnas_book import cpu_kernels
from bayesnas_book.cpu_kernels import (
    channels_last_hazard,
    cpu_bf16_unsupported,
    onednn_isa,
    resolve_channels_last,
)
from bayesnas_book.isolation import NativeCrash, call_isolated

X86_WITH_AVX2 = onednn_isa() in ("avx2", "avx512")


def narrow_reduction() -> nn.Module:
    """A factorized-reduce-like layer: 1x1 stride-2 convolution with 4 input channels (the tiny nets' size)."""
    return nn.Sequential(nn.Conv2d(4, 8, 1, stride=2, bias=False), nn.BatchNorm2d(8))


def nhwc_backward_steps(steps: int, guarded: bool) -> str:
    """Train ``narrow_reduction`` in NHWC for ``steps`` backward passes (in a child process)."""
    torch.manual_seed(0)
    torch.set_num_threads(1)  # as the tests and the quick profile run
    model = narrow_reduction()
    channels_last = resolve_channels_last(model, "cpu", True) if guarded else True
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    for _ in range(steps):
        x = torch.randn(4, 4, 8, 8).contiguous(memory_format=memory_format)
        model(x).sum().backward()
    return "NHWC" if channels_last else "NCHW"


def test_onednn_isa_follows_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    native = onednn_isa()
    assert native in ("avx512", "avx2", "avx", "sse41", "default", "non-x86")
    if native in ("non-x86", "default"):
        pytest.skip("no x86 SIMD levels to cap here")
    monkeypatch.setattr(cpu_kernels, "_ONEDNN_CAP", "SSE41")
    assert onednn_isa() == "sse41"
    monkeypatch.setattr(cpu_kernels, "_ONEDNN_CAP", "ALL")
    assert onednn_isa() == native  # a cap never raises the level


def test_hazard_names_the_layer_only_where_oneDNN_runs_avx2(monkeypatch: pytest.MonkeyPatch) -> None:
    if not X86_WITH_AVX2:
        pytest.skip("the fault is in oneDNN's x86 AVX2 kernels")
    monkeypatch.setattr(cpu_kernels, "_ONEDNN_CAP", "AVX2")
    reason = channels_last_hazard(narrow_reduction(), "cpu")
    assert reason is not None and "corrupts the heap" in reason and "'0'" in reason and "NCHW is used instead" in reason
    wide = nn.Conv2d(8, 8, 1, stride=2)
    assert channels_last_hazard(wide, "cpu") is None  # 8 input channels: one full AVX2 register
    assert channels_last_hazard(nn.Conv2d(4, 8, 3, stride=2), "cpu") is None  # not a 1x1
    assert channels_last_hazard(narrow_reduction(), "meta") is None  # not a CPU
    with pytest.warns(RuntimeWarning, match="corrupts the heap"):
        assert resolve_channels_last(narrow_reduction(), "cpu", True) is False
    assert resolve_channels_last(wide, "cpu", True) is True
    monkeypatch.setattr(cpu_kernels, "_ONEDNN_CAP", "AVX512_CORE")
    if onednn_isa() == "avx512":
        assert channels_last_hazard(narrow_reduction(), "cpu") is None


def test_bf16_support_follows_the_isa(monkeypatch: pytest.MonkeyPatch) -> None:
    if not X86_WITH_AVX2:
        pytest.skip("x86 only")
    monkeypatch.setattr(cpu_kernels, "_ONEDNN_CAP", "AVX2")
    assert "no native bfloat16 kernels" in cpu_bf16_unsupported()


@pytest.mark.slow
@pytest.mark.skipif(not X86_WITH_AVX2, reason="the fault is in oneDNN's x86 AVX2 kernels")
def test_the_avx2_nhwc_fault_crashes_natively_and_the_guard_avoids_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The root cause of the suite's native crashes, reproduced in a child process; a tripwire: it
    fails once oneDNN fixes the kernel, and the guard can then be narrowed."""
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # inherited by the spawned child
    monkeypatch.setattr(cpu_kernels, "_ONEDNN_CAP", "AVX2")  # and this process's view of it
    with pytest.raises(NativeCrash, match="crashed natively in an isolated process"):
        call_isolated(nhwc_backward_steps, 200, False, what="NHWC backward")
    with pytest.warns(RuntimeWarning, match="corrupts the heap"):
        assert resolve_channels_last(narrow_reduction(), "cpu", True) is False
    assert call_isolated(nhwc_backward_steps, 200, True) == "NCHW"
