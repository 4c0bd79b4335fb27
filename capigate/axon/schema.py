"""AppLovin Axon Conversions API wire types (``POST /v1/event``), defined once.

The server converts each incoming JSON object into these types to check it; the SDK builds
events from them. ``ServerEvent.data`` stays an untyped object on the wire because its shape
depends on ``name``: ``DATA_SCHEMAS`` maps each standard event name to its data type.
"""

from __future__ import annotations

import functools
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from capigate.checked_structs import CheckedStruct as Struct
from capigate.epoch import MAX_EPOCH_MILLIS

__all__ = [
    "ACCOUNTING_MODES",
    "ATTRIBUTION_MODELS",
    "DATA_SCHEMAS",
    "IDENTIFIER_FIELDS",
    "MAX_EPOCH_MILLIS",
    "MAX_EXACT_INT",
    "MAX_ID_CHARS",
    "MAX_URL_CHARS",
    "OS_VALUES",
    "PAYMENT_TYPES",
    "AddPaymentInfoData",
    "AxonBatch",
    "BeginCheckoutData",
    "GenerateLeadData",
    "Item",
    "ItemsData",
    "LoginData",
    "MeasurementPartnerData",
    "PageViewData",
    "PurchaseData",
    "SearchData",
    "ServerEvent",
    "SignUpData",
    "SubscribeData",
    "UserData",
]

# The largest integer a JSON number carries exactly to every client (2**53 - 1).
MAX_EXACT_INT = 9_007_199_254_740_991
EpochMillis = Annotated[int, Meta(ge=0, le=MAX_EPOCH_MILLIS, description="Unix epoch time in milliseconds")]
Currency = Annotated[str, Meta(pattern="^[A-Za-z]{3}$", description="ISO 4217 code")]
Money = float
NonNegativeMoney = Annotated[float, Meta(ge=0)]
Quantity = Annotated[int, Meta(ge=0, le=MAX_EXACT_INT)]
NonEmpty = Annotated[str, Meta(min_length=1)]
# The longest id (an event's dedupe_id and transaction_id, a user's ids, an item's, a coupon, a
# campaign's) and URL an event may hold: capigate's bounds, as AppLovin documents none. Longer,
# the event is refused (invalid_length at its path), by the typed path and the slow path alike:
# both read these types. A 500,000-character dedupe_id was stored and indexed, and relayed;
# on PostgreSQL an id past 2,704 bytes fails the index of dedupe keys (a 503, retried for ever).
# 512 characters hold any order id, UUID or click id (the SDK's cookies take one that long);
# 8,192 a page's whole URL, the longest request line the usual web servers take (nginx, Apache,
# CloudFront: 8 KB).
MAX_ID_CHARS = 512
MAX_URL_CHARS = 8192
Id = Annotated[str, Meta(max_length=MAX_ID_CHARS, description="an id, at most 512 characters")]
NonEmptyId = Annotated[str, Meta(min_length=1, max_length=MAX_ID_CHARS, description="an id, 1 to 512 characters")]
Url = Annotated[str, Meta(max_length=MAX_URL_CHARS, description="a URL, at most 8,192 characters")]

OS_VALUES = frozenset({"ios", "android", "desktop_os"})
PAYMENT_TYPES = ("credit_card", "deferred", "redeemable", "payment_on_delivery", "wallet", "other")
ACCOUNTING_MODES = ("CASH", "ACCRUAL")
ATTRIBUTION_MODELS = (
    "LAST_CLICK",
    "FIRST_CLICK",
    "LINEAR",
    "TIME_DECAY",
    "CUSTOM_MULTI_TOUCH",
    "LAST_NON_DIRECT_TOUCH",
    "CLICKS_AND_VIEWS_ENHANCED",
    "ANY_CLICK",
)
IDENTIFIER_FIELDS = ("aleid", "axwrt", "alart", "client_id", "user_id", "email", "phone")

PaymentType = Literal["credit_card", "deferred", "redeemable", "payment_on_delivery", "wallet", "other"]
AccountingMode = Literal["CASH", "ACCRUAL"]
AttributionModel = Literal[
    "LAST_CLICK",
    "FIRST_CLICK",
    "LINEAR",
    "TIME_DECAY",
    "CUSTOM_MULTI_TOUCH",
    "LAST_NON_DIRECT_TOUCH",
    "CLICKS_AND_VIEWS_ENHANCED",
    "ANY_CLICK",
]


class Item(Struct, kw_only=True, omit_defaults=True):
    item_id: NonEmptyId
    item_name: str | None = None
    item_variant_id: Id | None = None
    price: Money | None = None
    image_url: Url | None = None
    item_category_id: Annotated[int, Meta(ge=0, le=MAX_EXACT_INT)] | Id | None = None
    quantity: Quantity | None = None
    affiliation: str | None = None
    discount: Money | None = None
    item_brand: str | None = None
    item_category: str | None = None
    item_category2: str | None = None
    item_category3: str | None = None
    item_category4: str | None = None
    item_category5: str | None = None


class EventData(Struct, kw_only=True, omit_defaults=True):
    """Base of every event's ``data`` object."""


class PageViewData(EventData, kw_only=True, omit_defaults=True):
    user_id: Id | None = None


class ItemsData(EventData, kw_only=True, omit_defaults=True):
    """``view_item``, ``add_to_cart``, ``remove_from_cart``, ``view_cart``."""

    items: list[Item]
    currency: Currency | None = None
    value: Money | None = None


class BeginCheckoutData(EventData, kw_only=True, omit_defaults=True):
    items: list[Item]
    currency: Currency
    value: Money
    user_id: Id | None = None


class AddPaymentInfoData(EventData, kw_only=True, omit_defaults=True):
    currency: Currency | None = None
    items: list[Item] | None = None
    payment_type: PaymentType | None = None
    value: Money | None = None
    coupon: Id | None = None


class PurchaseData(EventData, kw_only=True, omit_defaults=True):
    currency: Currency
    items: list[Item]
    transaction_id: NonEmptyId
    value: Money
    shipping: Money | None = None
    tax: Money | None = None
    user_id: Id | None = None


class GenerateLeadData(EventData, kw_only=True, omit_defaults=True):
    currency: Currency
    value: NonNegativeMoney


class SearchData(EventData, kw_only=True, omit_defaults=True):
    search_term: str | None = None
    results: list[Item] | None = None


class SignUpData(EventData, kw_only=True, omit_defaults=True):
    method: str | None = None


class LoginData(EventData, kw_only=True, omit_defaults=True):
    pass


class SubscribeData(EventData, kw_only=True, omit_defaults=True):
    currency: Currency | None = None
    value: Money | None = None


# None: the event carries no data object (``data: null``); page_view may do either.
DATA_SCHEMAS: dict[str, type[EventData] | None] = {
    "page_view": PageViewData,
    "view_item": ItemsData,
    "add_to_cart": ItemsData,
    "remove_from_cart": ItemsData,
    "view_cart": ItemsData,
    "begin_checkout": BeginCheckoutData,
    "add_payment_info": AddPaymentInfoData,
    "purchase": PurchaseData,
    "generate_lead": GenerateLeadData,
    "search": SearchData,
    "sign_up": SignUpData,
    "login": LoginData,
    "subscribe": SubscribeData,
    "app_open": None,
}


class UserData(Struct, kw_only=True, omit_defaults=True):
    client_ip_address: NonEmpty
    client_user_agent: NonEmpty
    esi: Literal["web", "app"]
    aleid: Id | None = None
    axwrt: Id | None = None
    alart: Id | None = None
    client_id: Id | None = None
    user_id: Id | None = None
    email: str | None = None
    phone: str | None = None
    country_code: str | None = None
    zip: str | None = None
    sid: Id | None = None
    ifa: Id | None = None
    idfv: Id | None = None
    os: str | None = None


class MeasurementPartnerData(Struct, kw_only=True, omit_defaults=True):
    accounting_mode: AccountingMode
    attribution_model: AttributionModel
    attribution_share: Annotated[float, Meta(ge=0, le=1)]
    is_claimable: bool
    attribution_lookback_window_hours: Annotated[float, Meta(ge=0)] | None = None
    campaign_id: Id | None = None
    creative_set_id: Id | None = None
    first_purchase_ts: EpochMillis | None = None
    first_visit_ts: EpochMillis | None = None
    is_new_customer: bool | None = None
    is_new_visitor: bool | None = None
    last_purchase_ts: EpochMillis | None = None
    last_visit_ts: EpochMillis | None = None


class ServerEvent(Struct, kw_only=True, omit_defaults=True):
    name: NonEmpty
    event_time: EpochMillis
    event_source_url: Annotated[
        str, Meta(min_length=1, max_length=MAX_URL_CHARS, description="a URL, 1 to 8,192 characters")
    ]
    user_data: UserData
    # Required but nullable (page_view and app_open send ``"data": null``). Its type depends
    # on ``name`` (see DATA_SCHEMAS): an EventData struct when built, a JSON object on the wire.
    data: Any
    dedupe_id: Id | None = None
    measurement_partner_data: MeasurementPartnerData | None = None


class AxonBatch(Struct, kw_only=True):
    events: Annotated[list[ServerEvent], Meta(min_length=1, max_length=100)]


@functools.cache
def field_names(kind: type[Struct]) -> frozenset[str]:
    return frozenset(f.encode_name for f in msgspec.structs.fields(kind))
