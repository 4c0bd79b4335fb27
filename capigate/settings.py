"""Every key of capigate.toml, described once: name, type, default and help.

This table documents the Structs of ``capigate/config.py`` (their ``__doc__``), and renders
both the ``capigate.toml`` written on first start and the README's configuration block;
``tests/test_settings.py`` checks that it matches the Structs key for key, default for
default, and that the README shows what it renders.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final, Literal

__all__ = ["REQUIRED", "SECTIONS", "SETTINGS", "Setting", "render", "struct_doc"]


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Final[Any] = _Required()  # the default of a key that has none

Section = Literal["server", "store", "axon.pixels", "appsflyer.apps", "relay"]


@dataclass(frozen=True, slots=True)
class Setting:
    section: Section
    name: str
    type: Any  # the Struct field's type, without its constraints (Annotated)
    default: Any  # REQUIRED: the key must be given
    help: str  # one line; a second line (after \n) continues the comment
    example: Any = None  # shown instead of the default (required keys, and those whose default is None)


SETTINGS: Final = (
    Setting("server", "admin_token", str, REQUIRED, "guards /api/* and the inspector (at least 8 characters)", "..."),
    Setting("server", "host", str, "127.0.0.1", "the address to listen on"),
    Setting("server", "port", int, 8080, "the port to listen on (0: any free port)"),
    Setting("server", "workers", int, 1, "worker processes; one per core pays off (README, Performance)"),
    Setting(
        "server", "max_body_bytes", int, 1_048_576, "Axon body limit (>= 1024), after gzip inflation too (413 beyond)"
    ),
    Setting("server", "header_timeout_s", float, 10.0, "a request's head, or a silent connection (at most 60)"),
    Setting("server", "body_timeout_s", float, 30.0, "a request's body, once the handler asks for it"),
    Setting(
        "server",
        "idle_timeout_s",
        float,
        10.0,
        "a keep-alive connection with no new request (at most header_timeout_s)",
    ),
    Setting("server", "max_connections", int, 4096, "per worker; more wait in the listen backlog"),
    Setting("server", "log_format", Literal["plain", "json"], "plain", "plain | json; one line per request, never PII"),
    Setting("server", "log_requests", bool, True, "log one line per request"),
    Setting(
        "server",
        "trusted_proxies",
        list[str],
        [],
        'e.g. ["10.0.0.0/8"]: load balancers whose X-Forwarded-For\nnames the client',
    ),
    Setting("store", "url", str, "capigate.db", "relative to this file; or postgresql://user@host/db"),
    Setting(
        "store",
        "synchronous",
        Literal["full", "normal"],
        "full",
        "SQLite: full = durable on power loss; normal = on process crash",
    ),
    Setting(
        "store",
        "writer",
        Literal["process", "thread"],
        "process",
        "SQLite: process = the writer has a core of its own; or thread",
    ),
    Setting("store", "read_timeout_s", float, 30.0, "PostgreSQL: a read unanswered this long fails (503)"),
    Setting("store", "dedupe_retention_days", float, 30.0, "how long a dedupe_id is remembered"),
    Setting("store", "journal_retention_days", float, 7.0, "request journal: by age ..."),
    Setting("store", "journal_max_rows", int, 1_000_000, "... and by size"),
    Setting("store", "journal_buffer", int, 10_000, "journal entries held in memory while the store is away"),
    Setting(
        "store",
        "event_retention_days",
        float,
        30.0,
        "accepted events, unless still pending or dead in the relay;\ninf: for ever",
    ),
    Setting("axon.pixels", "pixel_id", str, REQUIRED, "the Axon pixel id clients send as ?pixel_id=", "px_demo"),
    Setting(
        "axon.pixels",
        "api_key",
        str,
        REQUIRED,
        "compared in constant time; Authorization: <key> or Bearer <key>",
        "...",
    ),
    Setting(
        "axon.pixels",
        "profile",
        Literal["standard", "lead_gen", "lead_gen_restricted"],
        "standard",
        "standard | lead_gen | lead_gen_restricted",
    ),
    Setting(
        "appsflyer.apps",
        "app_id",
        str,
        REQUIRED,
        'Android package name; iOS apps are "id" + digits',
        "com.example.shop",
    ),
    Setting(
        "appsflyer.apps",
        "keys",
        list[str],
        REQUIRED,
        "either authenticates (header `authentication`)",
        ["dev-key", "s2s-token"],
    ),
    Setting(
        "appsflyer.apps",
        "dedupe_key",
        Literal["af_order_id"] | None,
        None,
        "opt-in: AppsFlyer has no dedupe key; off by default",
        "af_order_id",
    ),
    Setting(
        "relay",
        "url",
        str | None,
        None,
        "default: the real API; AppsFlyer: https://api3.appsflyer.com",
        "https://b.applovin.com",
    ),
    Setting(
        "relay",
        "api_key",
        str | None,
        None,
        "the upstream key; default: the pixel's api_key (the app's first key)",
        "...",
    ),
    Setting(
        "relay",
        "api_key_env",
        str | None,
        None,
        "... or read it from this environment variable (not both)",
        "AXON_KEY",
    ),
    Setting("relay", "enabled", bool, True, "false: forward nothing, ever, of what arrives meanwhile (stored only)"),
    Setting("relay", "batch_size", int, 100, "Axon events per upstream request (1..100)"),
    Setting("relay", "concurrency", int, 4, "upstream requests in flight, for this destination only"),
    Setting("relay", "max_attempts", int, 50, "then the event goes to the dead letters ..."),
    Setting("relay", "max_age_hours", float, 72.0, "... as it does once queued this long"),
    Setting("relay", "timeout_s", float, 10.0, "one upstream request, all included"),
    Setting(
        "relay",
        "backoff_base_s",
        float,
        1.0,
        "retry delay: random in 0 .. min(backoff_max_s, base * 2^failures),",
    ),
    Setting("relay", "backoff_max_s", float, 600.0, "  never shorter than the upstream's Retry-After ..."),
    Setting(
        "relay",
        "max_retry_after_s",
        float,
        600.0,
        "... up to this: a longer Retry-After waits this long, then retries",
    ),
    Setting("relay", "poll_interval_s", float, 1.0, "look for work queued by other processes this often"),
)

# Each section's heading in the file, and what the README says of it.
SECTIONS: Final[dict[Section, tuple[str, str]]] = {
    "server": ("[server]", ""),
    "store": ("[store]", ""),
    "axon.pixels": ("[[axon.pixels]]", "one table per pixel"),
    "appsflyer.apps": ("[[appsflyer.apps]]", "one table per app"),
    "relay": (
        "[axon.pixels.relay]",
        "(or [appsflyer.apps.relay]) forward what the last [[axon.pixels]]\n(the last [[appsflyer.apps]]) above it accepts: put it under\nthat source's table; without it nothing is forwarded",
    ),
}

_COMMENT_AT = 31  # the column where comments start


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "inf" if math.isinf(value) else f"{value:g}"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def _line(code: str, help_text: str) -> list[str]:
    first, *more = help_text.split("\n")
    lines = [f"{code.ljust(_COMMENT_AT - 1)} # {first}" if first else code]
    lines += [f"{'':<{_COMMENT_AT}}#   {line}" for line in more]
    return lines


def render(values: dict[str, Any] | None = None, *, relay_table: bool = True) -> str:
    """The configuration file: every key with its help. A key with a default is written
    commented out (``# port = 8080``); a required key with ``values["section.name"]``, else its
    example. ``relay_table`` False: the relay table's heading is commented out too, so that
    nothing is forwarded until someone means it."""
    given = values or {}
    out: list[str] = []
    for section, (heading, about) in SECTIONS.items():
        out += _line(heading if section != "relay" or relay_table else f"# {heading}", about)
        for s in (s for s in SETTINGS if s.section == section):
            if s.default is REQUIRED:
                out += _line(f"{s.name} = {toml_value(given.get(f'{section}.{s.name}', s.example))}", s.help)
            else:
                shown = s.default if s.example is None else s.example
                out += _line(f"# {s.name} = {toml_value(shown)}", s.help)
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def type_name(tp: Any) -> str:
    return tp.__name__ if isinstance(tp, type) else str(tp).replace("typing.", "")


def struct_doc(summary: str, section: Section) -> str:
    """A settings Struct's docstring: its summary, then each key with type, default and help."""
    lines = [summary, "", "Keys (capigate/settings.py):", ""]
    for s in (s for s in SETTINGS if s.section == section):
        default = (
            "required"
            if s.default is REQUIRED
            else "no default"
            if s.default is None
            else f"default {toml_value(s.default)}"
        )
        lines.append(f"    {s.name}: {type_name(s.type)}, {default}. {' '.join(s.help.split())}")
    return "\n".join(lines)
