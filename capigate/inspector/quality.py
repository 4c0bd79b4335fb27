"""Will it match? Identifier coverage, dedupe health and a verdict per source and event name,
from the match-key rollup (``Store.query_quality``; capigate/matchkeys.py packs the keys).

The rules are written down in docs/quality.md, each under the name ``Reason.rule`` gives; a
test names the rule it checks. A rule that fires gives a reason at its level; the verdict is
the worst level given ("note" does not count), "good" when none fires.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from capigate.matchkeys import DEDUPE_BIT, keys_of
from capigate.responses import KeyCoverage, QualityGroup, QualityReport, Reason
from capigate.store.base import QualityRow

__all__ = ["DAY_MS", "HOUR_MS", "RULES", "Rule", "percent", "quality_report", "report_window"]

HOUR_MS: Final = 3_600_000
DAY_MS: Final = 86_400_000


def report_window(since_ms: int, until_ms: int) -> tuple[int, int]:
    """The whole hours covering ``[since_ms, until_ms)`` (the rollup's resolution), or the
    whole UTC days when it spans two days or more (read from the daily rollup alone)."""
    unit = DAY_MS if until_ms - since_ms >= 2 * DAY_MS else HOUR_MS
    return since_ms - since_ms % unit, -(-until_ms // unit) * unit


@dataclass(frozen=True, slots=True)
class _Figures:
    """One group's counts, for the rules."""

    api: str
    name: str
    dedupe_key: str | None  # an AppsFlyer app's (capigate.toml), whose value is the dedupe id
    events: int
    duplicates: int
    with_dedupe_id: int
    present: dict[str, int]  # key -> stored events carrying it
    hashed_here: dict[str, int]
    any_of: Callable[[tuple[str, ...]], int]  # stored events carrying at least one of the keys

    def share(self, n: int) -> float:
        return n / self.events if self.events else 0.0


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    api: str | None  # None: both
    check: Callable[[_Figures], Reason | None]


def percent(share: float) -> str:
    """``share`` (0 to 1) as a percentage for people: whole (``37 %``), but a share that is not
    whole never reads as ``100 %`` or ``0 %``: ``99.98 %``, ``0.4 %``, and ``>99.99 %`` or
    ``<0.01 %`` past two decimals. 0.9998 with a dedupe_id read "100 %" while the JSON said
    0.9998 (a trial). Rounded half up by arithmetic, as the inspector's ``pct`` rounds (its
    ``Math.round``): both say the same of every share."""
    if share <= 0:
        return "0 %"
    if share >= 1:
        return "100 %"
    shown = share * 100
    whole = math.floor(shown + 0.5)
    if 0 < whole < 100:
        return f"{whole} %"
    for places in (1, 2):
        scale = 10**places
        n = math.floor(shown * scale + 0.5)
        if 0 < n < 100 * scale:
            return f"{n // scale}.{n % scale:0{places}d} %"
    return "<0.01 %" if shown < 50 else ">99.99 %"


def _no_click_id(f: _Figures) -> Reason | None:
    none = f.share(f.events - f.any_of(("aleid", "axwrt")))
    if none < 0.10:
        return None
    fallback = "IP+UA" if f.share(f.present["ip_ua"]) >= 0.5 else "what little else they carry"
    if f.share(f.any_of(("email", "phone", "user_id"))) >= 0.5:
        fallback += " and user identifiers (email, phone, user_id)"
    return Reason(
        rule="axon.click_id",
        level="poor" if none >= 0.5 else "fair",
        text=f"{percent(none)} of {f.name} events carry no click id (aleid/axwrt): attribution will rely on {fallback}",
    )


def _no_user_identifier(f: _Figures) -> Reason | None:
    none = f.share(f.events - f.any_of(("email", "phone")))
    if none < 0.8:
        return None
    return Reason(
        rule="axon.email_phone",
        level="fair",
        text=f"{percent(none)} of {f.name} events carry neither email nor phone: no match across devices",
    )


def _no_advertising_id(f: _Figures) -> Reason | None:
    none = f.share(f.events - f.any_of(("idfa", "advertising_id", "oaid", "amazon_aid")))
    if none < 0.5:
        return None
    return Reason(
        rule="appsflyer.advertising_id",
        level="fair",
        text=f"{percent(none)} of {f.name} events carry no advertising id (idfa, advertising_id, oaid, amazon_aid): "
        "AppsFlyer matches them by appsflyer_id alone",
    )


def _no_customer_user_id(f: _Figures) -> Reason | None:
    none = f.share(f.events - f.present["customer_user_id"])
    if none < 0.5:
        return None
    return Reason(
        rule="appsflyer.customer_user_id",
        level="fair",
        text=f"{percent(none)} of {f.name} events carry no customer_user_id: they cannot be joined to your own users",
    )


def _no_dedupe_id(f: _Figures) -> Reason | None:
    none = f.share(f.events - f.with_dedupe_id)
    if none < 0.01:
        return None
    if f.api == "appsflyer" and f.dedupe_key:  # the key is set: the events lacked its value
        what = f"had a missing or blank {f.dedupe_key} (the app's dedupe_key)"
    elif f.api == "appsflyer":  # no dedupe_id field: the app's dedupe_key names the field that is one
        what = "have no dedupe key (set the app's dedupe_key, e.g. af_order_id, in capigate.toml, and send it)"
    else:
        what = "carry no dedupe_id"
    return Reason(
        rule="dedupe_id",
        level="fair",
        text=f"{percent(none)} of {f.name} events {what}: an event sent twice is counted twice",
    )


def _duplicates(f: _Figures) -> Reason | None:
    received = f.events + f.duplicates
    share = f.duplicates / received if received else 0.0
    if share < 0.10:
        return None
    return Reason(
        rule="duplicates",
        level="fair",
        text=f"{percent(share)} of the {f.name} events received were duplicates (caught, not stored): "
        "the sender resends events",
    )


def _hashed_here(f: _Figures) -> Reason | None:
    plain = [key for key in ("email", "phone") if f.hashed_here.get(key)]
    if not plain:
        return None
    shares = ", ".join(f"{key} {percent(f.share(f.hashed_here[key]))}" for key in plain)
    return Reason(
        rule="hashed_here",
        level="note",
        text=f"sent plain and hashed by capigate ({shares}): they match, but the plain values crossed the network",
    )


RULES: Final = (
    Rule("axon.click_id", "axon", _no_click_id),
    Rule("axon.email_phone", "axon", _no_user_identifier),
    Rule("appsflyer.advertising_id", "appsflyer", _no_advertising_id),
    Rule("appsflyer.customer_user_id", "appsflyer", _no_customer_user_id),
    Rule("dedupe_id", None, _no_dedupe_id),
    Rule("duplicates", None, _duplicates),
    Rule("hashed_here", None, _hashed_here),
)
_LEVELS: Final = {"poor": 2, "fair": 1}


def quality_report(
    rows: Sequence[QualityRow], since_ms: int, until_ms: int, dedupe_keys: Mapping[str, str] | None = None
) -> QualityReport:
    """The report of the rollup rows of one window, a group per (api, source, name), busiest
    first. ``dedupe_keys``: the AppsFlyer apps' dedupe_key settings, by app id, as configured now."""
    grouped: dict[tuple[str, str, str], list[QualityRow]] = {}
    for row in rows:
        grouped.setdefault((row.api, row.source, row.name), []).append(row)
    keys = dedupe_keys or {}
    groups = [
        _group(api, source, name, members, keys.get(source) if api == "appsflyer" else None)
        for (api, source, name), members in grouped.items()
    ]
    groups.sort(key=lambda g: (g.source, -g.events, g.name))
    return QualityReport(since=since_ms, until=until_ms, groups=groups)


def _group(api: str, source: str, name: str, rows: list[QualityRow], dedupe_key: str | None) -> QualityGroup:
    keys = keys_of(api)
    events = sum(r.events for r in rows)
    counts = {key: [0, 0, 0, 0] for key in keys}  # by arrival: missing, sent, hashed here, already hashed
    for r in rows:
        mask = r.match_keys
        for position, key in enumerate(keys):
            counts[key][(mask >> (2 * position)) & 3] += r.events

    def any_of(wanted: tuple[str, ...]) -> int:
        bits = sum(3 << (2 * keys.index(k)) for k in wanted)
        return sum(r.events for r in rows if r.match_keys & bits)

    figures = _Figures(
        api=api,
        name=name,
        dedupe_key=dedupe_key,
        events=events,
        duplicates=sum(r.duplicates for r in rows),
        with_dedupe_id=sum(r.events for r in rows if r.match_keys & DEDUPE_BIT),
        present={key: events - c[0] for key, c in counts.items()},
        hashed_here={key: c[2] for key, c in counts.items()},
        any_of=any_of,
    )
    coverage = [
        KeyCoverage(
            key=key,
            share=figures.share(figures.present[key]),
            sent=c[1],
            hashed_here=c[2],
            already_hashed=c[3],
            missing=c[0],
        )
        for key, c in counts.items()
    ]
    reasons = [found for rule in RULES if rule.api in (None, api) and events and (found := rule.check(figures))]
    worst = max((_LEVELS.get(r.level, 0) for r in reasons), default=0)
    return QualityGroup(
        api=api,
        source=source,
        name=name,
        events=events,
        duplicates=figures.duplicates,
        with_dedupe_id=figures.share(figures.with_dedupe_id),
        coverage=coverage,
        verdict=("good", "fair", "poor")[worst],
        reasons=reasons,
    )
