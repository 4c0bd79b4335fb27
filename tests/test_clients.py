"""Bodies shaped as the public clients and documentation examples build them (tests/clients/,
each file naming where its shape comes from), sent to a served gateway that relays to a local
upstream: each is accepted, stored and relayed in the documented form with its identifiers
hashed to the SHA-256 of the literal normalised string the file gives, or refused, as the file
says and says why."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ADMIN, Server, make_server
from tests.helpers import all_pages, paths
from tests.upstream import Seen, Upstream

CORPUS = Path(__file__).parent / "clients"
FILES = sorted(CORPUS.glob("*.json"))
KEYS = {"px_std": "key-std", "px_lead": "key-lead", "px_restricted": "key-restricted"}
AF_KEY = "af-dev-key"


def config(relay_url: str) -> str:
    relay = f'url = "{relay_url}"\ntimeout_s = 2.0\nbackoff_base_s = 0.05\npoll_interval_s = 0.1'
    pixels = "".join(
        f'\n[[axon.pixels]]\npixel_id = "{pixel}"\napi_key = "{key}"\nprofile = "{profile}"\n[axon.pixels.relay]\n{relay}\n'
        for (pixel, key), profile in zip(KEYS.items(), ("standard", "lead_gen", "lead_gen_restricted"), strict=True)
    )
    apps = "".join(
        f'\n[[appsflyer.apps]]\napp_id = "{app}"\nkeys = ["{AF_KEY}"]\n[appsflyer.apps.relay]\n{relay}\napi_key = "up"\n'
        for app in ("com.appsflyer.myapp", "id123456789")
    )
    return f'[server]\nadmin_token = "{ADMIN}"\n{pixels}{apps}'


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    with Upstream() as up:
        yield up


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, upstream: Upstream) -> Iterator[Server]:
    server = make_server(tmp_path_factory.mktemp("clients"), config(upstream.url))
    server.start()
    yield server
    server.stop()


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def at(document: Any, path: str) -> Any:
    """The value at a problem-style path (``events[0].user_data.email``) of a JSON document."""
    for part in path.replace("[", ".[").split("."):
        if part:
            document = document[int(part[1:-1])] if part.startswith("[") else document[part]
    return document


def send(server: Server, case: dict[str, Any]) -> Any:
    with server.client() as c:
        if case["api"] == "axon":
            pixel = case["pixel"]
            return c.post(f"/v1/event?pixel_id={pixel}", json=case["body"], headers={"Authorization": KEYS[pixel]})
        return c.post(
            f"/inappevent/{case['app_id']}",
            json=case["body"],
            headers={"authentication": AF_KEY, "accept": "application/json"},
        )


def test_every_corpus_file_names_its_source_and_its_outcome() -> None:
    assert len(FILES) >= 12
    for file in FILES:
        case = json.loads(file.read_text())
        assert case["source"] and case["note"], file.name
        assert case["expect"]["status"] in (200, 400), file.name
        if case["expect"]["status"] == 400:
            assert "Refused" in case["note"], f"{file.name} must say why the real API would refuse it"


@pytest.mark.parametrize("file", FILES, ids=[f.stem for f in FILES])
def test_client_body_is_accepted_stored_and_relayed_documented_and_hashed(
    gateway: Server, upstream: Upstream, file: Path
) -> None:
    case = json.loads(file.read_text())
    before = len(upstream.seen)
    response = send(gateway, case)
    assert response.status_code == case["expect"]["status"], response.text
    detail = response.json()
    if response.status_code == 400:
        assert paths(detail) == case["expect"]["problems"]
        return
    assert case["expect"]["warnings"].items() <= {(w["path"], w["code"]) for w in detail["warnings"]}
    sent = case["body"] if isinstance(case["body"], list) else case["body"].get("events", [case["body"]])
    assert (detail["received"], detail["stored"]) == (len(sent), len(sent))
    relayed = relayed_body(upstream, before, case)
    for path, literal in case["relayed_hashes"].items():
        assert at(relayed, path) == sha(literal), path
    for path, value in case.get("relayed", {}).items():
        assert at(relayed, path) == value, path
    stored = all_pages(gateway, "/api/events", "events", source=case.get("pixel") or case["app_id"])
    journal = all_pages(gateway, "/api/requests", "requests")
    for plain in case["plain"]:
        for where, text in (
            ("upstream", json.dumps(relayed)),
            ("store", json.dumps(stored)),
            ("journal", json.dumps(journal)),
        ):
            assert plain not in text, f"{plain!r} reached the {where}"


def relayed_body(upstream: Upstream, before: int, case: dict[str, Any]) -> Any:
    """The relay's request for this case, checked to be in the API's documented form."""

    def arrived() -> list[Seen]:
        return [s for s in upstream.requests()[before:] if s.status == 200]

    upstream.wait_for(lambda: bool(arrived()), what=f"the relay of {case['source']}")
    (seen,) = arrived()
    body = seen.json()
    if case["api"] == "axon":
        assert seen.path == "/v1/event" and seen.query == {"pixel_id": case["pixel"]}
        sent = case["body"] if isinstance(case["body"], list) else case["body"]["events"]
        assert list(body) == ["events"] and len(body["events"]) == len(sent)
    else:
        assert seen.path == f"/inappevent/{case['app_id']}"
        assert isinstance(body["eventValue"], str)  # stringified, as AppsFlyer documents
    return body
