"""The three Axon profiles a pixel can be configured with, as data (see NOTES.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from capigate.axon.schema import DATA_SCHEMAS, IDENTIFIER_FIELDS

__all__ = ["PROFILES", "Profile", "ProfileName"]

ProfileName = Literal["standard", "lead_gen", "lead_gen_restricted"]


@dataclass(frozen=True, slots=True)
class Profile:
    name: ProfileName
    events: frozenset[str]
    null_data_events: frozenset[str]  # events whose data must be null
    strict_keys: bool  # unknown keys are errors (else kept, with a warning)
    identifiers: tuple[str, ...]  # at least one of these in user_data
    user_fields: frozenset[str] | None = None  # None: every UserData field allowed
    numeric_user_id: bool = False
    origin_only_url: bool = False
    measurement_partner_data: bool = True
    dedupe_id_expected: bool = False


PROFILES: dict[str, Profile] = {
    "standard": Profile(
        name="standard",
        events=frozenset(DATA_SCHEMAS),
        null_data_events=frozenset({"app_open"}),
        strict_keys=False,
        identifiers=IDENTIFIER_FIELDS,
        dedupe_id_expected=True,
    ),
    "lead_gen": Profile(
        name="lead_gen",
        events=frozenset({"page_view", "generate_lead", "app_open"}),
        null_data_events=frozenset({"page_view", "app_open"}),
        strict_keys=False,
        identifiers=IDENTIFIER_FIELDS,
    ),
    "lead_gen_restricted": Profile(
        name="lead_gen_restricted",
        events=frozenset({"page_view", "generate_lead"}),
        null_data_events=frozenset({"page_view"}),
        strict_keys=True,
        identifiers=("client_id", "alart", "user_id"),
        user_fields=frozenset(
            {"aleid", "alart", "esi", "client_id", "client_ip_address", "client_user_agent", "user_id"}
        ),
        numeric_user_id=True,
        origin_only_url=True,
        measurement_partner_data=False,
    ),
}
