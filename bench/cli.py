"""Argument types the bench tools share: a count or a duration of 0 (or less) has no run to
measure, and dividing by it ended a run in a ZeroDivisionError; argparse now refuses it."""

from __future__ import annotations

import argparse
from typing import TypeVar

__all__ = ["non_negative_int", "positive_float", "positive_int"]

Number = TypeVar("Number", int, float)


def positive_int(text: str) -> int:
    value = _parsed(text, int, "a whole number")
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give 1 or more")
    return value


def non_negative_int(text: str) -> int:
    value = _parsed(text, int, "a whole number")
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give 0 or more")
    return value


def positive_float(text: str) -> float:
    value = _parsed(text, float, "a number")
    if not value > 0:  # NaN too
        raise argparse.ArgumentTypeError(f"{text!r}: give a number above 0")
    return value


def _parsed(text: str, kind: type[Number], what: str) -> Number:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
