"""Fixtures that run capigate for real: a `capigate serve` process on a loopback port,
a real SQLite file under tmp_path, and an HTTP client."""

from __future__ import annotations

import ctypes
import inspect
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.storekit import PG_URL, make_store, pg_schema, schema, store

__all__ = ["make_store", "schema", "store"]  # the store tests' fixtures: per backend, or a fresh PG schema

ADMIN = "admin-token-for-tests"
EXAMPLES = Path(__file__).resolve().parent.parent / "capigate" / "examples"

DEFAULT_CONFIG = f"""
[server]
admin_token = "{ADMIN}"

[[axon.pixels]]
pixel_id = "px_std"
api_key = "key-std"
profile = "standard"

[[axon.pixels]]
pixel_id = "px_lead"
api_key = "key-lead"
profile = "lead_gen"

[[axon.pixels]]
pixel_id = "px_restricted"
api_key = "key-restricted"
profile = "lead_gen_restricted"

[[appsflyer.apps]]
app_id = "com.example.shop"
keys = ["af-dev-key", "af-s2s-token"]

[[appsflyer.apps]]
app_id = "id123456789"
keys = ["af-ios-key"]

[[appsflyer.apps]]
app_id = "com.example.orders"
keys = ["af-orders-key"]
dedupe_key = "af_order_id"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def example(name: str) -> Any:
    return json.loads((EXAMPLES / name).read_text(encoding="utf-8"))


@dataclass
class Server:
    """A running `capigate serve` process."""

    config: Path
    db: Path | str  # a SQLite file, or a postgresql:// URL (several servers may share it)
    port: int
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self, timeout_s: float = 20.0) -> None:
        assert self.log is not None
        # A first start (no file yet) runs where the file belongs, without --config: serve
        # creates only the default capigate.toml, as a user's first `capigate serve` does.
        first = not self.config.exists() and self.config.name == "capigate.toml"
        config = [] if first else ["--config", str(self.config)]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "capigate",
                    "serve",
                    *config,
                    "--db",
                    str(self.db),
                    "--host",
                    self.host,
                    "--port",
                    str(self.port),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
                cwd=self.config.parent if first else None,
                start_new_session=True,
                preexec_fn=DIE_WITH_PYTEST,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"capigate exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"capigate did not become ready:\n{self.log.read_text()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)

    def kill9(self) -> None:
        self.stop(signal.SIGKILL)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log else ""

    def client(self, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10.0, **kw)

    def admin(self) -> httpx.Client:
        return self.client(headers={"Authorization": f"Bearer {ADMIN}"})


_PR_SET_PDEATHSIG = 1


def _die_with_pytest() -> None:
    """In a gateway, before exec: SIGTERM (a clean stop) when the thread that started it ends,
    pytest killed with SIGKILL too, which runs no teardown (bench/servers.py does as much). A
    gateway is started from pytest's main thread: the signal comes as pytest ends."""
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


if sys.platform == "linux":
    _prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork, called after it
    DIE_WITH_PYTEST: Callable[[], None] | None = _die_with_pytest
else:
    DIE_WITH_PYTEST = None


def make_server(tmp: Path, config_text: str = DEFAULT_CONFIG, **env: str) -> Server:
    tmp.mkdir(parents=True, exist_ok=True)
    config = tmp / "capigate.toml"
    config.write_text(config_text)
    return Server(config=config, db=tmp / "capigate.db", port=free_port(), log=tmp / "server.log", env=env)


@contextmanager
def served_on(
    backend: str, tmp: Path, schema_prefix: str = "capigate_test", config_text: str = DEFAULT_CONFIG
) -> Iterator[tuple[Server, str | None]]:
    """A started gateway of ``config_text`` on ``backend`` ("sqlite": a file under ``tmp``;
    "postgresql": a fresh schema of the test server, dropped afterwards), with that schema's
    name or None."""
    server = make_server(tmp, config_text)
    if backend == "sqlite":
        server.start()
        try:
            yield server, None
        finally:
            server.stop()
        return
    with pg_schema(schema_prefix) as schema:
        server.db = f"{PG_URL}?schema={schema}"
        server.start()
        try:
            yield server, schema
        finally:
            server.stop()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One gateway shared by the tests that only add events (each uses its own ids)."""
    srv = make_server(tmp_path_factory.mktemp("gateway"))
    srv.start()
    yield srv
    srv.stop()


SMALL_BODY_BYTES = 20_000  # below a batch of 100 purchases (~140 KB), above any one of them


@pytest.fixture(scope="session")
def small_bodies(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A gateway whose [server] max_body_bytes is below the SDK's 1 MiB: it refuses a large
    batch as too large (413), shared by the tests that only add events (each its own ids)."""
    config = DEFAULT_CONFIG.replace("[server]", f"[server]\nmax_body_bytes = {SMALL_BODY_BYTES}")
    srv = make_server(tmp_path_factory.mktemp("small-bodies"), config)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[Server]:
    """A gateway of one's own, for tests that count everything in the store."""
    srv = make_server(tmp_path / "gw")
    srv.start()
    yield srv
    srv.stop()


def pytest_configure(config: pytest.Config) -> None:
    """SIGTERM (a CI cancel, ``timeout``, ``kill``) stops the run as Ctrl-C's SIGINT does: as a
    KeyboardInterrupt, so that the ``finally`` blocks and fixture teardowns stop the gateways
    the tests started. They run in sessions of their own, which a signal to the run's process
    group does not reach: SIGTERM's default ended pytest alone, and they ran on (a trial)."""
    config.stash[_SIGTERM_BEFORE] = signal.signal(signal.SIGTERM, _interrupted)
    # A forked child (tests/ops/test_stop.py's workers) dies of SIGTERM, as before.
    os.register_at_fork(after_in_child=_sigterm_default)


def pytest_unconfigure(config: pytest.Config) -> None:
    signal.signal(signal.SIGTERM, config.stash.get(_SIGTERM_BEFORE, signal.SIG_DFL))


_SIGTERM_BEFORE = pytest.StashKey[Any]()


def _sigterm_default() -> None:
    if signal.getsignal(signal.SIGTERM) is _interrupted:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _interrupted(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the run at once, as before
    raise KeyboardInterrupt("SIGTERM: the run stops as on Ctrl-C, its gateways with it")


def pytest_sessionstart(session: pytest.Session) -> None:
    """``CAPIGATE_NATIVE=1`` asks for the whole suite compiled (tests/__init__.py): a build
    that is stale or missing would run it as Python, and pass, proving nothing."""
    from capigate.native import status

    if os.environ["CAPIGATE_NATIVE"].strip().lower() in ("1", "true", "yes", "on") and not status().startswith("on"):
        raise pytest.UsageError(f"CAPIGATE_NATIVE asks for the compiled modules, and they are {status()}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark what needs more than Python and a SQLite file, for ``scripts/test-fast``
    (``-m "not postgresql and not browser"``): a test of a ``test_postgres*`` module, or on the
    ``postgresql`` backend parameter, or whose code names PostgreSQL; the headless-Chromium ones
    (by module, or by their ``browser`` fixture: tests/ops has some)."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        ids = callspec.id.split("-") if callspec is not None else []
        function = getattr(item, "function", None)
        code = inspect.getsource(function) if function is not None else ""
        if "postgres" in item.path.name or "postgresql" in ids or _POSTGRES_CODE.search(code):
            item.add_marker(pytest.mark.postgresql)
        if item.path.name.startswith("test_inspector_browser") or "browser" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.browser)


# served_on("postgresql", …) starts a gateway on PostgreSQL too (the README's example of an id
# a PostgreSQL store gave was left unmarked, and failed under scripts/test-fast).
_POSTGRES_CODE = re.compile(r"""PG_URL|pg_schema|PostgresStore|psycopg\.|postgresql://|served_on\(\s*["']postgresql""")
