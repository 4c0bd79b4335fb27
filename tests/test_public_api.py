"""The public surface: ``from capigate import ...`` gives a sorted, complete list."""

from __future__ import annotations

import inspect
from pathlib import Path

from click.testing import CliRunner

import capigate
import capigate.client
from capigate import errors
from capigate.cli import main
from tests.conftest import Server


def test_all_is_sorted_and_every_name_exists() -> None:
    assert capigate.__all__ == sorted(capigate.__all__)
    assert len(set(capigate.__all__)) == len(capigate.__all__)
    assert all(hasattr(capigate, name) for name in capigate.__all__)


def test_every_public_name_imported_into_the_package_is_listed() -> None:
    public = {
        name for name, value in vars(capigate).items() if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert public <= set(capigate.__all__)


def test_the_whole_error_tree_is_exported() -> None:
    assert set(errors.__all__) <= set(capigate.__all__)


def test_the_clients_and_their_results_are_exported() -> None:
    for name in capigate.client.__all__:
        if not name.isupper() and name not in {"PreparedRequest"}:
            assert name in capigate.__all__, name


def test_the_wire_types_are_the_ones_the_server_validates_with() -> None:
    from capigate.appsflyer.schema import InAppEvent
    from capigate.axon.schema import ServerEvent, UserData

    assert (capigate.ServerEvent, capigate.UserData, capigate.InAppEvent) == (ServerEvent, UserData, InAppEvent)


def _docs_block(heading: str) -> str:
    text = (Path(__file__).resolve().parent.parent / "docs" / "sdk.md").read_text()
    section = text.split(f"### {heading}\n", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_five_line_examples_of_the_docs_work_against_a_real_gateway(server: Server) -> None:
    for heading, swaps in [
        ("AppLovin Axon in five lines", {"px_demo": "px_std", "your-api-key": "key-std"}),
        ("AppsFlyer in five lines", {"your-dev-key": "af-dev-key"}),
    ]:
        code = _docs_block(heading)
        assert len(code.strip().splitlines()) <= 6, heading  # five lines and the import
        for old, new in {"http://localhost:8080": server.url, **swaps}.items():
            code = code.replace(old, new)
        exec(code, {"ua": "Mozilla/5.0"})  # raises if the gateway refuses the event


def test_the_cli_reference_in_the_docs_is_the_help_output() -> None:
    text = (Path(__file__).resolve().parent.parent / "docs" / "sdk.md").read_text()
    for command in ("validate", "send", "events"):
        shown = text.split(f"### `capigate {command}`\n\n```text\n", 1)[1].split("```", 1)[0]
        done = CliRunner().invoke(main, [command, "--help"], prog_name="capigate", terminal_width=80)
        assert shown == done.output, f"update docs/sdk.md for {command} (COLUMNS=80 capigate {command} --help)"
