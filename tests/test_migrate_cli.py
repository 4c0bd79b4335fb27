"""``capigate migrate``'s hint applies the steps to the store it just described."""

from __future__ import annotations

import re
import shlex
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from capigate.cli import main
from capigate.config import write_default_config
from capigate.store.sqlite.schema import SCHEMA_VERSION


def hint(output: str) -> str:
    found = re.search(r"^apply them with (.*) \(`capigate serve` applies them at start too\)$", output, re.M)
    assert found is not None, output
    return found.group(1)


def test_the_hint_of_migrate_db_migrates_that_db_not_the_configurations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hint was `capigate migrate --apply`: pasted beside a capigate.toml, it migrated the
    file of its [store] url, another database than the one --db named."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CAPIGATE_DB", raising=False)
    monkeypatch.delenv("CAPIGATE_CONFIG", raising=False)
    write_default_config(tmp_path / "capigate.toml")  # its store: capigate.db, here
    target = tmp_path / "target dir" / "target.db"
    target.parent.mkdir()
    listed = CliRunner().invoke(main, ["migrate", "--db", str(target)])
    assert listed.exit_code == 0, listed.output
    command = hint(listed.output)
    assert command.startswith("`") and command.endswith("`"), command
    words = shlex.split(command.strip("`"))
    assert words[:2] == ["capigate", "migrate"] and words[-1] == "--apply"
    applied = CliRunner().invoke(main, words[1:])
    assert applied.exit_code == 0, applied.output
    assert f"schema version: {SCHEMA_VERSION}" in applied.output and "up to date" in applied.output
    assert not (tmp_path / "capigate.db").exists()


def test_the_hint_does_not_print_a_password(tmp_path: Path) -> None:
    """The store line hides a PostgreSQL password; the hint does not print it either (the test
    server trusts every password)."""
    url = f"postgresql://postgres:s3cret-pw@127.0.0.1:5432/test?schema=hint_{uuid.uuid4().hex[:8]}"
    listed = CliRunner().invoke(main, ["migrate", "--config", str(tmp_path / "none.toml"), "--db", url])
    assert listed.exit_code == 0, listed.output
    assert hint(listed.output) == "this command and --apply"
    assert "s3cret-pw" not in listed.output
