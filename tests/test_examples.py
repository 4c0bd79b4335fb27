"""The example bodies capigate ships are a newcomer's first test: each file of
capigate/examples/, the bodies of the inspector's "Send a test event" page, and the events of
the documentation's examples are stored by a real gateway without a warning. The file's
``os`` (the spec's ``macos``), its phone number (too few digits) and its ``last_visit_ts``
(``1``, read as seconds) each got one, on the page too (a trial).

A file cannot keep an ``event_time`` current: it is sent as the page and the banner send it,
now, with a dedupe id of its own. The README's quick start sends the file as it is, to show
the warnings of a stale example: it names them, and they are those."""

from __future__ import annotations

import copy
import json
import re
import time
import uuid
from pathlib import Path
from typing import Any

from tests.conftest import EXAMPLES, Server, example
from tests.helpers import now_ms

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# Each file, and the source of tests.conftest.DEFAULT_CONFIG whose profile takes it.
_SOURCES = {
    "axon_purchase.json": ("axon", "px_std", "key-std"),
    "lead_gen_generate_lead.json": ("axon", "px_lead", "key-lead"),
    "lead_gen_page_view.json": ("axon", "px_lead", "key-lead"),
    "restricted_generate_lead.json": ("axon", "px_restricted", "key-restricted"),
    "restricted_page_view.json": ("axon", "px_restricted", "key-restricted"),
    "appsflyer_purchase.json": ("appsflyer", "com.example.shop", "af-dev-key"),
}


def _sent_now(body: Any) -> Any:
    body = copy.deepcopy(body)
    for event in body.get("events", []) if isinstance(body, dict) else []:
        event["event_time"] = now_ms()
        event["dedupe_id"] = f"example-{uuid.uuid4().hex}"
    return body


def _warnings(server: Server, api: str, source: str, key: str, body: Any) -> list[str]:
    """The warnings' codes of ``body`` sent to ``source``, as the gateway answered them."""
    with server.client() as c:
        if api == "axon":
            answer = c.post("/v1/event", params={"pixel_id": source}, json=body, headers={"Authorization": key})
            assert answer.status_code == 200 and answer.json()["stored"] >= 1, answer.text
            return [f"{w['path']}: {w['code']}" for w in answer.json()["warnings"]]
        answer = c.post(f"/inappevent/{source}", json=body, headers={"authentication": key})
        assert answer.status_code == 200, answer.text
        header = answer.headers.get("x-capigate-warnings")
        return header.split(", ") if header else []


def test_every_shipped_example_is_stored_without_a_warning(server: Server) -> None:
    files = sorted(p.name for p in EXAMPLES.glob("*.json"))
    assert files == sorted(_SOURCES), "a new example file: say which source takes it"
    for name in files:
        api, source, key = _SOURCES[name]
        assert _warnings(server, api, source, key, _sent_now(example(name))) == [], name


def test_the_inspectors_example_bodies_are_stored_without_a_warning(server: Server) -> None:
    with server.admin() as c:
        page = c.get("/api/sources").json()
        for source in page["sources"]:
            for shown in source["examples"]:
                for event in json.loads(shown["body"]).get("events", []):
                    assert abs(event["event_time"] - page["now"]) < 60_000, (shown["name"], event["event_time"])
                sent = c.post("/api/test-event", json={"source": source["id"], "body": shown["body"]}).json()
                assert sent["status"] == 200 and sent["warnings"] is None, (source["id"], shown["name"], sent)
                if source["api"] == "axon":
                    assert json.loads(sent["body"])["warnings"] == [], (source["id"], shown["name"], sent)


def _documented_events() -> list[tuple[str, dict[str, Any]]]:
    """Each Axon event written out in a shell example of the documentation (a heredoc's JSON
    lines), with where it is."""
    found = []
    for document in DOCUMENTS:
        for number, line in enumerate(document.read_text(encoding="utf-8").splitlines(), 1):
            if line.startswith("{") and '"event_time"' in line:
                found.append((f"{document.name}:{number}", json.loads(line)))
    return found


def test_the_documentations_events_are_stored_without_a_warning(server: Server) -> None:
    documented = _documented_events()
    assert documented, "the documentation's events.jsonl example moved: find its events again"
    for where, event in documented:
        assert _warnings(server, "axon", "px_std", "key-std", _sent_now({"events": [event]})) == [], where


def test_the_quick_starts_curl_of_the_file_as_it_is_gets_the_warnings_the_readme_names(server: Server) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "-d @capigate/examples/axon_purchase.json" in readme
    codes = {w.split(": ")[1] for w in _warnings(server, "axon", "px_std", "key-std", example("axon_purchase.json"))}
    assert codes == {"time_far_away", "missing_dedupe_id"}, codes
    said = re.search(r"The last command sends the API documentation's own\s+example event: (.+?)\n\n", readme, re.S)
    assert said is not None
    for code in codes:
        assert f"`{code}`" in said.group(1), said.group(1)
    assert time.gmtime(example("axon_purchase.json")["events"][0]["event_time"] / 1000).tm_year == 2025
