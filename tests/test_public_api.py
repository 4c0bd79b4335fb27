"""The public surface: ``from capigate import ...`` gives a sorted, complete list."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

import capigate
import capigate.client
from capigate import errors
from capigate.cli import main

PACKAGE = Path(capigate.__file__).resolve().parent


def test_all_is_sorted_and_every_name_exists() -> None:
    assert capigate.__all__ == sorted(capigate.__all__)
    assert len(set(capigate.__all__)) == len(capigate.__all__)
    assert all(hasattr(capigate, name) for name in capigate.__all__)


def test_every_lazy_public_name_is_listed_and_resolves_to_its_module() -> None:
    where: dict[str, str] = capigate._WHERE
    assert set(where) | {"__version__"} == set(capigate.__all__)
    for name, module in where.items():
        assert getattr(capigate, name) is getattr(sys.modules[module], name), name
    assert "AxonClient" in dir(capigate)


def test_an_unknown_name_is_an_attribute_error() -> None:
    try:
        getattr(capigate, "NoSuchThing")  # noqa: B009
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:
        raise AssertionError("capigate.NoSuchThing resolved")


def test_the_version_lives_in_its_own_module() -> None:
    from capigate.__version__ import __version__

    assert capigate.__version__ == __version__
    assert __version__.count(".") == 2


def test_importing_the_errors_loads_no_http_client_phone_library_or_store() -> None:
    code = "import sys, capigate.errors; print(' '.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(done.stdout.split())
    assert "capigate.errors" in loaded
    heavy = {
        name for name in loaded if name.split(".")[0] in {"httpx", "httpcore", "phonenumbers", "sqlite3", "psycopg"}
    }
    assert heavy == set()
    assert {name for name in loaded if name.startswith("capigate")} == {
        "capigate",
        "capigate.__version__",
        "capigate.native",  # which loads the compiled hot modules, if built, before any is imported
        "capigate.errors",
    }


def test_no_module_of_the_package_imports_from_the_package_root() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "capigate" and node.level == 0:
                offenders.append(str(path.relative_to(PACKAGE)))
            if isinstance(node, ast.Import) and any(alias.name == "capigate" for alias in node.names):
                offenders.append(str(path.relative_to(PACKAGE)))
    assert offenders == []


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


def test_the_cli_reference_in_the_docs_is_the_help_output_of_every_command() -> None:
    """It held validate, send and events only: replay, env and check-config had no reference
    (a trial). Every command of the CLI now has its section, and a new one fails here."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "sdk.md").read_text()
    for command in sorted(main.commands):
        shown = text.split(f"### `capigate {command}`\n\n```text\n", 1)[1].split("```", 1)[0]
        done = CliRunner().invoke(main, [command, "--help"], prog_name="capigate", terminal_width=80)
        assert shown == done.output, f"update docs/sdk.md for {command} (COLUMNS=80 capigate {command} --help)"


def test_the_seconds_threshold_is_written_once_in_a_module_that_imports_no_other_layer() -> None:
    """The admin API's time parameters and the Axon rules each had their own 10^11; the one
    rule lives in capigate/epoch.py, which both import and which imports nothing of capigate."""
    written = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and type(node.value) is int and node.value == 10**11:
                written.append(str(path.relative_to(PACKAGE)))
    assert written == ["epoch.py"]
    tree = ast.parse((PACKAGE / "epoch.py").read_text())
    imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert [name for name in imported if name and name.startswith("capigate")] == []


def test_the_largest_epoch_time_is_written_once_in_the_epoch_module() -> None:
    """The admin API's time parameters (MAX_TIME_MS) and Axon's schema (MAX_EPOCH_MILLIS) each
    wrote 9999-12-31T23:59:59.999Z; both now import capigate.epoch's, the lowest module of the flow."""
    from capigate.axon import schema
    from capigate.epoch import MAX_EPOCH_MILLIS

    written = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and type(node.value) is int and node.value == MAX_EPOCH_MILLIS:
                written.append(str(path.relative_to(PACKAGE)))
    assert written == ["epoch.py"]
    assert MAX_EPOCH_MILLIS == 253_402_300_799_999  # datetime(9999, 12, 31, 23, 59, 59, 999000, UTC)
    assert schema.MAX_EPOCH_MILLIS is MAX_EPOCH_MILLIS  # still exported with the wire types it bounds
