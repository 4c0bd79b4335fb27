"""The README's promise: `capigate serve` with no configuration starts at once, writes its
configuration, and prints a curl that works."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import free_port
from tests.helpers import serve_on_a_terminal

ROOT = Path(__file__).resolve().parent.parent


def test_serve_without_configuration_writes_one_and_prints_a_working_curl(tmp_path: Path) -> None:
    """At a terminal, as the README's quick start runs it: the first start shows the keys it
    wrote in its curls (written elsewhere, they are masked: tests/ops/test_health_banner.py)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAPIGATE_")}
    env["CAPIGATE_PORT"] = str(port)
    with serve_on_a_terminal([], tmp_path, env) as (proc, terminal):
        output = terminal.wait_for("/inappevent/", proc, timeout_s=20)
        lines = output[: output.index("\n", output.index("/inappevent/"))].splitlines()
        config = (tmp_path / "capigate.toml").read_text()
        assert re.search(r'admin_token = "[\w-]{20,}"', config)
        assert 'pixel_id = "px_demo"' in config and 'app_id = "com.example.demo"' in config
        curls = [ln.strip() for ln in lines if ln.strip().startswith("curl ")]
        assert len(curls) == 2, output
        _wait_ready(port)
        for curl in curls:
            result = subprocess.run(
                ["bash", "-c", curl + " -w ' HTTP%{http_code}'"], capture_output=True, text=True, timeout=10
            )
            assert result.stdout.endswith("HTTP200"), result.stdout + result.stderr
        assert (tmp_path / "capigate.db").exists()


def test_bad_configuration_stops_start_up_naming_file_key_and_fix(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(
        '[server]\nadmin_token = "123456789"\n[[axon.pixels]]\npixel_id = "p"\napi_key = "k"\nprofile = "gold"\n'
    )
    result = subprocess.run(
        [sys.executable, "-m", "capigate", "serve", "--config", str(config)], capture_output=True, text=True, timeout=20
    )
    assert result.returncode != 0
    assert str(config) in result.stderr and "axon.pixels[0].profile" in result.stderr
    assert "standard, lead_gen, lead_gen_restricted" in result.stderr
    assert "Traceback" not in result.stderr


def check_config(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "bad.toml"
    config.write_text(text)
    return subprocess.run(
        [sys.executable, "-m", "capigate", "check-config", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=20,
    )


def test_unknown_configuration_key_is_named(tmp_path: Path) -> None:
    result = check_config(tmp_path, '[server]\nadmin_token = "123456789"\nadmin_tokn = "x"\n')
    assert result.returncode != 0 and "server.admin_tokn" in result.stderr and "unknown key" in result.stderr


def test_trusted_proxies_must_be_ip_networks(tmp_path: Path) -> None:
    result = check_config(
        tmp_path, '[server]\nadmin_token = "123456789"\ntrusted_proxies = ["10.0.0.0/8", "lb.internal"]\n'
    )
    assert result.returncode != 0 and "server.trusted_proxies[1]" in result.stderr
    assert "not an IP address or network" in result.stderr


def _wait_ready(port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError("gateway not ready")
