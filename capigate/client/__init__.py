"""The Python SDK: clients for the Axon and AppsFlyer APIs (real or capigate), a background
batcher, the aleid cookie helpers and a reader of a gateway's query API.

    _base.py      the core both flavours share: checking, packing, results
    _pacing.py    RetryPolicy, Pacer
    _batching.py  what the two batchers share: stats, accounting, size checks
    _http.py      the sync and async halves (one connection pool each, the retry loop)
    axon.py       AxonClient, AsyncAxonClient, axon_event
    appsflyer.py  AppsFlyerClient, AsyncAppsFlyerClient, in_app_event
    batcher.py    Batcher, AsyncBatcher
    cookies.py    aleid / _axeid helpers for web servers
    admin.py      GatewayAdmin, AsyncGatewayAdmin: /api/events and /api/requests
    cli_commands.py, _records.py  ``capigate validate``, ``send``
    cli_gateway.py  ``capigate env``, ``events``
"""

from capigate.client._base import (
    FailedDelivery,
    Prepared,
    PreparedRequest,
    RequestResult,
    RetryPolicy,
    SendInterrupted,
    SendResult,
)
from capigate.client.admin import AsyncGatewayAdmin, GatewayAdmin
from capigate.client.appsflyer import APPSFLYER_URL, AppsFlyerClient, AsyncAppsFlyerClient, in_app_event
from capigate.client.axon import AXON_URL, AsyncAxonClient, AxonClient, axon_event
from capigate.client.batcher import AsyncBatcher, Batcher, BatcherStats
from capigate.client.cookies import (
    AXEID_COOKIE,
    AXEID_MAX_AGE_S,
    axeid_set_cookie,
    axeid_set_cookie_for,
    read_aleid,
    read_axwrt,
)

__all__ = [
    "APPSFLYER_URL",
    "AXEID_COOKIE",
    "AXEID_MAX_AGE_S",
    "AXON_URL",
    "AppsFlyerClient",
    "AsyncAppsFlyerClient",
    "AsyncAxonClient",
    "AsyncBatcher",
    "AsyncGatewayAdmin",
    "AxonClient",
    "Batcher",
    "BatcherStats",
    "FailedDelivery",
    "GatewayAdmin",
    "Prepared",
    "PreparedRequest",
    "RequestResult",
    "RetryPolicy",
    "SendInterrupted",
    "SendResult",
    "axeid_set_cookie",
    "axeid_set_cookie_for",
    "axon_event",
    "in_app_event",
    "read_aleid",
    "read_axwrt",
]
