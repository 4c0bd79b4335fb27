"""The environment variables by which ``capigate serve`` hands its resolved options to its
workers (separate processes, which granian starts), and which its options read too."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Final

__all__ = ["CONFIG", "DB", "RELAY", "relaying"]

CONFIG: Final = "CAPIGATE_CONFIG"
DB: Final = "CAPIGATE_DB"
RELAY: Final = "CAPIGATE_RELAY"


def relaying(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the workers run the relay (``--relay``, the default; ``0`` for ``--no-relay``)."""
    return environ.get(RELAY, "1") != "0"
