"""What the gateway keeps of a request for the inspector: how each accepted event's match
keys arrived (capigate/matchkeys.py), the keys a request can be found by (event names, dedupe
ids, transaction ids; the dedupe ids of the events it stored are found through the store's
dedupe keys instead, while they outlive the journal), and a refused request's body.

Match keys are read as sent (hashing hides whether an email came plain): an Axon event's by
its rules, from the typed ``user_data`` before hashing; an AppsFlyer event's here, from the body.

A refused body is kept with its personal data treated as ingest treats it, by the rules' own
functions: emails and phone numbers hashed as ``capigate.identity`` hashes them (AppsFlyer's
``*_hashed`` fields by its rules' hashers), personal data under keys a schema does not define
dropped by ``capigate.personal`` (Axon's unknown keys by ``capigate.axon.personal``), and no
string holding an email address left anywhere (``without_emails``; an Axon identifier that
is an email address, ``user_data.user_id`` say, hashed as ingest hashes it, and one that is
a phone number in international form hashed or dropped by ingest's ``without_phones``; AppsFlyer's
``customer_user_id`` holding an email address or a phone number dropped, by ingest's own
rule, ``personal_in_customer_user_id``), and any other string holding an email address or a
phone number in international form dropped, as ingest drops it. Before all that, and after,
whatever the body's shape, a phone number under one of those identifier keys, anywhere, is
hashed or dropped as those rules treat it (``_without_phone_ids``), and an
``event_source_url`` holding one anywhere, or credentials before its host, is dropped.
What cannot be
hashed, an invalid email say, is dropped too. A dropped value leaves ``DROPPED`` in its place,
so that a problem's path still points at something; a hashed one is its hash, never ``DROPPED``:
the page would say dropped what ingest keeps hashed. The body is capped at ``MAX_KEPT_BYTES``; a body
that is not JSON cannot be checked, and is not kept.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

import msgspec

from capigate.appsflyer.fields import PLAIN_HASHERS as APPSFLYER_HASHERS
from capigate.appsflyer.identifiers import personal_in_customer_user_id
from capigate.axon.personal import without_personal_unknowns
from capigate.axon.rules import (
    DESCRIPTIVE_TEXT,
    IDENTIFIER_TEXT,
    PHONE_FIELDS,
    url_holds_credentials,
    without_phones,
)
from capigate.checking import Report
from capigate.events import journal_key, kept_as_sent
from capigate.identity import (
    InvalidIdentifier,
    contains_email,
    contains_international_phone,
    hash_email,
    hash_phone,
    hash_phone_e164,
    is_sha256_hex,
)
from capigate.matchkeys import appsflyer_match_keys
from capigate.personal import TooDeep, treated_phone_id, without_emails, without_personal
from capigate.store.base import NewEvent

__all__ = ["DROPPED", "MAX_KEPT_BYTES", "dedupe_ids_not_stored", "note_accepted", "request_keys", "retained"]

MAX_KEPT_BYTES: Final = 65_536
MAX_KEYS: Final = 300  # a batch of 100 events: a name, a dedupe id, a transaction id each
DROPPED: Final = "<dropped: personal data>"
_SEND_HASHED: Final = "send personal data hashed"
_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode
_HASHERS: Final[dict[str, Callable[[str], str]]] = {
    **{key: hasher for key, (hasher, _) in APPSFLYER_HASHERS.items()},
    "phone_number_hashed": hash_phone,
    "phone_number_e164_hashed": hash_phone_e164,
}
_AXON_HASHERS: Final[dict[str, Callable[[str], str]]] = {"email": hash_email, "phone": hash_phone}


_decode_object = msgspec.json.Decoder(dict[str, Any]).decode


def note_accepted(
    body: bytes | None, events: Sequence[NewEvent], hashed_here: set[str], *, dedupe_ids: bool = True
) -> list[tuple[str, str]]:
    """The keys the request of the accepted ``events`` can be found by; unless ``dedupe_ids``,
    without the dedupe ids kept as sent, which the store finds if it stored them
    (``dedupe_ids_not_stored`` adds a duplicate's afterwards). An
    Axon event came from its rules with its match keys; an AppsFlyer event gets them here,
    from ``body`` and ``hashed_here``, the fields the rules hashed (``plain_pii_hashed``)."""
    if not events:
        return []
    if events[0].api == "axon":
        return _axon_keys(events, dedupe_ids)
    if body is None:
        return []
    try:
        return _note_appsflyer(body, events[0], hashed_here, dedupe_ids)
    except (msgspec.DecodeError, ValueError):  # the rules took what this cannot read: no notes
        return []


def _axon_keys(events: Sequence[NewEvent], dedupe_ids: bool = True) -> list[tuple[str, str]]:
    if len(events) == 1:  # a one-event request: the same keys as _batch_keys, at half its cost
        event = events[0]
        dedupe_id = event.dedupe_id if dedupe_ids or not kept_as_sent(event.dedupe_id) else None
        pairs = (("name", event.name), ("dedupe_id", dedupe_id), ("transaction_id", event.transaction_id))
        return [(kind, text) for kind, value in pairs if (text := journal_key(value)) is not None]
    return _batch_keys(events, dedupe_ids)


def _batch_keys(events: Sequence[NewEvent], dedupe_ids: bool = True) -> list[tuple[str, str]]:
    """Each event's name (once), then dedupe id, then transaction id, up to ``MAX_KEYS``."""
    found: dict[tuple[str, str], None] = {}
    values: Sequence[Any]
    for kind, values in (
        ("name", list({e.name: None for e in events})),
        ("dedupe_id", [e.dedupe_id for e in events if dedupe_ids or not kept_as_sent(e.dedupe_id)]),
        ("transaction_id", [e.transaction_id for e in events]),  # as sent: one holding an email is refused
    ):
        for value in values:
            text = journal_key(value)
            if text is not None:
                if len(found) >= MAX_KEYS:
                    return list(found)
                found[kind, text] = None
    return list(found)


def dedupe_ids_not_stored(events: Sequence[NewEvent], not_stored: Sequence[int]) -> list[tuple[str, str]]:
    """The dedupe-id keys of ``events`` the store cannot find their request by: its dedupe
    keys name the event that stored each id, and the event its request, so only the ids of
    the duplicates (positions ``not_stored``) that none of the stored events holds. (A request
    whose ingest failed is journaled with the keys of its body, as any refused one.)

    Journaled for every event, they were a row each in an index whose inserts land on pages
    of their own: an eighth of the database a W1 batch of 100 events adds (86 against 76 KB),
    and on a young database a sixth of the writer's CPU."""
    skipped = set(not_stored)
    stored = {e.dedupe_id for i, e in enumerate(events) if i not in skipped}
    # kept as sent: each id is its own journal key (journal_key(d) == d)
    keys = {("dedupe_id", d): None for i in not_stored if kept_as_sent(d := events[i].dedupe_id) and d not in stored}
    return list(keys)[:MAX_KEYS]


def _note_appsflyer(body: bytes, event: NewEvent, hashed_here: set[str], dedupe_ids: bool) -> list[tuple[str, str]]:
    event.match_keys = appsflyer_match_keys(_decode_object(body), hashed_here, event.dedupe_id is not None)
    keys = request_keys("appsflyer", _decode_object(event.payload))  # as stored: the rules have treated it
    keys = [(kind, value) for kind, value in keys if not contains_email(value)]
    if (dedupe := journal_key(event.dedupe_id)) is not None and (dedupe_ids or dedupe != event.dedupe_id):
        keys.append(("dedupe_id", dedupe))
    return keys


def _add(found: dict[tuple[str, str], None], kind: str, value: Any) -> None:
    text = journal_key(value)
    if text is not None and len(found) < MAX_KEYS:
        found[kind, text] = None


def request_keys(api: str, body: Any) -> list[tuple[str, str]]:
    """(kind, value) pairs, each once: "name", "dedupe_id" and "transaction_id" (Axon's
    ``data.transaction_id``, AppsFlyer's ``eventValue.af_order_id``)."""
    found: dict[tuple[str, str], None] = {}
    if api == "axon":
        events = body.get("events") if isinstance(body, dict) else body
        for event in events if isinstance(events, list) else []:
            if isinstance(event, dict):
                _add(found, "name", event.get("name"))
                _add(found, "dedupe_id", event.get("dedupe_id"))
                data = event.get("data")
                if isinstance(data, dict):
                    _add(found, "transaction_id", data.get("transaction_id"))
    elif isinstance(body, dict):
        _add(found, "name", body.get("eventName"))
        value = _parsed(body.get("eventValue"))
        if isinstance(value, dict):
            _add(found, "transaction_id", value.get("af_order_id"))
    return list(found)


def _parsed(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return _decode(value)
        except msgspec.DecodeError:
            return value
    return value


def retained(api: str, body: bytes) -> tuple[bytes, list[tuple[str, str]]]:
    """The body of a refused request as the journal keeps it, and the keys it is found by."""
    try:
        # A phone number under an identifier key first: hashed there, where the later guards,
        # which read any string for one, would drop it.
        decoded = _without_phone_ids(_decode(body))
        treated = _treat_axon(decoded) if api == "axon" else _treat_appsflyer(decoded)
        treated = _without_phone_ids(treated)
    except (msgspec.DecodeError, TooDeep, RecursionError):
        note = f"<the body ({len(body)} bytes) is not JSON that can be checked for personal data: not kept>"
        return _encode(note), []
    kept = _encode(treated)
    if len(kept) > MAX_KEPT_BYTES:
        note = f"<the body is {len(kept)} bytes once treated; only the first {MAX_KEPT_BYTES} are kept>\n"
        kept = note.encode() + kept[:MAX_KEPT_BYTES]
    return kept, request_keys(api, treated)


def _treat_axon(decoded: Any) -> Any:
    events = decoded.get("events") if isinstance(decoded, dict) else decoded
    if isinstance(events, list):
        treated = [
            _treat_axon_event(e, f"events[{i}]" if isinstance(decoded, dict) else f"[{i}]")
            for i, e in enumerate(events)
        ]
        decoded = {**decoded, "events": treated} if isinstance(decoded, dict) else treated
    return _without_emails(decoded)


def _treat_axon_event(event: Any, path: str) -> Any:
    if not isinstance(event, dict):
        return event
    report = Report()
    event = without_personal_unknowns(event, path, report)
    _mark_dropped(event, report, prefix=path)
    user = event.get("user_data")
    if isinstance(user, dict):
        event = {**event, "user_data": _hashed(user, _AXON_HASHERS)}
    report = Report()  # a phone number in an identifier: hashed (zip: dropped), as ingest treats it
    event = without_phones(event, path, report)
    _mark_dropped(event, report, prefix=path)
    report = Report()  # an identifier holding an exact email address: hashed, as ingest hashes it
    event = without_emails(
        event, path, report, _SEND_HASHED, hashed=IDENTIFIER_TEXT, phones=True, plus_only=DESCRIPTIVE_TEXT
    )
    _mark_dropped(event, report, prefix=path)
    return event


def _treat_appsflyer(decoded: Any) -> Any:
    if not isinstance(decoded, dict):
        return _without_emails(decoded)
    out = _hashed(decoded, _HASHERS)
    user_id = out.get("customer_user_id")
    if isinstance(user_id, str) and personal_in_customer_user_id(user_id) is not None:
        out["customer_user_id"] = DROPPED  # ingest's rule: an email address or a phone number, dropped
    for key in ("eventValue", "custom_data"):
        if key in out:
            out[key] = _parsed(out[key])
    report = Report()
    out = without_personal(out, "", report, _SEND_HASHED)
    _mark_dropped(out, report)
    return _without_emails(out)


# The keys a phone number may not be kept under, whatever the body's shape: hashed (True) or
# dropped, as the rules treat them (rules.PHONE_FIELDS; AppsFlyer's customer_user_id, dropped
# by personal_in_customer_user_id, and the names, Axon's name and AppsFlyer's eventName,
# refused with plain_pii).
_PHONE_KEYS: Final[dict[str, bool]] = {
    **{key: hashed for _, key, hashed in PHONE_FIELDS},
    "customer_user_id": False,
    "name": False,
    "eventName": False,
}


# A phone number anywhere in an Axon event_source_url refuses it (rules.check_source_url,
# plain_pii), and so do credentials before its host (url_credentials): the URL is dropped, as
# one holding an email address is.
_URL_KEY: Final = "event_source_url"


def _refused_url(url: str) -> bool:
    return contains_international_phone(url) or url_holds_credentials(url)


def _without_phone_ids(value: Any) -> Any:
    """The last guard on phone numbers, for a body of any shape (a misspelt ``events``, user
    data beside it or as a list, an id wrapped in a list or an object, an AppsFlyer array): a
    phone number in international form under a key of ``_PHONE_KEYS``, at any depth and in any
    list or object there, hashed as ingest hashes it or dropped. What the shape-aware treatment
    hashed is a digest by now, left as it is."""
    if isinstance(value, dict):
        return {
            key: _phone_treated(item, _PHONE_KEYS[key])
            if key in _PHONE_KEYS
            else DROPPED
            if key == _URL_KEY and isinstance(item, str) and _refused_url(item)
            else _without_phone_ids(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_without_phone_ids(item) for item in value]
    return value


def _phone_treated(value: Any, hashed: bool) -> Any:
    """``value``, under a key of ``_PHONE_KEYS``, with each phone number in it treated."""
    if isinstance(value, str):
        treated = treated_phone_id(value, hashed)  # ingest's rule: the value, its digest, or None
        return DROPPED if treated is None else treated
    if isinstance(value, dict):
        return {key: _phone_treated(item, hashed) for key, item in value.items()}
    if isinstance(value, list):
        return [_phone_treated(item, hashed) for item in value]
    return value


def _hashed(fields: dict[str, Any], hashers: dict[str, Callable[[str], str]]) -> dict[str, Any]:
    """``fields`` with each hashed field's value hashed as the rules hash it, or DROPPED."""
    out = dict(fields)
    for key, hasher in hashers.items():
        value = out.get(key)
        if value is None:
            continue
        text = value.strip() if isinstance(value, str) else ""
        try:
            out[key] = text.lower() if is_sha256_hex(text) else hasher(value) if text else DROPPED
        except InvalidIdentifier:
            out[key] = DROPPED
    return out


def _without_emails(value: Any) -> Any:
    """The last guards: no key named like personal data or holding an email address (unless
    its value is a digest), and no string holding an email address or a phone number in
    international form, anywhere."""
    report = Report()
    kept = without_personal(value, "", report, _SEND_HASHED)
    _mark_dropped(kept, report)
    report = Report()
    kept = without_emails(kept, "", report, _SEND_HASHED, phones=True)
    _mark_dropped(kept, report)
    return kept


def _mark_dropped(root: Any, report: Report, prefix: str = "") -> None:
    """``DROPPED`` at each path where ``report`` says something was dropped (or replaced); not
    where it was hashed (``plain_pii_hashed``: the hash is in place, as ingest keeps it)."""
    for warning in report.warnings + report.problems:
        if warning.code == "plain_pii_hashed":
            continue
        path = warning.path
        if prefix and path.startswith(prefix):
            path = path[len(prefix) :].lstrip(".")
        _put(root, path, DROPPED)


def _put(root: Any, path: str, value: Any) -> None:
    """Sets ``value`` at ``path`` (``a.b[0].c``) where its parent exists; else nothing."""
    parts = _split_path(path)
    if not parts:
        return
    node = root
    for part in parts[:-1]:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return
    last = parts[-1]
    if isinstance(node, dict) and isinstance(last, str):
        node[last] = value
    if isinstance(node, list) and isinstance(last, int) and last < len(node):
        node[last] = value


def _split_path(path: str) -> list[str | int]:
    parts: list[str | int] = []
    for dotted in path.split("."):
        name, *indexes = dotted.split("[")
        if name:
            parts.append(name)
        parts += [int(i.rstrip("]")) for i in indexes if i.rstrip("]").isdigit()]
    return parts
