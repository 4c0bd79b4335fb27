"""Not collected by a test run (no ``test_`` prefix): tests/test_scripts.py runs it alone, in a
pytest it stops with SIGTERM. Its test starts two gateways as the suite does, one by a fixture
and one in its body, writes their pids to ``$CAPIGATE_VICTIM_PIDS`` and waits to be stopped."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.conftest import Server, make_server


def test_waits_with_two_gateways_running(server: Server, tmp_path: Path) -> None:
    own = make_server(tmp_path / "gw")
    own.start()
    try:
        assert server.proc is not None and own.proc is not None
        Path(os.environ["CAPIGATE_VICTIM_PIDS"]).write_text(f"{server.proc.pid} {own.proc.pid}\n")
        time.sleep(100)  # the SIGTERM comes here
    finally:
        own.stop()
