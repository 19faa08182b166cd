"""A function run in a child process: its result, its exception, or its native crash as an exception."""

from __future__ import annotations

import os

import pytest

from bayesnas_book.isolation import NativeCrash, call_isolated


def add(a: int, b: int = 0) -> int:
    return a + b


def fail(message: str) -> None:
    raise ValueError(message)


def abort() -> None:
    os.abort()


def exit_silently() -> None:
    os._exit(3)


def test_result_comes_back() -> None:
    assert call_isolated(add, 2, b=3) == 5


def test_exception_is_raised_here() -> None:
    with pytest.raises(ValueError, match="bad input"):
        call_isolated(fail, "bad input")


def test_native_crash_becomes_an_exception() -> None:
    with pytest.raises(NativeCrash, match=r"the step crashed natively in an isolated process \(killed by SIGABRT\)"):
        call_isolated(abort, what="the step")
    with pytest.raises(NativeCrash, match=r"exit_silently crashed natively .*exited with status 3"):
        call_isolated(exit_silently)
