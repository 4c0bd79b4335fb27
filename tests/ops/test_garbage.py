"""A serving worker's garbage collector (capigate/garbage.py): settled once the worker's app has
started, under `capigate serve` only. An app embedded in another program (tests, another
server) leaves that program's collector as it found it. Each case runs in a process of its
own, as a worker does: the collector is the whole process's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from capigate.garbage import YOUNG_THRESHOLD
from tests.conftest import DEFAULT_CONFIG

# Builds the app as a worker of `capigate serve` does (app_from_env) or as an embedding program
# does (create_app), starts it on the RSGI hook granian calls, and tells what the collector became.
_START = """
import gc, json, os, sys
from pathlib import Path
import uvloop
from capigate.config import load_config
from capigate.gateway import app_from_env, create_app

if sys.argv[1] == "worker":
    app = app_from_env()
else:
    config = load_config(Path(os.environ["CAPIGATE_CONFIG"]))
    config.store.url = os.environ["CAPIGATE_DB"]
    app = create_app(config, relay=False)
loop = uvloop.new_event_loop()
before = gc.get_threshold()
app.__rsgi_init__(loop)
# gc.get_objects() lists the generations the collector walks, not the frozen objects.
walked = any(o is app.gateway for o in gc.get_objects())
state = {"before": before, "after": gc.get_threshold(), "frozen": gc.get_freeze_count(), "walked": walked}
app.__rsgi_del__(loop)
print(json.dumps(state))
"""


def _started(tmp_path: Path, how: str) -> dict[str, list[int] | int | bool]:
    config = tmp_path / "capigate.toml"
    config.write_text(DEFAULT_CONFIG)
    env = {**os.environ, "CAPIGATE_CONFIG": str(config), "CAPIGATE_DB": str(tmp_path / "capigate.db")}
    done = subprocess.run(
        [sys.executable, "-c", _START, how], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    state: dict[str, list[int] | int | bool] = json.loads(done.stdout.splitlines()[-1])
    return state


def test_a_serving_worker_freezes_what_it_started_with_and_collects_young_objects_less_often(tmp_path: Path) -> None:
    state = _started(tmp_path, "worker")
    before, after = state["before"], state["after"]
    assert isinstance(before, list) and isinstance(after, list)
    assert after == [YOUNG_THRESHOLD, before[1], before[2]]
    assert isinstance(state["frozen"], int) and state["frozen"] > 10_000  # the modules and tables of a started app
    assert state["walked"] is False  # frozen once started: what start-up made is out of every collection


def test_an_embedded_app_leaves_its_process_collector_alone(tmp_path: Path) -> None:
    state = _started(tmp_path, "embedded")
    assert state["after"] == state["before"]
    assert state["frozen"] == 0
    assert state["walked"] is True
