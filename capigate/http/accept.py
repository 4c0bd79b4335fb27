"""The step both ingest APIs end with: store the events they accepted, queue them for the
relay in the same transaction, wake the relay, and note the counts for the journal."""

from __future__ import annotations

from collections.abc import Sequence

from capigate.config import RelaySettings
from capigate.errors import StoreError
from capigate.http.asgi import RETRY_AFTER, Request
from capigate.http.deadlines import limited
from capigate.http.outcome import Outcome
from capigate.http.state import Gateway
from capigate.kept import dedupe_ids_not_stored, note_accepted
from capigate.relay.destinations import relay_destination
from capigate.responses import MAYBE_STORED_HEADER
from capigate.store.base import IngestResult, NewEvent

__all__ = ["INGEST_TIMEOUT_S", "accept", "not_stored"]

# A store that hangs (a network partition from PostgreSQL) gets a 503 after this, not a
# request held for ever: the client retries, and a dedupe_id keeps a retry from counting twice.
INGEST_TIMEOUT_S = 10.0


def not_stored(lost: StoreError) -> tuple[str, list[tuple[str, str]]]:
    """The problem code and headers of the 503 for ``lost``: ``store_unconfirmed`` and
    X-Capigate-Maybe-Stored when the write may have been committed, which a client repeats
    only if a repeat is dropped (a client that repeated every 503 stored AppsFlyer's twice)."""
    if lost.maybe_stored:
        return "store_unconfirmed", [RETRY_AFTER, (MAYBE_STORED_HEADER, "true")]
    return "store_unavailable", [RETRY_AFTER]


async def accept(
    request: Request, gateway: Gateway, outcome: Outcome, events: Sequence[NewEvent], relay: RelaySettings | None
) -> IngestResult:
    """Committed when this returns; StoreError when not (each API answers that its own way).
    ``events`` are one request's: one API, one source. Test-mode events (``outcome.test_tag``)
    are stored and journaled, never relayed."""
    hashed_here = {w.path for w in outcome.warnings if w.code == "plain_pii_hashed"}
    left_to_store = gateway.stored_ids_left_to_store
    # sets each event's match keys; the dedupe ids the store can find come after the ingest
    outcome.keys = note_accepted(outcome.body, events, hashed_here, dedupe_ids=not left_to_store)
    test_tag, destination = outcome.test_tag, None
    if events and not test_tag:  # one request's events share their source, so their destination
        destination = relay_destination(events[0].api, events[0].source, relay)
    for event in events:
        event.test_tag = test_tag
        event.destination = destination
    ingest = gateway.store.ingest(events, request_id=request.request_id, received_at_ms=request.received_at_ms)
    try:
        result = await limited(ingest, INGEST_TIMEOUT_S, request.task())
    except TimeoutError:
        # it may still commit them: a writer stopped for a while commits once it runs again
        unanswered = StoreError(
            f"the store did not answer within {INGEST_TIMEOUT_S:g} s: the write may or may not be stored",
            maybe_stored=True,
        )
        gateway.health.ingest_failed(unanswered, hung=True)  # for /readyz, as below
        raise unanswered from None
    except StoreError as exc:
        gateway.health.ingest_failed(exc)  # for /readyz: a node that refuses events is not ready
        raise
    gateway.health.ingest_ok()
    if result.stored and destination is not None and gateway.relay_wake is not None:
        gateway.relay_wake(destination)
    outcome.events_stored, outcome.events_duplicate = result.stored, len(result.duplicates)
    if left_to_store and result.duplicates:
        outcome.keys += dedupe_ids_not_stored(events, result.duplicates)
    return result
