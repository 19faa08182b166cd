"""Write pickles the way Python 2 wrote the CIFAR-10 archive (protocol 2, byte-string ``str``).

The official ``cifar-10-batches-py`` files were pickled by Python 2, whose ``str`` is a byte
string. Loaded in Python 3 they decode as ``str`` with ``encoding="latin1"`` (torchvision's
choice: ``entry["data"]``) and as ``bytes`` with ``encoding="bytes"`` (the dataset page's
``unpickle``: ``entry[b"data"]``). Python 3's own pickler cannot produce that: at protocol 2 it
writes ``bytes`` as a call to ``_codecs.encode``, which loads as ``bytes`` under every encoding,
and it names numpy's private ``numpy._core`` module. So the few opcodes the archive uses are
emitted by hand here:

=========================  =========================================================
value                      opcodes (protocol 2, as CPython 2.7 + numpy 1.x wrote them)
=========================  =========================================================
``bytes`` / ``str``        ``SHORT_BINSTRING`` (< 256 bytes) or ``BINSTRING``
``int``                    ``BININT1`` (0..255) or ``BININT`` (signed 32-bit)
``list``                   ``EMPTY_LIST MARK ... APPENDS``
``dict``                   ``EMPTY_DICT MARK key value ... SETITEMS``
``numpy.ndarray`` (uint8)  ``numpy.core.multiarray._reconstruct`` + ``BUILD`` with the
                           state ``(1, shape, dtype('u1'), False, raw bytes)``
=========================  =========================================================

Only what the CIFAR-10 files contain is supported; anything else is a ``TypeError``.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

__all__ = ["dumps_py2"]

_PROTO_2 = b"\x80\x02"
_STOP = b"."
_MARK = b"("
_EMPTY_DICT = b"}"
_SETITEMS = b"u"
_EMPTY_LIST = b"]"
_APPENDS = b"e"
_TUPLE = b"t"
_TUPLE1 = b"\x85"
_TUPLE2 = b"\x86"
_TUPLE3 = b"\x87"
_REDUCE = b"R"
_BUILD = b"b"
_NONE = b"N"
_NEWFALSE = b"\x89"


def _string(data: bytes) -> bytes:
    """A Python 2 ``str`` (a byte string)."""
    if len(data) < 256:
        return b"U" + bytes([len(data)]) + data  # SHORT_BINSTRING
    return b"T" + struct.pack("<i", len(data)) + data  # BINSTRING


def _int(value: int) -> bytes:
    if 0 <= value < 256:
        return b"K" + bytes([value])  # BININT1
    if -(2**31) <= value < 2**31:
        return b"J" + struct.pack("<i", value)  # BININT
    raise TypeError(f"integers beyond 32 bits are not supported, got {value}")


def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode("ascii") + b"\n" + name.encode("ascii") + b"\n"  # GLOBAL


def _tuple(items: list[bytes]) -> bytes:
    if len(items) == 1:
        return items[0] + _TUPLE1
    if len(items) == 2:
        return b"".join(items) + _TUPLE2
    if len(items) == 3:
        return b"".join(items) + _TUPLE3
    return _MARK + b"".join(items) + _TUPLE


def _uint8_array(array: np.ndarray) -> bytes:
    """``numpy.core.multiarray._reconstruct(ndarray, (0,), 'b')`` then ``__setstate__``."""
    if array.dtype != np.uint8:
        raise TypeError(f"only uint8 arrays are supported, got dtype {array.dtype}")
    array = np.ascontiguousarray(array)
    dtype = (
        _global("numpy", "dtype")
        + _tuple([_string(b"u1"), _int(0), _int(1)])
        + _REDUCE
        # dtype state: (version 3, byte order '|', subarray, names, fields,
        #               elsize, alignment, flags)
        + _tuple([_int(3), _string(b"|"), _NONE, _NONE, _NONE, _int(-1), _int(-1), _int(0)])
        + _BUILD
    )
    state = _tuple(
        [
            _int(1),
            _tuple([_int(size) for size in array.shape]) if array.ndim else b")",  # EMPTY_TUPLE
            dtype,
            _NEWFALSE,  # not Fortran-ordered
            _string(array.tobytes()),
        ]
    )
    return (
        _global("numpy.core.multiarray", "_reconstruct")
        + _tuple([_global("numpy", "ndarray"), _tuple([_int(0)]), _string(b"b")])
        + _REDUCE
        + state
        + _BUILD
    )


def _value(value: Any) -> bytes:
    if isinstance(value, bool):
        raise TypeError("booleans are not supported")
    if isinstance(value, bytes):
        return _string(value)
    if isinstance(value, str):
        return _string(value.encode("latin1"))
    if isinstance(value, (int, np.integer)):
        return _int(int(value))
    if isinstance(value, np.ndarray):
        return _uint8_array(value)
    if isinstance(value, list):
        return _EMPTY_LIST + (
            _MARK + b"".join(_value(v) for v in value) + _APPENDS if value else b""
        )
    if isinstance(value, dict):
        pairs = b"".join(_value(k) + _value(v) for k, v in value.items())
        return _EMPTY_DICT + (_MARK + pairs + _SETITEMS if value else b"")
    raise TypeError(f"cannot write a {type(value).__name__} as a Python 2 pickle")


def dumps_py2(obj: Any) -> bytes:
    """Serialise ``obj`` as a protocol-2 pickle with Python 2 byte strings.

    Args:
        obj: nested ``dict`` / ``list`` of ``bytes``, ``str`` (written as latin-1 bytes),
            ``int`` and uint8 ``numpy.ndarray``.

    Returns:
        The pickle stream.

    Raises:
        TypeError: for any other type.
    """
    return _PROTO_2 + _value(obj) + _STOP
