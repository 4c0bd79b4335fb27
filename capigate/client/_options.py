"""Click options more than one command module declares alike; light to import (no httpx)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from click.core import ParameterSource

import capigate.worker_env as worker_env
from capigate.ports import port_problem

__all__ = ["address_options", "client_port", "config_option", "given_as"]

F = TypeVar("F", bound=Callable[..., Any])


def config_option(help: str) -> Callable[[F], F]:
    """``--config``: the gateway's capigate.toml (``CAPIGATE_CONFIG``), as ``config_path``."""
    return click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default="capigate.toml",
        envvar=worker_env.CONFIG,
        show_envvar=True,
        show_default=True,
        help=help,
    )


def given_as(ctx: click.Context, param: click.Parameter, value: object) -> str:
    """How an option's value was given, for the one line of a configuration mistake:
    ``CAPIGATE_PORT=abc`` when it came from its variable, else ``--port abc``."""
    source = ctx.get_parameter_source(param.name or "")
    envvar = param.envvar if isinstance(param.envvar, str) else None
    if source is ParameterSource.ENVIRONMENT and envvar:
        return f"{envvar}={value}"
    return f"{param.opts[0]} {value}"


def client_port(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """A port a client connects to: 1 to 65535 (serve's 0, any free port, is none to reach).
    A wrong one is a configuration mistake: one line, status 1, as serve's."""
    if value is None:
        return None
    if (problem := port_problem(value)) is not None:
        raise click.ClickException(f"{given_as(ctx, param, value)}: {problem}")
    return int(value)


def address_options(command: F) -> F:
    """``--host`` and ``--port`` of a command that finds a running gateway (env, curl, events,
    quality): the address serve was started with, over the configuration's. Their variables,
    CAPIGATE_HOST and CAPIGATE_PORT, are read where the address is made (``gateway_url``), so
    that only an option given on the command line sets CAPIGATE_URL aside (``explicit_url``)."""
    host = click.option("--host", help="The gateway's address (default: CAPIGATE_HOST, else [server] host).")
    port = click.option(
        "--port",
        type=str,
        metavar="INTEGER",
        callback=client_port,
        help="The gateway's port (default: CAPIGATE_PORT, else [server] port).",
    )
    return host(port(command))
