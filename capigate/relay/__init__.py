"""The relay: deliver accepted events to the real upstream APIs, durably, per destination.

``destinations`` (what to send where), ``policy`` (what an answer means; the wait before a retry is ``capigate/retry.py``),
``worker`` (one destination's claim -> send -> settle loop), ``runner`` (all of them).
The retry state lives in the store's outbox (``capigate.store.base``: claim, settle …).
"""

from capigate.relay.destinations import (
    APPSFLYER_URL,
    AXON_URL,
    Target,
    relay_destination,
    relayed,
    replay_refusal,
    targets,
)
from capigate.relay.policy import Verdict, classify
from capigate.relay.runner import RelayRunner, new_owner
from capigate.relay.worker import DestinationWorker, WorkerStats

__all__ = [
    "APPSFLYER_URL",
    "AXON_URL",
    "DestinationWorker",
    "RelayRunner",
    "Target",
    "Verdict",
    "WorkerStats",
    "classify",
    "new_owner",
    "relay_destination",
    "relayed",
    "replay_refusal",
    "targets",
]
