"""The `serve` banner (issue #17): keys shown only by the start that created them, a command
that prints a source's curl, and a demo curl that the gateway takes with no warning."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import pytest

from capigate.identity import contains_email, hash_email, hash_phone
from tests.conftest import DEFAULT_CONFIG, Server, free_port
from tests.helpers import serve_on_a_terminal, wait_until


def _first_start(tmp_path: Path) -> Server:
    config = tmp_path / "capigate.toml"  # missing: the first start writes it
    return Server(config=config, db=tmp_path / "capigate.db", port=free_port(), log=tmp_path / "server.log")


def _curls(output: str) -> list[str]:
    return [line.strip() for line in output.splitlines() if line.strip().startswith("curl ")]


def _run_curl(command: str) -> subprocess.CompletedProcess[str]:
    # -i: the status line and the X-Capigate-Warnings header, which a warning would add.
    return subprocess.run(
        ["bash", "-c", command.replace("curl -sS", "curl -sS -i", 1)], capture_output=True, text=True, timeout=30
    )


def _assert_accepted_without_warnings(server: Server, commands: list[str]) -> None:
    for command in commands:
        done = _run_curl(command)
        assert done.returncode == 0, done.stderr
        head = done.stdout.split("\r\n\r\n", 1)[0].lower()
        assert head.startswith("http/1.1 200"), done.stdout
        assert "x-capigate-warnings" not in head, done.stdout
    admin = server.client(headers={"Authorization": f"Bearer {_admin_token(server)}"})
    rows: list[dict[str, Any]] = []

    def journaled() -> bool:  # the journal entry is written after the response is sent
        rows[:] = admin.get("/api/requests", params={"limit": 10}).json()["requests"]
        return len(rows) >= len(commands)

    with admin:
        wait_until(journaled, what="the demo requests in the journal")
    assert all(r["status"] == 200 and r["warnings"] == [] and r["events_stored"] == 1 for r in rows), rows


def _admin_token(server: Server) -> str:
    return str(tomllib.loads(server.config.read_text())["server"]["admin_token"])


def test_demo_curls_show_keys_on_a_terminals_first_start_only_and_succeed_without_warnings(tmp_path: Path) -> None:
    server = _first_start(tmp_path)
    with serve_on_a_terminal(["--db", str(server.db), "--port", str(server.port)], tmp_path) as (proc, terminal):
        first = terminal.wait_for("/inappevent/", proc)
        first = first[: first.index("\n", first.index("/inappevent/"))]
        config = tomllib.loads(server.config.read_text())
        axon_key = config["axon"]["pixels"][0]["api_key"]
        af_key = config["appsflyer"]["apps"][0]["keys"][0]
        assert axon_key in first and af_key in first  # the start that created them shows them, on a terminal
        assert "Keys are masked" not in first, first
        curls = _curls(first)
        assert len(curls) == 2, first
        # Log scanners flagged the demo's plain email and phone: they go as their SHA-256.
        assert not contains_email(first) and "6502530000" not in first, first
        assert hash_email("user@example.com") in curls[0] and hash_phone("+16502530000") in curls[0], curls[0]
        wait_until(lambda: _ready(server), what="the gateway ready")
        _assert_accepted_without_warnings(server, curls)
    server.log = tmp_path / "second.log"
    server.start()
    try:
        second = server.output()
        assert axon_key not in second and af_key not in second, second
        assert "capigate curl px_demo" in second, second
    finally:
        server.stop()


def test_a_first_start_written_to_a_file_or_a_pipe_masks_the_keys_it_wrote(tmp_path: Path) -> None:
    """The first start printed the live keys it wrote (`-H 'Authorization: k8N7…'`) to its
    output, a log file here, though the README said the logs never hold a key and the banner
    is kept with the logs (a trial). Written anywhere but a terminal, they are masked, as at
    every later start, and the banner says why and which command prints them."""
    server = _first_start(tmp_path)
    server.start()  # its output: a log file
    try:
        first = server.output()
        config = tomllib.loads(server.config.read_text())
        keys = [config["axon"]["pixels"][0]["api_key"], config["appsflyer"]["apps"][0]["keys"][0]]
        assert "Wrote capigate.toml" in first and not [key for key in keys if key in first], first
        assert "-H 'Authorization: ********'" in first and "-H 'authentication: ********'" in first, first
        hint = re.search(
            r"Keys are masked \(this output is no terminal: a file or a log may keep it\): `(capigate curl [^`]+)`",
            first,
        )
        assert hint is not None, first
        pasted = hint.group(1).replace("capigate", f"{shlex.quote(sys.executable)} -m capigate", 1)
        clean = {k: v for k, v in os.environ.items() if not k.startswith("CAPIGATE_")}
        printed = subprocess.run(
            ["bash", "-c", pasted], capture_output=True, text=True, timeout=30, env=clean, cwd=tmp_path
        )
        assert printed.returncode == 0 and keys[0] in printed.stdout, printed.stderr
        _assert_accepted_without_warnings(server, _curls(printed.stdout))
    finally:
        server.stop()


def _ready(server: Server) -> bool:
    try:
        with server.client() as http:
            return http.get("/readyz").status_code == 200
    except httpx.TransportError:
        return False


def test_curl_command_prints_a_sources_curl_that_succeeds(tmp_path: Path) -> None:
    server = _first_start(tmp_path)
    server.start()
    try:
        printed = subprocess.run(
            [
                sys.executable,
                "-m",
                "capigate",
                "curl",
                "com.example.demo",
                "--config",
                str(server.config),
                "--url",
                server.url,
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
        key = tomllib.loads(server.config.read_text())["appsflyer"]["apps"][0]["keys"][0]
        assert key in printed
        _assert_accepted_without_warnings(server, _curls(printed))
        unknown = subprocess.run(
            [sys.executable, "-m", "capigate", "curl", "nope", "--config", str(server.config)],
            capture_output=True,
            text=True,
        )
        assert unknown.returncode == 1 and "no pixel or app 'nope'" in unknown.stderr
    finally:
        server.stop()


def test_the_banners_curl_hint_works_as_pasted_in_another_shell(tmp_path: Path) -> None:
    """Rule: the hint names the --config and the port serve used (corpus.toml, a --port of its
    own); `capigate curl` reads CAPIGATE_CONFIG and CAPIGATE_PORT as serve does."""
    config = tmp_path / "corpus.toml"
    config.write_text(DEFAULT_CONFIG)
    server = Server(config=config, db=tmp_path / "capigate.db", port=free_port(), log=tmp_path / "server.log")
    server.start()
    try:
        hint = re.search(r"`(capigate curl [^`]+)`", server.output())
        assert hint is not None, server.output()
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        clean = {k: v for k, v in os.environ.items() if not k.startswith("CAPIGATE_")}
        pasted = hint.group(1).replace("capigate", f"{shlex.quote(sys.executable)} -m capigate", 1)
        printed = subprocess.run(
            ["bash", "-c", pasted], capture_output=True, text=True, timeout=30, cwd=elsewhere, env=clean
        )
        assert printed.returncode == 0, printed.stderr
        curls = _curls(printed.stdout)
        assert len(curls) == 1 and f"{server.url}/" in curls[0], printed.stdout
        _assert_accepted_without_warnings(server, curls)
        from_env = subprocess.run(
            [sys.executable, "-m", "capigate", "curl", "px_std"],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=elsewhere,
            env={**clean, "CAPIGATE_CONFIG": str(config), "CAPIGATE_PORT": str(server.port)},
        )
        assert from_env.returncode == 0, from_env.stderr
        assert f"{server.url}/v1/event?pixel_id=px_std" in from_env.stdout
    finally:
        server.stop()


def test_a_relayed_sources_demo_curl_sends_a_test_event(tmp_path: Path) -> None:
    """Pasted on a production node, the demo purchase of a relayed pixel went upstream as a
    real $30 conversion (a trial): there it carries X-Capigate-Test, elsewhere nothing."""
    from capigate.banner import curl_command
    from capigate.config import load_config

    config = tmp_path / "capigate.toml"
    config.write_text(
        '[server]\nadmin_token = "123456789"\n'
        '[[axon.pixels]]\npixel_id = "px_live"\napi_key = "k1"\n'
        '[axon.pixels.relay]\nurl = "http://127.0.0.1:9"\napi_key = "up"\n'
        '[[axon.pixels]]\npixel_id = "px_sandbox"\napi_key = "k2"\n'
    )
    loaded = load_config(config)
    relayed = curl_command(loaded, "px_live", "http://127.0.0.1:8080") or ""
    sandbox = curl_command(loaded, "px_sandbox", "http://127.0.0.1:8080") or ""
    assert "-H 'X-Capigate-Test: demo'" in relayed, relayed
    assert "X-Capigate-Test" not in sandbox, sandbox


def test_a_demo_curl_percent_encodes_the_source_id_in_its_url() -> None:
    """The configuration refuses an id a URL cannot carry as written (test_config_messages);
    the curl encodes one all the same, as the relay does: a Config built by hand is not checked."""
    import msgspec

    from capigate.banner import curl_command
    from capigate.config import Config

    config = msgspec.convert(
        {
            "server": {"admin_token": "123456789"},
            "axon": {"pixels": [{"pixel_id": "px a&b#c", "api_key": "k1"}]},
            "appsflyer": {"apps": [{"app_id": "com.example/sub app", "keys": ["k2"]}]},
        },
        Config,
    )
    axon = shlex.split(curl_command(config, "px a&b#c", "http://127.0.0.1:8080") or "")
    appsflyer = shlex.split(curl_command(config, "com.example/sub app", "http://127.0.0.1:8080") or "")
    assert "http://127.0.0.1:8080/v1/event?pixel_id=px%20a%26b%23c" in axon, axon
    assert "http://127.0.0.1:8080/inappevent/com.example%2Fsub%20app" in appsflyer, appsflyer


@pytest.mark.parametrize("profile", ["standard", "lead_gen", "lead_gen_restricted"])
def test_the_heading_above_each_demo_curl_names_the_event_it_sends(tmp_path: Path, profile: str) -> None:
    """It said "a complete purchase" above a lead_gen pixel's generate_lead (a trial)."""
    from capigate.banner import banner_lines
    from capigate.config import load_config

    config = tmp_path / "capigate.toml"
    config.write_text(
        '[server]\nadmin_token = "123456789"\n'
        f'[[axon.pixels]]\npixel_id = "px_1"\napi_key = "k1"\nprofile = "{profile}"\n'
        '[[appsflyer.apps]]\napp_id = "com.example.a"\nkeys = ["k2"]\n'
    )
    lines = banner_lines(load_config(config), "http://127.0.0.1:8080", reveal=False)
    shown = [(heading, command.strip()) for heading, command in pairwise(lines) if command.strip().startswith("curl ")]
    assert len(shown) == 2, lines
    for heading, command in shown:
        body = json.loads(shlex.split(command)[-1])
        name = body["events"][0]["name"] if "events" in body else body["eventName"]
        assert re.search(rf"\ban? {name}\b", heading) and "purchase" not in heading.replace(name, ""), heading
