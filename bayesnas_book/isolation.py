"""Run a function in a fresh Python process, so that a native crash (heap corruption, a segfault in a
kernel library) becomes an exception here instead of killing this process.

The child is started with the ``spawn`` method (no inherited threads or heap state); the function and
its arguments must be picklable (module-level functions, dataclass configs), and so must its result.
"""

from __future__ import annotations

import multiprocessing
import signal
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["NativeCrash", "call_isolated"]

T = TypeVar("T")


class NativeCrash(RuntimeError):
    """The child process died without returning: killed by a signal or exited abnormally."""

    def __init__(self, what: str, exitcode: int | None) -> None:
        self.exitcode = exitcode
        if exitcode is not None and exitcode < 0:
            try:
                cause = f"killed by {signal.Signals(-exitcode).name}"
            except ValueError:
                cause = f"killed by signal {-exitcode}"
        else:
            cause = f"exited with status {exitcode} without a result"
        super().__init__(f"{what} crashed natively in an isolated process ({cause})")


class _ChildError(RuntimeError):
    """An exception the child raised, re-raised here with its traceback text."""


def _child(connection: Any, function: Callable[..., Any], args: tuple, kwargs: dict) -> None:
    try:
        result = ("ok", function(*args, **kwargs))
    except BaseException as error:  # noqa: BLE001 - everything goes back to the parent
        result = ("error", (error, traceback.format_exc()))
    try:
        connection.send(result)
    except Exception:  # an unpicklable exception: send its text
        connection.send(("error", (None, traceback.format_exc() if result[0] == "ok" else result[1][1])))
    connection.close()


def call_isolated(function: Callable[..., T], *args: Any, what: str | None = None, **kwargs: Any) -> T:
    """``function(*args, **kwargs)`` computed in a spawned child process.

    Args:
        function: a module-level (picklable) function.
        what: how to name the call in a :class:`NativeCrash` message (default: the function's name).

    Returns:
        What ``function`` returned.

    Raises:
        NativeCrash: when the child died (signal, ``os.abort``, ``os._exit``) before returning.
        Exception: what ``function`` raised in the child, re-raised (its traceback in the message
            when the exception itself could not be sent back).
    """
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(sender, function, args, kwargs), daemon=True)
    process.start()
    sender.close()
    try:
        status, payload = receiver.recv()
    except EOFError:
        process.join()
        raise NativeCrash(what or getattr(function, "__name__", repr(function)), process.exitcode) from None
    finally:
        receiver.close()
    process.join()
    if process.exitcode != 0:  # e.g. heap corruption caught by free() at exit: the result is not trusted
        raise NativeCrash(what or getattr(function, "__name__", repr(function)), process.exitcode)
    if status == "ok":
        return payload
    error, text = payload
    if isinstance(error, BaseException):
        raise error
    raise _ChildError(text)
