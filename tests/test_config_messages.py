"""``capigate check-config`` (and every command reading capigate.toml) names the key and the
fix: a near miss gets a "did you mean", a wrong type the type and an example from the settings
table, an iOS app id without ``id`` AppsFlyer's reason, as the SDK refuses it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from capigate import AppsFlyerClient
from capigate.config_errors import known_keys
from capigate.settings import SETTINGS

SERVER = '[server]\nadmin_token = "123456789"\n'


def check_config(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "capigate.toml"
    config.write_text(text)
    return subprocess.run(
        [sys.executable, "-m", "capigate", "check-config", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
    )


def refused(tmp_path: Path, text: str) -> str:
    done = check_config(tmp_path, text)
    assert done.returncode == 1, done.stdout
    assert "Traceback" not in done.stderr
    return done.stderr.strip()


def test_a_misspelt_table_gets_did_you_mean(tmp_path: Path) -> None:
    message = refused(tmp_path, '[servr]\nadmin_token = "123456789"\n')
    assert message.endswith(
        "capigate.toml: servr: unknown key (did you mean `server`?); "
        "the file's top level takes server, store, axon, appsflyer"
    )


@pytest.mark.parametrize(
    ("text", "key", "hint"),
    [
        (SERVER + "admin_tokn = 'x'\n", "server.admin_tokn", "did you mean `admin_token`?"),
        (SERVER + "[store]\nurll = 'x'\n", "store.urll", "did you mean `url`?"),
        (
            SERVER + '[[axon.pixels]]\npixel_id = "p"\napi_key = "k"\n[axon.pixels.relay]\nbatch_sise = 5\n',
            "axon.pixels[0].relay.batch_sise",
            "did you mean `batch_size`?); [axon.pixels.relay] takes url, api_key",
        ),
    ],
)
def test_a_misspelt_key_gets_did_you_mean_and_its_tables_keys(tmp_path: Path, text: str, key: str, hint: str) -> None:
    message = refused(tmp_path, text)
    assert f": {key}: unknown key (" in message and hint in message


def test_a_type_error_names_the_type_and_an_example(tmp_path: Path) -> None:
    message = refused(tmp_path, SERVER + 'port = "8o80"\n')
    assert message.endswith("server.port: expected an integer, not a string, e.g. port = 8080")
    message = refused(tmp_path, SERVER + "port = 70000\n")
    assert message.endswith("server.port: expected an integer <= 65535, e.g. port = 8080")
    message = refused(tmp_path, SERVER + 'log_requests = "yes"\n')
    assert message.endswith("server.log_requests: expected true or false, not a string, e.g. log_requests = true")


def test_a_missing_key_is_named_with_an_example(tmp_path: Path) -> None:
    message = refused(tmp_path, SERVER + '[[axon.pixels]]\npixel_id = "p"\n')
    assert message.endswith('axon.pixels[0].api_key: this key is required, e.g. api_key = "..."')


def test_an_ios_app_id_without_id_is_refused_with_appsflyers_reason(tmp_path: Path) -> None:
    message = refused(tmp_path, SERVER + '[[appsflyer.apps]]\napp_id = "123456789"\nkeys = ["k"]\n')
    assert "appsflyer.apps[0].app_id: '123456789' looks like an iOS app id without its 'id' prefix" in message
    assert "AppsFlyer answers 200 OK to /inappevent/123456789 and records nothing" in message
    assert message.endswith('write app_id = "id123456789"')
    with pytest.raises(ValueError) as sdk:
        AppsFlyerClient("123456789", "k")
    assert str(sdk.value) in message  # the same rule, the same reason


def test_a_correct_file_is_ok(tmp_path: Path) -> None:
    done = check_config(tmp_path, SERVER + '[[appsflyer.apps]]\napp_id = "id123456789"\nkeys = ["k"]\n')
    assert done.returncode == 0 and "ok (0 pixel(s), 1 app(s))" in done.stdout, done.stderr


def test_every_settings_section_has_its_keys_known() -> None:
    for setting in SETTINGS:
        assert setting.name in known_keys(setting.section)
