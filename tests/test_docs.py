"""Documentation is code: every example in README.md and docs/*.md runs, in order, as pasted.

Which blocks are examples is said by the fence's info string (its first word is the language
GitHub highlights; the rest is ours):

    ```sh / ```python            an example: run, it must exit 0
    ```sh long-running           a command that runs until stopped (``--follow``, a server):
                                 started, it must still run 3 s later; then stopped with
                                 Ctrl-C (SIGINT), it must exit 0 or 130, without a traceback
    ```sh no-test: <reason>      shown, not run; the reason is required (a remote database,
                                 this test suite itself)
    ```text ```json ```toml …    not an example: output, shapes, configuration

``shell``, ``bash``, ``console``, ``py`` and ``pycon`` fences are refused, so that no block is
left out by a spelling: write ``sh`` or ``python`` to run it, ``text`` for output.

The blocks run as a reader at a terminal would run them: in a directory laid out as a clone
of this repository (its files linked, its own ``capigate.toml`` and ``capigate.db``), after
``./scripts/serve`` has started the gateway there from the demo configuration it writes.
Shell blocks run one after another in one session: what a block exports, or where it ``cd``s,
holds for the next ones, README.md first, then docs/*.md by name. Each Python block is pasted
into a fresh interpreter (the session's ``python``). The only substitution is the one a
reader makes to move a gateway: the session has ``CAPIGATE_HOST`` and ``CAPIGATE_PORT`` set to
a free loopback port, which ``capigate serve`` and ``capigate env`` (hence ``CAPIGATE_URL``
and every example) honour.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN, DIE_WITH_PYTEST, free_port, served_on
from tests.helpers import Terminal, batch, purchase, stop_group

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
EXAMPLE_LANGUAGES = frozenset({"sh", "python"})
REFUSED_LANGUAGES = frozenset({"shell", "bash", "console", "zsh", "py", "pycon", "python3", "shell-session"})
BLOCK_TIMEOUT_S = 300.0
LONG_RUNNING_S = 3.0
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")


@dataclass(frozen=True)
class Block:
    document: str  # relative to the repository
    line: int  # of the opening fence
    language: str
    flags: str  # the info string after the language
    code: str

    @property
    def where(self) -> str:
        return f"{self.document}:{self.line}"

    @property
    def mode(self) -> str:
        """run, long-running, no-test or (not an example) other."""
        if self.language not in EXAMPLE_LANGUAGES:
            return "other"
        if self.flags.startswith("no-test"):
            return "no-test"
        return "long-running" if self.flags == "long-running" else "run"


def fenced_blocks(path: Path) -> Iterator[Block]:
    """The fenced code blocks of a CommonMark document, with their info strings."""
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        fence, indent, info = opening["fence"], len(opening["indent"]), opening["info"].strip()
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not re.match(rf"^ {{0,3}}{fence[0]}{{{len(fence)},}}\s*$", lines[j]):
            line = lines[j]
            body.append(line[min(indent, len(line) - len(line.lstrip(" "))) :])
            j += 1
        language, _, flags = info.partition(" ")
        yield Block(str(path.relative_to(ROOT)), i + 1, language, flags.strip(), "\n".join(body) + "\n")
        i = j + 1


ALL_BLOCKS = [b for doc in DOCUMENTS for b in fenced_blocks(doc)]
EXAMPLES = [b for b in ALL_BLOCKS if b.mode in ("run", "long-running")]


def test_every_fence_says_whether_it_is_an_example() -> None:
    wrong = [f"{b.where}: ```{b.language}" for b in ALL_BLOCKS if b.language in REFUSED_LANGUAGES]
    assert not wrong, "write ```sh or ```python to run a block, ```text for output:\n" + "\n".join(wrong)
    unknown = [f"{b.where}: ```{b.language} {b.flags}" for b in ALL_BLOCKS if b.mode == "run" and b.flags]
    assert not unknown, "unknown fence flags (long-running, no-test: <reason>):\n" + "\n".join(unknown)
    reasonless = [b.where for b in ALL_BLOCKS if b.mode == "no-test" and len(b.flags.removeprefix("no-test:")) < 10]
    assert not reasonless, "a no-test block says why it is not run: ```sh no-test: <reason>\n" + "\n".join(reasonless)


def test_the_readme_says_early_how_capigate_gets_on_the_path() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    quick_start = readme[: readme.index("## Configuration")]
    assert "source .venv/bin/activate" in quick_start
    first_example = next(b for b in EXAMPLES if b.document == "README.md" and "capigate " in b.code)
    assert "source .venv/bin/activate" in first_example.code, first_example.where


@dataclass
class Outcome:
    ok: bool
    output: str


@dataclass
class Session:
    """One reader's terminal: a clone-like directory with a gateway, and a shell's state."""

    home: Path
    env: dict[str, str]
    cwd: Path
    served: Terminal  # where ./scripts/serve writes, as a reader's terminal
    outcomes: dict[Block, Outcome] = field(default_factory=dict)

    def run_through(self, block: Block) -> Outcome:
        """Run every example up to ``block`` not yet run (in order), and say how ``block`` went."""
        for earlier in EXAMPLES[: EXAMPLES.index(block) + 1]:
            if earlier not in self.outcomes:
                self.outcomes[earlier] = self.run(earlier)
        return self.outcomes[block]

    def run(self, block: Block) -> Outcome:
        if block.mode == "long-running":
            return self.run_long(block)
        if block.language == "python":
            return self.capture(["python", "-c", block.code], self.env)
        state = self.home.parent / "state"
        script = f'set -eo pipefail\n{block.code}\nenv -0 > "{state}.env"; pwd > "{state}.pwd"\n'
        outcome = self.capture(["bash", "-c", script], self.env)
        if outcome.ok:
            raw = Path(f"{state}.env").read_bytes().decode()
            self.env = dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)
            self.cwd = Path(Path(f"{state}.pwd").read_text().strip())
        return outcome

    def capture(self, argv: list[str], env: dict[str, str]) -> Outcome:
        try:
            done = subprocess.run(
                argv,
                cwd=self.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=BLOCK_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired as exc:
            return Outcome(False, f"still running after {BLOCK_TIMEOUT_S:.0f} s:\n{exc.stdout!r}\n{exc.stderr!r}")
        output = f"exit status {done.returncode}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
        ok = done.returncode == 0 and "Traceback (most recent call last)" not in done.stderr
        return Outcome(ok, output)

    def run_long(self, block: Block) -> Outcome:
        proc = subprocess.Popen(
            ["bash", "-c", block.code],
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            preexec_fn=DIE_WITH_PYTEST,
        )
        time.sleep(LONG_RUNNING_S)
        running = proc.poll() is None
        if running:
            os.killpg(proc.pid, signal.SIGINT)
        try:
            stdout, stderr = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
            return Outcome(False, "did not stop on Ctrl-C (SIGINT)")
        output = f"exit status {proc.returncode}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
        if not running:
            return Outcome(False, f"exited within {LONG_RUNNING_S:.0f} s:\n{output}")
        ok = proc.returncode in (0, 130, -signal.SIGINT) and "Traceback" not in stderr
        return Outcome(ok, output)


def _clone(home: Path) -> None:
    """A directory that looks like a clone: the repository's files linked, no state of its own."""
    home.mkdir()
    for name in ("README.md", "pyproject.toml", "capigate", "docs", "scripts", "bench", "tests", ".venv"):
        if (ROOT / name).exists():
            (home / name).symlink_to(ROOT / name)


def _wait_ready(url: str, proc: subprocess.Popen[bytes], served: Terminal) -> None:
    deadline = time.monotonic() + 120  # the script may install capigate into .venv first
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"./scripts/serve exited with {proc.returncode}:\n{served.text}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"./scripts/serve did not become ready:\n{served.text}")


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    home = tmp_path_factory.mktemp("docs") / "capigate"
    _clone(home)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CAPIGATE_", "PYTEST_", "VIRTUAL_ENV"))}
    if sys.prefix != sys.base_prefix:  # a reader's PATH has no virtual environment until they activate it
        env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(sys.prefix))
    env.update(CAPIGATE_HOST="127.0.0.1", CAPIGATE_PORT=str(free_port()))
    served = Terminal()  # a reader starts it at a terminal: the first start shows its keys there alone
    gateway = subprocess.Popen(
        [str(ROOT / "scripts" / "serve")],
        cwd=home,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=served.terminal,
        stderr=served.terminal,
        start_new_session=True,
        preexec_fn=DIE_WITH_PYTEST,
    )
    served.start()
    try:
        _wait_ready(f"http://127.0.0.1:{env['CAPIGATE_PORT']}", gateway, served)
        docs = Session(home=home, env=env, cwd=home, served=served)
        yield docs
        for block, outcome in docs.outcomes.items():
            print(f"{block.where}: {'ran' if outcome.ok else 'FAILED'}")
    finally:
        stop_group(gateway, 20)
        served.close()


@pytest.mark.timeout(BLOCK_TIMEOUT_S * 2)
@pytest.mark.parametrize("block", EXAMPLES, ids=[b.where for b in EXAMPLES])
def test_example_runs_as_pasted(session: Session, block: Block) -> None:
    outcome = session.run_through(block)
    assert outcome.ok, f"{block.where} (```{block.language} {block.flags}):\n{block.code}\n{outcome.output}"


def test_relative_links_lead_to_files() -> None:
    broken = []
    for doc in DOCUMENTS:
        for target in re.findall(r"\]\(([^)#:\s]+)(?:#[^)]*)?\)", doc.read_text(encoding="utf-8")):
            if not (doc.parent / target).exists():
                broken.append(f"{doc.relative_to(ROOT)}: {target}")
    assert not broken, "\n".join(broken)


def test_the_docs_cite_nothing_a_clone_does_not_have() -> None:
    """The API documents live outside the repository (shared/spec); docs/api.md is ours."""
    cited = [f"{doc.relative_to(ROOT)}" for doc in DOCUMENTS if "shared/" in doc.read_text(encoding="utf-8")]
    assert not cited, f"a clone has no shared/: cite docs/api.md instead, in {cited}"
    assert (ROOT / "docs" / "api.md").exists()


def test_the_readme_reads_an_event_by_an_id_a_postgresql_store_gave(tmp_path: Path) -> None:
    """The session above runs on SQLite, whose ids start at 1: README's `/api/events/1` passed
    there and 404'd on a PostgreSQL-backed gateway, whose ids start at 128 and go in blocks (a
    trial). The example that reads one event runs here, as pasted, against PostgreSQL."""
    (block,) = [b for b in EXAMPLES if "/api/events/" in b.code]
    with served_on("postgresql", tmp_path) as (server, _):
        with server.client(headers={"Authorization": "key-std"}) as http:
            answer = http.post("/v1/event", params={"pixel_id": "px_std"}, json=batch(purchase()))
        assert answer.status_code == 200, answer.text
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CAPIGATE_", "PYTEST_"))}
        env.update(
            CAPIGATE_URL=server.url,
            CAPIGATE_ADMIN_TOKEN=ADMIN,
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",  # an activated .venv
        )
        done = subprocess.run(
            ["bash", "-c", f"set -eo pipefail\n{block.code}"],
            capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path,
        )  # fmt: skip
    assert done.returncode == 0, f"{block.where}:\n{block.code}\n{done.stdout}\n{done.stderr}"
    assert '"attempts"' in done.stdout, done.stdout


README_HOME = "/home/me/capigate"
README_PORT, README_MOVED_PORT = "8080", "18150"


def _readme_banners() -> tuple[list[str], list[str]]:
    """The README's sample banner of ``./scripts/serve`` (without the installer's lines of a
    first run), and its lines of a gateway moved to another port."""
    texts = [b.code for b in ALL_BLOCKS if b.document == "README.md" and b.language == "text"]
    (started,) = [t for t in texts if t.startswith("$ ./scripts/serve\n")]
    (moved,) = [t for t in texts if "Another shell finds it with" in t]
    lines = [line for line in started.splitlines()[1:] if not line.startswith(("installing ", "installed "))]
    return lines, moved.splitlines()


def _shown_as_in_readme(line: str, shown: str) -> bool:
    """``line`` of the real banner is as the README shows it: the same, or, where the README
    cuts it with "…" (a key, a body) or it says what this machine has (compiled modules or
    not), the same up to there."""
    for cut in ("…", "compiled modules "):
        if cut in shown:
            return line.startswith(shown[: shown.index(cut) + (len(cut) if cut != "…" else 0)])
    return line == shown


def test_the_readmes_serve_banner_is_the_one_serve_prints(session: Session) -> None:
    """The README's sample banner left out the "Another shell finds it with" line a moved
    gateway's banner has (a trial). The session's ./scripts/serve is moved (CAPIGATE_PORT), as
    a reader's with another port: its banner, its directory and port written as the README
    writes them, is the README's second sample where the port is moved, and its first without
    that line."""
    port = session.env["CAPIGATE_PORT"]
    log = session.served.text
    real = []
    for line in log.splitlines():
        if re.match(r"\d{4}-\d\d-\d\d ", line):  # the server's own log lines follow the banner
            break
        real.append(line.replace(str(session.home), README_HOME).replace(str(ROOT), README_HOME))
    started, moved = _readme_banners()
    another = [i for i, line in enumerate(real) if line.startswith("Another shell finds it with: ")]
    assert len(another) == 1, real
    at = another[0]
    as_moved = [line.replace(port, README_MOVED_PORT) for line in real[at - 1 : at + 1]]
    assert as_moved == moved, (as_moved, moved)
    on_the_files_port = [line.replace(f":{port}", f":{README_PORT}") for line in real[:at] + real[at + 1 :]]
    assert len(on_the_files_port) == len(started), (on_the_files_port, started)
    for line, shown in zip(on_the_files_port, started, strict=True):
        assert _shown_as_in_readme(line, shown), (line, shown)


def test_the_documented_load_balancers_send_the_clients_address() -> None:
    """docs/deployment.md's nginx and HAProxy blocks set X-Forwarded-For, which neither sends by
    default: without it every request was journaled with the balancer's address, and the login
    throttle (per address) locked every client out after five wrong tokens (a new user's trial)."""
    blocks = {b.language: b.code for b in fenced_blocks(ROOT / "docs" / "deployment.md")}
    assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in blocks["nginx"]
    assert "option forwardfor" in blocks["haproxy"]
