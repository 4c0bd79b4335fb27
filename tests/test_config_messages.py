"""``capigate check-config`` (and every command reading capigate.toml) names the key and the
fix: a near miss gets a "did you mean", a wrong type the type and an example from the settings
table, an iOS app id without ``id`` AppsFlyer's reason, as the SDK refuses it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from capigate import AppsFlyerClient
from capigate.cli import main
from capigate.config_errors import known_keys
from capigate.settings import SETTINGS
from tests.helpers import serve_banner

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


def test_a_body_limit_too_small_for_any_batch_is_refused_with_why(tmp_path: Path) -> None:
    """``max_body_bytes = 10`` passed check-config, and every Axon batch would have been a 413
    (a trial): at least 1 KiB, as the SDK's AxonClient asks, with the reason."""
    message = refused(tmp_path, SERVER + "max_body_bytes = 10\n")
    assert message.endswith(
        "server.max_body_bytes: expected an integer >= 1024, e.g. max_body_bytes = 1048576; a smaller limit "
        "answers 413 to nearly every Axon batch, as one event with its user data takes hundreds of bytes "
        "(AppsFlyer's 1 KB limit is its own, not this key's)"
    ), message
    done = check_config(tmp_path, SERVER + "max_body_bytes = 1024\n")
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("written", "key", "unquoted"),
    [
        ('[store]\nevent_retention_days = "inf"\n', "store.event_retention_days", "event_retention_days = inf"),
        ('[store]\nevent_retention_days = "Infinity"\n', "store.event_retention_days", "event_retention_days = inf"),
        ('[store]\njournal_retention_days = " 7.5"\n', "store.journal_retention_days", "journal_retention_days = 7.5"),
        ('port = "8080"\n', "server.port", "port = 8080"),
        (
            '[[axon.pixels]]\npixel_id = "p"\napi_key = "k"\n[axon.pixels.relay]\ntimeout_s = "1e1"\n',
            "axon.pixels[0].relay.timeout_s",
            "timeout_s = 1e1",
        ),
    ],
)
def test_a_number_written_as_a_string_is_told_to_drop_the_quotes(
    tmp_path: Path, written: str, key: str, unquoted: str
) -> None:
    """``event_retention_days = "inf"`` was told "expected a number, not a string" and an
    example of 30, without a word that TOML's infinity is ``inf``, unquoted (a trial)."""
    message = refused(tmp_path, SERVER + written)
    assert message.endswith(
        f"{key}: expected {'an integer' if 'port' in key else 'a number'}, not a string: "
        f"write it without quotes, {unquoted}"
    ), message


def test_a_string_that_is_no_number_of_the_keys_kind_keeps_the_example(tmp_path: Path) -> None:
    for written, said in (
        ('port = "80.5"\n', "server.port: expected an integer, not a string, e.g. port = 8080"),
        (
            '[store]\nevent_retention_days = "nan"\n',
            "store.event_retention_days: expected a number, not a string, e.g. event_retention_days = 30",
        ),
        (
            '[store]\nevent_retention_days = "forever"\n',
            "store.event_retention_days: expected a number, not a string, e.g. event_retention_days = 30",
        ),
    ):
        assert refused(tmp_path, SERVER + written).endswith(said)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (SERVER + 'log_format = "xml"\n', "server.log_format: Invalid enum value 'xml'; use one of plain, json"),
        (
            SERVER + '[store]\nsynchronous = "off"\n',
            "store.synchronous: Invalid enum value 'off'; use one of full, normal",
        ),
        (
            SERVER + '[[appsflyer.apps]]\napp_id = "com.x"\nkeys = ["k"]\ndedupe_key = "order_id"\n',
            "appsflyer.apps[0].dedupe_key: Invalid enum value 'order_id'; use one of af_order_id",
        ),
        (
            SERVER + '[[axon.pixels]]\npixel_id = "p"\napi_key = "k"\nprofile = "gold"\n',
            "axon.pixels[0].profile: Invalid enum value 'gold'; use one of standard, lead_gen, lead_gen_restricted",
        ),
    ],
)
def test_an_enum_lists_its_values(tmp_path: Path, text: str, expected: str) -> None:
    """The values came from the first part of the key's comment, which for synchronous and
    dedupe_key is prose: 'use one of opt-in: AppsFlyer has no dedupe key'."""
    assert refused(tmp_path, text).endswith(expected)


def test_a_missing_key_is_named_with_an_example(tmp_path: Path) -> None:
    message = refused(tmp_path, SERVER + '[[axon.pixels]]\npixel_id = "p"\n')
    assert message.endswith('axon.pixels[0].api_key: this key is required, e.g. api_key = "..."')


def test_a_missing_server_table_is_named_with_the_least_one(tmp_path: Path) -> None:
    """A file without [server] was told ``server: this key is required``, the one such message
    with no example (a trial)."""
    message = refused(tmp_path, '[[axon.pixels]]\npixel_id = "p"\napi_key = "key-std"\n')
    assert re.search(
        r'server: this table is required, e.g. \[server\] with admin_token = "[\w-]{32}" '
        r"\(a random one, made for this message\) on the line below it$",
        message,
    ), message


@pytest.mark.parametrize(
    "text",
    ["", '[server]\nadmin_token = "short"\n', "[server]\nport = 8080\n"],
    ids=["empty file", "short token", "no token"],
)
def test_the_admin_token_an_error_suggests_is_one_the_check_takes(tmp_path: Path, text: str) -> None:
    """`admin_token = "abc"` was told "expected a string of length >= 8, e.g. admin_token = "..."",
    and an empty file "[server] with admin_token = "..."": the example failed the same check
    (a trial). The example is a fresh random token (never one every reader shares), and taken."""
    message = refused(tmp_path, text)
    examples = re.findall(r'admin_token = "([^"]*)" \(a random one, made for this message\)', message)
    assert len(examples) == 1 and len(examples[0]) >= 8, message
    assert examples[0] not in refused(tmp_path, text)
    done = check_config(tmp_path, f'[server]\nadmin_token = "{examples[0]}"\n')
    assert done.returncode == 0, done.stderr


_AXON_RELAY_ALONE = (
    "[axon.pixels.relay] belongs under a [[axon.pixels]] entry: put it after the pixel's pixel_id and api_key"
)
_APPS_RELAY_ALONE = (
    "[appsflyer.apps.relay] belongs under a [[appsflyer.apps]] entry: put it after the app's app_id and keys"
)
_AXON_RELAY = '[axon.pixels.relay]\nurl = "https://b.applovin.com"\n'
_APPS_RELAY = '[appsflyer.apps.relay]\nurl = "https://api3.appsflyer.com"\n'


@pytest.mark.parametrize(
    ("written", "said"),
    [
        (_AXON_RELAY, f"axon.pixels.relay: {_AXON_RELAY_ALONE}"),
        (
            _AXON_RELAY + '[[axon.pixels]]\npixel_id = "p"\napi_key = "key-std"\n',
            f"line 5, column 14: {_AXON_RELAY_ALONE}",
        ),
        (
            '[[axon.pixels]]\n[axon.pixels.relay]\npixel_id = "p"\napi_key = "key-std"\n',
            f"axon.pixels[0].relay: {_AXON_RELAY_ALONE}",
        ),
        (_APPS_RELAY, f"appsflyer.apps.relay: {_APPS_RELAY_ALONE}"),
        (
            _APPS_RELAY + '[[appsflyer.apps]]\napp_id = "com.x"\nkeys = ["dev-key"]\n',
            f"line 5, column 17: {_APPS_RELAY_ALONE}",
        ),
    ],
)
def test_a_relay_table_before_its_source_is_said_to_belong_under_one(tmp_path: Path, written: str, said: str) -> None:
    """``[axon.pixels.relay]`` before any ``[[axon.pixels]]`` was told that pixel_id and api_key
    were required, of a pixel the file does not have (a trial); followed by the pixel, TOML's
    "Cannot overwrite a value"."""
    message = refused(tmp_path, SERVER + written)
    assert message.endswith(f"capigate.toml: {said}"), message
    assert "this key is required" not in message


def test_an_ios_app_id_without_id_is_refused_with_appsflyers_reason(tmp_path: Path) -> None:
    message = refused(tmp_path, SERVER + '[[appsflyer.apps]]\napp_id = "123456789"\nkeys = ["k"]\n')
    assert "appsflyer.apps[0].app_id: '123456789' looks like an iOS app id without its 'id' prefix" in message
    assert "AppsFlyer answers 200 OK to /inappevent/123456789 and records nothing" in message
    assert message.endswith('write app_id = "id123456789"')
    with pytest.raises(ValueError) as sdk:
        AppsFlyerClient("123456789", "k")
    assert str(sdk.value) in message  # the same rule, the same reason


def test_a_source_id_that_is_an_email_address_is_refused_at_check_and_at_start(tmp_path: Path) -> None:
    """Rule: a configured pixel or app id holding an email address is refused, naming the
    setting, by check-config and by the gateway's start alike (one check, in load_config)."""
    text = (
        SERVER
        + '[[axon.pixels]]\npixel_id = "px_ok"\napi_key = "k"\n'
        + '[[axon.pixels]]\npixel_id = "Jane.Doe@example.com"\napi_key = "k"\n'
        + '[[appsflyer.apps]]\napp_id = "shop-owner@example.org"\nkeys = ["k"]\n'
    )
    message = refused(tmp_path, text)
    for key in ("axon.pixels[1].pixel_id", "appsflyer.apps[0].app_id"):
        assert f"capigate.toml: {key}: looks like an email address; a source id appears in URLs" in message, message
    assert "axon.pixels[0]" not in message
    assert "Jane.Doe" not in message and "shop-owner" not in message
    started = _serve_refused(tmp_path)
    assert "axon.pixels[1].pixel_id: looks like an email address" in started.stderr, started.stderr


def test_a_source_id_a_url_cannot_carry_as_written_is_refused_at_check_at_start_and_by_curl(tmp_path: Path) -> None:
    """Rule: a pixel or app id holding a space, '/', '?', '&', '#', '%' or '+' is refused at its
    key, which no id the platforms assign holds: such ids passed check-config, and the banner,
    `capigate curl` and every client put them into URLs as written, which curl refused (a trial)."""
    text = (
        SERVER
        + '[[axon.pixels]]\npixel_id = "px_ok"\napi_key = "k"\n'
        + '[[axon.pixels]]\npixel_id = "px a&b#c"\napi_key = "k"\n'
        + '[[axon.pixels]]\npixel_id = "px?100%+"\napi_key = "k"\n'
        + '[[appsflyer.apps]]\napp_id = "com.example/sub app"\nkeys = ["k"]\n'
    )
    message = refused(tmp_path, text)
    assert (
        "capigate.toml: axon.pixels[1].pixel_id: 'px a&b#c' holds a space, '&' and '#': it is sent in URLs as "
        "written (?pixel_id=…), and an Axon pixel id never holds these: use the pixel_id the platform assigned"
    ) in message, message
    assert "axon.pixels[2].pixel_id: 'px?100%+' holds '?', '%' and '+': " in message, message
    assert (
        "appsflyer.apps[0].app_id: 'com.example/sub app' holds '/' and a space: it is sent in URLs as written "
        "(/inappevent/{app_id}), and an AppsFlyer app id never holds these: it is an Android package name "
        "(com.example.shop) or an iOS id (id123456789)"
    ) in message, message
    assert "axon.pixels[0]" not in message
    started = _serve_refused(tmp_path)
    assert "axon.pixels[1].pixel_id: 'px a&b#c' holds a space" in started.stderr, started.stderr
    config = str(tmp_path / "capigate.toml")
    curl = subprocess.run(
        [sys.executable, "-m", "capigate", "curl", "px a&b#c", "--config", config],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert curl.returncode == 1 and "pixel_id=px a" not in curl.stdout, curl.stdout
    assert "axon.pixels[1].pixel_id: 'px a&b#c' holds a space" in curl.stderr, curl.stderr


def test_a_source_id_that_is_a_phone_number_is_not_echoed_where_it_is_refused_for_its_characters(
    tmp_path: Path,
) -> None:
    message = refused(tmp_path, SERVER + '[[axon.pixels]]\npixel_id = "+1 415 555 0100"\napi_key = "k"\n')
    said = r"axon\.pixels\[0\]\.pixel_id: <phone number [0-9a-f]{8}> holds '\+' and a space"
    assert re.search(said, message), message
    assert "415" not in message


def _serve_refused(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``capigate serve`` of tmp_path's capigate.toml, which it refuses, as a user sees it."""
    started = subprocess.run(
        [sys.executable, "-m", "capigate", "serve", "--config", str(tmp_path / "capigate.toml"), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert started.returncode != 0 and "Traceback" not in started.stderr
    return started


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("jane@example.com", "<email address "),
        ("+1 415 555 0100", "<phone number "),
        ("+14155550100", "<phone number "),
    ],
)
def test_a_value_configured_twice_is_named_masked_when_it_is_personal(tmp_path: Path, value: str, masked: str) -> None:
    """Rule: a config message echoes no personal data; an email address or a phone number
    written as an id (twice), an enum value, a trusted proxy or the host is shown as the journal and the
    log show a source id (personal.shown_id). check-config printed ``'jane@example.com' is
    configured twice`` beside the line saying such an id must hold none, and serve wrote it to
    its log (a trial). Other values are still quoted as written."""
    text = (
        SERVER
        + f'trusted_proxies = ["{value}"]\nhost = "{value}"\n'
        + "".join(f'[[axon.pixels]]\npixel_id = "{value}"\napi_key = "k"\nprofile = "{value}"\n' for _ in "ab")
        + "".join(f'[[appsflyer.apps]]\napp_id = "{value}"\nkeys = ["k"]\n' for _ in "ab")
        + '[[axon.pixels]]\npixel_id = "px_1"\napi_key = "k"\n' * 2
    )
    message = refused(tmp_path, text)
    started = _serve_refused(tmp_path)
    assert f"server.host: cannot listen on {masked}" in message, message  # serve's bind says it after these
    for said in (message, started.stderr):
        for key in ("axon.pixels[1].pixel_id", "appsflyer.apps[1].app_id"):
            assert re.search(rf"{re.escape(key)}: {masked}[0-9a-f]{{8}}> is configured twice", said), said
        assert f"server.trusted_proxies[0]: {masked}" in said, said
        assert f"axon.pixels[0].profile: Invalid enum value {masked}" in said, said
        assert "axon.pixels[3].pixel_id: 'px_1' is configured twice" in said, said
        assert value not in said and value.replace(" ", "") not in said and "jane" not in said, said


def test_a_correct_file_is_ok(tmp_path: Path) -> None:
    done = check_config(tmp_path, SERVER + '[[appsflyer.apps]]\napp_id = "id123456789"\nkeys = ["k"]\n')
    assert done.returncode == 0 and "ok (0 pixel(s), 1 app(s))" in done.stdout, done.stderr


def test_an_idle_timeout_above_the_head_timeout_is_noted_as_doing_nothing(tmp_path: Path) -> None:
    """Rule config.ineffective_settings: valid, so the gateway starts, but said (a trial set 60 s)."""
    done = check_config(tmp_path, SERVER + "idle_timeout_s = 60\n")
    assert done.returncode == 0, done.stderr
    assert "note: server.idle_timeout_s = 60 does nothing above header_timeout_s = 10" in done.stdout, done.stdout
    assert "note:" not in check_config(tmp_path, SERVER + "idle_timeout_s = 10\n").stdout


@pytest.mark.parametrize("given", ["--config", "CAPIGATE_CONFIG"])
def test_serve_refuses_a_configuration_path_given_that_is_not_there(tmp_path: Path, given: str) -> None:
    """Rule: only the default capigate.toml is created. A mistyped path started a new demo
    gateway there, ready, that refused every real client and stored into an empty file (a trial)."""
    missing = tmp_path / "etc-typo.toml"
    args = ["--config", str(missing)] if given == "--config" else []
    env = {**os.environ, "CAPIGATE_CONFIG": str(missing)} if given != "--config" else None
    done = subprocess.run(
        [sys.executable, "-m", "capigate", "serve", *args, "--port", "0"],
        capture_output=True, text=True, timeout=30, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 1 and "the file does not exist" in done.stderr, done.stderr
    assert not missing.exists() and not (tmp_path / "capigate.db").exists()


@pytest.mark.parametrize(
    ("url", "base"),
    [
        ("https://b.applovin.com/v1/event", "https://b.applovin.com"),
        ("https://proxy.example/applovin/v1/event/", "https://proxy.example/applovin"),
        ("https://b.applovin.com/V1/Event", "https://b.applovin.com"),
        ("https://b.applovin.com/v1//event", "https://b.applovin.com"),
        ("https://b.applovin.com/v1/%65vent", "https://b.applovin.com"),
    ],
)
def test_a_relay_url_with_the_endpoints_path_is_refused(tmp_path: Path, url: str, base: str) -> None:
    """The relay adds the path: it posted to /v1/event/v1/event, a 404, dead letters (a trial).
    The path is read as a server routes it: its case, a doubled slash or an escape hid it. The
    base URL suggested keeps a proxy's prefix (it was dropped: a trial)."""
    text = (
        SERVER + f'[[axon.pixels]]\npixel_id = "p"\napi_key = "k"\n[axon.pixels.relay]\nurl = "{url}"\napi_key = "u"\n'
    )
    message = refused(tmp_path, text)
    assert f"axon.pixels[0].relay.url: {url!r}: give the upstream's base URL ({base})," in message, message


def test_an_empty_host_is_refused(tmp_path: Path) -> None:
    """`host = ""` passed, and serve listened on every interface, printing http://:18151 (a
    trial): a typo that opened the gateway to the network."""
    message = refused(tmp_path, SERVER + 'host = ""\n')
    assert "server.host" in message and "length >= 1" in message, message


def test_an_ipv6_host_is_written_in_brackets_where_serve_prints_its_address(tmp_path: Path) -> None:
    """`host = "::"` printed `Listening on http://:::18151`, and `::1` curls to http://::1:8080."""
    (tmp_path / "capigate.toml").write_text(SERVER + 'host = "::1"\n[[axon.pixels]]\npixel_id = "p"\napi_key = "k"\n')
    with serve_banner(["--port", "0", "--db", str(tmp_path / "c.db")], tmp_path) as (_, lines):
        pass
    listening = next(line for line in lines if line.startswith("Listening on"))
    assert listening.startswith("Listening on http://[::1]:"), lines
    assert any("curl" in line and "'http://[::1]:" in line for line in lines), lines


def test_a_relay_setting_for_the_other_api_is_noted(tmp_path: Path) -> None:
    text = SERVER + (
        '[[appsflyer.apps]]\napp_id = "com.example.app"\nkeys = ["k"]\n'
        '[appsflyer.apps.relay]\nurl = "https://b.applovin.com"\napi_key = "u"\nbatch_size = 50\n'
    )
    done = check_config(tmp_path, text)
    assert done.returncode == 0, done.stderr
    assert "note: appsflyer.apps[0].relay.batch_size = 50 does nothing" in done.stdout, done.stdout
    assert "note: appsflyer.apps[0].relay.url points at b.applovin.com" in done.stdout, done.stdout


@pytest.mark.parametrize(
    ("store", "said"),
    [
        ('url = "/nonexistent-dir/x.db"', "the directory /nonexistent-dir does not exist"),
        ('url = "postgresql://u@127.0.0.1/db?schema=BAD"', "schema"),
    ],
)
def test_check_config_refuses_the_store_url_serve_would_refuse(tmp_path: Path, store: str, said: str) -> None:
    """It said ok, and serve then refused to start (a trial)."""
    done = check_config(tmp_path, SERVER + f"[store]\n{store}\n")
    assert done.returncode in (1, 2) and said in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_env_refuses_a_port_that_is_not_one(tmp_path: Path) -> None:
    """It printed CAPIGATE_URL=http://127.0.0.1:abc (a trial)."""
    (tmp_path / "capigate.toml").write_text(SERVER)
    env = {**os.environ, "CAPIGATE_PORT": "abc"}
    done = subprocess.run(
        [sys.executable, "-m", "capigate", "env"], capture_output=True, text=True, timeout=30, env=env, cwd=tmp_path
    )
    assert done.returncode == 1 and done.stderr == f"Error: CAPIGATE_PORT=abc: {_NOT_WHOLE}; {_PORTS}\n", done.stderr


_NOT_WHOLE = "not a whole number"  # CAPIGATE_WORKERS=abc was told "at least one worker process" (a re-trial)
_PORTS = "a port is 1 to 65535"  # one rule, one wording, wherever a port is read (three had their own: a trial)
_LISTEN_PORTS = f"{_PORTS}, or 0 for any free one"  # serve's, which can listen on any free port


@pytest.mark.parametrize(
    ("command", "env", "said"),
    [
        (
            "serve",
            {"CAPIGATE_PORT": "abc"},
            f"CAPIGATE_PORT=abc: {_NOT_WHOLE}; {_LISTEN_PORTS}\n",
        ),
        ("serve", {"CAPIGATE_PORT": "70000"}, f"CAPIGATE_PORT=70000: {_LISTEN_PORTS}\n"),
        ("serve", {"CAPIGATE_WORKERS": "two"}, f"CAPIGATE_WORKERS=two: {_NOT_WHOLE}; at least one worker process"),
        ("serve", {"CAPIGATE_WORKERS": "0"}, "CAPIGATE_WORKERS=0: at least one worker process"),
        ("serve", {"CAPIGATE_DB": "mysql://u@127.0.0.1/db"}, "store: unknown store URL scheme 'mysql'"),
        ("curl", {"CAPIGATE_PORT": "abc"}, f"CAPIGATE_PORT=abc: {_NOT_WHOLE}; {_PORTS}\n"),
        ("curl", {"CAPIGATE_PORT": "0"}, f"CAPIGATE_PORT=0: {_PORTS}\n"),
        ("check-config", {"CAPIGATE_PORT": "abc"}, f"CAPIGATE_PORT=abc: {_NOT_WHOLE}; {_LISTEN_PORTS}\n"),
        ("check-config", {"CAPIGATE_WORKERS": "abc"}, f"CAPIGATE_WORKERS=abc: {_NOT_WHOLE}; at least one worker"),
        ("env", {"CAPIGATE_PORT": "0"}, f"CAPIGATE_PORT=0: {_PORTS}\n"),
        ("events", {"CAPIGATE_PORT": "abc"}, f"CAPIGATE_PORT=abc: {_NOT_WHOLE}; {_PORTS}\n"),
        ("serve", {}, "bad configuration: "),  # a mistake in the file: the same status, the same prefix
    ],
)
def test_a_configuration_mistake_exits_1_with_one_error_line(
    tmp_path: Path, command: str, env: dict[str, str], said: str
) -> None:
    """Wherever a setting came from (the file, a variable, an option), a wrong one is one line
    `Error: ...` and status 1: CAPIGATE_PORT=abc exited 2 under click's usage block while
    CAPIGATE_PORT=70000 and a bad [server] port exited 1 (a trial)."""
    (tmp_path / "capigate.toml").write_text(SERVER if env else SERVER + "[store]\nurl = 5\n")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CAPIGATE_")}
    done = subprocess.run(
        [sys.executable, "-m", "capigate", command],
        capture_output=True, text=True, timeout=30, env={**clean, **env}, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stderr.startswith(f"Error: {said}") and "Usage:" not in done.stderr, done.stderr
    assert " ok " not in done.stdout, done.stdout  # check-config said ok to what serve refuses (a re-trial)


def test_every_settings_section_has_its_keys_known() -> None:
    for setting in SETTINGS:
        assert setting.name in known_keys(setting.section)


def test_check_config_takes_the_file_as_an_argument(tmp_path: Path) -> None:
    config = tmp_path / "other.toml"
    config.write_text(SERVER)
    done = subprocess.run(
        [sys.executable, "-m", "capigate", "check-config", str(config)], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0 and f"{config}: ok (0 pixel(s), 0 app(s))" in done.stdout, done.stderr


def test_every_mistake_is_reported_in_one_answer(tmp_path: Path) -> None:
    """Rule: check-config names each mistake of the file, across sections and within a table,
    not the first only (it named one a table, a trial), and in one answer: the checks across
    sources and keys (a duplicate id, a relay URL, an unset api_key_env, an id that is an email
    address) ran only once every source decoded, so a second run named five more (a trial),
    and a source without a required key hid its other mistakes (a re-check)."""
    text = (
        '[server]\nadmin_token = "short"\nport = "x"\nworkrs = 2\ntrusted_proxies = ["not-a-network"]\n'
        'host = "not a host"\n'
        '[store]\njournal_max_rows = 0\nsynchronous = "off"\n'
        '[[axon.pixels]]\npixel_id = "p"\napi_key = "k"\n'
        '[axon.pixels.relay]\nbatch_size = 0\nconcurrency = 0\nurl = "https://b.applovin.com/V1/Event"\n'
        '[[axon.pixels]]\npixel_id = "p"\napi_key = "k2"\nprofle = "standard"\n'
        '[[axon.pixels]]\npixel_id = "jane@example.com"\n'
        '[[axon.pixels]]\napi_key = "k3"\n[[axon.pixels]]\napi_key = "k4"\n'
        '[[appsflyer.apps]]\napp_id = "123456789"\nkeys = []\n'
        '[[appsflyer.apps]]\napp_id = "com.example.a"\nkeys = ["k"]\n'
        '[[appsflyer.apps]]\napp_id = "com.example.a"\nkeys = ["k"]\nbogus = 1\n'
        '[appsflyer.apps.relay]\napi_key_env = "CAPIGATE_TEST_UNSET_KEY"\n'
    )
    message = refused(tmp_path, text)
    for key in (
        "server.admin_token",
        "server.port",
        "server.workrs",
        "server.trusted_proxies[0]",
        "server.host",
        "store.journal_max_rows",
        "store.synchronous",
        "axon.pixels[0].relay.batch_size",
        "axon.pixels[0].relay.concurrency",
        "axon.pixels[0].relay.url",
        "axon.pixels[1].profle",
        "axon.pixels[1].pixel_id",
        "axon.pixels[2].api_key",
        "axon.pixels[2].pixel_id",
        "axon.pixels[3].pixel_id",
        "axon.pixels[4].pixel_id",
        "appsflyer.apps[0].keys",
        "appsflyer.apps[0].app_id",
        "appsflyer.apps[2].bogus",
        "appsflyer.apps[2].app_id",
        "appsflyer.apps[2].relay.api_key_env",
    ):
        assert f"capigate.toml: {key}: " in message, message
    assert "stand-in" not in message, message  # two pixels without an id are not one id twice


def test_check_config_refuses_the_host_serve_would_refuse(tmp_path: Path) -> None:
    """Rule: one rule, serve's bind. check-config said ok to a host that serve refused (a trial)."""
    message = refused(tmp_path, SERVER + 'host = "not a host"\n')
    said = "cannot listen on 'not a host': not an address or a known host name"
    assert message.endswith(f"capigate.toml: server.host: {said}"), message
    served = subprocess.run(
        [sys.executable, "-m", "capigate", "serve", "--config", str(tmp_path / "capigate.toml"), "--port", "0"],
        capture_output=True, text=True, timeout=30, cwd=tmp_path,
    )  # fmt: skip
    assert served.returncode == 1 and said in served.stderr, served.stderr
    assert check_config(tmp_path, SERVER + 'host = "127.0.0.1"\n').returncode == 0


def test_workers_far_above_the_cpus_are_warned_about_not_refused(tmp_path: Path) -> None:
    """workers = 1000 on 2 CPUs was ok, said nothing (a trial); one a core is what pays off."""
    cpus = os.cpu_count() or 1
    done = check_config(tmp_path, SERVER + f"workers = {2 * cpus + 1}\n")
    assert done.returncode == 0, done.stderr
    warning = f"warning: server.workers = {2 * cpus + 1} is far above this machine's {cpus} CPU(s)"
    assert warning in done.stdout, done.stdout
    assert "warning:" not in check_config(tmp_path, SERVER + f"workers = {cpus}\n").stdout


@pytest.mark.parametrize("other", ["portt = 1\n", ""])
@pytest.mark.parametrize(
    ("store", "said"),
    [
        ('url = "/nonexistent-dir/x.db"', "/nonexistent-dir/x.db: the directory /nonexistent-dir does not exist"),
        ('url = "postgresql://u@127.0.0.1/db?schema=BAD"', "schema 'BAD': use lower-case letters"),
    ],
)
def test_the_store_url_and_the_workers_warning_are_said_beside_the_other_mistakes(
    tmp_path: Path, other: str, store: str, said: str
) -> None:
    """Rule: every mistake and warning in one run. The store URL was checked, and the workers
    warned about, only once the rest of the file was valid, and a bad store URL hid the
    warning: each took another run to see (a trial)."""
    workers = 2 * (os.cpu_count() or 1) + 1
    done = check_config(tmp_path, SERVER + f"workers = {workers}\n{other}[store]\n{store}\n")
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert f"capigate.toml: store.url: {said}" in done.stderr, done.stderr
    assert ("capigate.toml: server.portt: unknown key" in done.stderr) == bool(other), done.stderr
    assert f"capigate.toml: warning: server.workers = {workers} is far above" in done.stdout, done.stdout


def test_a_toml_syntax_error_names_its_line_and_column(tmp_path: Path) -> None:
    message = refused(tmp_path, SERVER + "port 8080\n")
    assert "capigate.toml: line 3, column 6: not valid TOML" in message, message
    assert ": -:" not in message


_A_RELAY_URL = 'expected an http:// or https:// URL with a host and no space, query (?) or fragment (#), e.g. url = "https://b.applovin.com"'


@pytest.mark.parametrize(
    "url",
    [
        "ftp://x",
        "https://b.applovin.com/v1/event?pixel_id=x",
        "https://b.applovin.com#x",
        "b.applovin.com",
        "http://",
        "http://:8080/",
        "https:///v1",
        "http://a b",
    ],
)
def test_a_relay_url_is_named_with_its_value_and_what_is_expected(tmp_path: Path, url: str) -> None:
    """A URL with a query was told it was no http:// URL (a trial): the words say what is not
    taken. They named the key and the rule but not the value, and a URL without a host was
    "the URL has no host, or a space in it" with no example (a trial): one line, the key, the
    value as written, and what is expected, as the other configuration mistakes are."""
    text = SERVER + f'[[axon.pixels]]\npixel_id = "p"\napi_key = "k"\n[axon.pixels.relay]\nurl = "{url}"\n'
    message = refused(tmp_path, text)
    assert message.startswith("Error: bad configuration: ") and "\n" not in message, message
    assert message.endswith(f"/capigate.toml: axon.pixels[0].relay.url: {url!r}: {_A_RELAY_URL}"), message
    assert "regex" not in message


@pytest.mark.parametrize("url", [" https://api3.appsflyer.com", "api3.appsflyer.com", "ftp://x"])
def test_an_appsflyer_relay_url_is_given_appsflyers_host_as_the_example(tmp_path: Path, url: str) -> None:
    """An [appsflyer.apps.relay] url with a leading space was told `e.g. url = "https://b.applovin.com"`,
    AppLovin's host (a re-trial): an AppsFlyer relay's example is AppsFlyer's."""
    app = '[[appsflyer.apps]]\napp_id = "com.example.shop"\nkeys = ["k"]\n'
    message = refused(tmp_path, SERVER + app + f'[appsflyer.apps.relay]\nurl = "{url}"\n')
    expected = _A_RELAY_URL.replace("https://b.applovin.com", "https://api3.appsflyer.com")
    assert message.endswith(f"/capigate.toml: appsflyer.apps[0].relay.url: {url!r}: {expected}"), message
    assert "applovin" not in message, message


def test_a_relay_url_with_a_user_and_password_is_refused_without_showing_them(tmp_path: Path) -> None:
    """The relay sends no credentials from its URL, and its start-up line showed them (a trial)."""
    url = "http://relayuser:s3cretpass@127.0.0.1:19111"
    text = SERVER + f'[[axon.pixels]]\npixel_id = "p"\napi_key = "k"\n[axon.pixels.relay]\nurl = "{url}"\n'
    message = refused(tmp_path, text)
    said = "axon.pixels[0].relay.url: 'http://***@127.0.0.1:19111': the URL holds a user name or password"
    assert said in message, message
    assert "s3cretpass" not in message and "relayuser" not in message


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:notaport", "http://127.0.0.1:99999", "http://[::1", "http://bob:pa/ssWORD@host", "http://ho st"],
)
def test_a_relay_url_whose_host_or_port_cannot_be_read_is_refused(tmp_path: Path, url: str) -> None:
    """check-config said ok; every worker then crashed at start-up (ValueError in the relay's
    client), and a SIGHUP with such a file stopped a running gateway (a trial)."""
    text = SERVER + f'[[axon.pixels]]\npixel_id = "p"\napi_key = "k"\n[axon.pixels.relay]\nurl = "{url}"\n'
    message = refused(tmp_path, text)
    shown = "http://***@host" if "@" in url else url
    said = f"axon.pixels[0].relay.url: {shown!r}: its host or port cannot be read (a port is 1 to 65535; an IPv6"
    assert said in message or message.endswith(f"{shown!r}: {_A_RELAY_URL}"), message
    assert "ssWORD" not in message and "bob" not in message


@pytest.mark.parametrize(
    "command",
    [["replay", "--status", "400"], ["relay"], ["curl"], ["check-config"], ["env"], ["migrate"]],
    ids=lambda c: c[0],
)
def test_a_command_other_than_serve_without_its_file_says_where_to_run_it_not_to_create_one(
    tmp_path: Path, command: list[str]
) -> None:
    """`capigate replay` in a directory without capigate.toml told to run `capigate serve` there
    to create one (a trial): a new demo gateway, never what replay was for. These commands act
    on an existing gateway: run them in its directory, or give --config."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAPIGATE_")}
    done = subprocess.run(
        [sys.executable, "-m", "capigate", *command], capture_output=True, text=True, timeout=30, env=env, cwd=tmp_path
    )
    assert done.returncode == 1, done.stderr
    assert "capigate.toml: the file does not exist" in done.stderr, done.stderr
    assert "gateway's directory" in done.stderr and "--config PATH" in done.stderr, done.stderr
    assert "create" not in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert ("--db" in done.stderr) is (command == ["migrate"]), done.stderr  # migrate needs only the store
    assert not (tmp_path / "capigate.toml").exists()


@pytest.mark.parametrize("command", [["migrate"], ["env"], ["check-config"]])
def test_a_missing_file_is_named_without_a_key_placeholder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    """A problem with the whole file has no key: no stray ``-:`` where one would go."""
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, command)
    assert result.exit_code == 1, result.output
    assert "Error: bad configuration: capigate.toml: the file does not exist; run this command in" in result.output
    assert ": -:" not in result.output, result.output


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda p: p.mkdir(), "capigate.toml: cannot read the file ("),  # a directory: unreadable
        (lambda p: p.write_text(SERVER + "port ="), "capigate.toml: not valid TOML: "),  # no line/column given
        (lambda p: p.write_bytes(b"\xff\xfe[server]\n"), "capigate.toml: not UTF-8 text"),  # TOML is UTF-8
    ],
)
def test_other_file_level_problems_have_no_key_placeholder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make: Callable[[Path], object], says: str
) -> None:
    monkeypatch.chdir(tmp_path)
    make(tmp_path / "capigate.toml")
    result = CliRunner().invoke(main, ["migrate"])
    assert result.exit_code == 1, result.output
    assert says in result.output, result.output
    assert ": -:" not in result.output, result.output
    assert "Traceback" not in result.output


def test_a_relay_url_with_port_0_is_refused(tmp_path: Path) -> None:
    """Port 0 reads as no port: the relay went to port 80 of that host with its key (a trial)."""
    text = SERVER + '[[axon.pixels]]\npixel_id = "p"\napi_key = "k"\n[axon.pixels.relay]\nurl = "http://127.0.0.1:0"\n'
    said = "axon.pixels[0].relay.url: 'http://127.0.0.1:0': its port is 0; give the upstream's port (a port is 1"
    assert said in refused(tmp_path, text)


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("CAPIGATE_HOST", "not a host", "cannot listen on 'not a host': not an address or a known host name"),
        (  # postgresql:// was not named among the supported ones (a re-trial)
            "CAPIGATE_DB",
            "mysql://u@127.0.0.1/db",
            "unknown store URL scheme 'mysql': use postgresql://, sqlite:/// or a file path",
        ),
        (
            "CAPIGATE_DB",
            "/nonexistent-dir/x.db",
            "/nonexistent-dir/x.db: the directory /nonexistent-dir does not exist",
        ),
        ("CAPIGATE_DB", "postgresql://u@127.0.0.1/db?schema=BAD", "schema 'BAD': use lower-case letters"),
    ],
)
def test_check_config_refuses_the_host_and_store_variables_serve_would_refuse(
    tmp_path: Path, variable: str, value: str, said: str
) -> None:
    """It checked CAPIGATE_PORT and CAPIGATE_WORKERS as serve does, and said ok to a
    CAPIGATE_HOST or CAPIGATE_DB that serve then refused (a trial): the variable, then serve's
    own words, one `Error:` line, status 1."""
    (tmp_path / "capigate.toml").write_text(SERVER)
    served = _in_environment(["serve", "--port", "0", "--no-relay"], tmp_path, {variable: value})
    assert served.returncode == 1 and said in served.stderr, served.stderr
    checked = _in_environment(["check-config"], tmp_path, {variable: value})
    assert checked.returncode == 1 and " ok " not in checked.stdout, (checked.stdout, checked.stderr)
    assert checked.stderr.startswith(f"Error: {variable}: {said}"), checked.stderr
    assert checked.stderr.count("\n") == 1 and "Traceback" not in checked.stderr, checked.stderr
    assert not (tmp_path / "capigate.db").exists()  # checked, not made


@pytest.mark.parametrize("variable", ["CAPIGATE_HOST", "CAPIGATE_DB", "CAPIGATE_PORT", "CAPIGATE_WORKERS"])
def test_check_config_takes_the_host_and_store_variables_serve_would_take(tmp_path: Path, variable: str) -> None:
    """An empty variable is unset, as serve reads it (the file's): `CAPIGATE_PORT= check-config`
    said "not a whole number" while serve started on the file's port (a re-trial)."""
    (tmp_path / "capigate.toml").write_text(SERVER)
    value = {
        "CAPIGATE_HOST": "127.0.0.1",
        "CAPIGATE_DB": str(tmp_path / "other.db"),
        "CAPIGATE_PORT": "18161",
        "CAPIGATE_WORKERS": "1",
    }[variable]
    for given in (value, ""):  # empty: unset, as serve reads it (the file's)
        done = _in_environment(["check-config"], tmp_path, {variable: given})
        assert done.returncode == 0 and "capigate.toml: ok" in done.stdout, done.stderr


@pytest.mark.parametrize("where", ["CAPIGATE_DB", "store.url"])
def test_check_config_refuses_a_store_file_that_is_no_sqlite_database_as_serve_does_and_leaves_it_alone(
    tmp_path: Path, where: str
) -> None:
    """`CAPIGATE_DB=/etc/passwd check-config` (or a file holding "garbage") said ok, and serve
    refused it, "not a SQLite database" (a re-trial): check-config reads the file as serve's
    check does, read-only: the file is as it was, nothing is made beside it."""
    garbage = tmp_path / "data" / "garbage.db"
    garbage.parent.mkdir()
    garbage.write_bytes(b"garbage\n")
    os.utime(garbage, (1_000_000_000, 1_000_000_000))
    env = {"CAPIGATE_DB": str(garbage)} if where == "CAPIGATE_DB" else {}
    store = "" if env else f'[store]\nurl = "{garbage}"\n'
    (tmp_path / "capigate.toml").write_text(SERVER + store)
    said = f"{garbage}: not a SQLite database"
    served = _in_environment(["serve", "--port", "0", "--no-relay"], tmp_path, env)
    assert served.returncode == 1 and said in served.stderr, served.stderr
    checked = _in_environment(["check-config"], tmp_path, env)
    assert checked.returncode == 1 and " ok " not in checked.stdout, (checked.stdout, checked.stderr)
    prefix = "CAPIGATE_DB" if env else "bad configuration: capigate.toml: store.url"
    assert f"Error: {prefix}: {said}" in checked.stderr and "Traceback" not in checked.stderr, checked.stderr
    assert garbage.read_bytes() == b"garbage\n" and garbage.stat().st_mtime == 1_000_000_000
    assert sorted(p.name for p in garbage.parent.iterdir()) == ["garbage.db"]


def test_check_config_takes_a_sqlite_store_serve_made_without_changing_it(tmp_path: Path) -> None:
    """The file check reads a real store (one `capigate migrate --apply` made) and says ok."""
    (tmp_path / "capigate.toml").write_text(SERVER)
    db = tmp_path / "made.db"
    made = _in_environment(["migrate", "--apply"], tmp_path, {"CAPIGATE_DB": str(db)})
    assert made.returncode == 0, made.stderr
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("made.db")}
    done = _in_environment(["check-config"], tmp_path, {"CAPIGATE_DB": str(db)})
    assert done.returncode == 0 and "capigate.toml: ok" in done.stdout, done.stderr
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("made.db")} == before


def test_a_client_key_of_a_few_characters_is_warned_about_without_its_value(tmp_path: Path) -> None:
    """``api_key = "k"`` passed unsaid while admin_token needs 8 characters (a trial). Warned,
    not refused: the documented dev keys ("key-std", "dev-key") and tests' short ones stay valid."""
    done = check_config(
        tmp_path,
        SERVER
        + '[[axon.pixels]]\npixel_id = "p"\napi_key = "k"\n'
        + '[[appsflyer.apps]]\napp_id = "com.x"\nkeys = ["dev-key", "abc"]\n',
    )
    assert done.returncode == 0, done.stderr
    warned = [line.partition("warning: ")[2] for line in done.stdout.splitlines() if "warning: " in line]
    assert [w.partition(":")[0] for w in warned] == [
        "axon.pixels[0].api_key is only 1 character",
        "appsflyer.apps[0].keys[1] is only 3 characters",
    ], done.stdout
    assert "a real key is a long random string" in warned[0] and '"abc"' not in done.stdout
    quiet = check_config(tmp_path, SERVER + '[[axon.pixels]]\npixel_id = "p"\napi_key = "key-std"\n')
    assert quiet.returncode == 0 and "warning:" not in quiet.stdout, quiet.stdout


def test_capigate_workers_far_above_the_cpus_is_warned_about_as_the_files_workers_is(tmp_path: Path) -> None:
    """`CAPIGATE_WORKERS=64 check-config` on 2 CPUs warned of nothing: only the file's workers
    was checked (a re-trial). The variable, which serve takes over the file's, is warned about
    by its name; one a core is no warning."""
    (tmp_path / "capigate.toml").write_text(SERVER)
    cpus = os.cpu_count() or 1
    done = _in_environment(["check-config"], tmp_path, {"CAPIGATE_WORKERS": str(2 * cpus + 1)})
    assert done.returncode == 0, done.stderr
    assert f"warning: CAPIGATE_WORKERS={2 * cpus + 1} is far above this machine's {cpus} CPU(s)" in done.stdout
    assert "server.workers" not in done.stdout, done.stdout
    quiet = _in_environment(["check-config"], tmp_path, {"CAPIGATE_WORKERS": str(cpus)})
    assert quiet.returncode == 0 and "warning:" not in quiet.stdout, quiet.stdout


def _in_environment(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``capigate ARGS`` in ``cwd`` with ``env`` as its only CAPIGATE_ variables."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CAPIGATE_")}
    return subprocess.run(
        [sys.executable, "-m", "capigate", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**clean, **env},
        cwd=cwd,
    )


@pytest.mark.parametrize("port", ["70000", "-1", "abc", " 8o8o "])
@pytest.mark.parametrize(
    ("args", "listens"),
    [(["serve"], True), (["check-config"], True), (["curl"], False), (["env"], False), (["events"], False)],
    ids=lambda a: a[0] if isinstance(a, list) else "",
)
def test_every_command_reads_a_port_by_one_rule_in_one_wording(
    tmp_path: Path, args: list[str], listens: bool, port: str
) -> None:
    """curl's --port, serve's and check-config's, and the address env and events find (the
    gateway_url check) each had its own check and words (a trial): one rule now, 1 to 65535,
    and 0 too where serve listens (any free port)."""
    (tmp_path / "capigate.toml").write_text(SERVER)
    done = _in_environment(args, tmp_path, {"CAPIGATE_PORT": port})
    rule = _LISTEN_PORTS if listens else _PORTS
    said = rule if re.fullmatch(r"\s*-?[0-9]+\s*", port) else f"{_NOT_WHOLE}; {rule}"
    assert (done.returncode, done.stderr) == (1, f"Error: CAPIGATE_PORT={port}: {said}\n"), done.stderr


_UNANSWERED_URL = "http://127.0.0.1:18599"  # no gateway: the command must stop before it asks one


@pytest.mark.parametrize(
    ("args", "env", "said"),
    [
        (["events"], {"CAPIGATE_URL": _UNANSWERED_URL}, f"CAPIGATE_PORT=abc: {_NOT_WHOLE}; {_PORTS}"),
        (["quality"], {"CAPIGATE_URL": _UNANSWERED_URL}, f"CAPIGATE_PORT=abc: {_NOT_WHOLE}; {_PORTS}"),
        (["events", "--url", _UNANSWERED_URL, "--token", "123456789"], {}, f"CAPIGATE_PORT=abc: {_NOT_WHOLE}; {_PORTS}"),
        (["env", "--url", _UNANSWERED_URL], {}, f"CAPIGATE_PORT=abc: {_NOT_WHOLE}; {_PORTS}"),
        (["env", "--port", "18150"], {}, f"CAPIGATE_PORT=abc: {_NOT_WHOLE}; {_PORTS}"),
        (["curl", "--port", "18150"], {}, f"CAPIGATE_PORT=abc: {_NOT_WHOLE}; {_PORTS}"),
        # the file's store is refused too: before the port's check, serve stopped there, not listening
        (["serve", "--port", "18598"], {"CAPIGATE_DB": "mysql://u@h/db"}, f"CAPIGATE_PORT=abc: {_NOT_WHOLE}; {_LISTEN_PORTS}"),
        (["serve", "--workers", "1"], {"CAPIGATE_PORT": "18598", "CAPIGATE_WORKERS": "two", "CAPIGATE_DB": "mysql://u@h/db"},
         f"CAPIGATE_WORKERS=two: {_NOT_WHOLE}; at least one worker process"),
    ],
    ids=lambda a: " ".join(a) if isinstance(a, list) else "",
)  # fmt: skip
def test_a_malformed_variable_is_refused_whatever_else_names_the_gateway(
    tmp_path: Path, args: list[str], env: dict[str, str], said: str
) -> None:
    """README: a wrong variable is an error whatever the command. After `eval "$(capigate env
    --port 18150)"`, `CAPIGATE_PORT=abc capigate events` ran quietly against CAPIGATE_URL (a
    trial); so did every command where --url or --port won over the variable."""
    (tmp_path / "capigate.toml").write_text(SERVER)
    done = _in_environment(args, tmp_path, {"CAPIGATE_PORT": "abc", **env})
    assert (done.returncode, done.stderr) == (1, f"Error: {said}\n"), (done.stdout, done.stderr)


def test_a_port_0_in_the_file_is_named_there_where_a_client_needs_the_port_serve_chose(tmp_path: Path) -> None:
    """`port = 0` was told as `CAPIGATE_PORT=0`, a variable nobody had set."""
    (tmp_path / "capigate.toml").write_text(SERVER + "port = 0\n")
    done = _in_environment(["env"], tmp_path, {})
    assert done.returncode == 1 and done.stderr.startswith(f"Error: capigate.toml: server.port = 0: {_PORTS}; "), (
        done.stderr
    )
    assert "CAPIGATE_PORT=" not in done.stderr and "--url" in done.stderr, done.stderr
    assert _in_environment(["env"], tmp_path, {"CAPIGATE_PORT": "18160"}).returncode == 0
