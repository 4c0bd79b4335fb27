"""The configuration is described once (capigate/settings.py): the table matches the Structs
key for key, type for type and default for default; it documents them; it renders the file
written on first start and the README's configuration block."""

from __future__ import annotations

import re
import tomllib
import typing
from pathlib import Path
from typing import Any

import msgspec
import pytest

from capigate.config import (
    AppsFlyerApp,
    AxonPixel,
    RelaySettings,
    ServerSettings,
    StoreSettings,
    load_config,
    write_default_config,
)
from capigate.settings import REQUIRED, SETTINGS, render

ROOT = Path(__file__).resolve().parent.parent
STRUCTS: dict[str, type[msgspec.Struct]] = {
    "server": ServerSettings,
    "store": StoreSettings,
    "axon.pixels": AxonPixel,
    "appsflyer.apps": AppsFlyerApp,
    "relay": RelaySettings,
}


def _bare(tp: Any) -> Any:
    """A field's type without its constraints: Annotated[int, Meta(...)] -> int."""
    if typing.get_origin(tp) is typing.Annotated:
        return _bare(typing.get_args(tp)[0])
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, __import__("types").UnionType):
        return typing.Union[tuple(_bare(a) for a in args)]  # noqa: UP007
    if typing.get_origin(tp) is list:
        return list[_bare(args[0])]  # type: ignore[misc]
    return tp


@pytest.mark.parametrize("section", list(STRUCTS))
def test_the_table_lists_each_structs_keys_in_order_with_their_types_and_defaults(section: str) -> None:
    struct = STRUCTS[section]
    fields = [f for f in msgspec.structs.fields(struct) if f.name != "relay"]
    rows = [s for s in SETTINGS if s.section == section]
    assert [s.name for s in rows] == [f.name for f in fields]
    for row, field in zip(rows, fields, strict=True):
        assert _bare(row.type) == _bare(field.type), row.name
        if field.required:
            assert row.default is REQUIRED, row.name
        else:
            default = field.default_factory() if field.default is msgspec.NODEFAULT else field.default
            assert row.default == default, row.name


@pytest.mark.parametrize("section", list(STRUCTS))
def test_the_table_documents_each_struct(section: str) -> None:
    doc = STRUCTS[section].__doc__ or ""
    for row in (s for s in SETTINGS if s.section == section):
        assert f"    {row.name}: " in doc
        assert " ".join(row.help.split()) in doc


def test_the_readme_shows_the_rendered_configuration() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```toml\n(.*?)```", readme, re.S)
    assert render() in blocks, "update the README's configuration block: print(capigate.settings.render())"


def test_the_rendered_configuration_is_a_valid_file_with_every_key(tmp_path: Path) -> None:
    uncommented = re.sub(r"(?m)^# (\w+ = )", r"\1", render())
    parsed = tomllib.loads(uncommented)
    for row in SETTINGS:
        table = parsed["axon"]["pixels"][0]["relay"] if row.section == "relay" else _table(parsed, row.section)
        assert row.name in table, row.name
    text = uncommented.replace('api_key_env = "AXON_KEY"', "").replace(
        'admin_token = "..."', 'admin_token = "an-admin-token"'
    )
    (tmp_path / "capigate.toml").write_text(text)
    config = load_config(tmp_path / "capigate.toml")
    assert config.axon.pixels[0].relay is not None


def _table(parsed: dict[str, Any], section: str) -> dict[str, Any]:
    found: Any = parsed
    for part in section.split("."):
        found = found[part]
    return found[0] if isinstance(found, list) else found  # type: ignore[no-any-return]


def test_the_file_written_on_first_start_is_the_table_with_fresh_secrets_and_no_relay(tmp_path: Path) -> None:
    path = tmp_path / "capigate.toml"
    write_default_config(path)
    text = path.read_text()
    config = load_config(path)
    assert len(config.server.admin_token) >= 24 and config.server.admin_token in text
    assert config.axon.pixels[0].relay is None and config.appsflyer.apps[0].relay is None  # nothing forwarded
    for row in SETTINGS:
        assert re.search(rf"(?m)^(# )?{row.name} = ", text), row.name
    assert oct(path.stat().st_mode & 0o777) == "0o600"
