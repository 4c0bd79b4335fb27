"""The ``capigate`` command line. ``serve`` is its heart."""

from __future__ import annotations

import json
import os
import shlex
import sys
from importlib import resources
from pathlib import Path

import click

from capigate.config import Config, load_config, write_default_config
from capigate.errors import ConfigError

__all__ = ["main"]


@click.group()
@click.version_option(package_name="capigate")
def main() -> None:
    """capigate: a self-hosted conversions API gateway for AppLovin Axon and AppsFlyer."""


def _resolve_config(path: Path, *, create: bool) -> tuple[Config, bool]:
    created = False
    if create and not path.exists():
        write_default_config(path)
        created = True
    try:
        return load_config(path), created
    except ConfigError as exc:
        raise click.ClickException(f"bad configuration: {exc}") from None


def _store_url(config: Config, db: str | None) -> str:
    url = db or config.store.url
    if "://" in url and not url.startswith("sqlite:///"):
        return url
    file = Path(url.removeprefix("sqlite:///"))
    if not file.is_absolute():
        file = Path(config.path).resolve().parent / file
    return str(file)


def example_body(name: str) -> str:
    return resources.files("capigate.examples").joinpath(name).read_text(encoding="utf-8")


def _curls(config: Config, base: str) -> list[str]:
    lines = []
    for pixel in config.axon.pixels[:1]:
        body = json.dumps(json.loads(example_body("axon_purchase.json")), separators=(",", ":"))
        lines.append(
            f"curl -sS -X POST '{base}/v1/event?pixel_id={pixel.pixel_id}' "
            f"-H {shlex.quote('Authorization: ' + pixel.api_key)} -H 'Content-Type: application/json' "
            f"-d {shlex.quote(body)}"
        )
    for app in config.appsflyer.apps[:1]:
        body = json.dumps(json.loads(example_body("appsflyer_purchase.json")), separators=(",", ":"))
        lines.append(
            f"curl -sS -X POST '{base}/inappevent/{app.app_id}' "
            f"-H {shlex.quote('authentication: ' + app.keys[0])} -H 'Content-Type: application/json' "
            f"-d {shlex.quote(body)}"
        )
    return lines


@main.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default="capigate.toml",
    envvar="CAPIGATE_CONFIG",
    show_default=True,
    help="TOML configuration; created if missing.",
)
@click.option("--db", envvar="CAPIGATE_DB", help="SQLite file or postgresql:// URL (default: [store] url).")
@click.option("--host", envvar="CAPIGATE_HOST", help="Address to listen on (default: [server] host).")
@click.option("--port", envvar="CAPIGATE_PORT", type=int, help="Port (default: [server] port).")
@click.option("--workers", envvar="CAPIGATE_WORKERS", type=int, help="Worker processes (default: [server] workers).")
def serve(config_path: Path, db: str | None, host: str | None, port: int | None, workers: int | None) -> None:
    """Start the gateway (creates capigate.toml with demo sources on first run)."""
    from granian import Granian
    from granian.constants import Interfaces

    config, created = _resolve_config(config_path, create=True)
    store_url = _store_url(config, db)
    host = host or config.server.host
    port = port if port is not None else config.server.port
    if created:
        click.echo(f"Wrote {config_path} with a demo pixel, a demo app, random keys and an admin token.")
    click.echo(f"capigate: config {config_path.resolve()}, store {store_url}")
    click.echo(f"Listening on http://{host}:{port}  (admin token in {config_path})")
    click.echo("Send the spec's example event:")
    for line in _curls(config, f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"):
        click.echo(f"  {line}")
    sys.stdout.flush()
    os.environ["CAPIGATE_CONFIG"] = str(config_path.resolve())
    os.environ["CAPIGATE_DB"] = store_url
    Granian(
        "capigate.http.app:app_from_env",
        factory=True,
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        workers=workers or config.server.workers,
        log_access=False,
        backlog=2048,
    ).serve()


@main.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default="capigate.toml",
    envvar="CAPIGATE_CONFIG",
    show_default=True,
)
def check_config(config_path: Path) -> None:
    """Check a configuration file and exit (status 1 if it is wrong)."""
    config, _ = _resolve_config(config_path, create=False)
    click.echo(f"{config_path}: ok ({len(config.axon.pixels)} pixel(s), {len(config.appsflyer.apps)} app(s))")
