"""The relay: deliver accepted events to the real upstream APIs, durably, per destination.

``destinations`` (what to send where), ``policy`` (what an answer means, backoff),
``worker`` (one destination's claim -> send -> settle loop), ``runner`` (all of them).
The retry state lives in the store's outbox (``capigate.store.base``: claim, settle …).
"""

from capigate.relay.destinations import APPSFLYER_URL, AXON_URL, Target, relay_destination, targets
from capigate.relay.policy import Verdict, backoff_s, classify, retry_after_s
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
    "backoff_s",
    "classify",
    "new_owner",
    "relay_destination",
    "retry_after_s",
    "targets",
]
