"""capigate: a self-hosted conversions API gateway for AppLovin Axon and AppsFlyer.

The public surface: the SDK, the wire types it shares with the server, the error tree. Each
name is imported on first use (PEP 562), so ``import capigate.errors`` does not start the
HTTP client, the phone library or the store.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from capigate.__version__ import __version__
from capigate.native import activate as _activate_native

_activate_native()  # the compiled hot modules, when built and current (capigate/native.py)

if TYPE_CHECKING:
    from capigate.appsflyer.schema import (
        AppSetId,
        ConsentData,
        InAppEvent,
        ManualConsent,
        TcfConsent,
    )
    from capigate.axon.schema import (
        AddPaymentInfoData,
        AxonBatch,
        BeginCheckoutData,
        EventData,
        GenerateLeadData,
        Item,
        ItemsData,
        LoginData,
        MeasurementPartnerData,
        PageViewData,
        PurchaseData,
        SearchData,
        ServerEvent,
        SignUpData,
        SubscribeData,
        UserData,
    )
    from capigate.client import (
        AppsFlyerClient,
        AsyncAppsFlyerClient,
        AsyncAxonClient,
        AsyncBatcher,
        AsyncGatewayAdmin,
        AxonClient,
        Batcher,
        BatcherStats,
        FailedDelivery,
        GatewayAdmin,
        Prepared,
        RequestResult,
        RetryPolicy,
        SendInterrupted,
        SendResult,
        axeid_set_cookie,
        axeid_set_cookie_for,
        axon_event,
        in_app_event,
        read_aleid,
        read_axwrt,
    )
    from capigate.errors import (
        BatcherFull,
        CapigateError,
        ConfigError,
        HTTPStatusError,
        InvalidEvents,
        Problem,
        StoreError,
        TransportError,
    )
    from capigate.identity import (
        hash_email,
        hash_name,
        hash_phone,
        hash_phone_e164,
    )
    from capigate.responses import (
        Accepted,
        ErrorBody,
        EventsPage,
        EventView,
        RequestsPage,
        RequestView,
    )

_WHERE: dict[str, str] = {
    "Accepted": "capigate.responses",
    "AddPaymentInfoData": "capigate.axon.schema",
    "AppSetId": "capigate.appsflyer.schema",
    "AppsFlyerClient": "capigate.client",
    "AsyncAppsFlyerClient": "capigate.client",
    "AsyncAxonClient": "capigate.client",
    "AsyncBatcher": "capigate.client",
    "AxonBatch": "capigate.axon.schema",
    "AxonClient": "capigate.client",
    "Batcher": "capigate.client",
    "BatcherFull": "capigate.errors",
    "BatcherStats": "capigate.client",
    "BeginCheckoutData": "capigate.axon.schema",
    "CapigateError": "capigate.errors",
    "ConfigError": "capigate.errors",
    "ConsentData": "capigate.appsflyer.schema",
    "ErrorBody": "capigate.responses",
    "EventData": "capigate.axon.schema",
    "EventView": "capigate.responses",
    "EventsPage": "capigate.responses",
    "AsyncGatewayAdmin": "capigate.client",
    "FailedDelivery": "capigate.client",
    "GatewayAdmin": "capigate.client",
    "GenerateLeadData": "capigate.axon.schema",
    "HTTPStatusError": "capigate.errors",
    "InAppEvent": "capigate.appsflyer.schema",
    "InvalidEvents": "capigate.errors",
    "Item": "capigate.axon.schema",
    "ItemsData": "capigate.axon.schema",
    "LoginData": "capigate.axon.schema",
    "ManualConsent": "capigate.appsflyer.schema",
    "MeasurementPartnerData": "capigate.axon.schema",
    "PageViewData": "capigate.axon.schema",
    "Prepared": "capigate.client",
    "Problem": "capigate.errors",
    "PurchaseData": "capigate.axon.schema",
    "RequestResult": "capigate.client",
    "RequestView": "capigate.responses",
    "RequestsPage": "capigate.responses",
    "RetryPolicy": "capigate.client",
    "SearchData": "capigate.axon.schema",
    "SendInterrupted": "capigate.client",
    "SendResult": "capigate.client",
    "ServerEvent": "capigate.axon.schema",
    "SignUpData": "capigate.axon.schema",
    "StoreError": "capigate.errors",
    "SubscribeData": "capigate.axon.schema",
    "TcfConsent": "capigate.appsflyer.schema",
    "TransportError": "capigate.errors",
    "UserData": "capigate.axon.schema",
    "axeid_set_cookie": "capigate.client",
    "axeid_set_cookie_for": "capigate.client",
    "axon_event": "capigate.client",
    "hash_email": "capigate.identity",
    "hash_name": "capigate.identity",
    "hash_phone": "capigate.identity",
    "hash_phone_e164": "capigate.identity",
    "in_app_event": "capigate.client",
    "read_aleid": "capigate.client",
    "read_axwrt": "capigate.client",
}

__all__ = [
    "Accepted",
    "AddPaymentInfoData",
    "AppSetId",
    "AppsFlyerClient",
    "AsyncAppsFlyerClient",
    "AsyncAxonClient",
    "AsyncBatcher",
    "AsyncGatewayAdmin",
    "AxonBatch",
    "AxonClient",
    "Batcher",
    "BatcherFull",
    "BatcherStats",
    "BeginCheckoutData",
    "CapigateError",
    "ConfigError",
    "ConsentData",
    "ErrorBody",
    "EventData",
    "EventView",
    "EventsPage",
    "FailedDelivery",
    "GatewayAdmin",
    "GenerateLeadData",
    "HTTPStatusError",
    "InAppEvent",
    "InvalidEvents",
    "Item",
    "ItemsData",
    "LoginData",
    "ManualConsent",
    "MeasurementPartnerData",
    "PageViewData",
    "Prepared",
    "Problem",
    "PurchaseData",
    "RequestResult",
    "RequestView",
    "RequestsPage",
    "RetryPolicy",
    "SearchData",
    "SendInterrupted",
    "SendResult",
    "ServerEvent",
    "SignUpData",
    "StoreError",
    "SubscribeData",
    "TcfConsent",
    "TransportError",
    "UserData",
    "__version__",
    "axeid_set_cookie",
    "axeid_set_cookie_for",
    "axon_event",
    "hash_email",
    "hash_name",
    "hash_phone",
    "hash_phone_e164",
    "in_app_event",
    "read_aleid",
    "read_axwrt",
]


if not TYPE_CHECKING:  # hidden from type checkers, which would take any unknown name for Any

    def __getattr__(name: str) -> Any:
        module = _WHERE.get(name)
        if module is None:
            raise AttributeError(f"module 'capigate' has no attribute {name!r}")
        value = getattr(import_module(module), name)
        globals()[name] = value  # once: later look-ups skip this function
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
