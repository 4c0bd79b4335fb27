"""``capigate quality``: will a running gateway's events match? The figures of ``GET /api/quality``
(identifier coverage, dedupe health, a verdict with its reasons) per source and event name."""

from __future__ import annotations

from pathlib import Path

import click
import msgspec
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from capigate.client.cli_gateway import _config_option, _gateway, _when, read_failed
from capigate.errors import CapigateError
from capigate.responses import QualityGroup, QualityReport

__all__ = ["quality"]

_encode = msgspec.json.Encoder().encode


@click.command()
@click.option("--url", "base_url", envvar="CAPIGATE_URL", help="The gateway [default: the configuration's].")
@click.option("--token", envvar="CAPIGATE_ADMIN_TOKEN", help="Admin token [default: the configuration's].")
@_config_option("The gateway's configuration (its address and admin token).")
@click.option("--source", help="Pixel or app id (default: all).")
@click.option("--name", help="Event name (default: all).")
@click.option("--since", help="Epoch ms or ISO 8601 time (default: 24 hours ago).")
@click.option("--until", help="Epoch ms or ISO 8601 time (default: now).")
@click.option("--json", "as_json", is_flag=True, help="The report as JSON, as the API gives it.")
def quality(
    base_url: str | None,
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

    url, admin_token = _gateway(base_url, token, config_path)
    try:
        with GatewayAdmin(url, admin_token) as admin:
            report = admin.quality(source=source, name=name, since=since, until=until)
    except CapigateError as exc:
        raise click.ClickException(read_failed(exc, url, config_path)) from None
    if as_json:
        click.echo(_encode(report).decode())
        return
    _print(report)


def _print(report: QualityReport) -> None:
    console = Console(highlight=False, soft_wrap=True)
    console.print(f"from {_when(report.since)} to {_when(report.until)} UTC")
    if not report.groups:
        console.print("no accepted events in this window")
    for group in report.groups:
        _print_group(console, group)


def _print_group(console: Console, g: QualityGroup) -> None:
    console.print()
    console.print(
        f"[bold]{escape(g.source)} · {escape(g.name)}[/bold]: {g.verdict.upper()}  "
        f"{g.events} events, {round(g.with_dedupe_id * 100)} % with a dedupe_id, {g.duplicates} duplicates caught"
    )
    for reason in g.reasons:
        console.print(f"  - {reason.level}: {reason.text} [{reason.rule}]", markup=False)
    table = Table("match key", "carried by", "as sent", "hashed here", "already hashed", "missing")
    for c in g.coverage:
        table.add_row(
            c.key, f"{round(c.share * 100)} %", str(c.sent), str(c.hashed_here), str(c.already_hashed), str(c.missing)
        )
    console.print(table)
