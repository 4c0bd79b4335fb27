"""The commands of the ``capigate`` CLI that talk to a running gateway of a configuration:
``env`` (its address and keys as shell variables) and ``events`` (its events and journal).

A gateway's address is its configuration's ``[server] host`` and ``port``, overridden by
``CAPIGATE_HOST`` and ``CAPIGATE_PORT`` as for ``capigate serve``; ``--url`` (or
``CAPIGATE_URL``) overrides both. An option given on the command line wins over a variable:
``--host``, ``--port`` or ``--config`` over ``CAPIGATE_URL`` (``explicit_url``).
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
import httpx
import msgspec
from click.core import ParameterSource

from capigate.client._options import address_options, config_option
from capigate.config import Config, load_config
from capigate.errors import CapigateError, ConfigError, HTTPStatusError, Problem, TransportError
from capigate.identity import contains_email, holds_international_phone
from capigate.logs import escape_control
from capigate.ports import PORTS, port_problem
from capigate.responses import DROPPED_SILENTLY, EVENT_APIS, REQUEST_APIS, EventView, RequestView

if TYPE_CHECKING:
    from capigate.client.admin import GatewayAdmin

__all__ = [
    "checked_time",
    "checked_url",
    "env",
    "epoch_ms",
    "events",
    "explicit_url",
    "gateway_url",
    "missing_config",
    "port_variable",
    "read_config",
    "read_failed",
    "unanswered",
    "unknown_source",
    "url_given",
]

_WILDCARDS = frozenset({"0.0.0.0", "::", ""})
_DEFAULT_HOST, _DEFAULT_PORT = "127.0.0.1", 8080  # without a configuration to read
_encode = msgspec.json.Encoder().encode


def read_config(path: Path) -> Config:
    try:
        if not path.exists():
            raise missing_config(path)
        return load_config(path)
    except ConfigError as exc:
        raise click.ClickException(f"bad configuration: {exc}") from None


def missing_config(path: Path, alternative: str = "") -> ConfigError:
    """The configuration of a command other than ``serve`` is not there. Not the loader's "run
    `capigate serve` ... to create one": a new demo gateway is never what ``replay`` or ``env``
    was run for (a trial). ``alternative``: another way this command has, such as ``--db``."""
    return ConfigError(
        str(path),
        "",
        "the file does not exist; run this command in the gateway's directory (where `capigate serve` ran), "
        f"or give its configuration with --config PATH (or CAPIGATE_CONFIG){alternative}",
    )


def gateway_url(config: Config, host: str | None = None, port: int | None = None) -> str:
    """Where a client reaches the gateway that ``capigate serve`` starts from ``config``, or
    with ``--host`` and ``--port`` (given here, or as CAPIGATE_HOST and CAPIGATE_PORT)."""
    host = host or os.environ.get("CAPIGATE_HOST") or config.server.host
    given = port_variable()
    if port is not None:
        return local_url(host, port)
    if given is None:
        if config.server.port == 0:  # serve's any free port: none a client can find here
            raise click.ClickException(
                f"{config.path}: server.port = 0: {PORTS}; give the port serve chose with --url or CAPIGATE_PORT"
            )
        return local_url(host, config.server.port)
    return local_url(host, given)


def port_variable(*, listening: bool = False) -> int | None:
    """CAPIGATE_PORT as a number, or None when it is unset or empty (unset, as click reads it).
    A malformed one is a configuration mistake, one line and status 1, whatever else names the
    gateway: every command that reads the variable checks it, also when CAPIGATE_URL, --url or
    --port wins over it (`CAPIGATE_PORT=abc capigate events` ran quietly against the
    CAPIGATE_URL an earlier `capigate env` had exported, a trial). ``listening``: serve's rule,
    where 0 is any free port; a client needs one to connect to."""
    given = os.environ.get("CAPIGATE_PORT")
    if not given:
        return None
    if (problem := port_problem(given, listening=listening)) is not None:  # serve refuses it: so does every client
        raise click.ClickException(f"CAPIGATE_PORT={given}: {problem}")
    return int(given)


def local_url(host: str, port: int) -> str:
    """The URL a client on this machine reaches a server listening on ``host`` at: a wildcard
    address as 127.0.0.1."""
    return f"http://{url_host('127.0.0.1' if host in _WILDCARDS else host)}:{port}"


def url_host(host: str) -> str:
    """``host`` as a URL writes it: an IPv6 address in brackets (``http://:::8080`` was printed)."""
    return f"[{host}]" if ":" in host else host


F = TypeVar("F", bound=Callable[..., Any])


def _admin_options(command: F) -> F:
    """The options of a command that reads the admin API (events, quality): where the gateway
    is and its token, each from the option, its variable, then the configuration; --host and
    --port as env's and curl's."""
    url = click.option(
        "--url",
        "base_url",
        envvar="CAPIGATE_URL",
        show_envvar=True,
        help="The gateway's base URL; without it or CAPIGATE_URL, from --host and --port. CAPIGATE_URL yields to "
        "--host, --port or --config given, CAPIGATE_ADMIN_TOKEN to --config given.",
    )
    token = click.option(
        "--token",
        envvar="CAPIGATE_ADMIN_TOKEN",
        show_envvar=True,
        help="Admin token; without it or CAPIGATE_ADMIN_TOKEN, the configuration's.",
    )
    return url(
        address_options(token(config_option("The gateway's configuration (its address and admin token).")(command)))
    )


class _Gap:
    """Says on stderr, at most every 30 s, that the gateway does not answer: --follow waits
    for it, as ``tail -f`` does (it ended at a restart, a trial)."""

    def __init__(self) -> None:
        self._said = -1e9

    def __call__(self, error: TransportError) -> None:
        now = time.monotonic()
        if now - self._said >= 30:
            self._said = now
            click.echo(f"capigate events: no answer ({error}); still following", err=True)


@click.command()
@config_option("The gateway's configuration.")
@click.option("--url", help="The gateway's base URL (default: from --host and --port); not read from CAPIGATE_URL.")
@address_options
def env(config_path: Path, url: str | None, host: str | None, port: int | None) -> None:
    """Print the gateway's address and keys as shell exports: eval "$(capigate env)".

    CAPIGATE_URL and CAPIGATE_ADMIN_TOKEN (read by `capigate send` and `capigate events`),
    and the first pixel's and app's ids and keys: AXON_PIXEL, AXON_KEY, APPSFLYER_APP,
    APPSFLYER_KEY. Not CAPIGATE_CONFIG: serve and every other command read it, so in another
    directory they would quietly use this configuration instead of the capigate.toml there.
    A gateway started with --host or --port is found with the same options, as serve says."""
    port_variable()  # refused even where --url or --port wins over it
    config = read_config(config_path)
    url = explicit_url(url, "url", "host", "port")
    base = checked_url(url, "url") if url else gateway_url(config, host, port)
    values = {"CAPIGATE_URL": base, "CAPIGATE_ADMIN_TOKEN": config.server.admin_token}
    if config.axon.pixels:
        values.update(AXON_PIXEL=config.axon.pixels[0].pixel_id, AXON_KEY=config.axon.pixels[0].api_key)
    if config.appsflyer.apps:
        values.update(APPSFLYER_APP=config.appsflyer.apps[0].app_id, APPSFLYER_KEY=config.appsflyer.apps[0].keys[0])
    for name, value in values.items():
        click.echo(f"export {name}={shlex.quote(value)}")


# --- events --------------------------------------------------------------------------


def epoch_ms(value: str | None, option: str) -> int | None:
    """The admin API's rule (capigate/http/params.py): epoch ms or ISO 8601, never seconds;
    a usage error here, before anything is asked of a gateway (replay, events, quality)."""
    from capigate.http.params import TimeRefused, read_time

    if value is None:
        return None
    try:
        return read_time(value, option)
    except TimeRefused as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


def checked_time(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A click callback: ``value`` as given (the gateway reads it), once ``epoch_ms`` took it."""
    epoch_ms(value, f"--{param.name}")
    return value


def checked_url(url: str, name: str = "base_url") -> str:
    """The command's --url parameter ``name`` once it is a gateway's base URL, without its
    trailing /; a usage error naming --url or CAPIGATE_URL, as send's --to: `events --url
    127.0.0.1:18150` said httpx's "UnsupportedProtocol", `--url …/api/events` "'api/events' is
    not an event id" (a trial)."""
    from capigate.client._http import checked_admin_url

    try:
        checked_admin_url(url, url_given(name) or "--url")
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    return url.rstrip("/")


def _gateway(
    url: str | None, token: str | None, config_path: Path, host: str | None = None, port: int | None = None
) -> tuple[str, str]:
    """(base URL, admin token): given ones first, else the configuration's. --config given on
    the command line names the gateway: its address and token win over CAPIGATE_URL and
    CAPIGATE_ADMIN_TOKEN, exported by an earlier `capigate env`, perhaps of another gateway;
    --host or --port given sets CAPIGATE_URL aside too, as curl's and env's do (``explicit_url``);
    --url and --token given win over the file's. A malformed CAPIGATE_PORT is refused first,
    whichever address wins (``port_variable``)."""
    port_variable()
    url = explicit_url(url, "base_url", "host", "port", "config_path")
    if _on_the_command_line("config_path"):
        token = token if _on_the_command_line("token") else None
    url = checked_url(url) if url else None
    if url and token:
        return url, token
    if not config_path.exists():
        if token:
            # CAPIGATE_HOST and CAPIGATE_PORT as with a configuration (serve's own defaults else):
            # without one they were not read, while the message of nothing answering named them.
            host = host or os.environ.get("CAPIGATE_HOST") or _DEFAULT_HOST
            return url or local_url(host, port or port_variable() or _DEFAULT_PORT), token
        raise click.UsageError(
            f"give --token (or CAPIGATE_ADMIN_TOKEN), or --config with the gateway's admin_token ({config_path} not found)"
        )
    config = read_config(config_path)
    return url or gateway_url(config, host, port), token or config.server.admin_token


def _address_given() -> str | None:
    """Where the address a command that reads the admin API used came from, as ``_gateway``
    took it: "--url", "CAPIGATE_URL", the options --host and --port given ("--port"), or None
    (the configuration's, or the default's)."""
    if (url := url_given()) == "--url":
        return url
    if options := _on_the_command_line("host", "port"):
        return " and ".join(f"--{option}" for option in options)
    return None if _on_the_command_line("config_path") else url


def url_given(name: str = "base_url") -> str | None:
    """Where the command's --url parameter ``name`` came from: "--url", "CAPIGATE_URL", or
    None when it was not given (the configuration's address is used)."""
    source = click.get_current_context().get_parameter_source(name)
    if source is ParameterSource.ENVIRONMENT:
        return "CAPIGATE_URL"
    return "--url" if source is ParameterSource.COMMANDLINE else None


def _on_the_command_line(*names: str) -> list[str]:
    """Which of the command's parameters ``names`` were given on its command line."""
    ctx = click.get_current_context()
    return [name for name in names if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE]


def explicit_url(url: str | None, name: str, *others: str) -> str | None:
    """The command's URL parameter ``name``, unless it came from CAPIGATE_URL and an option
    that names the gateway otherwise (``others``: --host, --port, --config) was given on the
    command line: an option given wins over the environment, as `env --port` does (`curl
    --port 18150`, the line a restarted gateway's banner prints, printed the 8080 an earlier
    `eval "$(capigate env)"` exported, a trial). --url given with --host or --port is a usage
    error: which was meant is not for the command to guess."""
    given = _on_the_command_line(*others)
    if url is None or not given:
        return url
    if url_given(name) != "--url":
        return None
    if clashing := [f"--{other}" for other in given if other in ("host", "port")]:  # --config: its keys
        raise click.UsageError(
            f"give --url or {' and '.join(clashing)}, not both: --url is the gateway's whole address"
        )
    return url


def read_failed(exc: CapigateError, base: str, config_path: Path) -> str:
    """What ``events`` or ``quality`` says when its read of the gateway at ``base`` failed: a
    refused admin token, a base URL with /api in it, no answer, each named as such."""
    if isinstance(exc, HTTPStatusError) and exc.status_code == 401:
        # The server's "send Authorization: Bearer <admin_token>" is meant for a curl (a trial).
        source = click.get_current_context().get_parameter_source("token")
        if source is ParameterSource.COMMANDLINE:
            whose = "given with --token"
        elif source is ParameterSource.ENVIRONMENT:
            whose = "from CAPIGATE_ADMIN_TOKEN"
        else:
            whose = f"of {config_path} ([server] admin_token)"
        return (
            f"the gateway refused the admin token {whose} (HTTP 401 from {exc.url}): check --token (or "
            "CAPIGATE_ADMIN_TOKEN) against the [server] admin_token of the gateway's configuration (--config)"
        )
    if isinstance(exc, HTTPStatusError) and exc.status_code == 404:  # a base URL with /api is refused first
        return f"is {base} the gateway's base URL? ({exc})"
    return unanswered(exc, base, config_path, given=_address_given())


def unanswered(exc: CapigateError, base: str, config_path: Path, *, given: str | None) -> str:
    """What a command that reads the gateway at ``base`` says when it could not: a connection
    refused names that address, where it came from (``given``: "--url", "CAPIGATE_URL", or
    options such as "--port", else the configuration) and how to give another (it said only
    "ConnectError: [Errno 111] Connection refused" at 8080, of a gateway a trial had started
    with --port)."""
    if not isinstance(exc.__cause__, httpx.ConnectError):
        return str(exc)
    if given is not None and given.startswith("--"):
        return f"nothing answers at {base} (given with {given}): is the gateway running, at this address? ({exc})"
    if given is not None:
        return (
            f"nothing answers at {base} (from {given}, which `capigate env` exports): is the gateway running? If "
            f'it was started with --host or --port, eval "$(capigate env --port PORT)" again, or give --url '
            f"http://HOST:PORT ({exc})"
        )
    source = f"{config_path}'s [server] host and port" if config_path.exists() else "the default address"
    if os.environ.get("CAPIGATE_HOST") or os.environ.get("CAPIGATE_PORT"):
        source = f"{source}, as CAPIGATE_HOST and CAPIGATE_PORT change them"
    return (
        f"nothing answers at {base} ({source}): is the gateway running? If it was started with --host "
        f'or --port, give --url http://HOST:PORT, or eval "$(capigate env --port PORT)" first ({exc})'
    )


def unknown_source(admin: GatewayAdmin, source: str | None, config_path: Path, base: str) -> str | None:
    """What ``events`` or ``quality`` says on stderr of a ``--source`` that found nothing: that
    it is no pixel or app of the configuration, as replay says, when it is none and the gateway
    keeps no event nor request of it at all (any time, any status). None when the source is
    configured, or is kept (a source no longer in the file keeps its events), or when the file
    cannot be read (--url and --token without it): then nothing tells a typo from a quiet source.
    Both facts hold whichever gateway --url names, so the line is true there too."""
    if source is None or not config_path.exists():
        return None
    try:
        config = load_config(config_path)
    except ConfigError:
        return None
    if config.pixel(source) is not None or config.app(source) is not None:
        return None
    try:
        if admin.events(source=source, limit=1).events or admin.requests(source=source, limit=1).requests:
            return None
    except CapigateError:
        return None
    return (
        f"{source!r} is not a pixel or app of {config.path}, and the gateway at {base} keeps no event or request of it"
    )


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _event_cells(e: EventView) -> list[str]:
    cells = [str(e.id), _when(e.received_at), e.api, e.source, e.name, e.status, e.dedupe_id or "", e.test_tag or ""]
    return [escape_control(c) for c in cells]


def _request_cells(r: RequestView, *, terminal: bool = False) -> list[str]:
    counts = f"{r.events_received}/{r.events_stored}/{r.events_duplicate}"
    problems = str(r.problems[0]) if r.problems else ""
    if len(r.problems) > 1:
        problems += f" (+{len(r.problems) - 1})"
    warnings = _codes(r.warnings)
    if terminal and _dropped(r):
        warnings = f"DROPPED SILENTLY: {warnings}"  # as the inspector says it
    cells = [
        str(r.id),
        _when(r.received_at),
        r.api,
        r.source or "",
        f"{r.method} {r.path}",
        str(r.status),
        counts,
        f"{r.latency_ms:.1f}",
        problems,
        warnings,
    ]
    return [escape_control(c) for c in cells]


def _codes(warnings: Sequence[Problem]) -> str:
    """Each warning's code once, in order, with its count when more than one: a request whose
    event was dropped (answered 200, ``ios_app_id_without_prefix``) showed as a good one."""
    counts = Counter(w.code for w in warnings)
    return ", ".join(code if n == 1 else f"{code} ({n})" for code, n in counts.items())


def _dropped(row: EventView | RequestView) -> bool:
    return isinstance(row, RequestView) and any(w.code == DROPPED_SILENTLY for w in row.warnings)


_EVENT_COLUMNS = ["id", "received (UTC)", "api", "source", "name", "status", "dedupe_id", "test_tag"]
_REQUEST_COLUMNS = [
    "id",
    "received (UTC)",
    "api",
    "source",
    "request",
    "status",
    "events rcv/stored/dup",
    "ms",
    "problems",
    "warnings",  # last: a piped line's earlier columns keep their places
]
_FOLDED = frozenset({"request", "warnings"})  # on a terminal, folded onto more lines, never cut: the path and
# the codes are what tell a silently dropped request from a good one


def _tsv(cells: Sequence[str]) -> str:
    """One line of tab-separated values: the cells hold no tab nor line break, written as
    escapes (``escape_control``) as every control character a client sent is."""
    return "\t".join(cells)


class _Printer:
    """Rows as a table on a terminal; as tab-separated lines, full values, when piped; as JSON
    lines with --json."""

    def __init__(self, columns: list[str], *, as_json: bool) -> None:
        self.columns, self.as_json = columns, as_json
        self.terminal = sys.stdout.isatty()

    def header(self) -> None:
        if not self.as_json:
            click.echo("  ".join(self.columns) if self.terminal else _tsv(self.columns))

    def rows(self, rows: Sequence[EventView | RequestView], *, table: bool) -> None:
        if self.as_json:
            for row in rows:
                sys.stdout.buffer.write(_encode(row) + b"\n")
            sys.stdout.flush()
            return
        cells = [
            _request_cells(r, terminal=self.terminal) if isinstance(r, RequestView) else _event_cells(r) for r in rows
        ]
        if table and self.terminal:
            from rich.console import Console
            from rich.table import Table
            from rich.text import Text

            grid = Table()
            for column in self.columns:
                grid.add_column(column, overflow="fold" if column in _FOLDED else "ellipsis")
            for row, row_cells in zip(rows, cells, strict=True):
                # Text, not markup: a client's "[red]" in a name is shown as sent, not as a style.
                grid.add_row(*map(Text, row_cells), style="bold magenta" if _dropped(row) else None)
            Console(highlight=False).print(grid)
            return
        for row_cells in cells:
            click.echo("  ".join(row_cells) if self.terminal else _tsv(row_cells))
        sys.stdout.flush()


def _print_every_page(
    admin: GatewayAdmin, printer: _Printer, show_requests: bool, page_size: int, filters: dict[str, Any]
) -> None:
    """``events --all``: each row as its page comes (``--limit`` stopped at 1,000 rows, with
    no way on from there: a trial), one line a row, the listing's cursor followed to its end."""
    printer.header()
    rows: Iterator[EventView] | Iterator[RequestView] = (
        admin.iter_requests(limit=page_size, **filters)
        if show_requests
        else admin.iter_events(limit=page_size, **filters)
    )
    for row in rows:
        printer.rows([row], table=False)


# An email address as a transaction id is refused (an Axon purchase) or dropped (AppsFlyer's
# af_order_id), and a request's journal keys hold no email address: --transaction-id with one
# found nothing and said nothing (a trial). A phone number in international form there is
# treated so too (identity.holds_international_phone, as the rules read an id: "00" and a valid
# number is one): the hint said it was kept as sent, and one found nothing, silently (a re-trial).
_PII_TRANSACTION_ID = (
    "transaction ids holding an email address or a phone number are never stored (an Axon purchase with one is "
    "refused, an AppsFlyer af_order_id dropped), so no request is found by one: look for it by --dedupe-id, "
    "--name or --since"
)


@click.command()
@_admin_options
@click.option("--requests", "show_requests", is_flag=True, help="List the request journal instead of events.")
@click.option("--source", help="Pixel or app id.")
@click.option("--name", help="Event name (with --requests: the requests that carried one).")
@click.option("--status", help="Event status, or HTTP status with --requests.")
@click.option(
    "--api",
    "api_name",
    type=click.Choice(REQUEST_APIS),  # every api the journal records (the API's own list)
    metavar="API",
    help=f"API: {' or '.join(EVENT_APIS)} (a pixel and an app may share an id); with --requests, "
    f"{', '.join(REQUEST_APIS[len(EVENT_APIS) :])} too (inspector: logins and the inspector's pages).",
)
@click.option("--test-tag", help="Test tag.")
@click.option("--dedupe-id", help="The requests that carried this dedupe_id (requests only).")
@click.option("--transaction-id", help="The requests that carried this transaction id (requests only).")
@click.option("--since", callback=checked_time, help="Epoch ms or ISO 8601 time.")
@click.option("--until", callback=checked_time, help="Epoch ms or ISO 8601 time.")
@click.option(
    "--limit",
    type=click.IntRange(1, 1000),
    default=20,
    show_default=True,
    help="Rows to show (with --follow: rows of backlog).",
)
@click.option(
    "--all",
    "every_row",
    is_flag=True,
    help="Every row that matches, newest first, page after page (--limit rows a page, or 1000).",
)
@click.option("--follow", "-f", is_flag=True, help="Keep printing new rows as they arrive (Ctrl-C to stop).")
@click.option(
    "--interval-s", type=click.FloatRange(min=0.05), default=1.0, show_default=True, help="Poll interval with --follow."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line instead of a table.")
def events(
    base_url: str | None,
    host: str | None,
    port: int | None,
    token: str | None,
    config_path: Path,
    show_requests: bool,
    source: str | None,
    name: str | None,
    status: str | None,
    api_name: str | None,
    test_tag: str | None,
    dedupe_id: str | None,
    transaction_id: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    every_row: bool,
    follow: bool,
    interval_s: float,
    as_json: bool,
) -> None:
    """List the events or requests a running gateway recorded, newest first; --follow
    prints the latest few oldest first, then each new one as it arrives.

    On a terminal, a table; piped, one tab-separated line a row (a header line first) with
    every value in full; in both, a control character a client sent (a tab, a line break, an
    ESC) is written as an escape (\\t, \\n, \\x1b); --json, one JSON object a line, every value
    as stored."""
    from capigate.client.admin import GatewayAdmin

    filters: dict[str, Any] = {"source": source, "status": status, "since": since, "until": until}
    filters.update(name=name, test_tag=test_tag, api=api_name)  # requests too: --requests dropped them (a trial)
    if show_requests:
        filters.update(dedupe_id=dedupe_id, transaction_id=transaction_id)
        if transaction_id is not None and (contains_email(transaction_id) or holds_international_phone(transaction_id)):
            click.echo(f"capigate events: {_PII_TRANSACTION_ID}", err=True)
    elif dedupe_id is not None or transaction_id is not None:
        raise click.UsageError("--dedupe-id and --transaction-id find requests: add --requests")
    elif api_name is not None and api_name not in EVENT_APIS:
        raise click.UsageError(
            f"--api {api_name} finds requests (events come from {' or '.join(EVENT_APIS)}): add --requests"
        )
    if every_row and follow:
        raise click.UsageError("--all lists what is kept, --follow what arrives: choose one")
    url, admin_token = _gateway(base_url, token, config_path, host, port)
    printer = _Printer(_REQUEST_COLUMNS if show_requests else _EVENT_COLUMNS, as_json=as_json)
    admin = GatewayAdmin(url, admin_token)
    try:
        with admin:
            if every_row:
                page_size = limit if _on_the_command_line("limit") else 1000
                _print_every_page(admin, printer, show_requests, page_size, filters)
                return
            if not follow:
                rows: Sequence[EventView | RequestView] = (
                    admin.requests(limit=limit, **filters).requests
                    if show_requests
                    else admin.events(limit=limit, **filters).events
                )
                if not printer.terminal:
                    printer.header()
                printer.rows(rows, table=True)
                if not rows and (unknown := unknown_source(admin, source, config_path, url)) is not None:
                    click.echo(f"capigate events: {unknown}", err=True)
                return
            printer.header()
            if (unknown := unknown_source(admin, source, config_path, url)) is not None:
                click.echo(f"capigate events: {unknown}; still following", err=True)
            gap = _Gap()
            stream: Iterator[EventView] | Iterator[RequestView] = (
                admin.follow_requests(interval_s=interval_s, backlog=limit, on_gap=gap, **filters)
                if show_requests
                else admin.follow_events(interval_s=interval_s, backlog=limit, on_gap=gap, **filters)
            )
            for row in stream:
                printer.rows([row], table=False)
    except CapigateError as exc:
        raise click.ClickException(read_failed(exc, url, config_path)) from None
