"""Click options more than one command module declares alike; light to import (no httpx)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

import capigate.worker_env as worker_env

__all__ = ["config_option"]

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
