"""What ``capigate serve`` prints at start, and ``capigate curl``: a ready-to-paste request per
source, whose body is a current, complete event that the gateway takes without a warning.

A key is a secret, and the banner goes to the same stream as the logs (often a log store):
the keys are shown only by the start that generated them (writing a new configuration), and
only when that stream is an interactive terminal, which keeps nothing; written to a file, a
pipe or a log collector, and at every later start, they are masked, and the banner names
``capigate curl <source>``, which prints one on demand.
The spec's example, with its 2025 ``event_time``, is in ``capigate/examples/`` (its ``os``,
phone and ``last_visit_ts`` made ones the gateway takes); the banner's body is that example
brought up to date, its email and phone sent as their SHA-256, as the gateway would store them:
the logs hold no personal data (log scanners flagged the plain ones), and the gateway takes a
hash as it is.
"""

from __future__ import annotations

import json
import shlex
import time
import uuid
from importlib import resources
from typing import Any
from urllib.parse import quote

from capigate.config import AppsFlyerApp, AxonPixel, Config
from capigate.identity import hash_email, hash_phone

__all__ = ["MASK", "banner_lines", "curl_command", "demo_body"]

MASK = "********"
TEST_HEADER = "X-Capigate-Test"
DEMO_TAG = "demo"

# The spec's example for each Axon profile: one that the profile accepts.
_AXON_EXAMPLE = {
    "standard": "axon_purchase.json",
    "lead_gen": "lead_gen_generate_lead.json",
    "lead_gen_restricted": "restricted_generate_lead.json",
}
_DAY_MS = 86_400_000


def _example(name: str) -> Any:
    return json.loads(resources.files("capigate.examples").joinpath(name).read_text(encoding="utf-8"))


def demo_body(source: AxonPixel | AppsFlyerApp, now_ms: int | None = None) -> dict[str, Any]:
    """The example for ``source``, made current: sent now, with a dedupe id of its own, its
    email and phone as their SHA-256 (the file's other fields are ones the gateway takes
    without a warning: tests/test_examples.py)."""
    now_ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    if isinstance(source, AppsFlyerApp):
        return _appsflyer_body(source)
    body: dict[str, Any] = _example(_AXON_EXAMPLE[source.profile])
    for event in body["events"]:
        event["event_time"] = now_ms
        event["dedupe_id"] = f"demo-{uuid.uuid4()}"
        user = event.get("user_data", {})
        if "email" in user:
            user["email"] = hash_email(user["email"])
        if "phone" in user:
            user["phone"] = hash_phone(user["phone"])
        partner = event.get("measurement_partner_data", {})
        if "last_visit_ts" in partner:
            partner["last_visit_ts"] = now_ms - _DAY_MS  # a day before this event, as the file's is before its own
    return body


def _appsflyer_body(app: AppsFlyerApp) -> dict[str, Any]:
    body: dict[str, Any] = _example("appsflyer_purchase.json")
    if app.dedupe_key:
        value = json.loads(body["eventValue"])
        value[app.dedupe_key] = f"demo-{uuid.uuid4()}"
        body["eventValue"] = json.dumps(value, separators=(",", ":"))
    return body


def _demo_heading(source: AxonPixel | AppsFlyerApp) -> str:
    """What the banner says above a source's curl: the event it sends, and which of its
    identifiers go hashed."""
    if isinstance(source, AppsFlyerApp):
        return f"app {source.app_id}, {_a(_example('appsflyer_purchase.json')['eventName'])}"
    event = _example(_AXON_EXAMPLE[source.profile])["events"][0]
    heading = f"pixel {source.pixel_id}, {_a(event['name'])}"
    hashed = [key for key in ("email", "phone") if key in event.get("user_data", {})]
    if not hashed:
        return heading
    its = "their" if len(hashed) > 1 else "its"
    return f"{heading} ({' and '.join(hashed)} as {its} SHA-256, as stored: this banner is kept with the logs)"


def _a(name: str) -> str:
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def curl_command(config: Config, source_id: str, base: str, *, reveal: bool = True) -> str | None:
    """A curl that sends the demo event of one source to the gateway at ``base``; None when
    no pixel or app has that id. ``reveal=False`` writes the key as ``MASK``. The id is
    percent-encoded in the URL, though the configuration refuses one that would need it."""
    source: AxonPixel | AppsFlyerApp | None = config.pixel(source_id)
    if isinstance(source, AxonPixel):
        url = f"{base}/v1/event?pixel_id={quote(source.pixel_id, safe='')}"
        header = "Authorization: " + (source.api_key if reveal else MASK)
    else:
        source = config.app(source_id)
        if source is None:
            return None
        url = f"{base}/inappevent/{quote(source.app_id, safe='')}"
        header = "authentication: " + (source.keys[0] if reveal else MASK)
    body = json.dumps(demo_body(source), separators=(",", ":"), ensure_ascii=False)
    # A relayed source's demo is a test event: pasted on a production node, a real one went
    # upstream as a $30 purchase (a trial).
    test = f" -H '{TEST_HEADER}: {DEMO_TAG}'" if source.relay is not None and source.relay.enabled else ""
    return (
        f"curl -sS -X POST {shlex.quote(url)} -H {shlex.quote(header)} -H 'Content-Type: application/json'{test} "
        f"-d {shlex.quote(body)}"
    )


def banner_lines(
    config: Config, base: str, *, reveal: bool, curl_options: str = "", written: bool = False
) -> list[str]:
    """The banner's demo section: a curl for the first pixel and the first app.
    ``curl_options``: what ``capigate curl`` needs to find this server (``--config``, ``--port``);
    ``written``: this start wrote the keys (masked all the same, its output being no terminal)."""
    firsts = [p.pixel_id for p in config.axon.pixels[:1]] + [a.app_id for a in config.appsflyer.apps[:1]]
    if not firsts:
        return []
    lines = ["Send a demo event (current and complete: the gateway stores it with no warning):"]
    sources: list[AxonPixel | AppsFlyerApp] = [*config.axon.pixels[:1], *config.appsflyer.apps[:1]]
    for source, source_id in zip(sources, firsts, strict=True):
        lines.append(f"  {_demo_heading(source)}:")
        lines.append(f"    {curl_command(config, source_id, base, reveal=reveal)}")
    if not reveal:
        command = " ".join(["capigate curl", shlex.quote(firsts[0]), *([curl_options] if curl_options else [])])
        why = " (this output is no terminal: a file or a log may keep it)" if written else ""
        lines.append(f"Keys are masked{why}: `{command}` prints a source's curl with its key.")
    return lines
