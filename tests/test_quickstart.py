"""The README's promise: `capigate serve` with no configuration starts at once, writes its
configuration, and prints a curl that works."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import DIE_WITH_PYTEST, free_port

ROOT = Path(__file__).resolve().parent.parent


def test_serve_without_configuration_writes_one_and_prints_a_working_curl(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "CAPIGATE_PORT": str(port)}
    env.pop("CAPIGATE_CONFIG", None)
    env.pop("CAPIGATE_DB", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "capigate", "serve"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=DIE_WITH_PYTEST,
    )
    assert proc.stdout is not None
    try:
        lines: list[str] = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = proc.stdout.readline().decode()
            lines.append(line)
            if "/inappevent/" in line:
                break
        output = "".join(lines)
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
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
        proc.stdout.close()


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
