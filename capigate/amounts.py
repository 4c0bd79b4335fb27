"""Amounts both APIs accept that are often a mistake: a negative price, value or revenue (a
refund, a correction, or a sign lost on the way) and a quantity of 0. They are kept as sent,
refunds being real, with a warning at the value's path: one wording for Axon
(``axon/rules.py``, ``axon/typed.py``) and AppsFlyer (``appsflyer/fields.py``)."""

from __future__ import annotations

from capigate.checking import Report

__all__ = ["warn_negative", "warn_zero_quantity"]


def warn_negative(path: str, key: str, report: Report) -> None:
    report.warn(path, "negative_value", f"`{key}` is negative: kept as sent, as a refund would be; check its sign")


def warn_zero_quantity(path: str, key: str, report: Report) -> None:
    report.warn(path, "zero_quantity", f"`{key}` is 0: kept as sent; an item bought, added or viewed counts 1 or more")
