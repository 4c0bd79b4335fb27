"""Rule (capigate/personal.py, shown_id): a test tag, pixel id or app id holding an email
address never reaches the store, the journal, the log or the page: it is kept as
``<email address>`` and 8 hex digits of its SHA-256, with a warning on an accepted request. So is a segment of an unknown
path and a User-Agent header holding one (shown_path). A phone number in international form in
the same places is kept as ``<phone number>`` (and 8 hex digits), the same way."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from capigate.personal import shown_id
from tests.conftest import Server, served_on
from tests.helpers import batch, purchase, wait_until
from tests.storekit import store_as_text

TAG_EMAIL = "jane.dev3@company.example"
TAG_SHOWN = "<email address 698c6cb0>"
PIXEL_EMAIL = "zed.pixel@example.net"
APP_EMAIL = "app.owner@example.org"
PATH_EMAIL = "path.person@example.com"
AGENT_EMAIL = "agent.person@example.com"
NEEDLES = [TAG_EMAIL, PIXEL_EMAIL, APP_EMAIL, PATH_EMAIL, AGENT_EMAIL]
NEEDLES += [n.split("@")[0] for n in NEEDLES]


@pytest.fixture(params=["sqlite", "postgresql"])
def gateway(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Server, str | None]]:
    with served_on(request.param, tmp_path / "gw", "capigate_pii_ids") as served:
        yield served


def _post(server: Server, path: str, **kw: Any) -> httpx.Response:
    # One connection per request: a 401 answered before its body was read may close it.
    with server.client() as c:
        return c.post(path, **kw)


def _send(server: Server) -> None:
    af_event = {"appsflyer_id": "1234567890123-1234567", "eventName": "af_purchase", "eventValue": "", "os": "17.4"}
    body = _tagged(server, TAG_EMAIL)
    assert body["test_tag"] == TAG_SHOWN
    assert {w["path"]: w["code"] for w in body["warnings"]}["x-capigate-test"] == "plain_pii_replaced"
    unknown = _post(server, "/v1/event", params={"pixel_id": PIXEL_EMAIL}, json=batch(purchase()))
    assert unknown.status_code == 401
    headers = {"authentication": "af-dev-key", "X-Capigate-Test": TAG_EMAIL}
    assert _post(server, f"/inappevent/{APP_EMAIL}", headers=headers, json=af_event).status_code == 401
    headers["Accept"] = "application/json"
    af_tagged = _post(server, "/inappevent/com.example.shop", headers=headers, json=af_event)
    assert af_tagged.status_code == 200, af_tagged.text
    assert af_tagged.json()["test_tag"] == TAG_SHOWN
    for path in (f"/v1/event/{PATH_EMAIL}", "/users/" + PATH_EMAIL.replace("@", "%40") + "/events"):
        lost = _post(server, path, json=batch(purchase()))
        assert lost.status_code == 404 and "path.person" not in lost.text, lost.text
    agent = {"Authorization": "key-std", "User-Agent": f"shop-backend/1.0 ({AGENT_EMAIL})"}
    assert _post(server, "/v1/event?pixel_id=px_std", headers=agent, json=batch(purchase())).status_code == 200


def _journal(server: Server) -> list[dict[str, object]]:
    with server.admin() as admin:
        return admin.get("/api/requests", params={"limit": 100}).json()["requests"]  # type: ignore[no-any-return]


def test_email_in_test_tag_pixel_id_or_app_id_never_reaches_store_journal_log_or_page(
    gateway: tuple[Server, str | None],
) -> None:
    server, schema = gateway
    _send(server)
    wait_until(lambda: len(_journal(server)) >= 7, what="seven journal entries")
    journal = _journal(server)
    assert {r["source"] for r in journal} >= {shown_id(PIXEL_EMAIL), shown_id(APP_EMAIL), "px_std", "com.example.shop"}
    haystacks = _everything_kept(server, schema)
    assert "<email address>" in haystacks["log"]
    for where, text in haystacks.items():
        for needle in NEEDLES:
            assert needle not in text, f"{needle!r} found in {where}"


def test_a_percent_encoded_email_as_a_tag_or_source_id_is_not_kept() -> None:
    """Rule: shown_key. A trial's `X-Capigate-Test: jane%40example.com` was stored, journaled
    and logged as sent, where a path segment with %40 was replaced."""
    from capigate.personal import EMAIL_SHOWN, shown_id, shown_key

    assert shown_key("jane%40example.com") == EMAIL_SHOWN
    assert shown_key("ci run 7") == "ci run 7" and shown_key("50%40off") == "50%40off"
    assert shown_id("jane%40example.com").startswith("<email address ")
    assert shown_id("ci run 7") == "ci run 7" and shown_id("50%40off") == "50%40off"
    # One address however it is written: one tag, one dedupe scope, found by a filter as sent.
    written = ["jane@example.com", "Jane%40Example.com", "jane%2540example.com", "jane\uff20example.com"]
    written += ["\uff4a\uff41\uff4e\uff45@example.com", "jane@ example.com"]  # an IME's letters, a spaced at sign
    same = {shown_id(t) for t in written}
    assert len(same) == 1, same


def test_two_test_tags_holding_email_addresses_stay_two_dedupe_scopes(gateway: tuple[Server, str | None]) -> None:
    """Rule: shown_id, events.dedupe_scope. Both tags were kept as `<email address>` (a trial):
    the second developer's test event was a duplicate of the first's, answered 200 and never
    stored. Each is now its own scope, and the journal's tag filter tells them apart."""
    server, _ = gateway
    event = purchase(dedupe_id="shared-order-1")
    answers = [
        _post(server, "/v1/event?pixel_id=px_std", headers={"Authorization": "key-std", "X-Capigate-Test": tag},
              json=batch(event)).json()
        for tag in (TAG_EMAIL, "bob.dev@company.example", TAG_EMAIL)
    ]  # fmt: skip
    assert [a["test_tag"] for a in answers] == [TAG_SHOWN, shown_id("bob.dev@company.example"), TAG_SHOWN]
    assert shown_id("bob.dev@company.example") != TAG_SHOWN
    assert [(a["stored"], a["duplicates"]) for a in answers] == [(1, 0), (1, 0), (0, 1)], answers
    with server.admin() as admin:  # the tag as sent finds them: the filter is kept as the tag is
        events = admin.get("/api/events", params={"test_tag": TAG_EMAIL}).json()["events"]
        assert [e["test_tag"] for e in events] == [TAG_SHOWN], events
        tagged = {"test_tag": TAG_EMAIL}
        wait_until(
            lambda: len(admin.get("/api/requests", params=tagged).json()["requests"]) == 2,
            what="both requests tagged as Jane's in the journal",
        )


def test_a_phone_number_as_a_path_segment_is_not_kept() -> None:
    """Rule: shown_path. `/victim@corp.example/+14155550100` was logged and journaled with the
    number as sent (a trial); digits alone stay, as app and order ids are."""
    from capigate.personal import EMAIL_SHOWN, PHONE_SHOWN, shown_path

    assert shown_path("/jane@corp.example/+14155550100") == f"/{EMAIL_SHOWN}/{PHONE_SHOWN}"
    assert shown_path("/u/%2B44%2020%207946%200958") == f"/u/{PHONE_SHOWN}"
    assert shown_path("/inappevent/id123456789") == "/inappevent/id123456789"
    assert shown_path("/orders/4155550100") == "/orders/4155550100"
    assert shown_path("/search/a+b") == "/search/a+b"


def test_a_tag_holding_an_email_address_is_one_tag_whatever_its_case(gateway: tuple[Server, str | None]) -> None:
    """Rule: shown_id normalises an email address as hash_email does (trimmed, lower-cased)
    before hashing it. `Jane@Example.com` and `jane@example.com` were two tags (a trial): a
    search for one found nothing sent with the other, and each was its own dedupe scope."""
    assert shown_id("Jane.Dev3@Company.Example") == shown_id(" jane.dev3@company.example ") == TAG_SHOWN
    assert shown_id("ci run 7") == "ci run 7" and shown_id("CI Run 7") == "CI Run 7"  # no email: as sent
    server, _ = gateway
    event = purchase(dedupe_id="cased-order-1")
    answers = [
        _post(server, "/v1/event?pixel_id=px_std", headers={"Authorization": "key-std", "X-Capigate-Test": tag},
              json=batch(event)).json()
        for tag in ("Jane.Dev3@Company.Example", TAG_EMAIL)
    ]  # fmt: skip
    assert [a["test_tag"] for a in answers] == [TAG_SHOWN, TAG_SHOWN], answers
    assert [(a["stored"], a["duplicates"]) for a in answers] == [(1, 0), (0, 1)], answers
    with server.admin() as admin:
        for asked in ("JANE.DEV3@company.example", TAG_EMAIL, TAG_SHOWN):
            events = admin.get("/api/events", params={"test_tag": asked}).json()["events"]
            assert [e["test_tag"] for e in events] == [TAG_SHOWN], (asked, events)
        other_case = {"test_tag": "Jane.Dev3@COMPANY.example"}
        wait_until(
            lambda: len(admin.get("/api/requests", params=other_case).json()["requests"]) == 2,
            what="both requests found by the tag in another case",
        )


PIXEL_PHONE, APP_PHONE, TAG_PHONE = "+14155550601", "+14155550602", "+14155550604"


def test_phone_number_as_test_tag_pixel_id_or_app_id_never_reaches_store_journal_log_or_page(
    gateway: tuple[Server, str | None],
) -> None:
    """Rule: shown_id. A phone number in international form as a pixel id, an app id or a test
    tag was kept as sent: journaled, logged (`source=+14155550602` beside its masked path),
    stored (a trial). It is kept as `<phone number>` and 8 hex digits of its digits' SHA-256,
    as an email address is, and the tag as sent still finds its events."""
    server, schema = gateway
    body = _tagged(server, TAG_PHONE)
    assert body["test_tag"] == shown_id(TAG_PHONE) and body["test_tag"].startswith("<phone number "), body
    warned = {w["path"]: w for w in body["warnings"]}["x-capigate-test"]
    assert warned["code"] == "plain_pii_replaced" and "phone number" in warned["message"], warned
    assert shown_id("+1 (415) 555-0604") == shown_id("%2B14155550604") == shown_id(TAG_PHONE)
    assert shown_id("+14155550605") != shown_id(TAG_PHONE) and shown_id("4155550604") == "4155550604"
    unknown = _post(
        server, "/v1/event", params={"pixel_id": PIXEL_PHONE}, headers={"Authorization": "x"}, content=b"{}"
    )
    assert unknown.status_code == 401
    assert _post(server, f"/inappevent/{APP_PHONE}", headers={"authentication": "x"}, content=b"{}").status_code == 401
    wait_until(lambda: len(_journal(server)) >= 3, what="three journal entries")
    assert {r["source"] for r in _journal(server)} >= {shown_id(PIXEL_PHONE), shown_id(APP_PHONE)}
    with server.admin() as admin:
        found = admin.get("/api/events", params={"test_tag": TAG_PHONE}).json()["events"]
        assert [e["test_tag"] for e in found] == [shown_id(TAG_PHONE)], found
    haystacks = _everything_kept(server, schema)
    assert "<phone number " in haystacks["log"]
    for where, text in haystacks.items():
        for needle in ("4155550601", "4155550602", "4155550604"):
            assert needle not in text, f"{needle!r} found in {where}"


def _everything_kept(server: Server, schema: str | None) -> dict[str, str]:
    """What the gateway answers and keeps, by where (journal, events, stats, log, each table),
    once it has stopped: the store flushed and closed."""
    with server.admin() as admin:
        haystacks = {
            "journal": admin.get("/api/requests", params={"limit": 100}).text,
            "events": admin.get("/api/events", params={"limit": 100}).text,
            "stats": admin.get("/api/stats").text,
        }
    server.stop()
    haystacks["log"] = server.output()
    return haystacks | store_as_text(str(server.db), schema)


def _tagged(server: Server, tag: str) -> dict[str, Any]:
    """The answer to a purchase sent with the test tag ``tag`` (accepted)."""
    answer = _post(
        server,
        "/v1/event?pixel_id=px_std",
        headers={"Authorization": "key-std", "X-Capigate-Test": tag},
        json=batch(purchase()),
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_the_readmes_example_of_a_kept_tag_is_what_capigate_keeps() -> None:
    """README.md names what ``jane@example.com`` is kept as (it showed another address's)."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    kept = shown_id("jane@example.com")
    assert f"`jane@example.com` is kept as\n  `{kept}`" in readme and shown_id("Jane@Example.com ") == kept
