"""AppsFlyer S2S in-app event wire type (``POST /inappevent/{app_id}``), defined once.

``InAppEvent`` holds every documented body field under its wire name (the API mixes
``snake_case`` and ``camelCase``), with the constraints msgspec can check itself. What it
cannot express lives in ``capigate.appsflyer.rules``: ``eventValue`` and ``custom_data`` are
*stringified* JSON objects, currencies must exist, times must be real, hashes must be hashes.

Every Struct here forbids unknown fields, so a typed decode of a body that carries one fails
and the rules take their slower, field-by-field path, where unknown keys are kept and warned
about rather than refused.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from capigate.checked_structs import CheckedStruct as Struct
from capigate.iso import CURRENCY_CODES

__all__ = [
    "ANDROID_ONLY_FIELDS",
    "APPSFLYER_ID_MISSING",
    "BAD_REQUEST",
    "CURRENCIES",
    "FAILED_TO_AUTHENTICATE",
    "FORBIDDEN",
    "HASHED_FIELDS",
    "INTERNAL_SERVER_ERROR",
    "IN_APP_EVENT_FIELDS",
    "IOS_ONLY_FIELDS",
    "MAX_BODY_BYTES",
    "OK",
    "PARSE_FAILED",
    "RESERVED_EVENT_NAMES",
    "RESERVED_EVENT_VALUE_KEYS",
    "UNAUTHORIZED",
    "WITHDRAWN_CURRENCIES",
    "AppSetId",
    "ConsentData",
    "InAppEvent",
    "ManualConsent",
    "TcfConsent",
    "format_event_time",
    "ios_prefix_missing",
    "parse_event_time",
]

# Response bodies (plain text), exactly as AppsFlyer sends them.
OK = "OK"
UNAUTHORIZED = "Unauthorized"  # 401
FAILED_TO_AUTHENTICATE = "Failed to Authenticate"  # 400
PARSE_FAILED = "Payload is missing or failed to parse"  # 400
APPSFLYER_ID_MISSING = "appsflyer_id is a mandatory field"  # 400
BAD_REQUEST = "Bad request"  # 400
FORBIDDEN = "Forbidden"  # 403
INTERNAL_SERVER_ERROR = "Internal Server Error"  # 500

MAX_BODY_BYTES = 1024  # "JSON payload size: up to 1KB", counted in bytes

# eventCurrency and af_currency: ISO 4217, plus the codes withdrawn from it that AppsFlyer's
# published eventCurrency list still holds (accepted with a warning).
CURRENCIES = CURRENCY_CODES
WITHDRAWN_CURRENCIES = frozenset({"ANG", "BGN", "CUC", "HRK", "SLL", "ZWL"}) - CURRENCIES

_UUID = r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"

AppsFlyerId = Annotated[
    str, Meta(pattern=r"^\d{13}-\d+$", description="13 digits, '-', digits (1234567890123-1234567)")
]
NonEmpty = Annotated[str, Meta(min_length=1)]
Currency = Annotated[str, Meta(pattern="^[A-Za-z]{3}$", description="ISO 4217 code")]
EventTime = Annotated[
    str,
    Meta(
        pattern=r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d{3})?$",
        description="yyyy-MM-dd HH:mm:ss.SSS, in UTC (the milliseconds may be left out)",
    ),
]
IPv4 = Annotated[str, Meta(max_length=16, description="IPv4 address")]
Uuid = Annotated[str, Meta(pattern=f"^{_UUID}$", description="a UUID (8-4-4-4-12 hex digits)")]
# OAID is a UUID on Huawei devices but 16 or 64 hex digits on other vendors' (MSA SDK).
Oaid = Annotated[str, Meta(pattern=f"^(?:{_UUID}|[0-9A-Fa-f]{{16,64}})$", description="a UUID, or 16 to 64 hex digits")]
AttStatus = Annotated[int, Meta(ge=0, le=3, description="ATTrackingManager status")]
NumericString = Annotated[str, Meta(pattern=r"^\d+$", description="digits only")]
SharingFilter = Literal["all"] | Annotated[list[NonEmpty], Meta(min_length=1)]
# A stringified JSON object ("" for none); an object sent as-is is accepted with a warning.
StringifiedObject = str | dict[str, Any]


class TcfConsent(Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    """IAB TCF v2 values read from the device (``IABTCF_*`` keys)."""

    policy_version: int | None = None
    gdpr_applies: Literal[-1, 0, 1] | None = None
    cmp_sdk_id: int | None = None
    cmp_sdk_version: int | None = None
    tcstring: str | None = None


class ManualConsent(Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    gdpr_applies: bool | None = None
    ad_user_data_enabled: bool | None = None
    ad_personalization_enabled: bool | None = None


class ConsentData(Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    """Exactly one of ``tcf`` and ``manual`` (checked by the rules)."""

    tcf: TcfConsent | None = None
    manual: ManualConsent | None = None


class AppSetId(Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    scope: Literal[1, 2]  # 1 = app, 2 = developer
    id: Uuid


class InAppEvent(Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    """One S2S in-app event. Field names are the wire names."""

    appsflyer_id: AppsFlyerId
    eventName: NonEmpty
    eventValue: StringifiedObject
    customer_user_id: str | None = None
    eventCurrency: Currency | None = None
    eventTime: EventTime | None = None
    ip: IPv4 | None = None
    # Android
    advertising_id: Uuid | None = None
    oaid: Oaid | None = None
    amazon_aid: str | None = None
    imei: str | None = None
    app_set_id: AppSetId | None = None
    # iOS (IDFA and IDFV are upper-case UUIDs; the rules upper-case them with a warning)
    idfa: Uuid | None = None
    idfv: Uuid | None = None
    att: AttStatus | None = None
    # Device and app
    aie: bool | None = None
    os: str | None = None
    app_version_name: str | None = None
    app_store: str | None = None
    bundleIdentifier: str | None = None
    ua: str | None = None
    app_type: Literal["", "app_clip"] | None = None
    # Sharing, consent, custom data
    sharing_filter: SharingFilter | None = None
    custom_data: StringifiedObject | None = None
    custom_dimension: str | None = None
    consent_data: ConsentData | None = None
    # Identity (SHA-256 hex; plain values are normalised and hashed by the rules)
    fb_login_id: NumericString | None = None
    email_hashed: str | None = None
    phone_number_hashed: str | None = None
    phone_number_e164_hashed: str | None = None
    first_name_hashed: str | None = None
    last_name_hashed: str | None = None


IN_APP_EVENT_FIELDS = frozenset(f.encode_name for f in msgspec.structs.fields(InAppEvent))
HASHED_FIELDS = (
    "email_hashed",
    "phone_number_hashed",
    "phone_number_e164_hashed",
    "first_name_hashed",
    "last_name_hashed",
)
IOS_ONLY_FIELDS = ("idfa", "idfv", "att")
ANDROID_ONLY_FIELDS = ("advertising_id", "oaid", "imei", "amazon_aid", "app_set_id")

# Predefined event names and eventValue parameters of the AppsFlyer SDKs (AFInAppEventType,
# AFInAppEventParameterName). A custom name should not start with ``af_``.
RESERVED_EVENT_NAMES = frozenset(
    {
        "af_achievement_unlocked",
        "af_ad_click",
        "af_ad_view",
        "af_add_payment_info",
        "af_add_to_cart",
        "af_add_to_wishlist",
        "af_complete_registration",
        "af_content_view",
        "af_customer_segment",
        "af_initiated_checkout",
        "af_invite",
        "af_level_achieved",
        "af_list_view",
        "af_location_changed",
        "af_location_coordinates",
        "af_login",
        "af_opened_from_push_notification",
        "af_purchase",
        "af_rate",
        "af_re_engage",
        "af_search",
        "af_share",
        "af_spent_credits",
        "af_start_trial",
        "af_subscribe",
        "af_travel_booking",
        "af_tutorial_completion",
        "af_update",
    }
)
RESERVED_EVENT_VALUE_KEYS = frozenset(
    {
        "af_achievement_id",
        "af_adrev_ad_size",
        "af_adrev_ad_type",
        "af_adrev_mediated_network_name",
        "af_adrev_network_name",
        "af_adrev_placement_id",
        "af_channel",
        "af_city",
        "af_class",
        "af_content",
        "af_content_id",
        "af_content_list",
        "af_content_type",
        "af_country",
        "af_coupon_code",
        "af_currency",
        "af_customer_user_id",
        "af_date_a",
        "af_date_b",
        "af_deep_link",
        "af_departing_arrival_date",
        "af_departing_departure_date",
        "af_description",
        "af_destination_a",
        "af_destination_b",
        "af_destination_list",
        "af_event_end",
        "af_event_start",
        "af_hotel_score",
        "af_lat",
        "af_level",
        "af_long",
        "af_max_rating_value",
        "af_new_version",
        "af_num_adults",
        "af_num_children",
        "af_num_infants",
        "af_old_version",
        "af_order_id",
        *(f"af_param_{i}" for i in range(1, 11)),
        "af_payment_info_available",
        "af_preferred_neighborhoods",
        "af_preferred_num_stops",
        "af_preferred_price_range",
        "af_preferred_star_ratings",
        "af_price",
        "af_projected_revenue",
        "af_purchase_currency",
        "af_quantity",
        "af_rating_value",
        "af_receipt_id",
        "af_region",
        "af_registration_method",
        "af_returning_arrival_date",
        "af_returning_departure_date",
        "af_revenue",
        "af_review_text",
        "af_score",
        "af_search_string",
        "af_success",
        "af_suggested_destinations",
        "af_suggested_hotels",
        "af_travel_end",
        "af_travel_start",
        "af_tutorial_id",
        "af_user_score",
        "af_validated",
        "af_virtual_currency_name",
    }
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_ORDINAL = _EPOCH.toordinal()


def parse_event_time(text: str) -> int:
    """Unix epoch ms of ``yyyy-mm-dd hh:mm:ss[.sss]`` read as UTC; ValueError if not a time."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is not None:
        raise ValueError("eventTime carries no time zone: it is UTC")
    days = moment.toordinal() - _EPOCH_ORDINAL  # 4x faster than datetime arithmetic
    seconds = ((days * 24 + moment.hour) * 60 + moment.minute) * 60 + moment.second
    return seconds * 1000 + moment.microsecond // 1000


def format_event_time(epoch_ms: int) -> str:
    """``yyyy-mm-dd hh:mm:ss.sss`` (UTC) of a Unix epoch time in milliseconds."""
    moment = _EPOCH + timedelta(milliseconds=epoch_ms)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def ios_prefix_missing(app_id: str) -> str | None:
    """Why ``app_id`` cannot be right, if it is an iOS app id without its ``id`` prefix."""
    if not (app_id.isascii() and app_id.isdigit()):
        return None
    return (
        f"{app_id!r} looks like an iOS app id without its 'id' prefix (id{app_id}): AppsFlyer answers "
        f"200 OK to /inappevent/{app_id} and records nothing"
    )
