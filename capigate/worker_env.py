"""The environment variables by which ``capigate serve`` hands its resolved options to its
workers (separate processes, which granian starts), and which its options read too."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Final

__all__ = ["CONFIG", "CONFIG_TEXT", "DB", "OVERRIDES", "RELAY", "relaying"]

CONFIG: Final = "CAPIGATE_CONFIG"
# The text of CONFIG the server last found right (at start, at each SIGHUP it took): a worker
# started again after a crash reads this, not the file, which may hold an edit not yet
# reloaded, or one a SIGHUP refused (the new worker died on it, the server with it: a trial).
CONFIG_TEXT: Final = "CAPIGATE_CONFIG_TEXT"
DB: Final = "CAPIGATE_DB"
# The settings serve took from its options (or their environment variables) over the file's,
# as JSON ({"server.port": 9000}): a SIGHUP that finds one changed in the file says the option
# rules it, where it said "8080 to 9001" of a server listening on 9000 (a trial).
OVERRIDES: Final = "CAPIGATE_OVERRIDES"
RELAY: Final = "CAPIGATE_RELAY"


def relaying(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the workers run the relay (``--relay``, the default; ``0`` for ``--no-relay``)."""
    return environ.get(RELAY, "1") != "0"
