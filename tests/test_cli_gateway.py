"""The CLI commands that find a running gateway from its configuration: ``capigate env`` and
``capigate events`` (host and port from ``capigate.toml``, overridden as ``serve`` does)."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import shlex
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import click
import httpx
import pytest

from capigate import GatewayAdmin
from tests.conftest import ADMIN, DEFAULT_CONFIG, Server, free_port
from tests.helpers import batch, environ_without_capigate, page_view, purchase, serve_banner, wait_until


def capigate(
    *args: str, cwd: Path | None = None, _config: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CAPIGATE_")}
    if _config:
        clean["CAPIGATE_CONFIG"] = _config
    return subprocess.run(
        [sys.executable, "-m", "capigate", *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=cwd,
        env={**clean, **env},
    )


def test_env_exports_the_gateways_address_and_keys_for_a_shell(tmp_path: Path) -> None:
    (tmp_path / "capigate.toml").write_text(DEFAULT_CONFIG.replace("[server]", "[server]\nport = 18150"))
    script = 'eval "$(python -m capigate env)"; echo "$CAPIGATE_URL|$CAPIGATE_ADMIN_TOKEN|$AXON_PIXEL|$AXON_KEY|$APPSFLYER_APP|$APPSFLYER_KEY"'
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CAPIGATE_")}
    path = f"{Path(sys.executable).parent}{os.pathsep}{clean.get('PATH', '')}"
    done = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, cwd=tmp_path, env={**clean, "PATH": path}, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"http://127.0.0.1:18150|{ADMIN}|px_std|key-std|com.example.shop|af-dev-key"


def test_env_honours_capigate_host_and_port_as_serve_does(tmp_path: Path) -> None:
    (tmp_path / "capigate.toml").write_text(DEFAULT_CONFIG)
    done = capigate("env", cwd=tmp_path, CAPIGATE_PORT="18151", CAPIGATE_HOST="0.0.0.0")
    assert done.returncode == 0, done.stderr
    assert "export CAPIGATE_URL=http://127.0.0.1:18151\n" in done.stdout


def test_env_exports_only_what_the_readme_lists_so_another_directory_keeps_its_own_config(tmp_path: Path) -> None:
    quick_start = (Path(__file__).parents[1] / "README.md").read_text()
    listed = re.search(r'eval "\$\(capigate env\)" +# exports (.+)', quick_start)
    assert listed is not None
    first, other = tmp_path / "quick-start", tmp_path / "other"
    for home, port in ((first, 18152), (other, 18153)):
        home.mkdir()
        (home / "capigate.toml").write_text(DEFAULT_CONFIG.replace("[server]", f"[server]\nport = {port}"))
    exported = capigate("env", cwd=first)
    assert exported.returncode == 0, exported.stderr
    names = re.findall(r"^export (\w+)=", exported.stdout, re.MULTILINE)
    assert names == listed.group(1).split(", ")
    # The user's path: eval in the quick start's directory, then a command in another one.
    script = f'eval "$({sys.executable} -m capigate env)"; cd {other}; {sys.executable} -m capigate check-config'
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CAPIGATE_")}
    checked = subprocess.run(["bash", "-c", script], capture_output=True, text=True, cwd=first, env=clean, timeout=30)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith("capigate.toml: ok"), checked.stdout


def test_env_without_a_configuration_says_where_to_run_it(tmp_path: Path) -> None:
    done = capigate("env", cwd=tmp_path)
    assert done.returncode == 1 and "does not exist" in done.stderr and "gateway's directory" in done.stderr
    assert "Traceback" not in done.stderr


def _config_of(server: Server, tmp_path: Path, host: str = "127.0.0.1") -> Path:
    config = tmp_path / "capigate.toml"
    config.write_text(DEFAULT_CONFIG.replace("[server]", f'[server]\nhost = "{host}"\nport = {server.port}'))
    return config


def _sent(server: Server, test_tag: str) -> str:
    dedupe_id = f"{test_tag}-" + "x" * 80  # longer than any table cell
    with server.client(headers={"Authorization": "key-std", "X-Capigate-Test": test_tag}) as http:
        answer = http.post(
            "/v1/event", params={"pixel_id": "px_std"}, json={"events": [page_view(dedupe_id=dedupe_id)]}
        )
    assert answer.status_code == 200, answer.text
    return dedupe_id


def test_events_reads_host_and_port_from_the_configuration(server: Server, tmp_path: Path) -> None:
    dedupe_id = _sent(server, "cfg-port")
    done = capigate("events", "--test-tag", "cfg-port", cwd=tmp_path, _config=str(_config_of(server, tmp_path)))
    assert done.returncode == 0, done.stderr
    assert dedupe_id in done.stdout


def test_events_on_a_wildcard_host_reaches_the_loopback(server: Server, tmp_path: Path) -> None:
    _config_of(server, tmp_path, host="0.0.0.0")
    done = capigate("events", "--limit", "1", cwd=tmp_path)
    assert done.returncode == 0, done.stderr


def test_events_piped_prints_full_values_tab_separated(server: Server, tmp_path: Path) -> None:
    dedupe_id = _sent(server, "piped-tsv")
    _config_of(server, tmp_path)
    done = capigate("events", "--test-tag", "piped-tsv", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    header, row = done.stdout.splitlines()
    assert header.split("\t") == ["id", "received (UTC)", "api", "source", "name", "status", "dedupe_id", "test_tag"]
    cells = row.split("\t")
    assert cells[3:] == ["px_std", "page_view", "stored", dedupe_id, "piped-tsv"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}", cells[1])


def test_events_requests_piped_keep_every_problem_message(server: Server, tmp_path: Path) -> None:
    with server.client(headers={"Authorization": "key-std", "X-Capigate-Test": "piped-req"}) as http:
        bad = page_view(event_source_url="https://shop.example.com/" + "long/" * 20)
        bad["user_data"]["esi"] = "tv"
        del bad["user_data"]["client_ip_address"]
        assert http.post("/v1/event", params={"pixel_id": "px_std"}, json={"events": [bad]}).status_code == 400
    _config_of(server, tmp_path)
    done = capigate("events", "--requests", "--status", "400", "--limit", "1", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    row = done.stdout.splitlines()[1].split("\t")
    with GatewayAdmin(server.url, ADMIN) as admin:
        (journaled,) = admin.requests(status=400, limit=1).requests
    assert row[0] == str(journaled.id) and row[5] == "400"
    assert row[8] == f"{journaled.problems[0]} (+{len(journaled.problems) - 1})"


def test_events_json_prints_one_object_a_line(server: Server, tmp_path: Path) -> None:
    dedupe_id = _sent(server, "json-lines")
    _config_of(server, tmp_path)
    done = capigate("events", "--json", "--test-tag", "json-lines", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.splitlines()
    assert json.loads(line)["dedupe_id"] == dedupe_id


def test_events_all_pages_through_every_row_past_the_page_size(server: Server, tmp_path: Path) -> None:
    """``--limit`` stopped at 1,000 rows with no way on (a trial): ``--all`` follows the
    listing's cursor to its end, each row once, newest first."""
    with server.client(headers={"Authorization": "key-std", "X-Capigate-Test": "every-row"}) as http:
        for n in range(3):
            events = [page_view(dedupe_id=f"every-{n}-{i}") for i in range(4)]
            assert http.post("/v1/event", params={"pixel_id": "px_std"}, json={"events": events}).status_code == 200
    _config_of(server, tmp_path)
    done = capigate("events", "--all", "--limit", "5", "--test-tag", "every-row", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    ids = [json.loads(line)["id"] for line in done.stdout.splitlines()]
    assert len(ids) == 12 and ids == sorted(set(ids), reverse=True), ids
    both = capigate("events", "--all", "--follow", cwd=tmp_path)
    assert both.returncode == 2 and "choose one" in both.stderr, both.stderr


# --- replay ----------------------------------------------------------------------------


def test_replay_of_a_source_without_relay_says_why_and_fails(server: Server) -> None:
    done = capigate("replay", "--config", str(server.config), "--db", str(server.db), "--destination", "axon:px_std")
    assert done.returncode == 1, done.stdout
    assert "axon:px_std has no [relay] table" in done.stderr and "re-queued" not in done.stdout
    by_source = capigate("replay", "--config", str(server.config), "--db", str(server.db), "--source", "px_std")
    assert by_source.returncode == 1 and "axon:px_std has no [relay] table" in by_source.stderr


def test_replay_of_an_unknown_destination_names_the_relayed_ones(server: Server) -> None:
    done = capigate("replay", "--config", str(server.config), "--db", str(server.db), "--destination", "axon:nope")
    assert done.returncode == 1
    assert "'axon:nope' is not a destination" in done.stderr and "no source has a [relay] table" in done.stderr


def test_replay_without_filters_still_runs(server: Server) -> None:
    done = capigate("replay", "--config", str(server.config), "--db", str(server.db))
    assert done.returncode == 0 and "re-queued 0" in done.stdout, done.stderr


def test_api_replay_with_a_bad_body_names_the_body_not_the_query(server: Server) -> None:
    with server.admin() as admin:
        for body, path, code in [
            (b'{"sourse": "px_std"}', "sourse", "unknown_field"),
            (b'{"status": "401"}', "status", "wrong_type"),
            (b"{not json", "", "malformed_json"),
            (b"[[[[[[", "", "malformed_json"),  # a trial: "must be an object, not an array"
            (b'[{"source": "px_std"}', "", "malformed_json"),
            (b'{"destination": "axon:px_std"}', "destination", "not_relayed"),
            (b'{"source": "px_std"}', "source", "not_relayed"),
            # a filter given twice was one of them, silently (a trial): a write names it once
            (b'{"status": 401, "status": 500}', "status", "repeated_key"),
        ]:
            answer = admin.post("/api/replay", content=body)
            assert answer.status_code == 400, body
            error = answer.json()
            assert error["error"] == "invalid_replay" and "query" not in error["message"], error
            assert [(p["path"], p["code"]) for p in error["problems"]] == [(path, code)], error
            if code == "malformed_json":
                assert "not valid JSON" in error["problems"][0]["message"], error
        array = admin.post("/api/replay", content=b"[]").json()["problems"]
        assert [(p["path"], p["code"]) for p in array] == [("", "wrong_type")], array  # JSON, not an object


def test_events_requests_by_dedupe_id_lists_every_request_that_carried_it(server: Server, tmp_path: Path) -> None:
    """capigate events --requests --dedupe-id: the request that stored the event and its resend
    (a duplicate), newest first; --dedupe-id without --requests says what it needs."""
    event = purchase()
    for _ in range(2):
        with server.client() as c:
            answer = c.post("/v1/event?pixel_id=px_std", headers={"Authorization": "key-std"}, json=batch(event))
        assert answer.status_code == 200, answer.text
    time.sleep(0.3)  # the journal is written a few tens of milliseconds after each answer
    _config_of(server, tmp_path)
    done = capigate("events", "--requests", "--dedupe-id", event["dedupe_id"], "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(r["events_stored"], r["events_duplicate"]) for r in rows] == [(0, 1), (1, 0)], rows
    refused = capigate("events", "--dedupe-id", event["dedupe_id"], cwd=tmp_path)
    assert refused.returncode == 2 and "add --requests" in refused.stderr, refused.stderr


def test_events_requests_by_an_email_address_as_dedupe_id_finds_the_request_that_stored_it_hashed(
    server: Server, tmp_path: Path
) -> None:
    """The gateway hashes a dedupe_id that is an email address (plain_pii_hashed), and
    `--dedupe-id zed.dedupe@victim-mail.com` found nothing: only its SHA-256 did (a trial). The
    filter is now hashed as the gateway hashed the id, whichever way the address is written."""
    address = f"zed.dedupe.{time.time_ns()}@victim-mail.com"
    with server.client() as c:
        answer = c.post(
            "/v1/event?pixel_id=px_std", headers={"Authorization": "key-std"}, json=batch(purchase(dedupe_id=address))
        )
    assert answer.status_code == 200, answer.text
    assert {w["path"]: w["code"] for w in answer.json()["warnings"]}["events[0].dedupe_id"] == "plain_pii_hashed"
    time.sleep(0.3)  # the journal is written a few tens of milliseconds after each answer
    _config_of(server, tmp_path)
    for asked in (address, address.upper().replace("@", "%40")):
        done = capigate("events", "--requests", "--dedupe-id", asked, "--json", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        rows = [json.loads(line) for line in done.stdout.splitlines()]
        assert [(r["events_stored"], r["events_duplicate"]) for r in rows] == [(1, 0)], (asked, rows)


def test_events_requests_by_an_email_address_or_phone_number_as_transaction_id_says_that_none_is_stored(
    server: Server, tmp_path: Path
) -> None:
    """`--transaction-id jane@example.com` printed nothing and said nothing, while `--dedupe-id`
    with it found the request (a trial): the gateway never keeps an email address as a
    transaction id (an Axon purchase with one is refused, AppsFlyer's af_order_id dropped), so
    a search for one finds nothing, and says why on stderr. A phone number in international form
    is treated so too now (refused, dropped): the hint said it was "kept as sent", and
    `--transaction-id +14155550123` printed an empty table and no hint (a re-trial). An id that
    is neither is found, with no such line; so is the API's answer: empty for both, no hint field."""
    address = f"zed.order.{time.time_ns()}@victim-mail.com"
    phone = f"+44 20 7946 0{time.time_ns() % 1000:03d}"  # Ofcom's drama range: nobody's
    plain = f"order-{time.time_ns()}"
    answers = []
    with server.client() as c:
        for transaction_id in (address, phone, plain):
            event = purchase()
            event["data"]["transaction_id"] = transaction_id
            answers.append(c.post("/v1/event?pixel_id=px_std", headers={"Authorization": "key-std"}, json=batch(event)))
        for order_id in (address, phone):
            order = json.dumps({"af_order_id": order_id, "af_revenue": "5", "af_currency": "USD"})
            body = {"appsflyer_id": "1234567890123-1234567", "eventName": "af_purchase", "eventValue": order}
            answers.append(c.post("/inappevent/com.example.shop", headers={"authentication": "af-dev-key"}, json=body))
        time.sleep(0.3)  # the journal is written a few tens of milliseconds after each answer
        for asked in (address, phone):
            listed = c.get(
                "/api/requests", params={"transaction_id": asked}, headers={"Authorization": f"Bearer {ADMIN}"}
            )
            assert listed.status_code == 200 and listed.json() == {"requests": [], "next": None}, listed.text
    assert [a.status_code for a in answers] == [400, 400, 200, 200, 200], [a.text for a in answers]
    _config_of(server, tmp_path)
    for asked in (address, address.upper(), phone, phone.replace(" ", ""), "tel:" + phone.replace(" ", "")):
        done = capigate("events", "--requests", "--transaction-id", asked, "--json", cwd=tmp_path)
        assert done.returncode == 0 and done.stdout == "", (done.stdout, done.stderr)
        [hint] = done.stderr.splitlines()
        assert hint.startswith("capigate events: ") and "never stored" in hint, hint
        assert "email address" in hint and "phone number" in hint and "kept as sent" not in hint, hint
    found = capigate("events", "--requests", "--transaction-id", plain, "--json", cwd=tmp_path)
    assert found.returncode == 0 and found.stderr == "", found.stderr
    assert [json.loads(line)["events_stored"] for line in found.stdout.splitlines()] == [1], found.stdout


# --- finding a gateway started on another port ---------------------------------------------


def test_env_takes_the_url_host_and_port_options_curl_has(tmp_path: Path) -> None:
    """`./scripts/serve --port 18700`, then `capigate env` exported the file's 8080, and every
    later command went there (a trial): env had none of curl's --url, --host, --port."""
    (tmp_path / "capigate.toml").write_text(DEFAULT_CONFIG)

    def url(*options: str, **env: str) -> str:
        done = capigate("env", *options, cwd=tmp_path, **env)
        assert done.returncode == 0, done.stderr
        (line,) = [ln for ln in done.stdout.splitlines() if ln.startswith("export CAPIGATE_URL=")]
        return shlex.split(line.removeprefix("export CAPIGATE_URL="))[0]

    assert url() == "http://127.0.0.1:8080"
    assert url("--port", "18700") == "http://127.0.0.1:18700"
    assert url("--port", "18700", CAPIGATE_PORT="18701") == "http://127.0.0.1:18700"  # the option wins
    assert url("--host", "0.0.0.0", "--port", "18700") == "http://127.0.0.1:18700"  # as serve listens
    assert url("--host", "::1") == "http://[::1]:8080"
    assert url("--url", "http://gateway.internal:9000/") == "http://gateway.internal:9000"
    # Not read from CAPIGATE_URL: a shell that ran env for another gateway would keep its address.
    assert url(CAPIGATE_URL="http://127.0.0.1:18702") == "http://127.0.0.1:8080"
    refused = capigate("env", "--port", "0", cwd=tmp_path)
    assert refused.returncode == 1 and refused.stderr == "Error: --port 0: a port is 1 to 65535\n", refused.stderr


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=1.0).status_code == 200
    except httpx.TransportError:
        return False


def test_serve_on_another_port_prints_the_env_that_finds_it(tmp_path: Path) -> None:
    """serve --port N (not the file's) says which `capigate env` finds it; eval'd in another
    shell, `capigate events` reaches it."""
    (tmp_path / "capigate.toml").write_text(DEFAULT_CONFIG)  # port 8080, the default
    port = free_port()
    env = environ_without_capigate()
    with serve_banner(["--port", str(port), "--db", str(tmp_path / "c.db")], tmp_path) as (_, lines):
        said = [line for line in lines if "capigate env" in line]
        assert len(said) == 1, lines
        command = re.search(r'eval "\$\((capigate env [^)]*)\)"', said[0])
        assert command is not None and f"--port {port}" in command.group(1), said
        # The README quotes that line (it showed `capigate env --port 18150`, without --config).
        readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
        quoted = re.search(
            r'`(eval "\$\(capigate env --config \S+ --port 18150\)")`, the line its banner prints', readme
        )
        assert quoted is not None, "README: quote the banner's env line"
        documented = quoted.group(1).replace("/abs/path/capigate.toml", str(tmp_path.resolve() / "capigate.toml"))
        assert documented.replace("18150", str(port)) in said[0], (documented, said)
        wait_until(lambda: _ready(f"http://127.0.0.1:{port}"), what="the gateway ready")
        script = f'eval "$({sys.executable} -m {command.group(1)})"; echo "$CAPIGATE_URL"; {sys.executable} -m capigate events --limit 1'
        other = tmp_path / "another-shell"
        other.mkdir()
        done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, cwd=other, env=env, timeout=30)
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines()[0] == f"http://127.0.0.1:{port}", done.stdout


def test_serve_on_the_files_port_prints_no_env_line(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "capigate.toml").write_text(DEFAULT_CONFIG.replace("[server]", f"[server]\nport = {port}"))
    with serve_banner(["--db", str(tmp_path / "c.db")], tmp_path) as (_, lines):
        assert lines[-1].startswith("Keys are masked"), lines
        assert not [line for line in lines if "capigate env" in line], lines


def test_events_and_quality_refuse_a_time_they_cannot_read_as_replay_does_before_asking_anything(
    tmp_path: Path,
) -> None:
    """`replay --since yesterday` was a usage error (2); `events --since yesterday` asked the
    gateway anyway and reported its 400 (1). One rule (cli_gateway.epoch_ms) for the three: here
    nothing listens at the URL, so only a refusal made before any request is a usage error."""
    url = f"http://127.0.0.1:{free_port()}"
    for command in ("events", "quality"):
        for option, value, said in (
            ("--since", "yesterday", "--since is epoch milliseconds or an ISO 8601 time"),
            ("--until", "1733000000", "--until 1733000000 looks like seconds"),
        ):
            done = capigate(command, "--url", url, "--token", ADMIN, option, value, cwd=tmp_path)
            assert done.returncode == 2, (command, option, done.stderr)
            assert said in " ".join(done.stderr.split()), done.stderr
            assert "nothing answers" not in done.stderr, done.stderr


def test_events_with_nothing_at_the_configured_address_says_so_and_how_to_give_another(tmp_path: Path) -> None:
    """It said `GET http://127.0.0.1:8080/api/events: ConnectError: [Errno 111] Connection
    refused`, and nothing of the gateway started elsewhere."""
    port = free_port()  # closed again: nothing listens there
    (tmp_path / "capigate.toml").write_text(DEFAULT_CONFIG.replace("[server]", f"[server]\nport = {port}"))
    done = capigate("events", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert f"nothing answers at http://127.0.0.1:{port}" in done.stderr, done.stderr
    assert "capigate.toml" in done.stderr and "--url" in done.stderr and "Connection refused" in done.stderr
    # A URL given (--url) or exported (CAPIGATE_URL, by an earlier `capigate env` of the file's
    # port) said only the ConnectError (a trial): the address is named, and where it came from.
    given = capigate("events", "--url", f"http://127.0.0.1:{port}", cwd=tmp_path)
    assert given.returncode == 1 and "Connection refused" in given.stderr, given.stderr
    assert f"nothing answers at http://127.0.0.1:{port} (given with --url)" in given.stderr, given.stderr
    assert "capigate.toml" not in given.stderr, given.stderr  # --url was given: no file's address to blame
    exported = capigate("events", cwd=tmp_path, CAPIGATE_URL=f"http://127.0.0.1:{port}")
    assert exported.returncode == 1 and "Connection refused" in exported.stderr, exported.stderr
    said = " ".join(exported.stderr.split())
    assert f"nothing answers at http://127.0.0.1:{port} (from CAPIGATE_URL" in said, said
    assert 'eval "$(capigate env --port PORT)"' in said, said
    quality = capigate("quality", cwd=tmp_path, CAPIGATE_URL=f"http://127.0.0.1:{port}")
    assert quality.returncode == 1 and "(from CAPIGATE_URL" in quality.stderr, quality.stderr


def test_a_url_ending_in_api_and_a_refused_token_are_named_as_such(fresh_server: Server, tmp_path: Path) -> None:
    """`--url http://host:port/api` got "HTTP 404 … /api/api/events", and a wrong --token the
    server's "send Authorization: Bearer <admin_token>", meant for a curl (a trial). The URL is
    refused before anything is asked (test_every_url_option_refuses_what_is_no_gateways_base_url)."""
    with_api = capigate("events", "--url", f"{fresh_server.url}/api", "--token", ADMIN, cwd=tmp_path)
    said = " ".join(with_api.stderr.split())
    assert with_api.returncode == 2, said
    assert (
        f"holds the admin API's path '/api', which is added to it: give the gateway's base URL, --url '{fresh_server.url}'"
        in said
    ), said
    quality = capigate("quality", "--url", f"{fresh_server.url}/api/", "--token", ADMIN, cwd=tmp_path)
    assert quality.returncode == 2 and f"--url '{fresh_server.url}'" in quality.stderr, quality.stderr

    wrong = capigate("events", "--url", fresh_server.url, "--token", "not-the-token", cwd=tmp_path)
    said = " ".join(wrong.stderr.split())
    assert wrong.returncode == 1 and "the gateway refused the admin token given with --token" in said, said
    assert "Bearer" not in said, said
    exported = capigate("events", "--url", fresh_server.url, cwd=tmp_path, CAPIGATE_ADMIN_TOKEN="not-the-token")
    assert "the gateway refused the admin token from CAPIGATE_ADMIN_TOKEN" in " ".join(exported.stderr.split())
    (tmp_path / "capigate.toml").write_text(DEFAULT_CONFIG.replace(ADMIN, "another-gateways-token"))
    configured = capigate("quality", "--url", fresh_server.url, cwd=tmp_path)
    said = " ".join(configured.stderr.split())
    assert configured.returncode == 1 and "refused the admin token of capigate.toml ([server] admin_token)" in said


# --- warnings in the request table ----------------------------------------------------------


def on_a_terminal(*args: str, cwd: Path, columns: int, colours: bool = False) -> str:
    """What ``capigate ARGS`` prints on a terminal ``columns`` wide (a pseudo-terminal: the
    table is drawn only for one), without its colours unless ``colours``."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CAPIGATE_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "capigate", *args],
        stdin=terminal, stdout=terminal, stderr=terminal, cwd=cwd,
        env={**clean, "COLUMNS": str(columns), "TERM": "xterm-256color"},
    )  # fmt: skip
    os.close(terminal)
    out = b""
    try:
        while chunk := os.read(controller, 65536):
            out += chunk
    except OSError:  # EIO: the command ended, its side of the terminal closed
        pass
    finally:
        os.close(controller)
    assert proc.wait(timeout=30) == 0, out.decode(errors="replace")
    if colours:
        return out.decode()
    return re.sub(r"\x1b\[[0-9;]*m", "", out.decode()).replace("\r\n", "\n")


def _dropped_silently(server: Server, tag: str) -> None:
    """AppsFlyer's silent failure: an iOS app id without its `id`, answered 200 OK, dropped."""
    body = {"appsflyer_id": "1415211453000-6513711", "eventName": "af_purchase", "os": "17"}
    headers = {"authentication": "af-ios-key", "X-Capigate-Test": tag}
    with server.client() as http:
        answer = http.post("/inappevent/123456789", json=body, headers=headers)
    assert (answer.status_code, answer.text) == (200, "OK") and "x-capigate-dropped" in answer.headers
    with GatewayAdmin(server.url, ADMIN) as admin:
        wait_until(lambda: len(admin.requests(test_tag=tag).requests) == 1, what="the journal entry")


def test_events_requests_show_a_silent_drop_on_a_terminal_piped_and_as_json(server: Server, tmp_path: Path) -> None:
    """`capigate events --requests` showed the silently dropped AppsFlyer request as `200
    1/0/0`, no warning, its path cut to `/inappevent/12…`: a good request to the eye (a trial;
    the inspector marks it DROPPED SILENTLY). Each form now carries the warnings' codes."""
    tag = f"drop-{time.time_ns()}"
    _dropped_silently(server, tag)
    _config_of(server, tmp_path)
    wide = on_a_terminal("events", "--requests", "--test-tag", tag, cwd=tmp_path, columns=220)
    assert "ios_app_id_without_prefix" in wide and "/inappevent/123456789" in wide, wide
    assert "warnings" in wide.splitlines()[1], wide  # a column of its own
    assert "DROPPED SILENTLY: ios_app_id_without_prefix" in wide, wide  # as the inspector says it
    narrow = on_a_terminal("events", "--requests", "--test-tag", tag, cwd=tmp_path, columns=80)
    rows = [line.split("│")[1:-1] for line in narrow.splitlines() if line.startswith("│")]
    request, warnings = ("".join(cells[i].strip() for cells in rows) for i in (4, -1))
    assert request == "POST/inappevent/123456789", narrow  # folded onto more lines, not cut
    assert warnings == "DROPPEDSILENTLY:ios_app_id_without_prefix", narrow
    piped = capigate("events", "--requests", "--test-tag", tag, cwd=tmp_path)
    assert piped.returncode == 0, piped.stderr
    header, row = (line.split("\t") for line in piped.stdout.splitlines())
    assert header[-1] == "warnings" and row[header.index("request")] == "POST /inappevent/123456789", piped.stdout
    assert "ios_app_id_without_prefix" in row[-1], row
    as_json = capigate("events", "--requests", "--json", "--test-tag", tag, cwd=tmp_path)
    (line,) = as_json.stdout.splitlines()
    assert [w["code"] for w in json.loads(line)["warnings"]] == ["ios_app_id_without_prefix"]


def test_quality_counts_one_event_in_the_singular_and_says_its_window_is_widened(
    fresh_server: Server, tmp_path: Path
) -> None:
    """It printed "1 events", and "from 10:00 to 11:00 the next day" for the last 24 hours
    (25 hours: widened to whole hours) without saying so."""
    with fresh_server.client() as c:
        r = c.post("/v1/event?pixel_id=px_std", json=batch(purchase()), headers={"Authorization": "key-std"})
        assert r.status_code == 200, r.text
    done = capigate("quality", "--url", fresh_server.url, "--token", ADMIN, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[0]
    assert first.endswith(" UTC: the last 24 hours, widened to whole hours (the figures are kept per hour)"), first
    assert ": PASS  1 event, " in done.stdout or "  1 event, " in done.stdout, done.stdout
    assert "1 events" not in done.stdout, done.stdout
    asked = capigate(
        "quality", "--url", fresh_server.url, "--token", ADMIN, "--since", "2026-12-05T10:00:00Z",
        "--until", "2026-12-05T12:00:00Z", cwd=tmp_path,
    )  # fmt: skip
    assert asked.stdout.splitlines()[0] == "from 2026-12-05 10:00:00.000 to 2026-12-05 12:00:00.000 UTC", asked.stdout
    widened = capigate(
        "quality", "--url", fresh_server.url, "--token", ADMIN, "--since", "2026-12-05T10:30:00Z",
        "--until", "2026-12-05T12:00:00Z", cwd=tmp_path,
    )  # fmt: skip
    said = widened.stdout.splitlines()[0]
    assert said == (
        "from 2026-12-05 10:00:00.000 to 2026-12-05 12:00:00.000 UTC: the window asked, widened to whole hours "
        "(the figures are kept per hour)"
    ), said


@pytest.mark.parametrize("command", ["events", "quality", "curl"])
def test_help_names_capigate_url_where_url_is_read_from_it(command: str, tmp_path: Path) -> None:
    """`events --help` said "--url [default: the configuration's host and port]", but CAPIGATE_URL
    is read first: each option read from a variable says so, as send's --to does."""
    said = " ".join(capigate(command, "--help", cwd=tmp_path).stdout.split())
    url = said[said.index("--url TEXT") :]
    assert url[url.index("[env var: ") :].startswith("[env var: CAPIGATE_URL]"), said  # the first after --url


def test_every_option_read_from_a_variable_shows_it_in_its_help() -> None:
    from capigate.cli import main

    def options(command: click.Command, name: str) -> Iterator[tuple[str, click.Option]]:
        for param in command.params:
            if isinstance(param, click.Option):
                yield name, param
        for sub_name, sub in getattr(command, "commands", {}).items():
            yield from options(sub, f"{name} {sub_name}")

    hidden = [f"{where} {o.opts[0]}" for where, o in options(main, "capigate") if o.envvar and not o.show_envvar]
    assert hidden == [], hidden


# --- client-supplied values on a terminal ---------------------------------------------------


def test_events_escape_the_control_characters_of_client_supplied_values(server: Server, tmp_path: Path) -> None:
    """A pixel id sent without a key (``x%1b%5b31mRED%1b%5d0%3bpwned%07``), an AppsFlyer
    eventName and an Axon dedupe_id holding ESC and CR were printed raw by `capigate events`,
    on a terminal and piped: colours, a window title, a line rewritten (a trial). Each is
    printed with its control characters escaped, as the server's log writes them (a zero-width
    space too: a re-trial). An eventName holding one is refused now (control_character)."""
    tag = f"esc-{time.time_ns()}"
    with server.client() as http:
        refused = http.post(
            "/v1/event?pixel_id=x%1b%5b31mRED%1b%5d0%3bpwned%07", headers={"Authorization": "no"}, content=b"{}"
        )
        assert refused.status_code == 401, refused.text
        body = {"appsflyer_id": "1415211453000-6513711", "eventName": "evil\x1b[41mBG", "eventValue": "", "os": "17"}
        af = http.post(
            "/inappevent/com.example.shop",
            json=body,
            headers={"authentication": "af-dev-key", "X-Capigate-Test": tag, "Accept": "application/json"},
        )
        # refused since (control_character): no name of an event holds a control character now
        assert af.status_code == 400 and "control_character" in af.text, af.text
        axon = http.post(
            "/v1/event?pixel_id=px_std",
            json=batch(page_view(dedupe_id="d\x1b[32mGREEN\rover\u200bZW")),  # and a zero-width space
            headers={"Authorization": "key-std", "X-Capigate-Test": tag},
        )
        assert axon.status_code == 200, axon.text
    with GatewayAdmin(server.url, ADMIN) as admin:
        wait_until(lambda: len(admin.requests(status=401, limit=1).requests) == 1, what="the journal entry")
    _config_of(server, tmp_path)
    piped_requests = capigate("events", "--requests", "--status", "401", "--limit", "1", cwd=tmp_path)
    piped_events = capigate("events", "--test-tag", tag, cwd=tmp_path)
    for done in (piped_requests, piped_events):
        assert done.returncode == 0, done.stderr
        assert "\x1b" not in done.stdout and "\r" not in done.stdout and "\x07" not in done.stdout, repr(done.stdout)
    assert "x\\x1b[31mRED\\x1b]0;pwned\\x07" in piped_requests.stdout, piped_requests.stdout
    assert "d\\x1b[32mGREEN\\rover\\u200bZW" in piped_events.stdout, piped_events.stdout
    raw = on_a_terminal("events", "--test-tag", tag, cwd=tmp_path, columns=400, colours=True)
    assert "\x1b[32m" not in raw and "\r" not in raw.replace("\r\n", ""), repr(raw)
    assert "d\\x1b[32mGREEN" in raw, raw
    table = on_a_terminal("events", "--requests", "--status", "401", "--limit", "1", cwd=tmp_path, columns=400)
    assert "\x1b]0;" not in table and "\x07" not in table and "\x1b[31m" not in table, repr(table)


def test_an_unknown_source_is_said_on_stderr_where_events_and_quality_find_nothing(
    fresh_server: Server, tmp_path: Path
) -> None:
    """Rule: ``--source`` that is no pixel or app of the configuration read, and that the
    gateway keeps no event nor request of, is said on stderr (as replay says it); stdout is as
    before, for a pipe. `quality --source nope` said "no accepted events in this window" and
    `events --source nope` printed an empty table, status 0 (a trial). A source no longer in
    the file whose events are kept, a configured one with none yet, and a run without a
    readable file (--url and --token) say nothing more."""
    with fresh_server.client() as c:
        r = c.post("/v1/event?pixel_id=px_std", json=batch(purchase()), headers={"Authorization": "key-std"})
        assert r.status_code == 200, r.text
    # The CLI's file names px_lead but no longer px_std, whose event the gateway keeps.
    config = _config_of(fresh_server, tmp_path)
    config.write_text(config.read_text().replace('pixel_id = "px_std"', 'pixel_id = "px_other"'))
    hint = f"'nope' is not a pixel or app of {config.name}, and the gateway at {fresh_server.url} keeps no event or request of it"
    empty: tuple[tuple[tuple[str, ...], str], ...] = (
        (("quality", "--source", "nope"), "no accepted events in this window"),
        (("events", "--source", "nope"), "id\treceived (UTC)"),
        (("events", "--requests", "--source", "nope"), "id\treceived (UTC)"),
    )
    for args, stdout in empty:
        done = capigate(*args, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert stdout in done.stdout and "nope" not in done.stdout, done.stdout
        assert done.stderr == f"capigate {args[0]}: {hint}\n", done.stderr
    quiet: tuple[tuple[str, ...], ...] = (
        ("quality", "--source", "px_std", "--since", "2020-01-01T00:00:00Z", "--until", "2020-01-02T00:00:00Z"),
        ("events", "--source", "px_std", "--until", "2020-01-01T00:00:00Z"),
        ("events", "--requests", "--source", "px_std", "--until", "2020-01-01T00:00:00Z"),
        ("events", "--source", "px_lead"),
        ("quality", "--source", "px_lead"),
    )
    for args in quiet:
        done = capigate(*args, cwd=tmp_path)
        assert done.returncode == 0 and done.stderr == "", (args, done.stderr)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for command in ("events", "quality"):
        done = capigate(command, "--url", fresh_server.url, "--token", ADMIN, "--source", "nope", cwd=elsewhere)
        assert done.returncode == 0 and done.stderr == "", done.stderr


# --- every api the journal records ----------------------------------------------------------


def test_events_requests_lists_login_attempts_by_every_api_the_journal_records(
    fresh_server: Server, tmp_path: Path
) -> None:
    """The journal records a /login attempt as api "inspector", and /api/requests?api=inspector
    finds it, but `--api inspector` was refused ("not one of 'axon', 'appsflyer', 'admin'"): the
    CLI had a list of its own (a trial). It takes the API's, responses.REQUEST_APIS."""
    from capigate.responses import EVENT_APIS, REQUEST_APIS

    with fresh_server.client() as http:
        assert http.post("/login", data={"token": "not-the-token"}).status_code == 401
    with fresh_server.admin() as admin:
        wait_until(
            lambda: admin.get("/api/requests", params={"api": "inspector"}).json()["requests"],
            what="the login attempt in the journal",
        )
    base = ("events", "--url", fresh_server.url, "--token", ADMIN, "--requests", "--json")
    done = capigate(*base, "--api", "inspector", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(r["api"], r["method"], r["path"], r["status"]) for r in rows] == [("inspector", "POST", "/login", 401)]
    for api in REQUEST_APIS:  # each is taken: none is refused by the CLI before the gateway is asked
        taken = capigate(*base, "--api", api, cwd=tmp_path)
        assert taken.returncode == 0, (api, taken.stderr)
        if api not in EVENT_APIS:  # an event is never of these: said so, not an empty list
            events = capigate("events", "--url", fresh_server.url, "--token", ADMIN, "--api", api, cwd=tmp_path)
            assert events.returncode == 2 and f"--api {api} finds requests" in events.stderr, events.stderr


# --- --url: a gateway's base URL --------------------------------------------------------------


@pytest.mark.parametrize("command", ["events", "quality", "curl", "env"])
def test_every_url_option_refuses_what_is_no_gateways_base_url(command: str, tmp_path: Path) -> None:
    """`events --url 127.0.0.1:18150` said httpx's `GET 127.0.0.1:18150//api/events:
    UnsupportedProtocol`, and `--url http://…/api/events` "'api/events' is not an event id",
    where `send --to` refused the same input with a sentence (a trial). Every command's --url
    (and CAPIGATE_URL, where read) is checked as --to is, before anything is asked: a usage
    error (2) that says what to give."""
    (tmp_path / "capigate.toml").write_text(DEFAULT_CONFIG)
    port = free_port()  # nothing listens: a refusal made after asking would say "nothing answers"
    cases = [
        (f"127.0.0.1:{port}", f"--url '127.0.0.1:{port}' has no http:// or https://: add http:// (or https://): --url 'http://127.0.0.1:{port}'"),
        (f"localhost:{port}", f"add http:// (or https://): --url 'http://localhost:{port}'"),
        (f"http://127.0.0.1:{port}/api/events", f"--url 'http://127.0.0.1:{port}/api/events' holds the admin API's path '/api/events', which is added to it: give the gateway's base URL, --url 'http://127.0.0.1:{port}'"),
        (f"http://127.0.0.1:{port}/proxied/api/requests/", f"give the gateway's base URL, --url 'http://127.0.0.1:{port}/proxied'"),
        (f"http://127.0.0.1:{port}/v1/event", f"holds the endpoint's path '/v1/event', which is added to it: give --url 'http://127.0.0.1:{port}'"),
        (f"http://127.0.0.1:{port}/?x=1", "has a query (?) or fragment (#)"),
    ]  # fmt: skip
    for url, said in cases:
        done = (
            capigate(command, "--url", url, "--token", ADMIN, cwd=tmp_path)
            if command in ("events", "quality")
            else capigate(command, "--url", url, cwd=tmp_path)
        )
        refused = " ".join(done.stderr.split())
        assert done.returncode == 2 and said in refused, (command, url, refused)
        assert "Traceback" not in done.stderr and "nothing answers" not in refused, refused
        assert done.stdout == "", done.stdout
    if command != "env":  # env reads no CAPIGATE_URL
        exported = capigate(command, cwd=tmp_path, CAPIGATE_URL=f"127.0.0.1:{port}")
        said = " ".join(exported.stderr.split())
        assert exported.returncode == 2 and f"CAPIGATE_URL '127.0.0.1:{port}' has no http://" in said, said
    # A path of the proxy's own before the gateway's is a base URL: taken (nothing answers there).
    if command in ("curl", "env"):
        taken = capigate(command, "--url", f"http://127.0.0.1:{port}/proxied/", cwd=tmp_path)
        assert taken.returncode == 0 and f"http://127.0.0.1:{port}/proxied" in taken.stdout, taken.stderr


def test_the_sdks_gateway_admin_refuses_what_is_no_gateways_base_url() -> None:
    from capigate import AsyncGatewayAdmin

    for admin in (GatewayAdmin, AsyncGatewayAdmin):
        with pytest.raises(ValueError, match="has no http:// or https://: add http://"):
            admin("127.0.0.1:8080", ADMIN)
        with pytest.raises(ValueError, match="holds the admin API's path '/api/events'"):
            admin("http://127.0.0.1:8080/api/events", ADMIN)


# --- an option given wins over the environment ------------------------------------------------


def test_curl_and_env_take_host_and_port_given_over_an_exported_capigate_url(tmp_path: Path) -> None:
    """`eval "$(capigate env)"` exported 8080; `capigate curl px_demo --config … --port 18150`,
    the line a restarted gateway's banner prints, printed http://127.0.0.1:8080 (a trial):
    CAPIGATE_URL won over the options given. An option given wins over a variable, as `env
    --port` over CAPIGATE_PORT; --url given with --host or --port is a usage error."""
    (tmp_path / "capigate.toml").write_text(DEFAULT_CONFIG)  # port 8080, the default
    other = tmp_path / "other.toml"
    other.write_text(DEFAULT_CONFIG.replace("[server]", "[server]\nport = 18153"))
    exported = {"CAPIGATE_URL": "http://127.0.0.1:8080"}

    def url_of(*args: str, **env: str) -> str:
        done = capigate("curl", "px_std", *args, cwd=tmp_path, **env)
        assert done.returncode == 0, done.stderr
        return done.stdout.split("'")[1].split("/v1/event")[0]

    assert url_of("--port", "18150", **exported) == "http://127.0.0.1:18150"
    assert url_of("--host", "::1", **exported) == "http://[::1]:8080"
    assert url_of("--config", str(other), **exported) == "http://127.0.0.1:18153"  # the file names the gateway
    assert url_of("--config", str(other), "--port", "18150", **exported) == "http://127.0.0.1:18150"
    assert url_of(**exported) == "http://127.0.0.1:8080"  # nothing given: the variable, as before
    assert url_of(CAPIGATE_PORT="18151", **exported) == "http://127.0.0.1:8080"  # a variable to a variable: --url's
    assert url_of("--url", "http://127.0.0.1:18152", "--config", str(other)) == "http://127.0.0.1:18152"
    for command in ("curl", "env"):
        both = capigate(command, "--url", "http://127.0.0.1:18152", "--port", "18150", cwd=tmp_path)
        said = " ".join(both.stderr.split())
        assert both.returncode == 2 and "give --url or --port, not both" in said, said


def test_events_and_quality_take_host_and_port_as_env_and_curl_do(server: Server, tmp_path: Path) -> None:
    """`./scripts/serve --port 18150`, then `capigate events --port 18150` was "No such option:
    --port" (a trial), where env and curl take the address the gateway was started with: events
    and quality take the same --host and --port, given over the file's and over an exported
    CAPIGATE_URL, as curl's; --url given with either is a usage error, as theirs is."""
    dedupe_id = _sent(server, "host-port")
    config = tmp_path / "capigate.toml"  # the file's port is not the one the gateway listens on
    config.write_text(DEFAULT_CONFIG.replace("[server]", f"[server]\nport = {free_port()}"))
    stale = {"CAPIGATE_URL": f"http://127.0.0.1:{free_port()}"}  # an earlier `eval "$(capigate env)"`
    port = str(server.port)
    for options in (("--port", port), ("--host", "127.0.0.1", "--port", port), ("--host", "0.0.0.0", "--port", port)):
        done = capigate("events", *options, "--test-tag", "host-port", cwd=tmp_path, **stale)
        assert done.returncode == 0 and dedupe_id in done.stdout, (options, done.stderr)
    quality = capigate("quality", "--port", port, "--source", "px_std", cwd=tmp_path, **stale)
    assert quality.returncode == 0, quality.stderr
    # Without a file to read, the token given and --port name the gateway.
    (elsewhere := tmp_path / "elsewhere").mkdir()
    bare = capigate("events", "--port", port, "--token", ADMIN, "--test-tag", "host-port", cwd=elsewhere)
    assert bare.returncode == 0 and dedupe_id in bare.stdout, bare.stderr
    # The address used is the one said when nothing answers there.
    nobody = str(free_port())
    unanswered = capigate("events", "--port", nobody, cwd=tmp_path, **stale)
    said = " ".join(unanswered.stderr.split())
    assert unanswered.returncode == 1 and f"nothing answers at http://127.0.0.1:{nobody} (given with --port)" in said
    for command in ("events", "quality"):
        both = capigate(command, "--url", server.url, "--port", port, cwd=tmp_path)
        said = " ".join(both.stderr.split())
        assert both.returncode == 2 and "give --url or --port, not both" in said, said
        refused = capigate(command, "--port", "0", cwd=tmp_path)
        assert (refused.returncode, refused.stderr) == (1, "Error: --port 0: a port is 1 to 65535\n"), refused.stderr


def test_events_without_a_configuration_reads_capigate_port_as_with_one(server: Server, tmp_path: Path) -> None:
    """Without a capigate.toml to read, `events --token …` asked 127.0.0.1:8080 whatever
    CAPIGATE_HOST and CAPIGATE_PORT said, while its message of nothing answering named them (a
    helper's find): they name the gateway as they do with a configuration."""
    dedupe_id = _sent(server, "bare-env-port")
    (elsewhere := tmp_path / "elsewhere").mkdir()
    found = capigate(
        "events", "--token", ADMIN, "--test-tag", "bare-env-port", cwd=elsewhere,
        CAPIGATE_HOST="127.0.0.1", CAPIGATE_PORT=str(server.port),
    )  # fmt: skip
    assert found.returncode == 0 and dedupe_id in found.stdout, found.stderr


def test_events_and_quality_take_the_config_given_over_an_exported_url_and_token(
    server: Server, tmp_path: Path
) -> None:
    """--config given names the gateway: its address and admin token win over the CAPIGATE_URL
    and CAPIGATE_ADMIN_TOKEN an earlier `capigate env` exported for another one (they were
    asked, and --config was read for nothing)."""
    dedupe_id = _sent(server, "cfg-over-env")
    config = _config_of(server, tmp_path)
    stale = {"CAPIGATE_URL": f"http://127.0.0.1:{free_port()}", "CAPIGATE_ADMIN_TOKEN": "another-gateways-token"}
    done = capigate("events", "--config", str(config), "--test-tag", "cfg-over-env", cwd=tmp_path, **stale)
    assert done.returncode == 0 and dedupe_id in done.stdout, done.stderr
    quality = capigate("quality", "--config", str(config), "--source", "px_std", cwd=tmp_path, **stale)
    assert quality.returncode == 0, quality.stderr
    # Without --config given, the variables are read, as before: they name a gateway nothing answers at.
    unanswered = capigate("events", cwd=tmp_path, _config=str(config), **stale)
    assert unanswered.returncode == 1 and "(from CAPIGATE_URL" in " ".join(unanswered.stderr.split())
    # --url and --token given win over the file's.
    given = capigate("events", "--config", str(config), "--url", server.url, "--token", "wrong", cwd=tmp_path)
    assert given.returncode == 1 and "refused the admin token given with --token" in " ".join(given.stderr.split())


def test_quality_never_rounds_a_share_that_is_not_whole_to_100_or_0_percent(
    fresh_server: Server, tmp_path: Path
) -> None:
    """199 of 200 events with a dedupe_id read "100 % with a dedupe_id" while the JSON said
    0.995, and the one event of 200 with an email "0 %" (a trial; 0.5 % is rounded half up,
    as the inspector rounds)."""
    events = [page_view() for _ in range(200)]
    del events[0]["dedupe_id"]
    events[1]["user_data"]["email"] = "jane@example.com"
    with fresh_server.client() as c:
        for start in (0, 100):
            r = c.post(
                "/v1/event?pixel_id=px_std",
                json=batch(*events[start : start + 100]),
                headers={"Authorization": "key-std"},
            )
            assert r.status_code == 200, r.text
    as_json = capigate("quality", "--url", fresh_server.url, "--token", ADMIN, "--json", cwd=tmp_path)
    (group,) = json.loads(as_json.stdout)["groups"]
    assert group["with_dedupe_id"] == 0.995 and {c["key"]: c["share"] for c in group["coverage"]}["email"] == 0.005
    done = capigate("quality", "--url", fresh_server.url, "--token", ADMIN, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "200 events, 99.5 % with a dedupe_id" in done.stdout, done.stdout
    (email,) = [line for line in done.stdout.splitlines() if "│ email" in line or line.startswith("email ")]
    assert " 1 % " in email and " 0 % " not in email, email
    # The reasons, made by the gateway, say it the same way.
    assert "- fair: 99.5 % of page_view events carry neither email nor phone" in done.stdout, done.stdout
