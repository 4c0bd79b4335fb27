"""capigate.toml: the configuration file, its types, its checks and its first-run default.

The file's shape is a user-facing contract: each key's type, default and help are in the table
of ``capigate/settings.py``, which documents these Structs and renders both the file written
on first start and the README's block. Every mistake stops start-up with a ConfigError naming
the file, the key and the fix.
"""

from __future__ import annotations

import secrets
import tomllib
from ipaddress import ip_network
from pathlib import Path
from typing import Annotated, Literal

import msgspec
from msgspec import Meta, Struct

from capigate.appsflyer.schema import ios_prefix_missing
from capigate.config_errors import config_error
from capigate.errors import ConfigError
from capigate.settings import render, struct_doc

__all__ = [
    "AppsFlyerApp",
    "AxonPixel",
    "Config",
    "RelaySettings",
    "ServerSettings",
    "StoreSettings",
    "load_config",
    "write_default_config",
]

Positive = Annotated[int, Meta(gt=0)]
PositiveFloat = Annotated[float, Meta(gt=0)]


class RelaySettings(Struct, kw_only=True, forbid_unknown_fields=True):
    url: Annotated[str, Meta(pattern=r"^https?://[^/?#]+(/[^?#]*)?$")] | None = None
    api_key: str | None = None
    api_key_env: str | None = None
    enabled: bool = True
    batch_size: Annotated[int, Meta(ge=1, le=100)] = 100
    concurrency: Annotated[int, Meta(ge=1, le=64)] = 4
    max_attempts: Annotated[int, Meta(ge=1)] = 50
    max_age_hours: PositiveFloat = 72.0
    timeout_s: PositiveFloat = 10.0
    backoff_base_s: PositiveFloat = 1.0
    backoff_max_s: PositiveFloat = 600.0
    max_retry_after_s: PositiveFloat = 86400.0
    poll_interval_s: PositiveFloat = 1.0


class ServerSettings(Struct, kw_only=True, forbid_unknown_fields=True):
    admin_token: Annotated[str, Meta(min_length=8)]
    host: str = "127.0.0.1"
    port: Annotated[int, Meta(ge=0, le=65535)] = 8080
    workers: Positive = 1
    max_body_bytes: Positive = 1_048_576
    header_timeout_s: Annotated[float, Meta(gt=0, le=60)] = 10.0
    body_timeout_s: PositiveFloat = 30.0
    idle_timeout_s: PositiveFloat = 60.0
    max_connections: Positive = 4096
    log_format: Literal["plain", "json"] = "plain"
    log_requests: bool = True
    trusted_proxies: list[str] = []


class StoreSettings(Struct, kw_only=True, forbid_unknown_fields=True):
    url: str = "capigate.db"
    synchronous: Literal["full", "normal"] = "full"
    dedupe_retention_days: PositiveFloat = 30.0
    journal_retention_days: PositiveFloat = 7.0
    journal_max_rows: Positive = 1_000_000
    journal_buffer: Positive = 10_000
    event_retention_days: PositiveFloat = 30.0


class AxonPixel(Struct, kw_only=True, forbid_unknown_fields=True):
    pixel_id: Annotated[str, Meta(min_length=1)]
    api_key: Annotated[str, Meta(min_length=1)]
    profile: Literal["standard", "lead_gen", "lead_gen_restricted"] = "standard"
    relay: RelaySettings | None = None


class AppsFlyerApp(Struct, kw_only=True, forbid_unknown_fields=True):
    app_id: Annotated[str, Meta(min_length=1)]
    keys: Annotated[list[Annotated[str, Meta(min_length=1)]], Meta(min_length=1)]
    dedupe_key: Literal["af_order_id"] | None = None
    relay: RelaySettings | None = None


RelaySettings.__doc__ = struct_doc("Where and how a source's accepted events are relayed (``[…relay]``).", "relay")
ServerSettings.__doc__ = struct_doc("The ``[server]`` table.", "server")
StoreSettings.__doc__ = struct_doc("The ``[store]`` table.", "store")
AxonPixel.__doc__ = struct_doc("One ``[[axon.pixels]]`` table, and its optional relay.", "axon.pixels")
AppsFlyerApp.__doc__ = struct_doc("One ``[[appsflyer.apps]]`` table, and its optional relay.", "appsflyer.apps")


class AxonSection(Struct, kw_only=True, forbid_unknown_fields=True):
    pixels: list[AxonPixel] = []


class AppsFlyerSection(Struct, kw_only=True, forbid_unknown_fields=True):
    apps: list[AppsFlyerApp] = []


class Config(Struct, kw_only=True, forbid_unknown_fields=True):
    server: ServerSettings
    store: StoreSettings = msgspec.field(default_factory=StoreSettings)
    axon: AxonSection = msgspec.field(default_factory=AxonSection)
    appsflyer: AppsFlyerSection = msgspec.field(default_factory=AppsFlyerSection)
    path: str = ""  # the file it came from; not a key of the file

    def pixel(self, pixel_id: str) -> AxonPixel | None:
        return next((p for p in self.axon.pixels if p.pixel_id == pixel_id), None)

    def app(self, app_id: str) -> AppsFlyerApp | None:
        return next((a for a in self.appsflyer.apps if a.app_id == app_id), None)


def load_config(path: Path) -> Config:
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            name, "-", "the file does not exist; run `capigate serve` without --config to create one"
        ) from None
    except OSError as exc:
        raise ConfigError(name, "-", f"cannot read the file ({exc.strerror})") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(name, "-", f"not valid TOML: {exc}") from None
    raw.pop("path", None)
    try:
        config = msgspec.convert(raw, Config)
    except msgspec.ValidationError as exc:
        raise _config_error(name, str(exc)) from None
    _check_unique(name, config)
    _check_relays(name, config)
    _check_proxies(name, config)
    _check_app_ids(name, config)
    config.path = name
    return config


def _config_error(file: str, message: str) -> ConfigError:
    return config_error(file, message)


def _check_relays(file: str, config: Config) -> None:
    relays = [(f"axon.pixels[{i}].relay", p.relay) for i, p in enumerate(config.axon.pixels)]
    relays += [(f"appsflyer.apps[{i}].relay", a.relay) for i, a in enumerate(config.appsflyer.apps)]
    for key, relay in relays:
        if relay is not None and relay.api_key is not None and relay.api_key_env is not None:
            raise ConfigError(file, key, "set api_key or api_key_env, not both")


def _check_proxies(file: str, config: Config) -> None:
    for i, network in enumerate(config.server.trusted_proxies):
        try:
            ip_network(network, strict=False)
        except ValueError:
            raise ConfigError(
                file, f"server.trusted_proxies[{i}]", f"{network!r} is not an IP address or network (e.g. 10.0.0.0/8)"
            ) from None


def _check_app_ids(file: str, config: Config) -> None:
    for i, app in enumerate(config.appsflyer.apps):
        if (reason := ios_prefix_missing(app.app_id)) is not None:
            raise ConfigError(file, f"appsflyer.apps[{i}].app_id", f'{reason}; write app_id = "id{app.app_id}"')


def _check_unique(file: str, config: Config) -> None:
    seen: set[str] = set()
    for i, pixel in enumerate(config.axon.pixels):
        if pixel.pixel_id in seen:
            raise ConfigError(file, f"axon.pixels[{i}].pixel_id", f"{pixel.pixel_id!r} is configured twice")
        seen.add(pixel.pixel_id)
    seen.clear()
    for i, app in enumerate(config.appsflyer.apps):
        if app.app_id in seen:
            raise ConfigError(file, f"appsflyer.apps[{i}].app_id", f"{app.app_id!r} is configured twice")
        seen.add(app.app_id)


_HEADER = """\
# capigate configuration, written on first start: every key, with its default commented out.
# The demo sources below forward nothing: add a relay table (uncomment it) to relay a source.

"""


def write_default_config(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    secrets_given = {
        "server.admin_token": secrets.token_urlsafe(24),
        "axon.pixels.api_key": secrets.token_urlsafe(24),
        "appsflyer.apps.app_id": "com.example.demo",
        "appsflyer.apps.keys": [secrets.token_urlsafe(18)],
    }
    text = _HEADER + render(secrets_given, relay_table=False)
    with path.open("x", encoding="utf-8") as f:
        f.write(text)
    path.chmod(0o600)
