"""capigate ships its type hints (PEP 561): a user's ``mypy --strict`` checks against them."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

USER_SCRIPT = """\
import capigate
from capigate.errors import CapigateError


def send(url: str) -> int:
    user = capigate.UserData(
        email=capigate.hash_email("a@b.co"), client_ip_address="192.0.2.1", client_user_agent="ua", esi="web"
    )
    event = capigate.axon_event("purchase", user_data=user, event_source_url="https://shop.example/")
    with capigate.AxonClient("px", "k", base_url=url) as client:
        try:
            return client.send([event]).events
        except CapigateError:
            return 0


version: str = capigate.__version__
"""


def _mypy(tmp_path: Path, code: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "user.py").write_text(code)
    # Run outside the repository: mypy finds capigate as an installed package, through py.typed.
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "user.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_user_script_type_checks_strictly_against_the_package(tmp_path: Path) -> None:
    done = _mypy(tmp_path, USER_SCRIPT)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_package_hints_reach_the_user_so_a_wrong_type_is_caught(tmp_path: Path) -> None:
    done = _mypy(tmp_path, USER_SCRIPT + "\nwrong: int = capigate.hash_email('a@b.co')\n")
    assert done.returncode == 1
    assert 'Incompatible types in assignment (expression has type "str", variable has type "int")' in done.stdout


def test_a_name_the_package_does_not_export_is_an_error_for_the_user(tmp_path: Path) -> None:
    done = _mypy(tmp_path, USER_SCRIPT + "\nmissing = capigate.AxonKlient\n")
    assert done.returncode == 1
    assert 'Module has no attribute "AxonKlient"' in done.stdout


def test_the_wheel_carries_py_typed(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "--disable-pip-version-check",
            "-w",
            tmp_path,
            ROOT,
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("capigate-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "capigate/py.typed" in names
    assert "capigate/__version__.py" in names
