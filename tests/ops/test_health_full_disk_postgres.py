"""A full disk under PostgreSQL (issue #17): the gateway's tables in a tablespace on a real,
small tmpfs. The node's readiness probe (an UPDATE of its own row, which fits in the page it
has) still passes while every event is refused: /readyz must say so from the ingests."""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import httpx
import psycopg

from tests.conftest import make_server
from tests.ops.test_health_full_disk import fill, ingest, small_disk
from tests.storekit import PG_URL, pg_schema


def test_readyz_reports_ingests_refused_by_a_full_tablespace(tmp_path: Path) -> None:
    tablespace = f"capigate_small_{uuid.uuid4().hex[:8]}"
    # Not under tmp_path: the server's user must reach the directory, and pytest's are private.
    place = Path(tempfile.mkdtemp(prefix="capigate-pg-disk-"))
    place.chmod(0o755)
    with small_disk(place / "disk") as disk:
        data = disk / "pg"
        data.mkdir()
        owner = pwd.getpwnam("postgres")
        os.chown(data, owner.pw_uid, owner.pw_gid)
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"CREATE TABLESPACE {tablespace} LOCATION '{data}'")
        try:
            with pg_schema() as schema:
                server = make_server(tmp_path / "gw")
                options = quote(f"-cdefault_tablespace={tablespace}")  # no space: the URL keeps no "+"
                server.db = f"{PG_URL}?schema={schema}&options={options}"
                server.start()
                try:
                    assert ingest(server).status_code == 200
                    filler = fill(disk)
                    answers = [ingest(server) for _ in range(30)]
                    refused = [a for a in answers if a.status_code == 503]
                    assert refused, [a.status_code for a in answers]
                    ready = httpx.get(server.url + "/readyz", timeout=5)
                    assert ready.status_code == 503, ready.text
                    assert "No space left on device" in ready.text or "full" in ready.text, ready.text
                    filler.unlink()
                    deadline = time.monotonic() + 15
                    while ingest(server).status_code != 200 and time.monotonic() < deadline:
                        time.sleep(0.3)
                    assert httpx.get(server.url + "/readyz", timeout=5).status_code == 200
                finally:
                    server.stop()
        finally:
            with psycopg.connect(PG_URL, autocommit=True) as conn:
                conn.execute(f"DROP TABLESPACE IF EXISTS {tablespace}")
    shutil.rmtree(place, ignore_errors=True)
