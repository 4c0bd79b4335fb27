"""POST /v1/event: authentication, body handling and batch semantics, through a real server."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import pytest

from capigate.errors import Problem
from capigate.http.axon import _accepted
from capigate.http.outcome import Outcome
from capigate.responses import Accepted
from capigate.store.base import IngestResult
from tests.conftest import Server, example
from tests.helpers import batch, page_view, paths, purchase, stored

STD = {"Authorization": "key-std"}


def post(server: Server, body: object, pixel: str = "px_std", headers: dict[str, str] | None = None) -> httpx.Response:
    with server.client() as c:
        return c.post(f"/v1/event?pixel_id={pixel}", json=body, headers=headers if headers is not None else STD)


def post_raw(server: Server, content: bytes, headers: dict[str, str]) -> httpx.Response:
    with server.client() as c:
        return c.post("/v1/event?pixel_id=px_std", content=content, headers={**STD, **headers})


def test_spec_example_purchase_is_accepted_as_is(server: Server) -> None:
    r = post(server, example("axon_purchase.json"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["received"], body["stored"], body["duplicates"]) == (1, 1, 0)
    warnings = paths(body, "warnings")
    # Only what a file cannot keep: a current event_time, a dedupe id of its own (test_examples).
    assert warnings == {"events[0].event_time": "time_far_away", "events[0].dedupe_id": "missing_dedupe_id"}


def test_authorization_key_accepted_as_is_or_after_bearer(server: Server) -> None:
    assert post(server, batch(page_view()), headers={"Authorization": "key-std"}).status_code == 200
    assert post(server, batch(page_view()), headers={"Authorization": "Bearer key-std"}).status_code == 200


def test_missing_wrong_or_foreign_key_is_401(server: Server) -> None:
    assert post(server, batch(page_view()), headers={}).status_code == 401
    assert post(server, batch(page_view()), headers={"Authorization": "nope"}).status_code == 401
    assert post(server, batch(page_view()), headers={"Authorization": "key-lead"}).status_code == 401
    r = post(server, batch(page_view()), headers={"Authorization": "Bearer"})
    assert r.status_code == 401 and r.json()["error"] == "unauthorized"


def test_a_key_sent_in_an_authentication_header_is_401_with_a_hint_to_authorization(server: Server) -> None:
    """AppsFlyer's header name, sent to Axon: the 401 says which header Axon reads."""
    r = post(server, batch(page_view()), headers={"authentication": "key-std"})
    assert r.status_code == 401
    assert "'Authorization' header" in r.json()["message"] and "'authentication'" in r.json()["message"]
    assert [(p["path"], p["code"]) for p in r.json()["problems"]] == [("authorization", "unauthorized")]
    assert post(server, batch(page_view()), headers={}).json()["message"] == "no key in the Authorization header"
    wrong = post(server, batch(page_view()), headers={"Authorization": "nope"}).json()["message"]
    assert wrong == "unknown pixel_id or wrong Authorization key"
    for blank in ("", "Bearer"):  # a client that fills the header it knows, and leaves Axon's empty
        r = post(server, batch(page_view()), headers={"Authorization": blank, "authentication": "key-std"})
        assert r.status_code == 401 and "it came in 'authentication'" in r.json()["message"], blank
    wrong = post(server, batch(page_view()), headers={"Authorization": "nope", "authentication": "key-std"})
    assert "header" not in wrong.json()["message"]


def test_an_unknown_pixel_a_wrong_key_and_no_key_get_one_answer_the_journal_says_which(server: Server) -> None:
    """Every Axon 401 was journaled as it was answered, "unknown pixel_id or wrong Authorization
    key": the operator could not tell an unknown pixel from a wrong key (another pixel's) or a
    client that sent none, where the AppsFlyer endpoint's journal says which (a trial). The
    answer stays AppLovin's one 401; the journal entry says which it was, as AppsFlyer's does."""
    tag = f"which-{time.time_ns()}"
    sent = {
        (
            "px_std",
            "nope",
        ): "unknown pixel_id or wrong Authorization key (journal only: the pixel is configured; the key is not its key)",
        (
            "px_std",
            "key-lead",
        ): "unknown pixel_id or wrong Authorization key (journal only: the pixel is configured; the key is not its key)",
        (
            "px_nope",
            "key-std",
        ): "unknown pixel_id or wrong Authorization key (journal only: no pixel with this id is configured)",
        ("px_std", ""): "no key in the Authorization header (journal only: the pixel is configured)",
        ("px_nope", ""): "no key in the Authorization header (journal only: no pixel with this id is configured)",
    }
    answers = {}
    for pixel, key in sent:
        headers = {"X-Capigate-Test": f"{tag}-{pixel}-{key}", **({"Authorization": key} if key else {})}
        r = post(server, batch(page_view()), pixel=pixel, headers=headers)
        assert r.status_code == 401 and r.headers["www-authenticate"] == 'Bearer realm="capigate"', r.text
        answers[pixel, key] = r.json()
    assert len({json.dumps(a, sort_keys=True) for (_, key), a in answers.items() if key}) == 1, answers
    assert len({json.dumps(a, sort_keys=True) for (_, key), a in answers.items() if not key}) == 1, answers
    assert "journal only" not in json.dumps(list(answers.values()))
    for (pixel, key), said in sent.items():
        entries: list[dict[str, Any]] = []
        deadline = time.monotonic() + 5
        while not entries and time.monotonic() < deadline:
            with server.admin() as c:
                entries = c.get("/api/requests", params={"test_tag": f"{tag}-{pixel}-{key}"}).json()["requests"]
        [entry] = entries
        assert (entry["source"], entry["status"]) == (pixel, 401), entry
        assert [(p["path"], p["code"], p["message"]) for p in entry["problems"]] == [
            ("authorization", "unauthorized", said)
        ], entry


def test_unknown_pixel_is_401(server: Server) -> None:
    assert post(server, batch(page_view()), pixel="px_nope").status_code == 401


def test_missing_pixel_id_is_400(server: Server) -> None:
    with server.client() as c:
        r = c.post("/v1/event", json=batch(page_view()), headers=STD)
    assert r.status_code == 400
    assert paths(r.json()) == {"pixel_id": "missing_field"}


def test_malformed_json_is_400(server: Server) -> None:
    r = post_raw(server, b'{"events": [', {"Content-Type": "application/json"})
    assert r.status_code == 400
    assert r.json()["error"] == "malformed_json"


@pytest.mark.parametrize(
    ("encode", "said"),
    [(gzip.compress, "gzip-compressed; send it with the header Content-Encoding: gzip"),
     (lambda body: b"\xef\xbb\xbf" + body, "starts with a UTF-8 byte order mark (EF BB BF)")],
    ids=["gzip-without-its-header", "utf8-bom"],
)  # fmt: skip
def test_a_body_that_is_not_json_text_says_what_it_is(server: Server, encode: Any, said: str) -> None:
    """A gzip body sent without Content-Encoding, or JSON behind a byte order mark (some .NET
    writers add one), got msgspec's 'invalid character (byte 0)': the first byte named, not
    what the client did."""
    event = page_view()
    r = post_raw(server, encode(json.dumps(batch(event)).encode()), {"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"] == "malformed_json"
    [problem] = r.json()["problems"]
    assert said in problem["message"], problem
    assert stored(server, "px_std", dedupe_id=event["dedupe_id"]) == []


def test_wrong_top_level_shapes_are_400_each_with_its_code(server: Server) -> None:
    cases = {
        '"events"': ("", "not_an_object"),
        "null": ("", "not_an_object"),
        "[]": ("", "empty_batch"),  # it has no `events`: said at the body, as its other shapes
        "{}": ("events", "missing_field"),
        '{"events": {}}': ("events", "wrong_type"),
        '{"events": []}': ("events", "empty_batch"),
    }
    for body, (path, code) in cases.items():
        r = post_raw(server, body.encode(), {"Content-Type": "application/json"})
        assert r.status_code == 400, body
        assert paths(r.json())[path] == code, body
    # A trial: `[]` was told "`events` must hold at least 1 event" at `events`, a key it has not.
    r = post_raw(server, b"[]", {"Content-Type": "application/json"})
    assert r.json()["problems"] == [
        {
            "path": "",
            "code": "empty_batch",
            "message": 'the body is an empty JSON array: it must be a JSON object {"events": [...]} of 1 to 100 events',
        }
    ]


def test_101_events_is_400_and_100_is_accepted(server: Server) -> None:
    r = post(server, batch(*[page_view() for _ in range(101)]))
    assert r.status_code == 400
    assert paths(r.json()) == {"events": "too_many_events"}
    r = post(server, batch(*[page_view() for _ in range(100)]))
    assert r.status_code == 200 and r.json()["stored"] == 100


def test_body_over_the_limit_is_413(server: Server) -> None:
    big = json.dumps(batch(page_view(padding="x" * 1_100_000))).encode()
    r = post_raw(server, big, {"Content-Type": "application/json"})
    assert r.status_code == 413
    assert r.json()["error"] == "body_too_large"


def chunks(data: bytes, size: int = 16_384) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_chunked_body_without_a_length_is_read_and_accepted(server: Server) -> None:
    event = page_view()
    with server.client() as c:
        body = json.dumps(batch(event)).encode()
        r = c.post("/v1/event?pixel_id=px_std", content=chunks(body, 100), headers=STD)
    assert r.request.headers.get("transfer-encoding") == "chunked" and "content-length" not in r.request.headers
    assert r.status_code == 200, r.text
    assert len(stored(server, "px_std", dedupe_id=event["dedupe_id"])) == 1


def test_chunked_body_over_the_limit_is_413(server: Server) -> None:
    big = json.dumps(batch(page_view(padding="x" * 1_100_000))).encode()
    with server.client() as c:
        r = c.post("/v1/event?pixel_id=px_std", content=chunks(big), headers=STD)
    assert r.status_code == 413
    assert r.json()["error"] == "body_too_large"


@pytest.mark.parametrize("encoding", ["gzip", "x-gzip"])  # RFC 9110 8.4.1.3: x-gzip is gzip
def test_gzip_body_is_inflated_and_accepted(server: Server, encoding: str) -> None:
    event = page_view()
    r = post_raw(server, gzip.compress(json.dumps(batch(event)).encode()), {"Content-Encoding": encoding})
    assert r.status_code == 200, r.text
    assert len(stored(server, "px_std", dedupe_id=event["dedupe_id"])) == 1


def test_gzip_body_inflating_past_the_limit_is_413(server: Server) -> None:
    bomb = gzip.compress(b'{"events": [' + b" " * 5_000_000 + b"]}")
    assert len(bomb) < 1_048_576
    r = post_raw(server, bomb, {"Content-Encoding": "gzip"})
    assert r.status_code == 413
    assert r.json()["error"] == "inflated_body_too_large"


def test_broken_gzip_is_400(server: Server) -> None:
    r = post_raw(server, b"not gzip at all", {"Content-Encoding": "gzip"})
    assert r.status_code == 400 and r.json()["error"] == "bad_gzip"


def test_gzip_body_of_several_members_is_inflated_whole_and_accepted(server: Server) -> None:
    """RFC 1952: a gzip stream may hold several members (``cat a.gz b.gz``); gzip -d joins
    them. Only the first was read: the body was cut after it and refused as unreadable."""
    event = page_view()
    body = json.dumps(batch(event)).encode()
    members = gzip.compress(body[:40]) + gzip.compress(body[40:])
    r = post_raw(server, members, {"Content-Encoding": "gzip"})
    assert r.status_code == 200, r.text
    assert len(stored(server, "px_std", dedupe_id=event["dedupe_id"])) == 1


def test_gzip_body_with_bytes_after_its_stream_is_400_not_a_silent_cut(server: Server) -> None:
    """Bytes after the gzip stream that are not a gzip member were dropped without a word: the
    client's body was not what was read. NUL padding, which gzip -d skips, is taken."""
    event = page_view()
    stream = gzip.compress(json.dumps(batch(event)).encode())
    refused = post_raw(server, stream + b'{"events": []}', {"Content-Encoding": "gzip"})
    assert refused.status_code == 400 and refused.json()["error"] == "bad_gzip", refused.text
    assert "after its gzip stream" in refused.json()["message"]
    assert stored(server, "px_std", dedupe_id=event["dedupe_id"]) == []
    padded = post_raw(server, stream + b"\0" * 8, {"Content-Encoding": "gzip"})
    assert padded.status_code == 200, padded.text


def test_unsupported_content_encoding_is_415(server: Server) -> None:
    r = post_raw(server, b"{}", {"Content-Encoding": "br"})
    assert r.status_code == 415


def test_one_invalid_event_fails_the_batch_and_nothing_is_stored(server: Server) -> None:
    good1, bad, good2 = page_view(), page_view(), page_view()
    del bad["user_data"]["client_ip_address"]
    r = post(server, batch(good1, bad, good2))
    assert r.status_code == 400
    assert paths(r.json()) == {"events[1].user_data.client_ip_address": "missing_field"}
    for event in (good1, good2):
        assert stored(server, "px_std", dedupe_id=event["dedupe_id"]) == []


def test_every_problem_is_reported_not_just_the_first(server: Server) -> None:
    bad = purchase()
    bad["event_time"] = "yesterday"
    bad["user_data"]["esi"] = "tv"
    del bad["data"]["transaction_id"]
    other = page_view()
    other["user_data"]["client_ip_address"] = "999.1.1.1"
    r = post(server, batch(page_view(), bad, other))
    found = paths(r.json())
    assert found == {
        "events[1].event_time": "wrong_type",
        "events[1].user_data.esi": "invalid_enum",
        "events[1].data.transaction_id": "missing_field",
        "events[2].user_data.client_ip_address": "invalid_ip",
    }
    assert all(p["message"] for p in r.json()["problems"])


def test_duplicate_dedupe_id_within_a_batch_is_acknowledged_and_stored_once(server: Server) -> None:
    a = page_view()
    b = page_view(dedupe_id=a["dedupe_id"])
    r = post(server, batch(a, b))
    assert r.status_code == 200
    assert (r.json()["stored"], r.json()["duplicates"], r.json()["duplicate_events"]) == (1, 1, [1])
    assert len(stored(server, "px_std", dedupe_id=a["dedupe_id"])) == 1


def test_duplicate_dedupe_id_in_a_later_batch_first_event_wins(server: Server) -> None:
    first = page_view(event_source_url="https://first.example.com/")
    post(server, batch(first))
    later = page_view(dedupe_id=first["dedupe_id"], event_source_url="https://later.example.com/")
    r = post(server, batch(later))
    assert r.status_code == 200 and r.json()["duplicates"] == 1
    rows = stored(server, "px_std", dedupe_id=first["dedupe_id"])
    assert len(rows) == 1
    assert rows[0]["payload"]["event_source_url"] == "https://first.example.com/"


def test_events_with_a_blank_dedupe_id_are_all_stored(server: Server) -> None:
    """A client's `order_id || ""`: the second event was answered 200 and dropped as a duplicate."""
    first, second = purchase(dedupe_id=""), purchase(dedupe_id="")
    answers = [post(server, batch(first)).json(), post(server, batch(second)).json()]
    assert [(a["stored"], a["duplicates"]) for a in answers] == [(1, 0), (1, 0)], answers
    assert {w["code"] for w in answers[1]["warnings"]} >= {"blank_dedupe_id"}
    kept = [(e["payload"].get("data") or {}).get("transaction_id") for e in stored(server, "px_std")]
    assert {first["data"]["transaction_id"], second["data"]["transaction_id"]} <= set(kept)


def test_same_dedupe_id_on_two_pixels_is_not_a_duplicate(server: Server) -> None:
    event = page_view()
    assert post(server, batch(event)).json()["stored"] == 1
    lead = page_view(dedupe_id=event["dedupe_id"], data=None)
    r = post(server, batch(lead), pixel="px_lead", headers={"Authorization": "key-lead"})
    assert r.json()["stored"] == 1


def test_test_tag_header_is_kept_with_the_events(server: Server) -> None:
    event = page_view()
    r = post(server, batch(event), headers={**STD, "X-Capigate-Test": "ci-run-7"})
    assert r.json()["test_tag"] == "ci-run-7"
    assert stored(server, "px_std", dedupe_id=event["dedupe_id"])[0]["test_tag"] == "ci-run-7"


def test_test_tag_of_at_most_64_characters_is_kept_a_longer_one_is_a_400_naming_it(server: Server) -> None:
    """Rule: a test tag is at most 64 characters on both APIs; a longer one refuses the request
    (400, at the header's path), nothing stored. AppsFlyer's answer keeps its own text."""
    longest, event = "t" * 64, page_view()
    r = post(server, batch(event), headers={**STD, "X-Capigate-Test": longest})
    assert r.status_code == 200 and r.json()["test_tag"] == longest
    event = page_view()
    r = post(server, batch(event), headers={**STD, "X-Capigate-Test": "t" * 65})
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_test_tag"
    [problem] = r.json()["problems"]
    assert (problem["path"], problem["code"]) == ("x-capigate-test", "invalid_length")
    assert "64" in problem["message"] and "65" in problem["message"]
    assert stored(server, "px_std", dedupe_id=event["dedupe_id"]) == []
    af = {"appsflyer_id": "1415211453000-6513711", "eventName": "af_login", "eventValue": "", "os": "14"}
    with server.client() as c:
        headers = {"authentication": "af-dev-key", "X-Capigate-Test": "t" * 65}
        plain = c.post("/inappevent/com.example.shop", json=af, headers=headers)
        assert (plain.status_code, plain.text) == (400, "Bad request")
        answer = c.post("/inappevent/com.example.shop", json=af, headers={**headers, "Accept": "application/json"})
        assert paths(answer.json()) == {"x-capigate-test": "invalid_length"}
        kept = c.post("/inappevent/com.example.shop", json=af, headers={**headers, "X-Capigate-Test": longest})
        assert kept.status_code == 200


@pytest.mark.parametrize(("tag", "code"), [("tést-ünïcode".encode(), "not_ascii"), (b"", "empty")])
def test_a_test_tag_the_gateway_cannot_read_is_a_400_not_a_real_event(server: Server, tag: bytes, code: str) -> None:
    """Rule: a test tag is visible ASCII (events.tag_refusal). granian gives a worker no value of
    a header with other bytes: the tag read as absent, and the test event was stored as a real
    one and relayed to the ad network (a trial). An empty one is refused too, on both APIs."""
    event = page_view()
    r = post(server, batch(event), headers={**STD, "X-Capigate-Test": tag})  # type: ignore[dict-item]
    assert r.status_code == 400 and r.json()["error"] == "invalid_test_tag", r.text
    assert paths(r.json()) == {"x-capigate-test": code}
    assert stored(server, "px_std", dedupe_id=event["dedupe_id"]) == []
    af = {"appsflyer_id": "1415211453000-6513711", "eventName": "af_login", "eventValue": "", "os": "14"}
    headers = {"authentication": "af-dev-key", "X-Capigate-Test": tag, "Accept": "application/json"}
    with server.client() as c:
        answer = c.post("/inappevent/com.example.shop", json=af, headers=headers)  # type: ignore[arg-type]
    assert answer.status_code == 400 and paths(answer.json()) == {"x-capigate-test": code}, answer.text


def test_a_test_tag_given_twice_is_a_400(server: Server) -> None:
    """The last of two X-Capigate-Test headers was taken without a word (a trial)."""
    event = page_view()
    twice = [("Authorization", "key-std"), ("X-Capigate-Test", "a"), ("X-Capigate-Test", "b")]
    with server.client() as c:
        r = c.post("/v1/event?pixel_id=px_std", json=batch(event), headers=twice)
    assert r.status_code == 400 and paths(r.json()) == {"x-capigate-test": "repeated_header"}, r.text
    assert stored(server, "px_std", dedupe_id=event["dedupe_id"]) == []


def test_a_key_header_given_twice_is_a_400_on_either_api_whichever_is_right(server: Server) -> None:
    """`Authorization: nope` then `Authorization: <the key>` was answered 200, the last taken
    (a trial), where a repeated pixel_id or test tag is refused: a proxy adding its own header
    to a client's, or a client's two keys, is now told, not guessed at; AppsFlyer's
    `authentication` likewise, before either key is checked."""
    event = page_view()
    af = {"appsflyer_id": "1415211453000-6513711", "eventName": "af_login", "eventValue": "", "os": "14"}
    with server.client() as c:
        for keys in (("nope", "key-std"), ("key-std", "nope"), ("key-std", "key-std")):
            twice = [("Authorization", keys[0]), ("authorization", keys[1])]
            r = c.post("/v1/event?pixel_id=px_std", json=batch(event), headers=twice)
            assert r.status_code == 400 and r.json()["error"] == "repeated_authorization", r.text
            assert paths(r.json()) == {"authorization": "repeated_header"}, r.text
        for keys in (("nope", "af-dev-key"), ("af-dev-key", "af-dev-key")):
            twice = [("authentication", keys[0]), ("Authentication", keys[1]), ("Accept", "application/json")]
            answer = c.post("/inappevent/com.example.shop", json=af, headers=twice)
            assert answer.status_code == 400 and paths(answer.json()) == {"authentication": "repeated_header"}
            plain = c.post("/inappevent/com.example.shop", json=af, headers=twice[:2])
            assert (plain.status_code, plain.text) == (400, "Bad request")
    assert stored(server, "px_std", dedupe_id=event["dedupe_id"]) == []


def test_a_header_given_twice_is_told_under_asgi_as_under_granian() -> None:
    """Request.sent_twice read granian's headers only: under an ASGI server a repeated key or
    test tag was taken as its last value, unsaid."""
    from capigate.http.asgi import Request

    async def nothing(*_: Any) -> Any:
        return None

    scope = {
        "type": "http", "method": "POST", "path": "/v1/event", "query_string": b"pixel_id=px_std",
        "headers": [(b"authorization", b"nope"), (b"Authorization", b"key-std"), (b"x-capigate-test", b"a")],
        "client": ("127.0.0.1", 5000),
    }  # fmt: skip
    request = Request.from_asgi(scope, nothing, nothing, "r1")
    assert request.sent_twice("authorization") and not request.sent_twice("x-capigate-test")
    assert request.headers["authorization"] == "key-std"


def test_unknown_path_is_404_and_wrong_method_is_405(server: Server) -> None:
    with server.client() as c:
        assert c.post("/v1/events?pixel_id=px_std", json={}).status_code == 404
        assert c.get("/v1/event?pixel_id=px_std").status_code == 405


def test_body_shape_bare_array_gzip_is_stored_with_a_warning(server: Server) -> None:
    events = [page_view(), purchase()]
    r = post_raw(server, gzip.compress(json.dumps(events).encode()), {"Content-Encoding": "gzip"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["received"], body["stored"]) == (2, 2)
    assert paths(body, "warnings")[""] == "undocumented_body_shape"
    assert all(len(stored(server, "px_std", dedupe_id=e["dedupe_id"])) == 1 for e in events)


def test_body_shape_bare_array_problems_and_limits_are_the_documented_ones(server: Server) -> None:
    bad = [page_view() for _ in range(4)]
    bad[3]["user_data"]["esi"] = "tv"
    r = post(server, bad)
    assert r.status_code == 400 and paths(r.json()) == {"events[3].user_data.esi": "invalid_enum"}
    r = post(server, [page_view() for _ in range(101)])
    assert r.status_code == 400 and paths(r.json()) == {"": "too_many_events"}
    assert not any(stored(server, "px_std", dedupe_id=e["dedupe_id"]) for e in bad)


def test_400_error_and_problem_codes_are_as_docs_api_md_lists_them(server: Server) -> None:
    """docs/api.md: unreadable requests name the reason in `error`; a refused batch says
    `invalid_batch` there and names the reason only in problems[].code."""
    json_type = {"Content-Type": "application/json"}
    gzip_type = {**json_type, "Content-Encoding": "gzip"}
    unreadable = {
        "missing_pixel_id": ("/v1/event", b"{}", json_type, {"pixel_id": "missing_field"}),
        "bad_gzip": ("/v1/event?pixel_id=px_std", b"not gzip", gzip_type, {"": "bad_gzip"}),
        "malformed_json": ("/v1/event?pixel_id=px_std", b'{"events": [', json_type, {"": "malformed_json"}),
    }
    with server.client() as c:
        for error, (url, content, headers, problems) in unreadable.items():
            r = c.post(url, content=content, headers={**STD, **headers})
            assert (r.status_code, r.json()["error"], paths(r.json())) == (400, error, problems)
    refused = {
        b'"events"': {"": "not_an_object"},
        b"{}": {"events": "missing_field"},
        b'{"events": {}}': {"events": "wrong_type"},
        b'{"events": []}': {"events": "empty_batch"},
        json.dumps(batch(*[page_view()] * 101)).encode(): {"events": "too_many_events"},
    }
    for content, problems in refused.items():
        r = post_raw(server, content, json_type)
        assert (r.status_code, r.json()["error"], paths(r.json())) == (400, "invalid_batch", problems)


def _outcome(**told: object) -> Outcome:
    outcome = Outcome(api="axon")
    for name, value in told.items():
        setattr(outcome, name, value)
    return outcome


@pytest.mark.parametrize(
    ("received", "result", "outcome"),
    [
        (1, IngestResult(stored=1, duplicates=[]), Outcome(api="axon")),
        (3, IngestResult(stored=3, duplicates=[]), Outcome(api="axon")),
        (2, IngestResult(stored=1, duplicates=[1]), Outcome(api="axon")),
        (1, IngestResult(stored=1, duplicates=[]), _outcome(test_tag="t")),
        (1, IngestResult(stored=1, duplicates=[]), _outcome(warnings=[Problem("a", "b", "c")])),
    ],
    ids=["one", "three", "duplicate", "test-tag", "warning"],
)
def test_the_200_answer_is_its_accepted_body_whether_reused_or_encoded(
    received: int, result: IngestResult, outcome: Outcome
) -> None:
    """Rule: the 200 body is the Accepted of the request, also when its encoding is reused."""
    expected = msgspec.json.encode(
        Accepted(
            received=received,
            stored=result.stored,
            duplicates=len(result.duplicates),
            duplicate_events=result.duplicates,
            warnings=outcome.warnings,
            test_tag=outcome.test_tag,
        )
    )
    for _ in range(2):  # the second answer may be the first's bytes again
        response = _accepted(received, result, outcome)
        assert (response.status, response.body, response.headers) == (
            200,
            expected,
            [("content-type", "application/json")],
        )


def test_a_broken_json_body_sent_as_curl_d_sends_it_is_told_its_json_problem_first(server: Server) -> None:
    """A trial: `curl -d '{"events":[{'` (a form's Content-Type, as curl -d sends it) was told
    the body "came as a form", as if the type were the mistake, while a JSON body is read as
    JSON whatever its type, and with application/json the same body was told "Input data was
    truncated". An empty body the same. The JSON problem is named first, the type after it as a
    hint; a real form (`a=1&b=2`) is still told to be JSON."""
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    af_headers = {"authentication": "af-dev-key", "Accept": "application/json"}
    with server.client() as c:
        for path, headers, body, first in (
            ("/v1/event?pixel_id=px_std", STD, b'{"events":[{', "the body is not valid JSON: Input data was truncated"),
            ("/v1/event?pixel_id=px_std", STD, b"", "the body is empty"),
            ("/v1/event?pixel_id=px_std", STD, b"  [1,", "the body is not valid JSON: Input data was truncated"),
            ("/inappevent/com.example.shop", af_headers, b'{"appsflyer_id":', "the body is not valid JSON: Input"),
        ):
            answer = c.post(path, content=body, headers={**headers, **form})
            assert answer.status_code == 400, answer.text
            [problem] = answer.json()["problems"]
            assert problem["code"] == "malformed_json", problem
            message = problem["message"]
            assert message.startswith(first), (body, message)
            assert "application/x-www-form-urlencoded" in message and "came as a form" not in message, message
        for path, headers in (("/v1/event?pixel_id=px_std", STD), ("/inappevent/com.example.shop", af_headers)):
            answer = c.post(path, content=b"a=1&b=2", headers={**headers, **form})
            [problem] = answer.json()["problems"]
            assert problem["message"].startswith("the body must be JSON, and it came as a form"), problem


@pytest.mark.parametrize("form", ["multipart", "urlencoded"])
def test_a_form_body_is_told_to_be_json_naming_the_form_content_type(server: Server, form: str) -> None:
    """`curl -F events=@file` and `--data-urlencode` were answered "JSON is malformed: invalid
    character (byte 0)" (a trial): the body must be JSON, and the form type sent is named. On
    both APIs; a JSON body sent with a form's type (curl -d @file) is still read."""
    document = json.dumps(batch(page_view()))
    kind = "multipart/form-data" if form == "multipart" else "application/x-www-form-urlencoded"
    af_event = json.dumps({"appsflyer_id": "1415211453000-6513711", "eventName": "af_login", "os": "14"})
    af_headers = {"authentication": "af-dev-key", "Accept": "application/json"}
    with server.client() as c:
        for path, headers, value in (
            ("/v1/event?pixel_id=px_std", STD, document),
            ("/inappevent/com.example.shop", af_headers, af_event),
        ):
            if form == "multipart":
                answer = c.post(path, files={"events": ("events.json", value, "application/json")}, headers=headers)
            else:
                answer = c.post(path, data={"events": value}, headers=headers)
            assert answer.headers["content-type"].startswith("application/json"), answer.text
            assert answer.status_code == 400, answer.text
            [problem] = answer.json()["problems"]
            assert problem["code"] == "malformed_json", problem
            assert "must be JSON" in problem["message"] and kind in problem["message"], problem
            assert "byte 0" not in problem["message"], problem
        sent = c.post("/v1/event?pixel_id=px_std", content=document, headers={**STD, "Content-Type": kind})
        assert sent.status_code == 200, sent.text
