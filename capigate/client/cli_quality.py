"""``capigate quality``: will a running gateway's events match? The figures of ``GET /api/quality``
(identifier coverage, dedupe health, a verdict with its reasons) per source and event name."""

from __future__ import annotations

import time
from pathlib import Path

import click
import msgspec
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from capigate.client.cli_gateway import _admin_options, _gateway, _when, checked_time, read_failed, unknown_source
from capigate.errors import CapigateError
from capigate.http.params import time_value
from capigate.inspector.quality import percent
from capigate.logs import escape_control
from capigate.responses import QualityGroup, QualityReport

__all__ = ["quality"]

_encode = msgspec.json.Encoder().encode


@click.command()
@_admin_options
@click.option("--source", help="Pixel or app id (default: all).")
@click.option("--name", help="Event name (default: all).")
@click.option("--since", callback=checked_time, help="Epoch ms or ISO 8601 time (default: 24 hours ago).")
@click.option("--until", callback=checked_time, help="Epoch ms or ISO 8601 time (default: now).")
@click.option("--json", "as_json", is_flag=True, help="The report as JSON, as the API gives it.")
def quality(
    base_url: str | None,
    host: str | None,
    port: int | None,
    token: str | None,
    config_path: Path,
    source: str | None,
    name: str | None,
    since: str | None,
    until: str | None,
    as_json: bool,
) -> None:
    """Will the events match? Coverage of each match key, dedupe health and a verdict."""
    from capigate.client.admin import GatewayAdmin

    url, admin_token = _gateway(base_url, token, config_path, host, port)
    asked_at = time.time_ns() // 1_000_000
    try:
        with GatewayAdmin(url, admin_token) as admin:
            report = admin.quality(source=source, name=name, since=since, until=until)
            unknown = None if report.groups else unknown_source(admin, source, config_path, url)
    except CapigateError as exc:
        raise click.ClickException(read_failed(exc, url, config_path)) from None
    if as_json:
        click.echo(_encode(report).decode())
    else:
        _print(report, _widened(report, since, until, asked_at))
    if unknown is not None:
        click.echo(f"capigate quality: {unknown}", err=True)


def _widened(report: QualityReport, since: str | None, until: str | None, now_ms: int) -> str:
    """What the window's line adds when the gateway widened the window asked to the whole
    hours (days, for two days or more) its figures are kept in: a default "last 24 hours"
    read 25 hours, unsaid (a trial). Empty when the window is the one asked."""
    asked_until = now_ms if until is None else time_value(until)
    asked_since = (
        None if asked_until is None else asked_until - _DEFAULT_WINDOW_MS if since is None else time_value(since)
    )
    if (asked_since, asked_until) == (report.since, report.until):
        return ""
    what = "the last 24 hours" if since is None and until is None else "the window asked"
    unit = "day" if report.until - report.since >= 2 * _DAY_MS and report.since % _DAY_MS == 0 else "hour"
    return f": {what}, widened to whole {unit}s (the figures are kept per {unit})"


_DEFAULT_WINDOW_MS = 86_400_000  # the gateway's default (inspector/endpoints.py)
_DAY_MS = 86_400_000


def _print(report: QualityReport, widened: str = "") -> None:
    console = Console(highlight=False, soft_wrap=True)
    console.print(f"from {_when(report.since)} to {_when(report.until)} UTC{widened}", markup=False)
    if not report.groups:
        console.print("no accepted events in this window")
    for group in report.groups:
        _print_group(console, group)


def _print_group(console: Console, g: QualityGroup) -> None:
    console.print()
    console.print(
        f"[bold]{escape(escape_control(g.source))} · {escape(escape_control(g.name))}[/bold]: {g.verdict.upper()}  "
        f"{g.events} event{'' if g.events == 1 else 's'}, {percent(g.with_dedupe_id)} with a dedupe_id, {g.duplicates} duplicate{'' if g.duplicates == 1 else 's'} caught"
    )
    for reason in g.reasons:
        console.print(f"  - {reason.level}: {escape_control(reason.text)} [{reason.rule}]", markup=False)
    table = Table("match key", "carried by", "as sent", "hashed here", "already hashed", "missing")
    for c in g.coverage:
        table.add_row(c.key, percent(c.share), str(c.sent), str(c.hashed_here), str(c.already_hashed), str(c.missing))
    console.print(table)
