"""The ``capigate`` command line. ``serve`` is its heart."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar
from urllib.parse import urlsplit

import click

import capigate.worker_env as worker_env
from capigate.client._options import address_options
from capigate.config import (
    Config,
    ineffective_settings,
    load_config,
    workers_warning,
    write_default_config,
    written_warnings,
)
from capigate.config_errors import ConfigErrors
from capigate.errors import ConfigError, StoreError
from capigate.ports import port_problem, whole_number

if TYPE_CHECKING:
    from capigate.relay import RelayRunner
    from capigate.store import DeadLetterQuery, Store

__all__ = ["main"]


_INTERRUPTED = 130  # 128 + SIGINT: what a shell says of a command Ctrl-C stopped


class _Main(click.Group):
    """The ``capigate`` group: Ctrl-C in a command that does not handle it exits 130 quietly,
    as a shell expects of an interrupted command (click said "Aborted!" with status 1, a
    failure's, while the command's modules loaded: a trial)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            # Until here, capigate.__main__ exits at once on Ctrl-C (nothing done yet); from
            # here, it unwinds, for a command that has work to stop. Earlier, it unwound
            # through click's parsing of the arguments, which said "Aborted!" with status 1.
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGINT, signal.default_int_handler)
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise click.exceptions.Exit(_INTERRUPTED) from None


@click.group(cls=_Main)
@click.version_option(package_name="capigate")
def main() -> None:
    """capigate: a self-hosted conversions API gateway for AppLovin Axon and AppsFlyer."""


def _named_by_default() -> bool:
    """Whether --config was left to its default (capigate.toml here): only then does serve
    create a missing file. A path given (--config, CAPIGATE_CONFIG) that is not there is a
    mistake: a new demo gateway started there, ready, and refused every real client."""
    source = click.get_current_context().get_parameter_source("config_path")
    return source is click.core.ParameterSource.DEFAULT


def _resolve_config(
    path: Path,
    *,
    create: bool,
    check_environment: bool = False,
    host_problem: Callable[[str], str | None] | None = None,
    store_problem: Callable[[str], str | None] | None = None,
    serving: bool = False,
    alternative: str = "",
) -> tuple[Config, bool]:
    """The configuration, or one line per mistake; ``check_environment``: the relay keys read
    from environment variables are set (the workers that relay would die without). A missing
    file: ``serve`` says how to create one; every other command (``serving`` False) where to
    run it, or ``alternative``, another way it has."""
    from capigate.client.cli_gateway import missing_config

    created = False
    if create and not path.exists():
        write_default_config(path)
        created = True
    environ = os.environ if check_environment else None
    try:
        if not serving and not path.exists():
            raise missing_config(path, alternative)
        return load_config(path, environ, host_problem=host_problem, store_problem=store_problem), created
    except ConfigErrors as exc:
        mistakes = "\n".join(f"  {e}" for e in exc.errors)
        raise click.ClickException(f"bad configuration, {len(exc.errors)} mistakes:\n{mistakes}") from None
    except ConfigError as exc:
        raise click.ClickException(f"bad configuration: {exc}") from None


def _url_refusal(url: str) -> str | None:
    """What is wrong with a store URL's own parameters (``?schema=``, ``?writers=`` …): the
    store's constructor checks them without connecting."""
    from capigate.store import open_store

    try:
        open_store(url)
    except (StoreError, ValueError) as exc:  # ValueError: the schema name
        return str(exc)
    return None


def _checked_url(url: str) -> str:
    """The store URL, once its own parameters are right; a mistake is one line, status 1, as
    any configuration mistake is (it was 2, as a usage mistake; a bad [server] port was 1)."""
    if (why := _url_refusal(url)) is not None:
        raise click.ClickException(f"store: {why}")
    return url


def _sqlite_file(url: str, config_file: str) -> Path | None:
    """A SQLite store's file (None for another store): a relative one is in the configuration
    file's directory."""
    from capigate.store import sqlite_path

    path = sqlite_path(url)
    if path is None:
        return None
    file = Path(path)
    return file if file.is_absolute() else Path(config_file).resolve().parent / file


def _store_url(config: Config, db: str | None) -> str:
    url = db or config.store.url
    file = _sqlite_file(url, config.path)
    return _checked_url(url) if file is None else str(file)


def _store_problem(config_file: Path) -> Callable[[str], str | None]:
    """What serve would refuse of a [store] url, for check-config to say beside the file's
    other mistakes: a PostgreSQL URL's own parameters, a SQLite file where none can be made
    (a trial passed both)."""

    def problem(url: str) -> str | None:
        file = _sqlite_file(url, str(config_file))
        if file is None:
            return _url_refusal(url)
        from capigate.store.base import SchemaStatus
        from capigate.store.sqlite.schema import SCHEMA_VERSION, check_sqlite_path, read_version

        # serve's own check (SQLiteStore.schema_status), read-only: a file that is no SQLite
        # database (/etc/passwd) or one of a newer capigate was ok here, refused by serve (a re-trial).
        try:
            check_sqlite_path(file)
            version = read_version(file)
        except StoreError as exc:
            return str(exc)
        status = SchemaStatus(str(file), version, SCHEMA_VERSION, [])
        return status.refusal() if status.too_new else None

    return problem


def _open_store(config: Config, db: str | None) -> Store:
    """The relay's and replay's store, with the [store] settings a gateway's has."""
    from capigate.store import open_store

    settings = config.store
    return open_store(_store_url(config, db), synchronous=settings.synchronous, read_timeout_s=settings.read_timeout_s)


def _base_url(host: str, port: int) -> str:
    from capigate.client.cli_gateway import local_url

    return local_url(host, port)


def _curl_options(config: Config, host: str, port: int) -> str:
    """The options that make `capigate curl`, pasted in another shell, find this server:
    the configuration file, and the host and port when they are not the file's own."""
    options = ["--config", shlex.quote(str(Path(config.path).resolve()))]
    if host != config.server.host:
        options += ["--host", shlex.quote(host)]
    if port != config.server.port:
        options += ["--port", str(port)]
    return " ".join(options)


F = TypeVar("F", bound=Callable[..., Any])


def _config_option(help: str = "TOML configuration.") -> Callable[[F], F]:
    return click.option(
        "--config",
        "config_path",
        type=click.Path(path_type=Path),
        default="capigate.toml",
        envvar=worker_env.CONFIG,
        show_envvar=True,
        show_default=True,
        help=help,
    )


Check = Callable[[click.Context, click.Parameter, str | None], int | None]


def _checked_by(problem_of: Callable[[str], str | None]) -> Check:
    """An integer setting's check (the option is a string: click's own check of an integer
    exited 2 under its usage block, its range's 1), failing as any configuration mistake does:
    one line that names the option as given (``--port abc``, ``CAPIGATE_PORT=70000``), status 1."""

    def check(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
        if value is None:
            return None
        from capigate.client._options import given_as

        problem = problem_of(value)
        if problem is None:
            return int(value.strip())
        raise click.ClickException(f"{given_as(ctx, param, value)}: {problem}")

    return check


def _workers_problem(value: str) -> str | None:
    """Why ``value`` is no number of worker processes, or None. One that is no integer says
    so: CAPIGATE_WORKERS=abc was told only "at least one worker process" (a re-trial)."""
    number = whole_number(value)
    if number is None:
        return f"not a whole number; {_WORKERS}"
    return None if number >= 1 else _WORKERS


def _listen_port_problem(value: str) -> str | None:
    """serve's port: the one rule of every command's, with 0 (any free port)."""
    return port_problem(value, listening=True)


_WORKERS: Final = "at least one worker process"
# What serve takes from its variables, which check-config checks as serve would: it said ok to
# CAPIGATE_PORT=abc (a re-trial), and to a CAPIGATE_HOST or CAPIGATE_DB serve refused (a trial).
# The numbers are named with their value (CAPIGATE_PORT=abc: ...); the host and the store by
# serve's own words (its bind, its opening of the store), which hold the value where it helps.
_SERVE_NUMBERS: Final = (("CAPIGATE_PORT", _listen_port_problem), ("CAPIGATE_WORKERS", _workers_problem))


def _variable_problems(config_file: Path) -> list[str]:
    """What serve would refuse of its variables, each named, as the file's host and store URL
    are by their key. An empty CAPIGATE_HOST or CAPIGATE_DB is unset, as serve reads it."""
    from capigate.serving import listen_problem

    problems = _number_problems()
    checks = (("CAPIGATE_HOST", listen_problem), (worker_env.DB, _store_problem(config_file)))
    for name, check in checks:
        value = os.environ.get(name)
        if value and (problem := check(value)) is not None:
            problems.append(f"{name}: {problem}")
    return problems


def _number_problems() -> list[str]:
    """What serve would refuse of CAPIGATE_PORT and CAPIGATE_WORKERS, each with its value."""
    problems = []
    for name, number_problem in _SERVE_NUMBERS:
        value = os.environ.get(name)
        if value and (problem := number_problem(value)) is not None:  # empty: unset, as click reads it for serve
            problems.append(f"{name}={value}: {problem}")
    return problems


def _refuse_bad_numbers() -> None:
    """serve's CAPIGATE_PORT and CAPIGATE_WORKERS, refused when malformed even where --port or
    --workers wins over them: a wrong variable is a mistake whatever else is given (README)."""
    if problems := _number_problems():
        raise click.ClickException(problems[0])


def _variable_workers() -> int | None:
    """CAPIGATE_WORKERS as serve takes it over the file's workers, or None: unset, empty, or
    refused (said by ``_variable_problems``)."""
    value = os.environ.get("CAPIGATE_WORKERS")
    return int(value) if value and _workers_problem(value) is None else None


def _port_option(help: str, check: Check) -> Callable[[F], F]:
    return click.option(
        "--port", envvar="CAPIGATE_PORT", show_envvar=True, type=str, metavar="INTEGER", callback=check, help=help
    )


_CONFIG_OPTION = _config_option()
_DB_OPTION = click.option(
    "--db", envvar=worker_env.DB, show_envvar=True, help="SQLite file or postgresql:// URL (default: [store] url)."
)


@main.command()
@_config_option("TOML configuration; the default one is created if missing.")
@_DB_OPTION
@click.option("--host", envvar="CAPIGATE_HOST", show_envvar=True, help="Address to listen on (default: [server] host).")
@_port_option("Port (default: [server] port).", _checked_by(_listen_port_problem))
@click.option(
    "--workers",
    envvar="CAPIGATE_WORKERS",
    show_envvar=True,
    type=str,
    metavar="INTEGER",
    callback=_checked_by(_workers_problem),
    help="Worker processes (default: [server] workers).",
)
@click.option(
    "--relay/--no-relay",
    "relay",
    default=True,
    envvar=worker_env.RELAY,
    show_envvar=True,
    show_default=True,
    help="Run the relay workers in this process (--no-relay: a separate `capigate relay` does).",
)
def serve(
    config_path: Path, db: str | None, host: str | None, port: int | None, workers: int | None, relay: bool
) -> None:
    """Start the gateway (creates ./capigate.toml with demo sources on first run, when no --config is given)."""
    from capigate.banner import banner_lines
    from capigate.client.cli_gateway import url_host
    from capigate.logs import announce, announce_stream, granian_log_config, on_a_terminal
    from capigate.native import status as native_status
    from capigate.serving import ListenError, open_listener, serve_gateway

    _refuse_bad_numbers()
    given = {"server.host": host, "server.port": port, "server.workers": workers, "store.url": db}
    config, created = _resolve_config(config_path, create=_named_by_default(), check_environment=relay, serving=True)
    try:
        store_url = _store_url(config, db)
        shown = _check_schema(store_url)
        host = host or config.server.host
        port = port if port is not None else config.server.port
        try:
            listener = open_listener(host, port)
        except ListenError as exc:
            raise click.ClickException(str(exc)) from None
    except BaseException:
        if created:  # else the next start found it, masked its keys, and no banner ever showed them
            config_path.unlink(missing_ok=True)
        raise
    port = listener.getsockname()[1]  # the one the system chose for --port 0
    lines = [f"Wrote {config_path} with a demo pixel, a demo app, random keys and an admin token."] if created else []
    lines.append(f"capigate: config {config_path.resolve()}, store {shown}, compiled modules {native_status()}")
    lines.append(f"Listening on http://{url_host(host)}:{port}  (admin token in {config_path})")
    if host != config.server.host or port != config.server.port:  # a plain `capigate env` finds the file's
        lines.append(f'Another shell finds it with: eval "$(capigate env {_curl_options(config, host, port)})"')
    lines += [f"note: {note}" for note in ineffective_settings(config)]
    # The keys are shown by the start that generated them only, and only on a terminal: the
    # banner goes where the logs go, and a file, a pipe or a log collector keeps it, which the
    # logs' promise (never a key) does not allow (a trial found live keys in a log stream).
    reveal = created and on_a_terminal(announce_stream(config.server.log_format))
    curl_options = _curl_options(config, host, port)
    lines += banner_lines(config, _base_url(host, port), reveal=reveal, curl_options=curl_options, written=created)
    announce(lines, config.server.log_format)
    os.environ[worker_env.CONFIG] = str(config_path.resolve())
    os.environ[worker_env.CONFIG_TEXT] = config_path.read_text(encoding="utf-8")
    os.environ[worker_env.DB] = store_url
    os.environ[worker_env.OVERRIDES] = json.dumps({key: value for key, value in given.items() if value is not None})
    os.environ[worker_env.RELAY] = "1" if relay else "0"
    serve_gateway(
        listener,
        config.server,
        workers=workers if workers is not None else config.server.workers,
        log_dictconfig=granian_log_config(config.server.log_format),
    )


@main.command()
@_CONFIG_OPTION
@click.argument("source", required=False)
@click.option(
    "--url",
    envvar="CAPIGATE_URL",
    show_envvar=True,
    help="The gateway's base URL (default: from --host and --port); CAPIGATE_URL yields to --host, --port or "
    "--config given.",
)
@address_options  # env's, events' and quality's: one port to connect to, 1 to 65535 (a trial)
def curl(config_path: Path, source: str | None, url: str | None, host: str | None, port: int | None) -> None:
    """Print a curl that sends a demo event (current, complete) to SOURCE, a pixel or app id,
    with its key (default: the first pixel's and the first app's)."""
    from capigate.banner import curl_command
    from capigate.client.cli_gateway import checked_url, explicit_url, gateway_url, port_variable

    port_variable()  # refused even where --port or CAPIGATE_URL wins over it
    config, _ = _resolve_config(config_path, create=False)
    url = explicit_url(url, "url", "host", "port", "config_path")  # CAPIGATE_URL yields to these
    base = checked_url(url, "url") if url else gateway_url(config, host, port)
    ids = [p.pixel_id for p in config.axon.pixels[:1]] + [a.app_id for a in config.appsflyer.apps[:1]]
    for source_id in [source] if source else ids:
        command = curl_command(config, source_id, base)
        if command is None:
            raise click.ClickException(f"{config_path}: no pixel or app {source_id!r} is configured")
        click.echo(command)


@main.command()
@_CONFIG_OPTION
@click.argument("file", required=False, type=click.Path(path_type=Path))
def check_config(config_path: Path, file: Path | None) -> None:
    """Check a configuration file (FILE, else --config) and exit: every mistake, one a line,
    and status 1 if there is one. A relay's api_key_env must be set in this environment,
    [server] host one that serve could listen on here, and CAPIGATE_HOST, CAPIGATE_PORT,
    CAPIGATE_WORKERS and CAPIGATE_DB, where set, what serve would take."""
    from capigate.serving import listen_problem

    config_path = file or config_path
    warnings = [f"{config_path}: warning: {warning}" for warning in written_warnings(config_path, os.cpu_count())]
    variables = _variable_problems(config_path)
    if (workers := _variable_workers()) is not None and (
        warning := workers_warning(workers, os.cpu_count(), given=f"CAPIGATE_WORKERS={workers}")
    ) is not None:
        warnings.append(f"warning: {warning}")
    try:
        config, _ = _resolve_config(
            config_path,
            create=False,
            check_environment=True,
            host_problem=listen_problem,
            store_problem=_store_problem(config_path),
        )
    except click.ClickException as exc:
        _echo_lines(warnings)  # before the mistakes, which end the command
        if not variables or exc.exit_code != 1:
            raise
        raise click.ClickException("\n".join([*variables, exc.message])) from None
    if variables:
        _echo_lines(warnings)
        raise click.ClickException("\n".join(variables))
    click.echo(f"{config_path}: ok ({len(config.axon.pixels)} pixel(s), {len(config.appsflyer.apps)} app(s))")
    _echo_lines(warnings)
    _echo_lines(f"{config_path}: note: {note}" for note in ineffective_settings(config))


def _echo_lines(lines: Iterable[str]) -> None:
    for line in lines:
        click.echo(line)


@main.command()
@_CONFIG_OPTION
@_DB_OPTION
def relay(config_path: Path, db: str | None) -> None:
    """Run the relay workers alone, without the HTTP server, until SIGINT or SIGTERM.

    For a separate relay process or node on the same store (`serve --no-relay` elsewhere);
    several may run at once: each event is leased to one of them at a time.
    """
    from capigate.logs import configure_logging
    from capigate.relay import RelayRunner

    config, _ = _resolve_config(config_path, create=False)
    configure_logging(config.server.log_format)
    try:
        store = _open_store(config, db)
        runner = RelayRunner(store, config)
    except (ConfigError, StoreError) as exc:
        raise click.ClickException(str(exc)) from None
    if not runner.workers:
        raise click.ClickException(f"{config_path}: no source has an enabled [relay] table: nothing to relay")
    for worker in runner.workers.values():
        click.echo(f"relay {worker.name} -> {worker.target.url}")
    sys.stdout.flush()
    try:
        asyncio.run(_relay_until_signalled(store, runner))
    except StoreError as exc:
        raise click.ClickException(f"store: {exc}") from None


async def _relay_until_signalled(store: Store, runner: RelayRunner) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await store.open()
    try:
        async with runner:
            await stop.wait()
    finally:
        await store.close()


@main.command()
@_CONFIG_OPTION
@_DB_OPTION
@click.option("--destination", help="axon:<pixel_id> or appsflyer:<app_id>.")
@click.option("--source", help="Pixel id or app id.")
@click.option("--status", type=int, help="The upstream's last HTTP status, such as 400.")
@click.option("--since", help="Received at or after: epoch ms or ISO 8601 (UTC if no offset).")
@click.option("--until", help="Received before: epoch ms or ISO 8601.")
def replay(
    config_path: Path,
    db: str | None,
    destination: str | None,
    source: str | None,
    status: int | None,
    since: str | None,
    until: str | None,
) -> None:
    """Queue dead-lettered events again, once their cause is fixed (filters combine).

    A running gateway or `capigate relay` picks them up at its next poll.
    """
    from capigate.relay import replay_refusal
    from capigate.store import DeadLetterQuery

    config, _ = _resolve_config(config_path, create=False)
    refusal = replay_refusal(config, destination, source)
    if refusal is not None:
        raise click.ClickException(f"nothing to replay: {refusal[1]}")
    query = DeadLetterQuery(
        destination=destination,
        source=source,
        status=status,
        since_ms=epoch_ms(since, "--since"),
        until_ms=epoch_ms(until, "--until"),
    )
    try:
        store = _open_store(config, db)
        count = asyncio.run(_replay(store, query))
    except StoreError as exc:
        raise click.ClickException(f"store: {exc}") from None
    click.echo(f"re-queued {count} dead-lettered event(s)")


async def _replay(store: Store, query: DeadLetterQuery) -> int:
    await store.open()
    try:
        return await store.replay(query, now_ms=time.time_ns() // 1_000_000)
    finally:
        await store.close()


@main.command()
@_CONFIG_OPTION
@_DB_OPTION
@click.option("--apply", "apply_steps", is_flag=True, help="Apply the pending steps.")
def migrate(config_path: Path, db: str | None, apply_steps: bool) -> None:
    """Show the store's schema version and the pending steps; --apply applies them.

    `capigate serve` applies pending steps at start too; a node refuses a newer schema.
    """
    from capigate.store.migrations import apply_migrations, describe, schema_status

    url = (
        _checked_url(db)
        if db and not config_path.exists()
        else _store_url(_resolve_config(config_path, create=False, alternative=", or the store with --db URL")[0], db)
    )
    try:
        before = asyncio.run(schema_status(url))
        after = asyncio.run(apply_migrations(url)) if apply_steps and before.pending else None
    except StoreError as exc:
        raise click.ClickException(f"store: {exc}") from None
    if before.too_new:
        raise click.ClickException(before.refusal())
    applied = len(before.pending) if after is not None else None
    for line in describe(after or before, applied=applied, apply_command=_apply_command(config_path, db)):
        click.echo(line)


def _apply_command(config_path: Path, db: str | None) -> str | None:
    """``capigate migrate --apply`` with the --config and --db given on this command line, so
    that it migrates the store just described, not the configuration's; None when --db holds a
    password, which is not printed."""
    ctx = click.get_current_context()
    words = ["capigate", "migrate"]
    if ctx.get_parameter_source("config_path") is click.core.ParameterSource.COMMANDLINE:
        words += ["--config", shlex.quote(str(config_path))]
    if db and ctx.get_parameter_source("db") is click.core.ParameterSource.COMMANDLINE:
        if _has_password(db):
            return None
        words += ["--db", shlex.quote(db)]
    return " ".join([*words, "--apply"])


def _has_password(url: str) -> bool:
    userinfo, at, _ = urlsplit(url).netloc.rpartition("@")
    return bool(at) and ":" in userinfo


def _check_schema(url: str) -> str:
    """Refuse to serve a store this capigate cannot use, with a message; its printable name."""
    from capigate.store.migrations import schema_status

    try:
        status = asyncio.run(schema_status(url))
    except StoreError as exc:
        raise click.ClickException(f"store: {exc}") from None
    if status.too_new:
        raise click.ClickException(status.refusal())
    return status.store


# The SDK's commands (bodies in capigate.client.cli_commands).
from capigate.client.cli_commands import send, validate  # noqa: E402
from capigate.client.cli_gateway import env, epoch_ms, events  # noqa: E402

main.add_command(env)
main.add_command(validate)
main.add_command(send)
main.add_command(events)

from capigate.client.cli_quality import quality  # noqa: E402

main.add_command(quality)


@main.group()
def native() -> None:
    """The hot modules (the Axon rules, the request path) compiled with mypyc, opt-in.

    The build goes to $CAPIGATE_NATIVE_DIR, else capigate-native beside the interpreter
    (sys.prefix). A process loads it when it starts if every module's source, and that of
    every capigate module they import, is the one compiled; CAPIGATE_NATIVE=0 turns it off.
    capigate serve prints what it runs.
    """


@native.command("build")
def native_build() -> None:
    """Compile the hot modules (a C compiler and mypy needed: pip install 'capigate[native]')."""
    from capigate.native import MODULES, build, native_dir

    click.echo(f"compiling {len(MODULES)} modules with mypyc into {native_dir()} (about a minute) ...")
    try:
        target = build()
    except (RuntimeError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"compiled {len(MODULES)} modules into {target}; capigate loads them from its next start")


@native.command("status")
def native_status() -> None:
    """Whether a capigate started now runs the compiled modules, and why not (a running
    gateway printed its own in its start-up line). Exit status 0 when on, 1 when off, as a
    deploy script wants: `capigate native status || capigate native build`."""
    from capigate.native import status

    said = status()
    click.echo(said)
    if not said.startswith("on"):
        raise SystemExit(1)
