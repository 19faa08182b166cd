"""Compare a notebook's stored output with a fresh one: text exactly, printed numbers to their last digit.

A chapter's stored outputs were computed on one machine; a reader's CPU runs other kernels (another
SIMD width, another BLAS), so a float64 result may differ in its last bits. The quick profile
computes in float64, so such differences stay near 1e-12 relative, far below what a chapter prints;
the one way they can still show is a printed number that sits on a rounding boundary
(0.26850000000001 vs 0.26849999999999 printed to 3 places). The rule:

- the text between numbers must be identical, and so must the count of numbers;
- an integer (no decimal point, no exponent: counts, epochs, sizes) must be identical;
- a decimal may differ by at most one unit in its last printed digit (``0.268`` vs ``0.269``
  passes, ``0.268`` vs ``0.270`` fails; ``1.5e-03`` vs ``1.6e-03`` passes);
- two decimals both below :data:`ROUNDOFF` in magnitude agree: such a number is float64 rounding
  error itself (a chapter prints ``1.2e-16`` to show that two computations agree), and its digits
  are whatever the CPU's summation order made them (``1.249e-16`` on one CPU, ``2.776e-16`` on
  another).

:class:`NumericText` is a ``str`` whose ``==`` follows that rule; the chapters' nbval run compares
its sanitised outputs as ``NumericText`` (``chapters/conftest.py``).
"""

from __future__ import annotations

import re
from decimal import Decimal

__all__ = ["NUMBER", "ROUNDOFF", "NumericText", "numbers_agree", "texts_agree"]

#: Below this magnitude a printed decimal is float64 rounding error (about 1e4 ulps of 1).
ROUNDOFF = Decimal("1e-12")

#: A printed number: optional sign, digits with an optional fraction, optional exponent.
NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


def _last_digit_unit(token: str) -> Decimal | None:
    """One unit in the last printed digit of ``token``, or ``None`` for an integer (compared exactly)."""
    mantissa, _, exponent = token.lower().partition("e")
    if "." not in mantissa and not exponent:
        return None
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    return Decimal(1).scaleb(-decimals + (int(exponent) if exponent else 0))


def numbers_agree(reference: str, fresh: str) -> bool:
    """Whether two printed numbers agree under the module's rule."""
    if reference == fresh:
        return True
    unit_ref, unit_fresh = _last_digit_unit(reference), _last_digit_unit(fresh)
    if unit_ref is None or unit_fresh is None:
        return False
    a, b = Decimal(reference), Decimal(fresh)
    if max(abs(a), abs(b)) < ROUNDOFF:
        return True
    return abs(a - b) <= max(unit_ref, unit_fresh)


def texts_agree(reference: str, fresh: str) -> bool:
    """Whether two outputs agree: the same text around the numbers, each number to its last digit."""
    if reference == fresh:
        return True
    ref_numbers, fresh_numbers = NUMBER.findall(reference), NUMBER.findall(fresh)
    if len(ref_numbers) != len(fresh_numbers) or NUMBER.split(reference) != NUMBER.split(fresh):
        return False
    return all(numbers_agree(a, b) for a, b in zip(ref_numbers, fresh_numbers))


class NumericText(str):
    """A ``str`` that equals another string when :func:`texts_agree` says so."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and texts_agree(str(self), str(other))

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    __hash__ = str.__hash__
