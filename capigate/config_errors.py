"""What a mistake in capigate.toml is called: the key, and the fix, from the settings table.

msgspec says ``Expected `int`, got `str` - at `$.server.port```; a user reads
``server.port: expected an integer, e.g. 8080``. An unknown key gets the nearest known one
(``servr``: did you mean `server`?) and the keys its table takes.
"""

from __future__ import annotations

import ast
import difflib
import math
import re
import secrets
import tomllib
from typing import Any, Final, Literal, cast, get_args, get_origin

from capigate.errors import ConfigError
from capigate.personal import shown_value
from capigate.settings import REQUIRED, SECTIONS, SETTINGS, Section, Setting, toml_value

__all__ = ["ConfigErrors", "config_error", "known_keys", "unquoted_number"]


class ConfigErrors(ConfigError):
    """Several mistakes in one file, each a ConfigError (``errors``); the first also gives
    ``file``, ``key`` and ``fix``; the message has a line for each."""

    def __init__(self, errors: list[ConfigError]) -> None:
        first = errors[0]
        super().__init__(first.file, first.key, first.fix)
        self.errors = errors
        self.args = ("\n".join(str(e) for e in errors),)


_TABLES: Final = {"": ("server", "store", "axon", "appsflyer"), "axon": ("pixels",), "appsflyer": ("apps",)}
_KINDS: Final = {
    "int": "an integer",
    "float": "a number",
    "str": "a string",
    "bool": "true or false",
    "array": "a list",
    "object": "a table",
    "null": "nothing",
}
# Why a key has the bound it has, said beside it where the bound alone reads as arbitrary.
_BOUND_WHY: Final = {
    "server.max_body_bytes": (
        "a smaller limit answers 413 to nearly every Axon batch, as one event with its user data takes "
        "hundreds of bytes (AppsFlyer's 1 KB limit is its own, not this key's)"
    ),
}
_EXPECTED: Final = re.compile(r"Expected `([^`]+)`(.*?)(?:, got `([^`]+)`)?$")


def _section(key: str) -> str:
    """The settings section of a dotted key's table: ``axon.pixels[0].relay.url`` -> relay."""
    parts = re.sub(r"\[\d+\]", "", key).split(".")[:-1]
    if "relay" in parts:
        return "relay"
    return ".".join(parts)


def known_keys(table: str) -> tuple[str, ...]:
    """The keys a table of the file takes (``table``: a dotted key without indexes)."""
    if table in _TABLES:
        return _TABLES[table]
    names = tuple(s.name for s in SETTINGS if s.section == table)
    return (*names, "relay") if table in ("axon.pixels", "appsflyer.apps") else names


def _setting(key: str) -> Setting | None:
    name = key.rsplit(".", 1)[-1]
    return next((s for s in SETTINGS if s.section == _section(key) and s.name == name), None)


def _unknown(key: str) -> str:
    name = key.rsplit(".", 1)[-1]
    table = _section(key)
    known = known_keys(table)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = f" (did you mean `{close[0]}`?)" if close else ""
    where = SECTIONS[table][0] if table in SECTIONS else f"[{table}]" if table else "the file's top level"
    return f"unknown key{hint}; {where} takes {', '.join(known)}"


def _kind(msgspec_type: str) -> str:
    return " or ".join(_KINDS.get(t.strip(), f"`{t.strip()}`") for t in msgspec_type.split("|"))


def _expected(key: str, text: str) -> str | None:
    """``expected an integer <= 65535, e.g. 8080`` from msgspec's ``Expected `int` <= 65535``."""
    found = _EXPECTED.match(text)
    if found is None:
        return None
    wanted, bounds, got = found.group(1), found.group(2).strip(), found.group(3)
    message = f"expected {_kind(wanted)}{' ' + bounds if bounds else ''}"
    if got:
        message += f", not {_kind(got)}"
    setting = _setting(key)
    if setting is not None:
        if setting.example is not None:
            message += f", e.g. {_example_line(setting)}"
        elif setting.default is not REQUIRED and setting.default is not None:
            message += f", e.g. {setting.name} = {toml_value(setting.default)}"
        if bounds and not got and (why := _BOUND_WHY.get(f"{setting.section}.{setting.name}")) is not None:
            message += f"; {why}"
    return message


def config_error(file: str, message: str) -> ConfigError:
    """The ConfigError of a msgspec ValidationError message about the file's contents."""
    text, _, where = message.partition(" - at `$")
    key = re.sub(r"^\.", "", where.rstrip("`"))
    if text.startswith(("Object contains unknown field", "Object missing required field")):
        field = text.split("`")[1]
        key = f"{key}.{field}" if key else field
        if text.startswith("Object missing required field"):
            if key in SECTIONS:  # a table: the least one, as a key's example is
                return ConfigError(file, key, f"this table is required, e.g. {_least_table(key)}")
            return ConfigError(file, key, "this key is required" + _example(key))
        return ConfigError(file, key, _unknown(key))
    if text.startswith("Invalid enum value"):
        setting = _setting(key)
        choices = ", ".join(_literal_values(setting.type)) if setting is not None else ""
        text = _enum_value_shown(text)
        return ConfigError(file, key, f"{text}; use one of {choices}" if choices else text)
    return ConfigError(file, key, _expected(key, text) or text)


_ENUM_VALUE: Final = "Invalid enum value "


def _enum_value_shown(text: str) -> str:
    """msgspec's ``Invalid enum value 'jane@example.com'`` with the value as a message may show
    it (personal.shown_value): the log holds no personal data, from the file neither."""
    written = text.removeprefix(_ENUM_VALUE)
    try:
        value = ast.literal_eval(written)
    except (ValueError, SyntaxError):
        return text
    return _ENUM_VALUE + shown_value(value) if isinstance(value, str) else text


def _literal_values(annotation: Any) -> list[str]:
    """The strings a ``Literal[...]`` (or ``Literal[...] | None``) allows, from the type rather
    than the key's comment, which is prose for some keys."""
    if get_origin(annotation) is Literal:
        return [str(value) for value in get_args(annotation)]
    return [value for member in get_args(annotation) for value in _literal_values(member)]


def _least_table(section: str) -> str:
    """The least table ``section`` can be, on one line: ``[server]`` and its required keys."""
    required = [s for s in SETTINGS if s.section == section and s.default is REQUIRED]
    keys = " and ".join(_example_line(s) for s in required)
    heading = SECTIONS[cast(Section, section)][0]
    return f"{heading} with {keys} on the line below it" if keys else heading


def _example(key: str) -> str:
    setting = _setting(key)
    if setting is None or setting.example is None:
        return ""
    return f", e.g. {_example_line(setting)}"


# The settings table's example of admin_token, "...", is too short to be one (8 characters at
# least): "expected a string of length >= 8, e.g. admin_token = "..."" suggested what it refused
# (a trial). A message shows a fresh random token instead, as first start writes one: valid,
# and no published value that every reader of the message would share.
_GENERATED: Final = frozenset({("server", "admin_token")})


def _example_line(setting: Setting) -> str:
    """``name = example`` as a message shows it (a setting with an example)."""
    if (setting.section, setting.name) in _GENERATED:
        return f"{setting.name} = {toml_value(secrets.token_urlsafe(24))} (a random one, made for this message)"
    return f"{setting.name} = {toml_value(setting.example)}"


_INDEXED: Final = re.compile(r"(?P<name>[^.\[\]]+)|\[(?P<index>\d+)\]")


def _value_at(raw: Any, key: str) -> Any:
    """The value the file holds at a dotted key (``axon.pixels[0].relay.timeout_s``), or None."""
    value = raw
    for part in _INDEXED.finditer(key):
        if part["name"] is not None and isinstance(value, dict):
            value = value.get(part["name"])
        elif part["index"] is not None and isinstance(value, list) and int(part["index"]) < len(value):
            value = value[int(part["index"])]
        else:
            return None
    return value


def _number_literal(text: str, kind: str) -> str | None:
    """How TOML writes the number a quoted ``text`` reads as (``"30"``: 30, ``"infinity"``:
    inf), if it is one of ``kind`` (int: an integer; float: any number but nan); else None."""
    written = text.strip().lower()
    try:
        number = float(written)
    except ValueError:
        return None
    if math.isinf(number):
        written = "-inf" if number < 0 else "inf"  # TOML's one word for it: "infinity" is none
    try:
        value = tomllib.loads(f"v = {written}")["v"]
    except tomllib.TOMLDecodeError:
        return None
    if type(value) is int or (kind == "float" and type(value) is float and not math.isnan(value)):
        return written
    return None


def unquoted_number(error: ConfigError, raw: dict[str, Any]) -> ConfigError:
    """``error`` with how to write its value, when it is a number written as a string: a
    number key given ``"inf"`` was told "expected a number, not a string" and an example of 30,
    which did not say that TOML's infinity is ``inf`` without quotes (a trial)."""
    kind = "int" if error.fix.startswith("expected an integer") else "float"
    if not error.fix.startswith(("expected an integer", "expected a number")) or ", not a string" not in error.fix:
        return error
    value = _value_at(raw, error.key)
    if not isinstance(value, str) or (literal := _number_literal(value, kind)) is None:
        return error
    said = error.fix.partition(", e.g. ")[0]
    return ConfigError(
        error.file, error.key, f"{said}: write it without quotes, {error.key.rsplit('.', 1)[-1]} = {literal}"
    )
