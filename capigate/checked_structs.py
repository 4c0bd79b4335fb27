"""The base of the wire types a user also builds by hand (``UserData(...)``, ``Item(...)``).

A missing or unknown argument raises InvalidEvents with the field's path, as the same mistake
in a dict does when it is checked, instead of msgspec's TypeError. Decoding does not call the
constructor, so the gateway's own decoding is unchanged.
"""

from __future__ import annotations

import re
from typing import Any, Final

import msgspec

from capigate.errors import InvalidEvents, Problem

__all__ = ["CheckedStruct", "CheckedStructMeta"]

_MISSING: Final = re.compile(r"Missing required argument '(\w+)'")
_UNEXPECTED: Final = re.compile(r"Unexpected keyword argument '(\w+)'")
# Where a type sits in an event, when it has one place (the path of its fields).
_PLACES: Final = {"UserData": "user_data", "MeasurementPartnerData": "measurement_partner_data"}


def _place(cls: type) -> str:
    name = cls.__name__
    if name in _PLACES:
        return _PLACES[name]
    return "data" if name.endswith("Data") and name not in ("ConsentData",) else ""


def _join(place: str, field: str) -> str:
    return f"{place}.{field}" if place else field


def _problem(cls: type, error: TypeError) -> Problem:
    place, text = _place(cls), str(error)
    if missing := _MISSING.fullmatch(text):
        field = missing.group(1)
        return Problem(_join(place, field), "missing_field", f"`{field}` is required ({cls.__name__})")
    if unexpected := _UNEXPECTED.fullmatch(text):
        field = unexpected.group(1)
        return Problem(_join(place, field), "unknown_field", f"`{field}` is not a field of {cls.__name__}")
    return Problem(place, "wrong_type", f"{cls.__name__}: {text}")


class CheckedStructMeta(msgspec.StructMeta):
    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except TypeError as exc:
            raise InvalidEvents([_problem(cls, exc)]) from None


class CheckedStruct(msgspec.Struct, metaclass=CheckedStructMeta):
    """A msgspec Struct whose constructor reports its mistakes as InvalidEvents."""
