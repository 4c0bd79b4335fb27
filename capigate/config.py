"""capigate.toml: the configuration file, its types, its checks and its first-run default.

The file's shape is a user-facing contract: each key's type, default and help are in the table
of ``capigate/settings.py``, which documents these Structs and renders both the file written
on first start and the README's block. Every mistake stops start-up with a ConfigError naming
the file, the key and the fix.
"""

from __future__ import annotations

import difflib
import re
import secrets
import tomllib
from collections.abc import Callable, Mapping
from ipaddress import ip_network
from pathlib import Path
from typing import Annotated, Any, Final, Literal, TypeVar, get_args
from urllib.parse import urlsplit

import msgspec
from msgspec import Meta, Struct

from capigate.appsflyer.schema import ios_prefix_missing
from capigate.appsflyer.upstream import APPSFLYER_URL
from capigate.axon.body import MAX_BODY_BYTES, MIN_BODY_BYTES
from capigate.axon.upstream import AXON_URL
from capigate.checking import converts
from capigate.config_errors import ConfigErrors, config_error, unquoted_number
from capigate.endpoint_path import endpoint_base
from capigate.errors import ConfigError
from capigate.identity import contains_email
from capigate.personal import shown_value
from capigate.ports import PORTS
from capigate.settings import render, struct_doc

__all__ = [
    "AppsFlyerApp",
    "AxonPixel",
    "Config",
    "RelaySettings",
    "ServerSettings",
    "StoreSettings",
    "ineffective_settings",
    "load_config",
    "unset_variable",
    "workers_warning",
    "write_default_config",
    "written_warnings",
]

T = TypeVar("T")
StructT = TypeVar("StructT", bound=Struct)
Positive = Annotated[int, Meta(gt=0)]
PositiveFloat = Annotated[float, Meta(gt=0)]


class RelaySettings(Struct, kw_only=True, forbid_unknown_fields=True):
    url: str | None = None  # what the relay can use: _url_problem, which names the URL as written
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
    max_retry_after_s: PositiveFloat = 600.0
    poll_interval_s: PositiveFloat = 1.0


class ServerSettings(Struct, kw_only=True, forbid_unknown_fields=True):
    admin_token: Annotated[str, Meta(min_length=8)]
    host: Annotated[str, Meta(min_length=1)] = "127.0.0.1"  # "" listened on every interface (a trial)
    port: Annotated[int, Meta(ge=0, le=65535)] = 8080
    workers: Positive = 1
    max_body_bytes: Annotated[int, Meta(ge=MIN_BODY_BYTES)] = MAX_BODY_BYTES
    header_timeout_s: Annotated[float, Meta(gt=0, le=60)] = 10.0
    body_timeout_s: PositiveFloat = 30.0
    idle_timeout_s: PositiveFloat = 10.0
    max_connections: Positive = 4096
    log_format: Literal["plain", "json"] = "plain"
    log_requests: bool = True
    trusted_proxies: list[str] = []


class StoreSettings(Struct, kw_only=True, forbid_unknown_fields=True):
    url: str = "capigate.db"
    synchronous: Literal["full", "normal"] = "full"
    writer: Literal["process", "thread"] = "process"
    read_timeout_s: PositiveFloat = 30.0
    dedupe_retention_days: PositiveFloat = 30.0
    journal_retention_days: PositiveFloat = 7.0
    journal_max_rows: Positive = 1_000_000
    journal_buffer: Positive = 10_000
    event_retention_days: PositiveFloat = 30.0

    @property
    def dedupe_keys_outlive_journal(self) -> bool:
        """A journal entry goes no later than the dedupe keys and events of the events it
        stored: those can find it (kept.dedupe_ids_not_stored) for as long as it is kept."""
        return self.journal_retention_days <= min(self.dedupe_retention_days, self.event_retention_days)


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

    # Loops, not next() over a generator: looked up on every request, and a few sources each.
    def pixel(self, pixel_id: str) -> AxonPixel | None:
        for pixel in self.axon.pixels:
            if pixel.pixel_id == pixel_id:
                return pixel
        return None

    def app(self, app_id: str) -> AppsFlyerApp | None:
        for app in self.appsflyer.apps:
            if app.app_id == app_id:
                return app
        return None


Indexed = list[tuple[int, Any]]  # the sources that decoded, with their index in the file


def ineffective_settings(config: Config) -> list[str]:
    """Settings that are valid but change nothing, as `check-config` and the start-up banner
    say them: refusing them would stop a gateway for a value that does no harm."""
    server = config.server
    notes = [
        f"appsflyer.apps[{i}].relay.batch_size = {app.relay.batch_size} does nothing: AppsFlyer takes one event a request"
        for i, app in enumerate(config.appsflyer.apps)
        if app.relay is not None and app.relay.batch_size != RelaySettings().batch_size
    ]
    notes += [
        f"{where}.relay.url points at {host}, the other API's host: is this the right source?"
        for where, relay, other in _relays_by_api(config)
        if relay.url is not None and (host := urlsplit(relay.url).hostname or "").endswith(other)
    ]
    if server.idle_timeout_s > server.header_timeout_s:
        notes.append(
            f"server.idle_timeout_s = {server.idle_timeout_s:g} does nothing above header_timeout_s = "
            f"{server.header_timeout_s:g}: a keep-alive connection idle that long is closed first by the "
            "timeout of the next request's head (README, Timeouts and slow clients)"
        )
    return notes


def workers_warning(workers: int, cpus: int | None, *, given: str | None = None) -> str | None:
    """Far more worker processes than cores, said and not refused: the gateway runs, and a
    container may be given more CPU time than the cores it sees. ``given``: how the number was
    given (``CAPIGATE_WORKERS=64``), the file's ``server.workers = 64`` by default."""
    if cpus is None or workers <= 2 * cpus:
        return None
    return (
        f"{given or f'server.workers = {workers}'} is far above this machine's {cpus} CPU(s): workers beyond one a core "
        "only share them, and each holds its own memory and store connections (README, Performance)"
    )


def written_warnings(path: Path, cpus: int | None) -> list[str]:
    """The warnings of the file as written, said by check-config beside its mistakes if it has
    any (they were said of a valid file only, a trial): ``workers`` far above ``cpus``, and a
    client key too short to be a real one (_short_key_warnings)."""
    try:
        raw = _read_toml(path)
    except ConfigError:
        return []  # said as the file's mistake
    server = raw.get("server")
    workers = server.get("workers") if isinstance(server, dict) else None
    warning = workers_warning(workers, cpus) if type(workers) is int else None
    return ([] if warning is None else [warning]) + _short_key_warnings(raw)


# A client key shorter than this is likely a mistake or a stand-in: AppLovin's and AppsFlyer's
# keys are long random strings. Warned, not refused: the examples' dev keys ("key-std",
# "dev-key") are 6 and more, but a test or a local trial may use "k", which does no harm there.
_SHORT_KEY: Final = 4


def _short_key_warnings(raw: dict[str, Any]) -> list[str]:
    """Each pixel ``api_key`` and app key of the file as written shorter than _SHORT_KEY, by its
    place, never its value: a one-character api_key passed while admin_token needs 8 (a trial)."""
    keys: list[tuple[str, Any]] = []
    axon, appsflyer = raw.get("axon"), raw.get("appsflyer")
    pixels = axon.get("pixels") if isinstance(axon, dict) else None
    apps = appsflyer.get("apps") if isinstance(appsflyer, dict) else None
    for i, pixel in enumerate(pixels if isinstance(pixels, list) else []):
        if isinstance(pixel, dict):
            keys.append((f"axon.pixels[{i}].api_key", pixel.get("api_key")))
    for i, app in enumerate(apps if isinstance(apps, list) else []):
        app_keys = app.get("keys") if isinstance(app, dict) else None
        keys += [
            (f"appsflyer.apps[{i}].keys[{j}]", key)
            for j, key in enumerate(app_keys or [])
            if isinstance(app_keys, list)
        ]
    return [
        f"{where} is only {len(key)} character{'s' if len(key) > 1 else ''}: clients authenticate with it, and a "
        'real key is a long random string; is it a stand-in? (a dev key such as "dev-key" is fine)'
        for where, key in keys
        if isinstance(key, str) and 0 < len(key) < _SHORT_KEY
    ]


def _relays_by_api(config: Config) -> list[tuple[str, RelaySettings, str]]:
    """Each relay table, where it is, and the host of the API it is not for."""
    relays = [(f"axon.pixels[{i}]", p.relay, "appsflyer.com") for i, p in enumerate(config.axon.pixels)]
    relays += [(f"appsflyer.apps[{i}]", a.relay, "applovin.com") for i, a in enumerate(config.appsflyer.apps)]
    return [(where, relay, other) for where, relay, other in relays if relay is not None]


def load_config(
    path: Path,
    environ: Mapping[str, str] | None = None,
    *,
    text: str | None = None,
    host_problem: Callable[[str], str | None] | None = None,
    store_problem: Callable[[str], str | None] | None = None,
) -> Config:
    """The configuration in ``path`` (or ``text``, as read from it before); ConfigError naming
    the file, the key and the fix, or ConfigErrors naming every mistake found. ``environ``: also
    check that each enabled relay's ``api_key_env`` is set there (the processes that relay need it).
    ``host_problem``: also check ``[server] host`` with it (check-config; serve's bind does);
    ``store_problem``, ``[store] url`` (check-config; serve's opening of the store does)."""
    name = str(path)
    raw = _read_toml(path, text)
    raw.pop("path", None)
    problems: list[ConfigError] = []
    config: Config | None = None
    try:
        config = msgspec.convert(raw, Config)
    except msgspec.ValidationError as exc:
        pixels, apps = _decode_parts(name, raw, problems)
        if not problems:
            problems.append(config_error(name, str(exc)))
    else:
        pixels, apps = list(enumerate(config.axon.pixels)), list(enumerate(config.appsflyer.apps))
    problems += _check_unique(name, pixels, "axon.pixels", "pixel_id")
    problems += _check_unique(name, apps, "appsflyer.apps", "app_id")
    problems += _check_relays(name, pixels, apps, environ)
    problems += _check_proxies(name, raw.get("server"))
    if host_problem is not None:
        problems += _check_host(name, raw.get("server"), host_problem)
    if store_problem is not None:
        problems += _check_store(name, raw.get("store", {}), store_problem)
    problems += _check_app_ids(name, apps)
    problems += _check_not_email(name, pixels, "axon.pixels", "pixel_id")
    problems += _check_not_email(name, apps, "appsflyer.apps", "app_id")
    problems += _check_url_safe(name, pixels, "axon.pixels", "pixel_id")
    problems += _check_url_safe(name, apps, "appsflyer.apps", "app_id")
    problems = [unquoted_number(problem, raw) for problem in problems]
    if len(problems) > 1:
        raise ConfigErrors(problems)
    if problems:
        raise problems[0]
    assert config is not None
    config.path = name
    return config


def _read_toml(path: Path, text: str | None = None) -> dict[str, Any]:
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8") if text is None else text
    except FileNotFoundError:
        raise ConfigError(
            name,
            "",
            "the file does not exist; run `capigate serve` without --config (nor CAPIGATE_CONFIG) "
            "in the directory that should hold it, to create one",
        ) from None
    except OSError as exc:
        raise ConfigError(name, "", f"cannot read the file ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(name, "", f"not UTF-8 text (byte {exc.start}), as TOML must be") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        where = _TOML_PLACE.search(str(exc))
        if where is None:
            raise ConfigError(name, "", f"not valid TOML: {exc}") from None
        reason = str(exc)[: where.start()].rstrip()
        if (source := _relay_before_source(text, int(where["line"]), reason)) is not None:
            raise ConfigError(
                name, f"line {where['line']}, column {where['column']}", _RELAY_WITHOUT_SOURCE[source]
            ) from None
        raise ConfigError(
            name, f"line {where['line']}, column {where['column']}", f"not valid TOML: {reason}"
        ) from None


def _relay_before_source(text: str, line: int, reason: str) -> str | None:
    """The source ("axon", "appsflyer") whose ``[[…]]`` at ``line`` TOML refused as redefining
    the table that a ``[….relay]`` above it made: the relay was written before its source."""
    lines = text.splitlines()
    if not reason.startswith("Cannot overwrite a value") or not 0 < line <= len(lines):
        return None
    header = lines[line - 1].split("#", 1)[0].replace(" ", "")
    source = _SOURCE_TABLES.get(header)
    if source is None:
        return None
    relay = f"[{header[2:-2]}.relay]"
    return source if any(above.replace(" ", "").startswith(relay) for above in lines[: line - 1]) else None


_TOML_PLACE: Final = re.compile(r"\(at line (?P<line>\d+), column (?P<column>\d+)\)$")


def _decode(file: str, value: Any, kind: type[T], prefix: str, problems: list[ConfigError]) -> T | None:
    """``value`` as ``kind``, or None with its mistakes added to ``problems`` (keys under ``prefix``)."""
    try:
        return msgspec.convert(value, kind)
    except msgspec.ValidationError as exc:
        found = _sorted_keys(value, kind, prefix)[1] or [_placed(str(exc), prefix)]
        problems += [config_error(file, message) for message in found]
        return None


def _sorted_keys(value: Any, kind: Any, prefix: str) -> tuple[dict[str, Any], list[str]]:
    """The keys of the table ``value`` that decode as the Struct ``kind``'s fields want (a
    nested table's own such keys), and msgspec's messages for the others, placed under
    ``prefix``: msgspec stops at a table's first mistake, each key decoded on its own names
    every one."""
    if not isinstance(value, dict):
        return {}, []
    fields = {field.name: field for field in msgspec.structs.fields(kind)}
    kept: dict[str, Any] = {}
    found = []
    for key, item in value.items():
        if key not in fields:
            found.append(_placed(f"Object contains unknown field `{key}`", prefix))
            continue
        try:
            msgspec.convert(item, fields[key].type)
        except msgspec.ValidationError as exc:
            place = f"{prefix}.{key}"
            inner_found: list[str] = []
            if (inner := _struct_in(fields[key].type)) is not None and isinstance(item, dict):
                kept[key], inner_found = _sorted_keys(item, inner, place)
            found += inner_found or [_placed(str(exc), place)]
        else:
            kept[key] = item
    missing = [name for name, field in fields.items() if field.required and name not in value]
    return kept, found + [_placed(f"Object missing required field `{name}`", prefix) for name in missing]


def _struct_in(annotation: Any) -> Any:
    """The Struct of a field's type (``RelaySettings | None``: RelaySettings), else None."""
    return next((t for t in (annotation, *get_args(annotation)) if isinstance(t, type) and issubclass(t, Struct)), None)


def _placed(message: str, prefix: str) -> str:
    """msgspec's ``message`` about the value at ``prefix``, as it says one in the whole file."""
    text, at, where = message.partition(" - at `$")
    return f"{text} - at `$.{prefix}{where if at else '`'}"


def _decode_parts(file: str, raw: dict[str, Any], problems: list[ConfigError]) -> tuple[Indexed, Indexed]:
    """Each table and each source on its own, so that every one's mistakes are named: the
    sources that decoded, for the checks that follow decoding."""
    unknown = [key for key in raw if key not in ("server", "store", "axon", "appsflyer")]
    problems += [config_error(file, f"Object contains unknown field `{key}`") for key in unknown]
    if "server" not in raw and not difflib.get_close_matches("server", unknown, n=1, cutoff=0.6):  # [servr] said it
        problems.append(config_error(file, "Object missing required field `server`"))
    for table, kind in (("server", ServerSettings), ("store", StoreSettings)):
        if table in raw:
            _decode(file, raw[table], kind, table, problems)
    pixels = _decode_sources(file, raw.get("axon"), AxonSection, "axon", "pixels", AxonPixel, problems)
    apps = _decode_sources(file, raw.get("appsflyer"), AppsFlyerSection, "appsflyer", "apps", AppsFlyerApp, problems)
    return pixels, apps


def _decode_sources(
    file: str, table: Any, section: type, name: str, key: str, kind: type, problems: list[ConfigError]
) -> Indexed:
    if table is None:
        return []
    items = table.get(key) if isinstance(table, dict) else None
    if _only_relay(items):  # [axon.pixels.relay] before any [[axon.pixels]]: a table, not a list
        problems.append(ConfigError(file, f"{name}.{key}.relay", _RELAY_WITHOUT_SOURCE[name]))
        _decode(file, {k: v for k, v in table.items() if k != key}, section, name, problems)
        return []
    if not isinstance(items, list):
        _decode(file, table, section, name, problems)
        return []
    _decode(file, {k: v for k, v in table.items() if k != key}, section, name, problems)
    decoded = []
    for i, item in enumerate(items):
        if _only_relay(item):  # [[axon.pixels]] then at once [axon.pixels.relay]: the keys went in the relay
            problems.append(ConfigError(file, f"{name}.{key}[{i}].relay", _RELAY_WITHOUT_SOURCE[name]))
            continue
        decoded.append((i, _decode(file, item, kind, f"{name}.{key}[{i}]", problems) or _mended(item, kind)))
    return [(i, source) for i, source in decoded if source is not None]


# A relay table with no source around it, said as such: it was told that the source's own keys
# were missing (axon.pixels.pixel_id: this key is required), under no pixel at all (a trial).
_RELAY_WITHOUT_SOURCE: Final = {
    "axon": "[axon.pixels.relay] belongs under a [[axon.pixels]] entry: put it after the pixel's pixel_id and api_key",
    "appsflyer": (
        "[appsflyer.apps.relay] belongs under a [[appsflyer.apps]] entry: put it after the app's app_id and keys"
    ),
}
_SOURCE_TABLES: Final = {"[[axon.pixels]]": "axon", "[[appsflyer.apps]]": "appsflyer"}


def _only_relay(value: Any) -> bool:
    """A source's table holding a relay table and nothing else."""
    return isinstance(value, dict) and list(value) == ["relay"]


def _mended(value: Any, kind: type[StructT]) -> StructT | None:
    """A source whose mistakes are named already, without the keys that hold them (a required
    one given a stand-in), for the checks across sources and keys (a duplicate id, a relay URL,
    an unset api_key_env): a first pass named only the mistakes of decoding, and a second the
    rest (a trial). None if it still does not decode."""
    if not isinstance(value, dict):
        return None
    kept, _ = _sorted_keys(value, kind, "")
    for field in msgspec.structs.fields(kind):
        if field.required and field.name not in kept:  # named already: a stand-in, for the other checks
            if field.name.endswith("_id"):
                return None  # an id checked across sources: two stand-ins would be one id twice
            kept[field.name] = next((v for v in _STAND_INS if converts(v, field.type)), None)
    try:
        return msgspec.convert(kept, kind)
    except msgspec.ValidationError:
        return None


_STAND_INS: Final = ("capigate-stand-in", ["capigate-stand-in"])


def _check_relays(file: str, pixels: Indexed, apps: Indexed, environ: Mapping[str, str] | None) -> list[ConfigError]:
    relays = [(f"axon.pixels[{i}].relay", p.relay, AXON_URL) for i, p in pixels]
    relays += [(f"appsflyer.apps[{i}].relay", a.relay, APPSFLYER_URL) for i, a in apps]
    problems = []
    for key, relay, example in relays:
        if relay is None:
            continue
        if relay.url is not None and (why := _url_problem(relay.url, example)) is not None:
            problems.append(ConfigError(file, f"{key}.url", why))
        if relay.api_key is not None and relay.api_key_env is not None:
            problems.append(ConfigError(file, key, "set api_key or api_key_env, not both"))
        elif environ is not None and relay.enabled and relay.api_key_env and not environ.get(relay.api_key_env):
            problems.append(unset_variable(file, key, relay.api_key_env))
    return problems


_CREDENTIALS_IN_URL: Final = (
    "the URL holds a user name or password (user:pass@host): the relay sends none from the URL, "
    "and its start-up line would show them; leave them out (the upstream's key is api_key or api_key_env)"
)
_HTTP_URL: Final = re.compile(r"https?://[^/?#\s]+(/[^?#\s]*)?")
_A_RELAY_URL: Final = (
    "expected an http:// or https:// URL with a host and no space, query (?) or fragment (#), e.g. url = "
)


def _url_problem(url: str, example: str) -> str | None:
    """What the relay could not use in ``url``, after the URL as written (its user and password
    hidden), as each configuration mistake names its value: ``ftp://x`` and a URL without a
    host named the key and the rule only (a trial). Beyond the scheme, host and no query: a
    port that is no number (every worker crashed at start-up, and at a SIGHUP with it the
    running gateway exited: a trial), an unclosed IPv6 bracket, credentials, port 0, the
    endpoint's path. ``example``: the API's own URL, given as the example (an AppsFlyer relay
    was given AppLovin's: a re-trial)."""
    shown = repr(_without_credentials(url))
    expected = f'{_A_RELAY_URL}"{example}"'
    if _HTTP_URL.fullmatch(url) is None:
        return f"{shown}: {expected}"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  # read for its ValueError
    except ValueError:
        return f"{shown}: its host or port cannot be read ({PORTS}; an IPv6 address goes in [ ])"
    if parts.username is not None or parts.password is not None:
        return f"{shown}: {_CREDENTIALS_IN_URL}"
    if not parts.hostname:
        return f"{shown}: {expected}"
    if parts.port == 0:  # read as no port: the relay went to port 80 (a trial)
        return f"{shown}: its port is 0; give the upstream's port ({PORTS}), or none for the scheme's own"
    if (base := endpoint_base(parts.path)) is not None:
        return (
            f"{shown}: give the upstream's base URL ({parts.scheme}://{parts.netloc}{base}), without the "
            f"endpoint's path {parts.path!r}: the relay adds it"
        )
    return None


def _without_credentials(url: str) -> str:
    """``url`` as a message may show it: whatever precedes an ``@`` after the scheme (a user
    and password, or what cannot be told from one) as ``***``, as a store URL's password is."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    if "@" not in rest:
        return url
    return f"{scheme}{sep}***@{rest.rpartition('@')[2]}"


def unset_variable(file: str, relay_key: str, variable: str) -> ConfigError:
    """The mistake of a relay whose ``api_key_env`` names an unset environment variable."""
    return ConfigError(file or "-", f"{relay_key}.api_key_env", f"the environment variable {variable} is not set")


def _check_proxies(file: str, server: Any) -> list[ConfigError]:
    """The networks of the table as written, so that they are checked beside its other mistakes."""
    networks = server.get("trusted_proxies") if isinstance(server, dict) else None
    problems = []
    for i, network in enumerate(networks if isinstance(networks, list) else []):
        if not isinstance(network, str):
            continue  # its type is said by the decoding
        try:
            ip_network(network, strict=False)
        except ValueError:
            problems.append(
                ConfigError(
                    file,
                    f"server.trusted_proxies[{i}]",
                    f"{shown_value(network)} is not an IP address or network (e.g. 10.0.0.0/8)",
                )
            )
    return problems


def _check_host(file: str, server: Any, host_problem: Callable[[str], str | None]) -> list[ConfigError]:
    """The host of the table as written, so that it is checked beside the table's other mistakes."""
    host = server.get("host") if isinstance(server, dict) else None
    if not isinstance(host, str) or (why := host_problem(host)) is None:
        return []
    return [ConfigError(file, "server.host", why)]


def _check_store(file: str, store: Any, store_problem: Callable[[str], str | None]) -> list[ConfigError]:
    """The store URL of the table as written (or the default), checked beside the file's other mistakes."""
    url = store.get("url", StoreSettings().url) if isinstance(store, dict) else None
    if not isinstance(url, str) or (why := store_problem(url)) is None:
        return []
    return [ConfigError(file, "store.url", why)]


def _check_app_ids(file: str, apps: Indexed) -> list[ConfigError]:
    return [
        ConfigError(file, f"appsflyer.apps[{i}].app_id", f'{reason}; write app_id = "id{app.app_id}"')
        for i, app in apps
        if (reason := ios_prefix_missing(app.app_id)) is not None
    ]


def _check_not_email(file: str, sources: Indexed, table: str, key: str) -> list[ConfigError]:
    """A source id travels in URLs (``?pixel_id=``, ``/inappevent/{app_id}``), in the journal
    and in the logs, none of which may hold personal data; the message does not repeat it."""
    return [
        ConfigError(
            file,
            f"{table}[{i}].{key}",
            "looks like an email address; a source id appears in URLs, the request journal and the logs, "
            f"which must hold no personal data: use the {key} the platform assigned",
        )
        for i, source in sources
        if contains_email(getattr(source, key))
    ]


# What no Axon pixel id nor AppsFlyer app id holds, and a URL cannot carry as written: the
# banner's and `capigate curl`'s URLs held ``?pixel_id=px a&b#c``, which curl refused (a trial).
# ``+`` reads as a space in a query. The URLs are percent-encoded too; a client's are not.
_NOT_IN_AN_ID: Final = {"/": "'/'", "?": "'?'", "&": "'&'", "#": "'#'", "%": "'%'", "+": "'+'"}
_ID_EXAMPLES: Final = {
    "pixel_id": ("?pixel_id=…", "an Axon pixel id never holds these: use the pixel_id the platform assigned"),
    "app_id": (
        "/inappevent/{app_id}",
        "an AppsFlyer app id never holds these: it is an Android package name (com.example.shop) or an iOS id (id123456789)",
    ),
}


def _url_unsafe(value: str) -> list[str]:
    """The kinds of character in ``value`` that a source id must not hold, each named once."""
    said: list[str] = []
    for char in value:
        name = (
            "a space"
            if char.isspace()
            else "a control character"
            if not char.isprintable()
            else _NOT_IN_AN_ID.get(char)
        )
        if name is not None and name not in said:
            said.append(name)
    return said


def _check_url_safe(file: str, sources: Indexed, table: str, key: str) -> list[ConfigError]:
    """A source id goes into URLs as written, by every client: one with a space, '/', '?',
    '&', '#', '%' or '+' is refused, which no id the platforms assign holds. One holding an
    email address is said as such (_check_not_email), once."""
    where, what = _ID_EXAMPLES[key]
    problems = []
    for i, source in sources:
        value = getattr(source, key)
        if contains_email(value) or not (found := _url_unsafe(value)):
            continue
        held = found[0] if len(found) == 1 else f"{', '.join(found[:-1])} and {found[-1]}"
        problems.append(
            ConfigError(
                file,
                f"{table}[{i}].{key}",
                f"{shown_value(value)} holds {held}: it is sent in URLs as written ({where}), and {what}",
            )
        )
    return problems


def _check_unique(file: str, sources: Indexed, table: str, key: str) -> list[ConfigError]:
    problems, seen = [], set()
    for i, source in sources:
        value = getattr(source, key)
        if value in seen:
            problems.append(ConfigError(file, f"{table}[{i}].{key}", f"{shown_value(value)} is configured twice"))
        seen.add(value)
    return problems


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
