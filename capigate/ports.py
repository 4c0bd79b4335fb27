"""A port, as every command reads one: one rule, in one wording.

curl's ``--port``, serve's (and check-config's) ``CAPIGATE_PORT``, and the address ``env`` and
``events`` find each had a check and words of its own: "a port is 1 to 65535", "a port is 0 to
65535 (0: any free port)", and one that named CAPIGATE_PORT for the file's port (a trial).
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["PORTS", "port_problem", "whole_number"]

PORTS: Final = "a port is 1 to 65535"
_ANY_FREE: Final = ", or 0 for any free one"  # only where serve listens
_WHOLE: Final = re.compile(r"\s*[+-]?[0-9]+\s*")


def port_problem(value: str, *, listening: bool = False) -> str | None:
    """Why ``value`` is no port, or None: 1 to 65535, a port to connect to; 0 too when
    ``listening`` (serve: the system chooses a free one). A value that is no whole number
    says so first, as every number setting does."""
    rule = PORTS + _ANY_FREE if listening else PORTS
    number = whole_number(value)
    if number is None:
        return f"not a whole number; {rule}"
    return None if (0 if listening else 1) <= number <= 65535 else rule


def whole_number(value: str) -> int | None:
    """``value`` as a whole number, as every number a command takes is read (spaces around it,
    a sign), or None: a port's, serve's number of workers."""
    return int(value) if _WHOLE.fullmatch(value) is not None else None
