"""``capigate validate``, ``send`` and ``events``, run as ``python -m capigate`` subprocesses
against a real running gateway (and a real local server failing on purpose)."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import msgspec
import pytest

from capigate import AppsFlyerClient, AxonClient, Problem
from capigate.client._records import classify, locate
from tests.conftest import ADMIN, EXAMPLES, Server, free_port, make_server
from tests.fault_proxy import Reply, fault_proxy
from tests.helpers import all_pages, batch, page_view, purchase, stored, wait_until
from tests.test_client_axon import big_cart
from tests.upstream import Upstream

AF_EVENT = {"appsflyer_id": "1415211453000-6513711", "eventName": "af_login", "eventValue": "", "os": "14"}


def capigate(*args: str, timeout_s: float = 20, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAPIGATE_")}
    return subprocess.run(
        [sys.executable, "-m", "capigate", *args], capture_output=True, text=True, timeout=timeout_s, env=env, cwd=cwd
    )


def tag() -> str:
    return f"cli-{uuid.uuid4().hex[:12]}"


def jsonl(path: Path, records: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


# --- validate -------------------------------------------------------------------------


def test_validate_accepts_valid_events_with_exit_status_0(tmp_path: Path) -> None:
    file = jsonl(tmp_path / "ok.jsonl", [page_view(), {"events": [purchase(), page_view()]}, AF_EVENT])
    done = capigate("validate", "--no-warnings", str(file))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("ok: 4 event(s) in 1 file(s), 0 problem(s), ")  # warnings counted, not shown


def test_validate_prints_file_line_and_path_of_every_problem_and_exits_1(tmp_path: Path) -> None:
    bad_email = page_view()
    bad_email["user_data"]["email"] = "not-an-email"
    records = [
        page_view(),
        bad_email,
        {"events": [page_view(), page_view(event_time="now")]},
        {**AF_EVENT, "ip": "::1"},
    ]
    file = jsonl(tmp_path / "events.jsonl", records)
    file.write_text(file.read_text() + '{not json\n{"hello": 1}\n')
    done = capigate("validate", "--no-warnings", str(file))
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert lines[:-1] == [
        f"{file}:2: error: user_data.email: not an email address (no @ in it: expected local@domain.tld) [invalid_email]",
        f"{file}:3: error: events[1].event_time: event_time is a JSON number of epoch milliseconds"
        " (1733000000000 is 2024-11-30T20:53:20Z), not a string [wrong_type]",
        f"{file}:4: error: ip: ip must be an IPv4 address; AppsFlyer does not take IPv6 [invalid_ip]",
        f"{file}:5: error: <record>: not valid JSON: JSON is malformed: object keys must be strings (byte 1) [malformed_json]",
        f"{file}:6: error: <record>: neither an Axon batch nor an Axon event nor an AppsFlyer event; say which with --api [unknown_record]",
    ]
    assert (
        lines[-1]
        == "invalid: 5 problem(s) among 5 event(s) and 2 record(s) read as no event in 1 file(s), 0 warning(s)"
    )


def test_validate_escapes_the_control_characters_of_the_keys_it_names(tmp_path: Path) -> None:
    """A key holding ESC was printed raw in its problem's path and message: a terminal took it
    as a colour (`capigate events` showed the same, a trial). It is written as an escape."""
    event = page_view()
    event["user_data"]["\x1b[31mred\r"] = "x"
    done = capigate("validate", str(jsonl(tmp_path / "esc.jsonl", [event])))
    assert "\x1b" not in done.stdout and "\r" not in done.stdout, repr(done.stdout)
    assert "user_data.\\x1b[31mred\\r" in done.stdout, done.stdout


def test_validate_reads_a_file_that_begins_with_a_byte_order_mark_as_send_does(tmp_path: Path) -> None:
    """A file saved by a Windows editor begins with EF BB BF: validate said "invalid character
    (byte 0)" of it (a trial). The mark is no part of the JSON, and send encodes the events
    again, so the file's events are read as any others."""
    for suffix, text in ((".json", json.dumps({"events": [page_view()]})), (".jsonl", json.dumps(page_view()))):
        file = tmp_path / f"bom{suffix}"
        file.write_bytes(b"\xef\xbb\xbf" + text.encode() + b"\n")
        done = capigate("validate", "--no-warnings", str(file))
        assert done.returncode == 0 and done.stdout.startswith("ok: 1 event(s)"), done.stdout + done.stderr


def test_validate_finds_the_line_of_a_problem_inside_a_json_document(tmp_path: Path) -> None:
    bad = page_view()
    bad["user_data"]["client_ip_address"] = "999.1.1.1"
    file = tmp_path / "batch.json"
    file.write_text(json.dumps({"events": [page_view(), bad]}, indent=2))
    expected = next(i for i, line in enumerate(file.read_text().splitlines(), 1) if "999.1.1.1" in line)
    done = capigate("validate", "--no-warnings", str(file))
    assert done.returncode == 1
    assert done.stdout.splitlines()[0] == (
        f"{file}:{expected}: error: events[1].user_data.client_ip_address: not an IPv4 or IPv6 address [invalid_ip]"
    )


def test_validate_applies_the_chosen_profile(tmp_path: Path) -> None:
    file = jsonl(tmp_path / "lead.jsonl", [page_view()])  # valid for the standard profile
    done = capigate("validate", "--profile", "lead_gen_restricted", str(file))
    assert done.returncode == 1
    assert "[url_not_origin]" in done.stdout and "[missing_identifier]" not in done.stdout


def test_validate_prints_warnings_unless_asked_not_to(tmp_path: Path) -> None:
    file = jsonl(tmp_path / "w.jsonl", [page_view(dedupe_id=None)])
    done = capigate("validate", str(file))
    assert done.returncode == 0
    assert (
        f"{file}:1: warning: dedupe_id: without a dedupe_id this event cannot be deduplicated [missing_dedupe_id]"
        in done.stdout
    )


def test_validate_api_option_overrides_detection(tmp_path: Path) -> None:
    file = jsonl(tmp_path / "af.jsonl", [{"eventName": "af_login"}])  # would be AppsFlyer
    done = capigate("validate", "--api", "axon", "--no-warnings", str(file))
    assert "user_data: `user_data` is required [missing_field]" in done.stdout


def test_validate_takes_the_pixel_as_send_does(tmp_path: Path) -> None:
    """Rule: `validate --pixel P --profile X` checks what `send --pixel P --profile X` would
    send: Axon events under that profile, an AppsFlyer event refused (wrong_api) at its line.
    validate had no --pixel (a trial: "No such option '--pixel'")."""
    file = jsonl(tmp_path / "px.jsonl", [page_view(), AF_EVENT])
    done = capigate("validate", "--pixel", "px_std", "--no-warnings", str(file))
    assert done.returncode == 1, done.stderr
    assert done.stdout.splitlines()[0] == (
        f"{file}:2: error: <record>: an AppsFlyer event, but this validate is for axon: "
        "leave out --pixel to check it as one [wrong_api]"
    )
    assert done.stdout.splitlines()[1].startswith("invalid: 1 problem(s) among 1 event(s)")
    axon = jsonl(tmp_path / "axon.jsonl", [page_view()])
    assert capigate("validate", "--pixel", "px_std", str(axon)).returncode == 0
    lead = capigate("validate", "--pixel", "px_lead", "--profile", "lead_gen_restricted", str(axon))
    assert lead.returncode == 1 and "[url_not_origin]" in lead.stdout
    both = capigate("validate", "--pixel", "px_std", "--api", "appsflyer", str(axon))
    assert both.returncode == 2 and "--pixel is for Axon events" in both.stderr


def test_validate_and_send_check_a_pixel_with_its_profile_in_the_configuration(server: Server, tmp_path: Path) -> None:
    """`validate axon_purchase.json --pixel px_lead` said ok, then `send` was refused with 12
    problems: px_lead is lead_gen_restricted in capigate.toml, and both checked it as standard
    (a trial). Where a capigate.toml names the pixel, its profile is the one checked with,
    unless --profile is given, and the summary says so."""
    example = str(tmp_path / "axon_purchase.json")
    shutil.copy(EXAMPLES / "axon_purchase.json", example)
    here = tmp_path / "gateway"
    here.mkdir()
    (here / "capigate.toml").write_text(server.config.read_text())  # px_restricted: lead_gen_restricted
    done = capigate("validate", example, "--pixel", "px_restricted", "--no-warnings", cwd=here)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "'purchase' is not an event of the lead_gen_restricted profile" in done.stdout, done.stdout
    summary = done.stdout.splitlines()[-1]
    assert summary.startswith("invalid: 12 problem(s) among 1 event(s)"), summary
    assert summary.endswith("; profile lead_gen_restricted, px_restricted's in capigate.toml"), summary
    given = capigate("validate", example, "--pixel", "px_restricted", "--profile", "standard", cwd=here)
    assert given.returncode == 0 and "profile" not in given.stdout, given.stdout  # --profile given wins
    unnamed = capigate("validate", example, "--pixel", "px_elsewhere", cwd=here)
    assert unnamed.returncode == 0, unnamed.stdout  # a pixel the file does not name: standard, as before
    # said so (a second trial took the silent ok for a check with the pixel's profile)
    assert unnamed.stdout.endswith("; profile standard, the default: px_elsewhere is not in capigate.toml\n")
    elsewhere = capigate("validate", example, "--pixel", "px_restricted", cwd=tmp_path)
    assert elsewhere.returncode == 0, elsewhere.stdout  # no capigate.toml here: standard
    named = capigate("validate", example, "--pixel", "px_restricted", "--config", str(here / "capigate.toml"))
    assert named.returncode == 1 and "[unknown_event]" in named.stdout, named.stdout
    missing = capigate("validate", example, "--pixel", "px_restricted", "--config", str(tmp_path / "nope.toml"))
    said = " ".join(missing.stderr.split())
    assert missing.returncode == 1 and "the file does not exist" in said and "give --profile" in said, said

    send = ("send", example, "--to", server.url, "--pixel", "px_restricted", "--key", "key-restricted")
    refused = capigate(*send, "--test-tag", tag(), "--no-progress", cwd=here)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert refused.stdout.splitlines()[-1].startswith("invalid: "), refused.stdout
    assert "(profile lead_gen_restricted, px_restricted's in capigate.toml); nothing was sent" in refused.stdout


def test_send_refused_for_another_profiles_rules_names_that_profile(server: Server, tmp_path: Path) -> None:
    """Events that passed the local check (standard, no capigate.toml here) refused by the
    gateway for lead_gen_restricted's rules: the summary said "mend those first", never
    --profile (a trial). It names the profile whose rules find every problem the gateway
    answered, and the commands that check and send with it."""
    example = str(tmp_path / "axon_purchase.json")  # its failed file is written beside it
    shutil.copy(EXAMPLES / "axon_purchase.json", example)
    t = tag()
    done = capigate(
        "send", example, "--to", server.url, "--pixel", "px_restricted", "--key", "key-restricted",
        "--test-tag", t, "--no-progress", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    advice = " ".join(done.stdout.split())
    assert (
        "the gateway refused events that passed the local check with profile standard (the default): it checks "
        "px_restricted with profile lead_gen_restricted, it seems (its rules find every problem above)"
    ) in advice, advice
    written = Path(advice.split("failed events written to ", 1)[1].split(";", 1)[0])
    assert f"capigate validate {written} --pixel px_restricted --profile lead_gen_restricted` lists them" in advice
    resend = f"send them again with: capigate send {written} --to {server.url} --pixel px_restricted --profile lead_gen_restricted --test-tag {t} --key ..."
    assert resend in advice, advice
    checked = capigate("validate", str(written), "--pixel", "px_restricted", "--profile", "lead_gen_restricted")
    assert checked.returncode == 1 and "[unknown_event]" in checked.stdout, checked.stdout


def test_validate_pixel_on_an_appsflyer_file_says_its_records_are_not_axon_events(tmp_path: Path) -> None:
    """`validate --pixel px_demo` on an AppsFlyer file printed "invalid: 1 problem(s) among 0
    event(s)" (a re-trial): the summary counts the records that are no event of the API apart."""
    file = jsonl(tmp_path / "af.jsonl", [AF_EVENT])
    done = capigate("validate", "--pixel", "px_std", "--no-warnings", str(file))
    assert done.returncode == 1, done.stderr
    assert done.stdout.splitlines()[-1] == (
        "invalid: 1 problem(s) among 1 record(s) that are not Axon events in 1 file(s), 0 warning(s)"
    ), done.stdout


def test_validate_and_send_agree_on_an_appsflyer_event_value_given_as_an_object(server: Server, tmp_path: Path) -> None:
    """Rule: validate checks an AppsFlyer event as send sends it, stringified; the gateway warns
    only about bytes that carry an object (tests/test_appsflyer_api.py)."""
    event = {**AF_EVENT, "eventName": "af_purchase", "eventValue": {"af_revenue": "9.99", "af_currency": "USD"}}
    file = jsonl(tmp_path / "af.jsonl", [{**event, "custom_data": {"tier": "gold"}}])
    checked = capigate("validate", str(file))
    assert checked.returncode == 0, checked.stdout
    assert "not_stringified" not in checked.stdout
    assert checked.stdout.endswith("ok: 1 event(s) in 1 file(s), 0 problem(s), 0 warning(s)\n"), checked.stdout
    sent = capigate(
        "send", str(file), "--to", server.url, "--app", "com.example.shop", "--key", "af-dev-key", "--no-progress"
    )
    assert sent.returncode == 0 and "warnings:" not in sent.stdout, sent.stdout
    bad = jsonl(tmp_path / "bad.jsonl", [{**event, "eventValue": {"af_revenue": "nine"}}])
    refused = capigate("validate", "--no-warnings", str(bad))
    assert refused.returncode == 1 and f"{bad}:1: error: eventValue.af_revenue: " in refused.stdout, refused.stdout


def test_records_are_told_apart_by_their_keys() -> None:
    assert classify({"events": []}, None) == ("axon", "batch")
    assert classify(page_view(), None) == ("axon", "event")
    assert classify(AF_EVENT, None) == ("appsflyer", "event")
    assert classify({"eventName": "af_login"}, "axon") == ("axon", "event")
    assert classify({"events": []}, "appsflyer") == ("appsflyer", "event")
    unknown = classify({"hello": 1}, None)
    assert isinstance(unknown, Problem) and unknown.code == "unknown_record"


def test_a_json_path_is_found_at_its_line_or_its_nearest_ancestor() -> None:
    document = '[\n {"events": [\n  {"name": "x",\n   "user_data": {\n    "email": "a\\"]}"}}\n ]},\n {"name": "y"}\n]'
    assert locate(document, "[0].events[0].user_data.email") == 5
    assert locate(document, "[0].events[0].user_data.phone") == 4  # missing: its object
    assert locate(document, "[1].name") == 7
    assert locate(document, "[9]") == 1


# --- send -----------------------------------------------------------------------------


def test_send_checks_batches_and_delivers_with_a_summary(server: Server, tmp_path: Path) -> None:
    t = tag()
    file = jsonl(tmp_path / "events.jsonl", [page_view() for _ in range(120)] + [{"events": [purchase()] * 2}])
    done = capigate(
        "send", str(file), "--to", server.url, "--pixel", "px_std", "--key", "key-std", "--test-tag", t, "--no-progress"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"delivered 122 of 122 event(s) in 2 request(s) to {server.url}" in done.stdout
    assert "stored: 121, duplicates: 1" in done.stdout
    assert "failed: 0\n" in done.stdout
    assert len(stored(server, test_tag=t)) == 121


def test_send_shows_a_progress_bar(server: Server, tmp_path: Path) -> None:
    file = jsonl(tmp_path / "e.jsonl", [page_view() for _ in range(5)])
    done = capigate("send", str(file), "--to", server.url, "--pixel", "px_std", "--key", "key-std")
    assert done.returncode == 0
    assert "5/5" in done.stderr and "delivered/s" in done.stderr and "0 failed" in done.stderr


def test_send_appsflyer_events_one_request_each(server: Server, tmp_path: Path) -> None:
    t = tag()
    file = jsonl(tmp_path / "af.jsonl", [AF_EVENT] * 3)
    done = capigate(
        "send", str(file), "--to", server.url, "--app", "com.example.shop", "--key", "af-dev-key", "--test-tag", t
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "delivered 3 of 3 event(s) in 3 request(s)" in done.stdout
    assert len(stored(server, test_tag=t)) == 3


def test_send_refuses_invalid_files_and_sends_nothing(server: Server, tmp_path: Path) -> None:
    t = tag()
    file = jsonl(tmp_path / "bad.jsonl", [page_view(), {"events": [page_view(), page_view(name="pageview")]}])
    done = capigate("send", str(file), "--to", server.url, "--pixel", "px_std", "--key", "key-std", "--test-tag", t)
    assert done.returncode == 1
    first = done.stdout.splitlines()[0]
    assert first.startswith(f"{file}:2: error: events[1].name: ") and "pageview" in first and "[unknown_event]" in first
    assert "nothing was sent" in done.stdout
    assert stored(server, test_tag=t) == []


def test_send_refuses_events_of_the_other_api(server: Server, tmp_path: Path) -> None:
    file = jsonl(tmp_path / "mixed.jsonl", [page_view(), AF_EVENT])
    done = capigate("send", str(file), "--to", server.url, "--pixel", "px_std", "--key", "key-std")
    assert done.returncode == 1 and "[wrong_api]" in done.stdout and f"{file}:2:" in done.stdout


def test_send_writes_undelivered_events_to_a_file_send_accepts_again(server: Server, tmp_path: Path) -> None:
    t = tag()
    email = "Resend.Me@Example.com"
    events = [page_view() for _ in range(3)]
    events[0]["user_data"]["email"] = email
    file = jsonl(tmp_path / "events.jsonl", events)
    failed = tmp_path / "events.failed.jsonl"
    with fault_proxy(then=Reply(503, b"down for maintenance")) as proxy:
        done = capigate("send", str(file), "--to", proxy.url, "--pixel", "px_std", "--key", "key-std", "--retries", "0")
    assert done.returncode == 1
    assert "delivered 0 of 3 event(s)" in done.stdout and "events/s" not in done.stdout
    assert "failed: 3 event(s) in 1 request(s)" in done.stdout
    assert "1 request(s), 1 attempt(s) each: HTTP 503 down for maintenance" in done.stdout
    assert f"failed events written to {failed}" in done.stdout
    lines = failed.read_text().splitlines()
    assert len(lines) == 3 and email not in failed.read_text()  # hashed, ready to resend
    again = capigate("send", str(failed), "--to", server.url, "--pixel", "px_std", "--key", "key-std", "--test-tag", t)
    assert again.returncode == 0, again.stdout
    assert sorted(e["dedupe_id"] for e in stored(server, test_tag=t)) == sorted(e["dedupe_id"] for e in events)


def test_send_names_every_earlier_failed_file_it_skipped_past(tmp_path: Path) -> None:
    """With t.failed.jsonl and t.failed.2.jsonl there, it said 't.failed.jsonl is there from an
    earlier run' and wrote t.failed.3.jsonl: .2 was there too, unnamed."""
    file = jsonl(tmp_path / "t.jsonl", [page_view()])
    earlier = [tmp_path / "t.failed.jsonl", tmp_path / "t.failed.2.jsonl"]
    for path in earlier:
        path.write_text("an earlier run's\n")
    dead = f"http://127.0.0.1:{free_port()}"
    send = ("--to", dead, "--pixel", "px_std", "--key", "key-std", "--no-progress", "--retries", "0")
    done = capigate("send", str(file), *send)
    out = done.stdout
    assert done.returncode == 1, out + done.stderr
    assert f"{earlier[0]} and {earlier[1]} are there from earlier runs and were left as they are" in out, out
    assert f"failed events written to {tmp_path / 't.failed.3.jsonl'}" in out, out
    assert all(path.read_text() == "an earlier run's\n" for path in earlier)
    (tmp_path / "t.failed.4.jsonl").write_text("")
    again = capigate("send", str(file), *send).stdout
    assert f"{earlier[0]} to {tmp_path / 't.failed.4.jsonl'} (4 files) are there from earlier runs" in again, again
    assert f"failed events written to {tmp_path / 't.failed.5.jsonl'}" in again, again
    # A deleted file's number is not taken again: the newest failures were written into the gap
    # (.2 here) under a lower number than older ones, and the files above it went unnamed.
    (tmp_path / "t.failed.2.jsonl").unlink()
    gap = capigate("send", str(file), *send).stdout
    assert f"{earlier[0]} to {tmp_path / 't.failed.5.jsonl'} (4 files) are there from earlier runs" in gap, gap
    assert f"failed events written to {tmp_path / 't.failed.6.jsonl'}" in gap, gap


def test_send_reports_timeouts_as_not_confirmed_and_keeps_an_earlier_failed_file(
    server: Server, tmp_path: Path
) -> None:
    """A timeout after sending is an unknown, not a failure: here the gateway stored every event
    it never got to confirm; the failed file says so, and resending them is safe (dedupe_id)."""
    t = tag()
    events = [page_view() for _ in range(3)]
    file = jsonl(tmp_path / "t.jsonl", events)
    earlier = tmp_path / "t.failed.jsonl"
    earlier.write_text("an earlier run's\n")
    send = ("--pixel", "px_std", "--key", "key-std", "--test-tag", t, "--no-progress")
    with fault_proxy(server.url, forward_delay_s=3) as proxy:
        done = capigate("send", str(file), "--to", proxy.url, *send, "--retries", "0", "--timeout", "0.5")
    out = done.stdout
    assert done.returncode == 1 and "delivered 0 of 3 event(s)" in out, out
    assert "  failed: 0\n" in out, out
    assert "not confirmed: 3 event(s) in 1 request(s): the gateway may have stored them" in out, out
    assert "sending them again is safe: each has a dedupe_id" in out and "ReadTimeout" in out, out
    assert earlier.read_text() == "an earlier run's\n"
    written = tmp_path / "t.failed.2.jsonl"
    assert f"{earlier} is there from an earlier run and was left as it is" in out, out
    assert f"failed events written to {written}" in out, out
    note, *lines = written.read_text().splitlines()
    assert note.startswith("# not confirmed, may be stored (ReadTimeout") and len(lines) == 3, note
    wait_until(lambda: len(stored(server, test_tag=t)) == 3, what="the timed-out events stored")
    again = capigate("send", str(written), "--to", server.url, *send)
    assert again.returncode == 0 and "stored: 0, duplicates: 3" in again.stdout, again.stdout


def test_send_tells_duplicates_of_its_own_unconfirmed_tries_from_others(server: Server, tmp_path: Path) -> None:
    """A try the gateway may have stored (503 with X-Capigate-Maybe-Stored), sent again: the
    summary read "duplicates: 3" of events sent once (a trial). It says they were most likely
    stored by that try."""
    t = tag()
    file = jsonl(tmp_path / "d.jsonl", [page_view() for _ in range(3)])
    send = ("--pixel", "px_std", "--key", "key-std", "--test-tag", t, "--no-progress")
    assert capigate("send", str(file), "--to", server.url, *send).returncode == 0  # what the lost try stored
    unconfirmed = Reply(503, b'{"error": "store_unconfirmed"}', headers={"X-Capigate-Maybe-Stored": "true"})
    with fault_proxy(server.url, faults=[unconfirmed]) as proxy:
        done = capigate("send", str(file), "--to", proxy.url, *send)
    assert done.returncode == 0 and len(proxy.seen) == 2, done.stdout + done.stderr
    assert (
        "  stored: 0, duplicates: 3 (all in requests sent again after a try that may have stored them: "
        "most likely by that try)\n"
    ) in done.stdout, done.stdout
    again = capigate("send", str(file), "--to", server.url, *send)
    assert "  stored: 0, duplicates: 3\n" in again.stdout, again.stdout


def test_send_interrupted_writes_what_was_not_delivered_and_exits_at_once(server: Server, tmp_path: Path) -> None:
    """Ctrl-C left no record of what was sent, and waited 28 s for the requests in flight to
    spend their retries (a trial): now the summary and the failed file are written at once,
    the requests in flight as not confirmed, those not started as not sent."""
    file = jsonl(tmp_path / "i.jsonl", [page_view() for _ in range(300)])
    hold = threading.Event()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAPIGATE_")}
    with fault_proxy(server.url, faults=[Reply(hold=hold), Reply(hold=hold)]) as proxy:
        send = ["send", str(file), "--to", proxy.url, "--pixel", "px_std", "--key", "key-std", "--test-tag", tag()]
        proc = subprocess.Popen(
            [sys.executable, "-m", "capigate", *send, "--no-progress", "--concurrency", "2"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        wait_until(lambda: len(proxy.seen) == 2, what="two requests in flight")
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
        took_s = time.monotonic() - started
    assert proc.returncode == 130 and took_s < 5, (proc.returncode, took_s, out, err)
    assert "200 event(s) of requests it stopped mid-way may be stored" in err, err
    assert "not confirmed: 200 event(s) in 2 request(s)" in out, out
    assert "failed: 100 event(s) in 1 request(s)" in out and "not sent: interrupted" in out, out
    assert "delivered 0 of 300 event(s) in 2 request(s) (1 more not started)" in out, out
    lines = (tmp_path / "i.failed.jsonl").read_text().splitlines()
    assert len([line for line in lines if not line.startswith("#")]) == 300
    assert [line.startswith("# not confirmed") for line in lines if line.startswith("#")] == [True, True]


def test_sends_hint_to_send_the_failed_again_keeps_its_test_tag_and_profile(tmp_path: Path) -> None:
    """The hint left --test-tag and --profile out: followed as printed, it sent test events as
    real ones, which a gateway with a relay forwards to AppLovin (a trial)."""
    file = jsonl(tmp_path / "h.jsonl", [page_view()])
    url = f"http://127.0.0.1:{free_port()}"
    done = capigate(
        "send", str(file), "--to", url, "--pixel", "px_lead", "--key", "k", "--profile", "lead_gen",
        "--test-tag", "ci run 7", "--retries", "0", "--no-progress",
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    failed = tmp_path / "h.failed.jsonl"
    hint = f"send them again with: capigate send {failed} --to {url} --pixel px_lead --profile lead_gen"
    assert f"{hint} --test-tag 'ci run 7' --key ..." in done.stdout, done.stdout


def test_send_interrupted_between_refused_tries_says_nothing_was_sent(tmp_path: Path) -> None:
    """Ctrl-C during the back-off after refused connections reported the request "in flight",
    its events "not confirmed: may be stored" (a trial): no try reached a server. They are
    failed as not sent, and the failed file holds no "# not confirmed" line."""
    file = jsonl(tmp_path / "r.jsonl", [page_view() for _ in range(3)])
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAPIGATE_")}
    send = ["send", str(file), "--to", f"http://127.0.0.1:{free_port()}", "--pixel", "px_std", "--key", "key-std"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "capigate", *send, "--no-progress", "--retries", "8"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    time.sleep(2.5)  # started, refused at once, waiting to try again
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=15)
    assert proc.returncode == 130, (out, err)
    assert "not confirmed" not in out and "failed: 3 event(s) in 1 request(s)" in out, out
    assert "none of which reached the server" in out and "no request it stopped had reached the gateway" in err, out
    assert not any(
        line.startswith("# not confirmed") for line in (tmp_path / "r.failed.jsonl").read_text().splitlines()
    )


def test_send_interrupted_while_checking_exits_130_and_sends_nothing(server: Server, tmp_path: Path) -> None:
    """Ctrl-C while the file was still being checked said "Aborted!" with status 1, as for a
    failure, where one during sending exits 130 (a trial). The file comes through a FIFO, so
    that the signal is sent once send holds it all and is checking 100,000 events (seconds)."""
    fifo = tmp_path / "big.jsonl"
    os.mkfifo(fifo)
    t = tag()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAPIGATE_")}
    send = ["send", str(fifo), "--to", server.url, "--pixel", "px_std", "--key", "key-std", "--test-tag", t]
    proc = subprocess.Popen(
        [sys.executable, "-m", "capigate", *send, "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    writer: list[int] = []
    wait_until(lambda: proc.poll() is not None or _opened_for_writing(fifo, writer), what="send opening the file")
    os.set_blocking(writer[0], True)
    with open(writer[0], "w") as events:
        events.write("".join(json.dumps(page_view()) + "\n" for _ in range(100_000)))
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "Aborted!" not in err, (proc.returncode, out, err)
    assert "interrupted while checking" in err and "nothing was sent" in err, err
    assert stored(server, test_tag=t) == [] and not list(tmp_path.glob("*.failed*"))


@pytest.mark.parametrize(
    "command", [[sys.executable, "-m", "capigate"], [str(Path(sys.executable).with_name("capigate"))]]
)
def test_ctrl_c_while_the_command_starts_exits_130_without_a_traceback(command: list[str]) -> None:
    """Ctrl-C in the first ~0.3 s of a command, while its modules load, printed a traceback
    (or "Aborted!" with status 1). Each interrupt lands at another moment after the CLI's
    modules began to load (msgspec's, mapped by the process: capigate's package alone maps
    none); send reads standard input, held open, so it runs until interrupted."""
    send = ["send", "-", "--to", f"http://127.0.0.1:{free_port()}", "--pixel", "px_std", "--key", "k"]
    for delay_s in (0, 0.01, 0.02, 0.04, 0.07, 0.1, 0.15, 0.2, 0.3):
        returncode, out, err = _interrupted_as_it_starts([*command, *send], delay_s)
        assert returncode == 130, (delay_s, returncode, out, err)
        assert "Traceback" not in err and "Aborted!" not in err, (delay_s, err)


def _interrupted_as_it_starts(command: list[str], delay_s: float) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``command``, sent SIGINT ``delay_s`` after it has
    begun to load the CLI's modules, its standard input held open until then."""
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_until(lambda: proc.poll() is not None or _loaded(proc.pid, "msgspec/_core"), what="the CLI loading")
    time.sleep(delay_s)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    return proc.returncode, out, err


def _loaded(pid: int, library: str) -> bool:
    """Whether the process ``pid`` has mapped a shared library whose path holds ``library``."""
    try:
        return library in Path(f"/proc/{pid}/maps").read_text()
    except OSError:  # gone
        return False


def _opened_for_writing(fifo: Path, opened: list[int]) -> bool:
    """Whether the write end of ``fifo`` could be opened (into ``opened``): someone reads it."""
    try:
        opened.append(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    except OSError as exc:
        if exc.errno != errno.ENXIO:  # no reader yet
            raise
        return False
    return True


def test_send_says_resending_appsflyer_events_not_confirmed_may_count_them_twice(tmp_path: Path) -> None:
    """It said resending was safe (dedupe_id), for AppsFlyer, which deduplicates nothing: a
    trial stored 7 of 8 twice. Reading such a file again, send says so too."""
    file = jsonl(tmp_path / "af.jsonl", [AF_EVENT])
    send = ("--app", "com.example.shop", "--key", "af-key", "--retries", "0", "--timeout", "0.5", "--no-progress")
    with fault_proxy(then=Reply(delay_s=3)) as proxy:
        done = capigate("send", str(file), "--to", proxy.url, *send)
    assert done.returncode == 1 and "sending them again may store them twice" in done.stdout, done.stdout
    # The last line offered "send them again with: …" as it stood, against the advice above it (a trial).
    last = done.stdout.splitlines()[-1]
    failed = tmp_path / "af.failed.jsonl"
    assert last.startswith(f"failed events written to {failed}; "), last
    assert "1 not confirmed may be stored already: look them up first (capigate events), delete from the file" in last
    assert f"those stored, then send the rest with: capigate send {failed} --to " in last, last
    with fault_proxy(then=Reply(200, b"ok")) as proxy:
        again = capigate("send", str(tmp_path / "af.failed.jsonl"), "--to", proxy.url, *send)
    assert "under '# not confirmed' lines" in again.stderr and "AppsFlyer deduplicates nothing" in again.stderr


def test_send_prints_the_problems_of_a_refused_batch(server: Server, tmp_path: Path) -> None:
    """It said only "the batch was refused", and suggested a resend that failed the same way."""
    event = page_view()
    event["user_data"]["email"] = "jane@example.com"  # not allowed by lead_gen_restricted
    file = jsonl(tmp_path / "r.jsonl", [event])
    done = capigate(
        "send", str(file), "--to", server.url, "--pixel", "px_restricted", "--key", "key-restricted", "--no-progress"
    )
    assert done.returncode == 1, done.stdout
    assert "    events[0].user_data" in done.stdout and "mend those first" in done.stdout, done.stdout


def test_send_timeout_option_bounds_each_attempt_and_its_former_name_still_works(tmp_path: Path) -> None:
    file = jsonl(tmp_path / "events.jsonl", [page_view()])
    send = ("send", str(file), "--pixel", "px_std", "--key", "key-std", "--retries", "0", "--no-progress")
    with fault_proxy(then=Reply(delay_s=8)) as proxy:
        for timeout, deprecated in (("--timeout", False), ("--timeout-s", True)):
            started = time.monotonic()
            done = capigate(*send, "--to", proxy.url, timeout, "0.5")
            assert done.returncode == 1 and "delivered 0 of 1 event(s)" in done.stdout, done
            assert time.monotonic() - started < 6  # not the 8 s the proxy takes, nor the default 10 s
            assert ("--timeout-s is deprecated; use --timeout" in done.stderr) is deprecated, done.stderr
        both = capigate(*send, "--to", proxy.url, "--timeout", "1", "--timeout-s", "2")
    assert both.returncode == 2 and "give --timeout only" in both.stderr
    assert "--timeout-s" not in capigate("send", "--help").stdout


def test_send_rate_option_limits_events_per_second(server: Server, tmp_path: Path) -> None:
    file = jsonl(tmp_path / "af.jsonl", [AF_EVENT] * 6)
    started = time.monotonic()
    done = capigate(
        "send", str(file), "--to", server.url, "--app", "com.example.shop", "--key", "af-dev-key", "--rate", "10"
    )
    assert done.returncode == 0
    assert time.monotonic() - started >= 0.5  # 6 events at 10/s: the last leaves after 0.5 s


def test_send_needs_exactly_one_of_pixel_and_app(tmp_path: Path) -> None:
    file = jsonl(tmp_path / "e.jsonl", [page_view()])
    done = capigate("send", str(file), "--to", "http://127.0.0.1:9", "--key", "k")
    assert done.returncode == 2 and "exactly one of --pixel (Axon) or --app (AppsFlyer)" in done.stderr


def test_send_says_where_the_key_and_the_url_may_come_from(tmp_path: Path) -> None:
    """`--key` reads CAPIGATE_KEY, but neither --help nor "Missing option '--key'" said so, and
    `capigate env` exports the keys as AXON_KEY and APPSFLYER_KEY (a trial)."""
    helped = " ".join(capigate("send", "--help").stdout.split())
    assert "[env var: CAPIGATE_KEY]" in helped and "[env var: CAPIGATE_URL]" in helped, helped
    file = jsonl(tmp_path / "e.jsonl", [page_view()])
    axon = capigate("send", str(file), "--to", "http://127.0.0.1:9", "--pixel", "px_std")
    assert axon.returncode == 2, axon.stderr
    said = " ".join(axon.stderr.split())
    assert "Missing option '--key' (or CAPIGATE_KEY)" in said and '--key "$AXON_KEY"' in said, said
    appsflyer = capigate("send", str(file), "--to", "http://127.0.0.1:9", "--app", "com.example.shop")
    assert appsflyer.returncode == 2 and '--key "$APPSFLYER_KEY"' in " ".join(appsflyer.stderr.split())
    no_url = capigate("send", str(file), "--key", "k", "--pixel", "px_std")
    assert no_url.returncode == 2 and "Missing option '--to' (or CAPIGATE_URL)" in " ".join(no_url.stderr.split())
    assert not list(tmp_path.glob("*.failed*"))


@pytest.mark.parametrize(
    ("to", "finding"),
    [
        ("127.0.0.1:9", "--to '127.0.0.1:9' has no http:// or https://"),
        ("http://127.0.0.1:9/v1/event", "holds the endpoint's path '/v1/event', which is added to it: give --to"),
        (
            "http://127.0.0.1:9/inappevent/com.example.shop",
            "holds the endpoint's path '/inappevent/com.example.shop', which is added to it: give --to 'http://127.0.0.1:9'",
        ),
        ("http://127.0.0.1:9/V1//%65vent", "holds the endpoint's path '/V1/event', which is added to it"),
        (
            "http://127.0.0.1:9/applovin/v1/event",
            "--to 'http://127.0.0.1:9/applovin/v1/event' holds the endpoint's path '/v1/event', which is added to it: "
            "give --to 'http://127.0.0.1:9/applovin'",
        ),
        ("http://127.0.0.1:9?x=1", "--to 'http://127.0.0.1:9?x=1' has a query (?) or fragment (#)"),
        ("http://127.0.0.1:9/#frag", "has a query (?) or fragment (#)"),
    ],
)
def test_send_refuses_a_to_that_is_not_a_base_url_as_a_usage_error(tmp_path: Path, to: str, finding: str) -> None:
    """A URL without its scheme was tried 5 times and reported 'not confirmed, may be stored';
    the endpoint's own URL was posted to /v1/event/v1/event: both a failed file of events. The
    refusal names --to, and the endpoint's path apart from a proxy's prefix before it: "give
    the base URL (…/applovin), without the endpoint's path '/applovin/v1/event'" named neither
    (a trial)."""
    file = jsonl(tmp_path / "e.jsonl", [page_view()])
    done = capigate("send", str(file), "--to", to, "--key", "k", "--pixel", "px_std", "--no-progress")
    assert done.returncode == 2 and finding in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not list(tmp_path.glob("*.failed*"))


def test_send_names_capigate_url_when_the_base_url_came_from_it(tmp_path: Path) -> None:
    file = jsonl(tmp_path / "e.jsonl", [page_view()])
    env = {**os.environ, "CAPIGATE_URL": "http://127.0.0.1:9/v1/event"}
    done = subprocess.run(
        [sys.executable, "-m", "capigate", "send", str(file), "--key", "k", "--pixel", "px_std"],
        capture_output=True, text=True, timeout=30, env=env,
    )  # fmt: skip
    said = "CAPIGATE_URL 'http://127.0.0.1:9/v1/event' holds the endpoint's path '/v1/event'"
    assert done.returncode == 2 and said in done.stderr, done.stderr


def test_send_to_a_base_url_with_a_wrong_path_says_to_check_the_url_not_the_events(
    server: Server, tmp_path: Path
) -> None:
    """`--to $URL/v1` posted to /v1/v1/event, a 404, and the advice was "some were refused
    (the problems above): mend those first", above which no problem was listed (a trial). It
    says where send posted: --to and the endpoint's path."""
    file = jsonl(tmp_path / "p.jsonl", [page_view()])
    to = f"{server.url}/v1"
    done = capigate("send", str(file), "--to", to, "--pixel", "px_std", "--key", "key-std", "--no-progress")
    assert done.returncode == 1 and "HTTP 404" in done.stdout, done.stdout
    said = f"nothing answers at {to}/v1/event (--to {to} and the endpoint's path /v1/event): check --to, then"
    assert said in done.stdout, done.stdout
    assert "mend those first" not in done.stdout, done.stdout


def test_send_refused_for_its_key_says_to_fix_the_key_not_to_mend_the_events(server: Server, tmp_path: Path) -> None:
    """A 401 ended "some were refused (the problems above): mend those first": the events were
    fine, the key was wrong (a trial). When every refusal is the request's (its key, pixel or
    app id, test tag), the advice names the option to fix, then the failed file to send again."""
    file = jsonl(tmp_path / "p.jsonl", [page_view()])
    done = capigate("send", str(file), "--to", server.url, "--pixel", "px_std", "--key", "wrong", "--no-progress")
    assert done.returncode == 1 and "HTTP 401" in done.stdout, done.stdout
    assert "mend those first" not in done.stdout, done.stdout
    said = "the events were refused for what they were sent with, not for what they hold (the problems above): fix --pixel or --key"
    assert said in done.stdout and "then send them again with: capigate send" in done.stdout, done.stdout


def test_send_refuses_an_ios_app_id_without_its_prefix_as_a_usage_error(tmp_path: Path) -> None:
    file = jsonl(tmp_path / "e.jsonl", [AF_EVENT])
    done = capigate("send", str(file), "--to", "http://127.0.0.1:9", "--key", "k", "--app", "123")
    assert done.returncode == 2 and "id123" in done.stderr and "Traceback" not in done.stderr


def test_validate_refuses_an_ios_app_id_without_its_prefix_as_send_does(tmp_path: Path) -> None:
    """Rule: one finding for one mistake, whether the file is validated or sent."""
    file = jsonl(tmp_path / "af.jsonl", [AF_EVENT])
    checked = capigate("validate", str(file), "--app-id", "123456789")
    sent = capigate("send", str(file), "--to", "http://127.0.0.1:9", "--key", "k", "--app", "123456789")
    finding = "looks like an iOS app id without its 'id' prefix (id123456789)"
    assert checked.returncode == sent.returncode == 2, checked.stdout + checked.stderr
    assert finding in checked.stderr and finding in sent.stderr and "ok:" not in checked.stdout
    assert capigate("validate", str(file), "--app-id", "id123456789").returncode == 0


def test_validate_and_send_take_the_app_id_by_one_name_and_by_either_name(tmp_path: Path, server: Server) -> None:
    """``validate FILE --app com.example.demo`` said "No such option '--app'": validate took
    --app-id, send --app (a trial). Both take both; --app is the one documented."""
    file = jsonl(tmp_path / "af.jsonl", [AF_EVENT])
    for option in ("--app", "--app-id"):
        checked = capigate("validate", "--no-warnings", str(file), option, "com.example.shop")
        assert checked.returncode == 0 and checked.stdout.startswith("ok: 1 event(s)"), checked.stdout + checked.stderr
        done = capigate(
            "send", str(file), "--to", server.url, option, "com.example.shop", "--key", "af-dev-key", "--no-progress"
        )
        assert done.returncode == 0, done.stdout + done.stderr
    refused = capigate("validate", str(file), "--app", "123456789")
    assert refused.returncode == 2 and "(id123456789)" in refused.stderr, refused.stderr


# --- events ---------------------------------------------------------------------------


def _sent(server: Server, t: str) -> None:
    with AxonClient("px_std", "key-std", base_url=server.url, test_tag=t) as client:
        assert client.send([page_view(), purchase()]).ok


def test_events_lists_newest_first_as_json(server: Server) -> None:
    t = tag()
    _sent(server, t)
    done = capigate("events", "--url", server.url, "--token", ADMIN, "--test-tag", t, "--json")
    assert done.returncode == 0, done.stderr
    rows = [msgspec.json.decode(line) for line in done.stdout.splitlines()]
    assert [r["name"] for r in rows] == ["purchase", "page_view"]
    assert rows[0]["payload"]["user_data"]["email"] != "user@example.com"


def test_events_requests_takes_the_test_tag_and_name_filters_and_api_needs_requests(server: Server) -> None:
    """`--requests --test-tag T` and `--requests --name N` listed every request, the filter
    dropped silently, and `--api` without --requests every event (a trial)."""
    t = tag()
    _sent(server, t)
    wait_until(lambda: len(all_pages(server, "/api/requests", "requests", test_tag=t)) == 1, what="the journal entry")
    base = ("events", "--url", server.url, "--token", ADMIN, "--requests", "--json", "--limit", "1000")
    tagged = capigate(*base, "--test-tag", t)
    assert tagged.returncode == 0 and len(tagged.stdout.splitlines()) == 1, tagged.stdout + tagged.stderr
    named = capigate(*base, "--test-tag", t, "--name", "no_such_event")
    assert named.returncode == 0 and named.stdout == "", named.stdout
    api = capigate("events", "--url", server.url, "--token", ADMIN, "--api", "admin")
    assert api.returncode == 2 and "--api admin finds requests" in api.stderr, api.stderr


def test_events_lists_as_a_table_with_the_token_from_the_config(server: Server) -> None:
    t = tag()
    _sent(server, t)
    done = capigate("events", "--url", server.url, "--config", str(server.config), "--test-tag", t)
    assert done.returncode == 0, done.stderr
    assert "purchase" in done.stdout and "page_view" in done.stdout and "dedupe_id" in done.stdout


def test_the_appsflyer_client_sends_its_app_id_percent_encoded_in_the_path() -> None:
    """An app id given to the SDK went into the path as written: `a/b c` asked for another
    path. The relay and the inspector encode it; the client does too (a trial)."""
    with Upstream() as upstream, AppsFlyerClient("com.example/sub app", "k", base_url=upstream.url) as client:
        client.send([AF_EVENT])
        assert [seen.path for seen in upstream.requests()] == ["/inappevent/com.example%2Fsub%20app"]


def test_events_lists_the_request_journal(server: Server) -> None:
    with AppsFlyerClient("com.example.shop", "wrong-key", base_url=server.url) as client:
        client.send([AF_EVENT])
    done = capigate("events", "--requests", "--url", server.url, "--token", ADMIN, "--status", "401", "--json")
    rows = [msgspec.json.decode(line) for line in done.stdout.splitlines()]
    assert rows and all(r["status"] == 401 for r in rows)
    assert rows[0]["path"] == "/inappevent/com.example.shop"


def following(url: str, test_tag: str, interval_s: float = 0.1) -> subprocess.Popen[str]:
    """`capigate events --follow --json` of one test tag, polling every ``interval_s``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAPIGATE_")}
    args = [
        "events",
        "--url",
        url,
        "--token",
        ADMIN,
        "--test-tag",
        test_tag,
        "--follow",
        "--json",
        "--interval-s",
        str(interval_s),
    ]
    return subprocess.Popen(
        [sys.executable, "-m", "capigate", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def test_events_follow_prints_new_events_as_they_arrive(server: Server) -> None:
    t = tag()
    proc = following(server.url, t)
    try:
        time.sleep(0.8)  # started and polling
        _sent(server, t)
        assert proc.stdout is not None
        names = [msgspec.json.decode(proc.stdout.readline())["name"] for _ in range(2)]
        assert names == ["page_view", "purchase"]  # oldest first
        # Ctrl-C, the way a follower is stopped: 130 as for every interrupted command (it was
        # 0, a success, which a script running `events --follow` until interrupted misread).
        proc.send_signal(signal.SIGINT)
        assert proc.wait(5) == 130
        assert proc.stderr is not None and proc.stderr.read() == ""
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(5)
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        proc.stderr.close()


def test_events_follow_prints_every_event_of_a_burst_between_two_polls(server: Server) -> None:
    """A poll read at most 20 pages of 200 rows and dropped the rest without a word (a trial:
    9,400 of 35,600 events shown). 10,000 events between two polls are all printed, in order."""
    t = tag()
    proc = following(server.url, t, interval_s=4)
    try:
        time.sleep(1.0)  # started: its first poll is 4 s away
        with AxonClient("px_std", "key-std", base_url=server.url, test_tag=t) as client:
            assert client.send([page_view() for _ in range(10_000)]).ok
        assert proc.stdout is not None
        ids = [msgspec.json.decode(proc.stdout.readline())["id"] for _ in range(10_000)]
        assert ids == sorted(set(ids)), (ids[:3], ids[-3:])  # 10,000 of them: the tag is this test's
    finally:
        proc.terminate()
        proc.communicate(timeout=5)


def test_events_follow_waits_through_a_gateway_restart(tmp_path: Path) -> None:
    """It ended with a ConnectError the moment the gateway restarted (a trial): it waits, as
    `tail -f` does, says so on stderr, and goes on from where it was."""
    gateway = make_server(tmp_path / "gw")
    gateway.start()
    t = tag()
    proc = following(gateway.url, t)
    try:
        time.sleep(0.8)
        _sent(gateway, t)
        assert proc.stdout is not None and proc.stderr is not None
        before = [msgspec.json.decode(proc.stdout.readline())["id"] for _ in range(2)]
        gateway.stop()
        time.sleep(0.5)
        gateway.start()
        _sent(gateway, t)
        after = [msgspec.json.decode(proc.stdout.readline())["id"] for _ in range(2)]
        assert proc.poll() is None and after[0] > before[-1], (before, after)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=5)
        gateway.stop()
    assert "still following" in err, err


def test_events_with_a_wrong_token_is_a_clean_error(server: Server) -> None:
    done = capigate("events", "--url", server.url, "--token", "wrong-token")
    assert done.returncode == 1
    assert "HTTP 401" in done.stderr and "Traceback" not in done.stderr


def test_events_without_a_gateway_is_a_clean_error() -> None:
    done = capigate("events", "--url", "http://127.0.0.1:9", "--token", "t")
    assert done.returncode == 1 and "ConnectError" in done.stderr and "Traceback" not in done.stderr


def test_send_shows_the_local_checks_warnings_and_the_gateways_alike_once(server: Server, tmp_path: Path) -> None:
    """Rule: send shows the warnings of its own check and the gateway's; when they agree, once."""
    event = page_view()
    event["user_data"]["os"] = "macos"
    file = jsonl(tmp_path / "e.jsonl", [event])
    done = capigate("send", str(file), "--to", server.url, "--pixel", "px_std", "--key", "key-std", "--no-progress")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "  warnings: 1 (unknown_enum x1), from the local check and the gateway alike\n" in done.stdout, done.stdout


def test_send_says_which_warnings_are_the_local_checks_and_which_the_gateways(server: Server, tmp_path: Path) -> None:
    """Rule: when the local check (here --profile standard, which expects a dedupe_id) and the
    gateway (px_lead is lead_gen, which does not; and only it reads the test tag) differ, send
    shows both, each named: the gateway's warnings alone hid the local check's."""
    file = jsonl(tmp_path / "e.jsonl", [page_view(dedupe_id=None)])
    send = ("send", str(file), "--to", server.url, "--pixel", "px_lead", "--key", "key-lead", "--no-progress")
    done = capigate(*send, "--test-tag", "jane@example.com")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "  warnings of the local check: 1 (missing_dedupe_id x1)\n" in done.stdout, done.stdout
    assert "  warnings of the gateway: 1 (plain_pii_replaced x1)\n" in done.stdout, done.stdout


def test_send_to_an_api_that_sends_no_warnings_names_them_the_local_checks(tmp_path: Path) -> None:
    event = page_view()
    event["user_data"]["os"] = "macos"
    file = jsonl(tmp_path / "e.jsonl", [event])
    with fault_proxy(then=Reply(200, b"")) as proxy:  # AppLovin answers 200 with no body
        done = capigate("send", str(file), "--to", proxy.url, "--pixel", "px_std", "--key", "k", "--no-progress")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "  warnings of the local check: 1 (unknown_enum x1)\n" in done.stdout, done.stdout


@pytest.mark.parametrize("text", ["", "\n  \n\n"])
@pytest.mark.parametrize("command", ["send", "validate"])
def test_a_file_with_no_events_is_a_usage_error_naming_it(tmp_path: Path, text: str, command: str) -> None:
    """Rule: a file holding no events (empty, or blank lines only) is a mistake (the wrong file,
    an export that found nothing), not 'ok: 0 events'."""
    file = tmp_path / "empty.jsonl"
    file.write_text(text)
    args = ("--to", "http://127.0.0.1:9", "--pixel", "px_std", "--key", "k") if command == "send" else ()
    done = capigate(command, str(file), *args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"{file} holds no events" in done.stderr and "ok:" not in done.stdout, done.stderr


def test_a_test_tag_longer_than_64_characters_is_refused_before_sending(tmp_path: Path) -> None:
    """Rule: test tags are at most 64 characters (the gateway refuses longer ones): the SDK and
    send say so before anything is sent."""
    with pytest.raises(ValueError, match="64"):
        AxonClient("px_std", "k", base_url="http://127.0.0.1:9", test_tag="t" * 65)
    with pytest.raises(ValueError, match="64"):
        AppsFlyerClient("com.example.shop", "k", base_url="http://127.0.0.1:9", test_tag="t" * 65)
    AxonClient("px_std", "k", base_url="http://127.0.0.1:9", test_tag="t" * 64).close()
    file = jsonl(tmp_path / "e.jsonl", [page_view()])
    done = capigate(
        "send", str(file), "--to", "http://127.0.0.1:9", "--pixel", "px", "--key", "k", "--test-tag", "t" * 65
    )
    assert done.returncode == 2 and "test tag" in done.stderr and "64" in done.stderr, done.stderr


def test_a_test_tag_of_other_than_visible_ascii_is_refused_before_sending(tmp_path: Path) -> None:
    """Rule: a test tag is visible ASCII (events.tag_refusal), as a header carries it. `send
    --test-tag 'tést'` ended in a UnicodeEncodeError traceback."""
    with pytest.raises(ValueError, match="visible ASCII"):
        AxonClient("px_std", "k", base_url="http://127.0.0.1:9", test_tag="tést")
    with pytest.raises(ValueError, match="visible ASCII"):
        AppsFlyerClient("com.example.shop", "k", base_url="http://127.0.0.1:9", test_tag="run\tone")
    with pytest.raises(ValueError, match="empty"):  # given and empty: sent untagged, as a real event (a trial)
        AxonClient("px_std", "k", base_url="http://127.0.0.1:9", test_tag="")
    with pytest.raises(ValueError, match="starts or ends with a space"):  # httpx refused it: "timeouts" (a trial)
        AxonClient("px_std", "k", base_url="http://127.0.0.1:9", test_tag=" ci ")
    file = jsonl(tmp_path / "e.jsonl", [page_view()])
    done = capigate(
        "send", str(file), "--to", "http://127.0.0.1:9", "--pixel", "px", "--key", "k", "--test-tag", "tést"
    )
    assert done.returncode == 2 and "visible ASCII" in done.stderr and "Traceback" not in done.stderr, done.stderr
    done = capigate("send", str(file), "--to", "http://127.0.0.1:9", "--pixel", "px", "--key", "k", "--test-tag", "")
    assert done.returncode == 2 and "empty" in done.stderr, done.stderr


def test_validate_says_a_number_past_a_floats_range_at_its_path(tmp_path: Path) -> None:
    """As the gateway does (out_of_range at the number's path): validate said "not valid JSON:
    Number out of range", with no path (a trial)."""
    event = page_view()
    file = tmp_path / "big.jsonl"
    file.write_text(json.dumps(batch(event)).replace('"data": null', '"data": {"value": 1e309}') + "\n")
    done = capigate("validate", "--api", "axon", str(file))
    assert done.returncode == 1
    assert f"{file}:1: error: events[0].data.value: this number is too large to read" in done.stdout, done.stdout
    assert "[out_of_range]" in done.stdout


def test_events_follow_goes_on_after_a_backup_is_restored(tmp_path: Path) -> None:
    """A restored backup numbers new events from its own newest id: --follow printed nothing
    until the ids passed the newest it had shown (a trial). It goes on from the store's newest."""
    gateway = make_server(tmp_path / "gw")
    gateway.start()
    t = tag()
    backup = tmp_path / "capigate-backup.db"
    db = Path(gateway.db)
    with sqlite3.connect(db) as live, sqlite3.connect(backup) as copy:
        live.backup(copy)
    proc = following(gateway.url, t)
    try:
        time.sleep(0.8)
        for _ in range(3):
            _sent(gateway, t)
        assert proc.stdout is not None
        before = [msgspec.json.decode(proc.stdout.readline())["id"] for _ in range(6)]
        gateway.stop()
        for leftover in db.parent.glob("capigate.db-*"):
            leftover.unlink()
        backup.replace(db)
        gateway.start()
        _sent(gateway, t)
        after = [msgspec.json.decode(proc.stdout.readline())["id"] for _ in range(2)]
        assert after[0] <= before[-1] and proc.poll() is None, (before, after)
    finally:
        proc.terminate()
        proc.communicate(timeout=5)
        gateway.stop()


def test_send_prints_a_refused_requests_own_problem_as_the_requests_not_an_events(
    server: Server, tmp_path: Path
) -> None:
    """A wrong key was printed "events[0].authorization: unknown pixel_id or wrong Authorization
    key": a problem of the request (its header) shown as the first event's."""
    file = jsonl(tmp_path / "k.jsonl", [page_view(), page_view(), page_view()])
    send = ("--pixel", "px_std", "--key", "wrongkey", "--no-progress")
    done = capigate("send", str(file), "--to", server.url, *send)
    assert done.returncode == 1, done.stdout
    assert "events[0].authorization" not in done.stdout, done.stdout
    said = "    request: authorization: unknown pixel_id or wrong Authorization key [unauthorized]\n"
    assert said in done.stdout, done.stdout
    af = jsonl(tmp_path / "af.jsonl", [AF_EVENT])
    done = capigate("send", str(af), "--to", server.url, "--app", "com.example.shop", "--key", "no", "--no-progress")
    assert "    request: authentication: " in done.stdout and "events[0]" not in done.stdout, done.stdout


@pytest.mark.parametrize(
    ("to", "source"),
    [
        ("https://b.applovin.com", ("--pixel", "px")),
        ("https://B.AppLovin.com/", ("--pixel", "px")),
        ("https://api2.appsflyer.com", ("--app", "com.example.shop")),
        ("https://api3.appsflyer.com", ("--app", "com.example.shop")),
    ],
)
def test_a_test_tag_for_a_vendors_real_api_is_refused_before_sending(
    tmp_path: Path, to: str, source: tuple[str, str]
) -> None:
    """`send --to https://b.applovin.com --test-tag ci` sent the events, which the real API
    counts as real conversions: only capigate reads X-Capigate-Test (a trial)."""
    file = jsonl(tmp_path / "e.jsonl", [page_view() if source[0] == "--pixel" else AF_EVENT])
    done = capigate("send", str(file), "--to", to, *source, "--key", "k", "--test-tag", "ci", "--no-progress")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "--test-tag" in done.stderr and "real conversions" in done.stderr, done.stderr
    assert "delivered" not in done.stdout, done.stdout


def test_send_warns_when_the_server_did_not_answer_as_honouring_the_test_tag(tmp_path: Path, server: Server) -> None:
    """`send two.jsonl --to <a server that is not capigate> --test-tag ci` said "delivered 2 of
    2" and nothing of the tag, which that server ignores: its events were real ones there (a
    trial). capigate's answers name the tag; a server's that do not are warned of."""
    from tests.upstream import Upstream

    file = jsonl(tmp_path / "two.jsonl", [page_view(), page_view()])
    with Upstream() as up:
        done = capigate(
            "send", str(file), "--to", up.url, "--pixel", "p", "--key", "k", "--test-tag", "ci", "--no-progress"
        )
        assert [s.headers.get("x-capigate-test") for s in up.seen] == ["ci"]
    assert done.returncode == 0, done.stdout + done.stderr
    assert "delivered 2 of 2" in done.stdout, done.stdout
    assert "test tag" in done.stderr and "not capigate" in done.stderr, done.stderr
    done = capigate(
        "send", str(file), "--to", server.url, "--pixel", "px_std", "--key", "key-std",
        "--test-tag", tag(), "--no-progress",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "test tag" not in done.stderr, done.stderr


def test_validate_and_send_say_nothing_dropped_of_a_refused_events_email_in_its_field(
    tmp_path: Path, server: Server
) -> None:
    """A trial: validate and send warned plain_pii_dropped of a refused purchase's correct
    user_data.email (its data.value was "ten"); the address is in its field, and hashed."""
    event = purchase(data={**purchase()["data"], "value": "ten"})
    event["user_data"]["email"] = "jane@example.com"
    file = jsonl(tmp_path / "refused.jsonl", [event])
    checked = capigate("validate", str(file))
    sent = capigate("send", str(file), "--to", server.url, "--pixel", "px_std", "--key", "key-std")
    for done in (checked, sent):
        assert done.returncode == 1, done
        assert "data.value" in done.stdout + done.stderr, done
        assert "plain_pii_dropped" not in done.stdout + done.stderr, done


def test_send_prints_a_files_problems_in_line_order_as_validate_does(tmp_path: Path, server: Server) -> None:
    """A trial: send printed a malformed line 3 before the problems of lines 2 and 4 (a record's
    own problem was said while reading, its events' after checking them); validate printed them
    in line order. Both print the same lines, in the file's order."""
    file = tmp_path / "mixed.jsonl"
    lines = [json.dumps(page_view()), json.dumps(page_view(name="nope")), '{"name": ']
    lines += [json.dumps(page_view(event_time="x")), json.dumps(page_view())]
    file.write_text("\n".join(lines) + "\n")
    checked = capigate("validate", "--no-warnings", str(file))
    sent = capigate("send", str(file), "--to", server.url, "--pixel", "px_std", "--key", "key-std")
    said = [[line for line in done.stdout.splitlines() if ": error: " in line] for done in (checked, sent)]
    assert [line.split(":")[1] for line in said[1]] == ["2", "3", "4"], sent.stdout
    assert said[0] == said[1], (checked.stdout, sent.stdout)
    assert sent.returncode == 1 and "nothing was sent" in sent.stdout


# --- a gateway that takes smaller bodies than the client's 1 MiB --------------------------------


def test_send_to_a_gateway_with_a_small_body_limit_splits_its_batches_and_names_the_size(
    small_bodies: Server, tmp_path: Path
) -> None:
    """`capigate send p100.jsonl` to a gateway whose max_body_bytes is 20,000: the one 140 KB
    request was refused (413), reported as "events[0]: the body is 142602 bytes; the limit is
    20000 [body_too_large]" (the gateway's path was "", the body's), with "some were refused:
    mend those first", and no way to send smaller batches: the failed file failed forever (a
    trial). The batch is sent again in halves, the summary says so as a batch size, and
    --batch-size sends batches the gateway takes at once."""
    t = tag()
    file = jsonl(tmp_path / "p100.jsonl", [purchase() for _ in range(100)])
    send = ("send", "--to", small_bodies.url, "--pixel", "px_std", "--key", "key-std", "--no-progress")
    done = capigate(*send, str(file), "--test-tag", t)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("delivered 100 of 100 event(s) in "), done.stdout
    said = re.search(
        r"  batches too large for the gateway \(HTTP 413: the body is \d+ bytes; the limit is 20000\): sent again "
        r"in halves, \d+ request\(s\) refused on the way; --batch-size (\d+) sends batches it takes at once\n",
        done.stdout,
    )
    assert said is not None, done.stdout
    assert "events[0]" not in done.stdout and "mend" not in done.stdout, done.stdout
    assert len(stored(small_bodies, test_tag=t)) == 100
    size = said.group(1)
    again = capigate(*send, str(jsonl(tmp_path / "q.jsonl", [purchase() for _ in range(30)])), "--batch-size", size)
    assert again.returncode == 0 and "too large" not in again.stdout, again.stdout
    requests = -(-30 // int(size))
    assert again.stdout.startswith(f"delivered 30 of 30 event(s) in {requests} request(s)"), again.stdout
    one = capigate(*send, str(jsonl(tmp_path / "one.jsonl", [purchase()])), "--batch-size", "101")
    assert one.returncode == 2 and "--batch-size" in one.stderr, one.stderr
    appsflyer = capigate(
        "send", str(file), "--to", small_bodies.url, "--app", "com.example.shop", "--key", "k", "--batch-size", "5"
    )
    said_af = " ".join(appsflyer.stderr.split())
    assert appsflyer.returncode == 2 and "--batch-size is for Axon events (--pixel)" in said_af, said_af


def test_send_never_advises_a_batch_size_the_gateway_refused(small_bodies: Server, tmp_path: Path) -> None:
    """Small events, then large ones, in batches of 10: the 10 small ones went through and the
    10 large ones were refused, and the summary advised --batch-size 10, the size refused (a
    second trial). It advises fewer than the fewest events of a refused request."""
    small = [purchase() for _ in range(20)]
    large = [purchase() for _ in range(20)]
    for event in large:
        event["data"]["note"] = "x" * 2500
    file = jsonl(tmp_path / "mixed.jsonl", [*small, *large])
    done = capigate(
        "send", str(file), "--to", small_bodies.url, "--pixel", "px_std", "--key", "key-std", "--no-progress",
        "--batch-size", "10", "--test-tag", tag(),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    said = re.search(r"--batch-size (\d+) sends batches it takes at once", done.stdout)
    assert said is not None and int(said.group(1)) < 10, done.stdout


def test_send_says_an_event_alone_too_large_for_the_gateway_is_to_be_shortened(
    small_bodies: Server, tmp_path: Path
) -> None:
    """An event that alone is more than the gateway's max_body_bytes fails alone, at its own
    index, with advice that is about its size, not "mend those first"; the others are delivered."""
    t = tag()
    events = [purchase() for _ in range(10)]
    events[6] = big_cart(uuid.uuid4().hex, items=60)
    file = jsonl(tmp_path / "big.jsonl", events)
    done = capigate(
        "send", str(file), "--to", small_bodies.url, "--pixel", "px_std", "--key", "key-std",
        "--test-tag", t, "--no-progress",
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.startswith("delivered 9 of 10 event(s)"), done.stdout
    assert re.search(r"\n    events\[6\]: the body is \d+ bytes; the limit is 20000 \[body_too_large\]\n", done.stdout)
    advice = " ".join(done.stdout.split())
    assert (
        "1 event(s) are each larger than the gateway takes in a request (HTTP 413, its [server] max_body_bytes): "
        "shorten them, or have its max_body_bytes raised" in advice
    ), advice
    failed = tmp_path / "big.failed.jsonl"
    assert len(failed.read_text().splitlines()) == 1
    assert len(stored(small_bodies, test_tag=t)) == 9


def test_a_problem_of_a_whole_body_of_several_events_is_said_as_the_requests(tmp_path: Path) -> None:
    """A refusal of a body of several events whose problem has path "" (the body's) was printed
    at the request's first event: "events[0]: the body is 142602 bytes" (a trial). It is the
    request's; only a body of one event is that event's."""
    body = b'{"status":"error","error":"bad_body","message":"no","problems":[{"path":"","code":"bad_body","message":"the body is refused"}]}'
    file = jsonl(tmp_path / "two.jsonl", [page_view(), page_view()])
    with fault_proxy(then=Reply(400, body, headers={"Content-Type": "application/json"})) as proxy:
        done = capigate("send", str(file), "--to", proxy.url, "--pixel", "px_std", "--key", "k", "--no-progress")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "    request: <body>: the body is refused [bad_body]\n" in done.stdout, done.stdout
    assert "events[0]" not in done.stdout and "profile" not in done.stdout, done.stdout  # no event's problem
