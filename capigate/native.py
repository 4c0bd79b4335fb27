"""The hot modules compiled with mypyc: the same typed source, run as C extensions.

The rules of every Axon event are the event loop's largest part, and the request's path
around them (reading it, the handlers, the journal entry, the store's call) most of the
rest: pure Python whose profile is flat (no function holds a tenth of it). mypyc compiles
those modules as they are, and a compiled module answers as its source does
(tests/test_native.py runs the rules' tests and the HTTP tests of both APIs against the
compiled modules). Nothing is compiled unless asked:

    .venv/bin/capigate native build    # needs a C compiler and mypy: pip install 'capigate[native]'
                                       # (in a clone: pip install -e '.[native]')
    .venv/bin/capigate native status

The build goes beside the interpreter (``sys.prefix``/capigate-native, or
``CAPIGATE_NATIVE_DIR``) with the SHA-256 of each module's source as compiled. ``import
capigate`` then loads the compiled modules only while every source is unchanged: after an
edit all of them run as Python until the next build, never a stale copy.
``CAPIGATE_NATIVE=0`` (or false, no, off) turns them off. A process decides once, when it
imports capigate: ``capigate serve`` prints its decision in its start-up line, and
``capigate native status`` tells what a process started now would do.

A module is compiled only if mypyc keeps its meaning, and tests/test_native.py checks the
rules that keeps it:
- mypyc drops a class statement's keywords (a Struct declared ``frozen=True`` would not be
  frozen): no compiled module declares one; the Structs live in modules left as Python.
- It checks every declared type at run time: a value that breaks its annotation raises
  TypeError there, where Python would carry it on. That includes a name two ``except``
  clauses of one function share, typed by the first: each kind caught has its own name.
- It compiles no async generator: an iterator class stands in (http/asgi.py).
- It evaluates a memoryview's slice bounds twice: ``data[os.write(fd, data):]`` wrote every
  frame to the writer process twice. A slice bound calls nothing but ``len``.
- It copies the ``Final`` constants of the modules a compiled one imports: the manifest
  records the digest of every capigate module the compiled ones import, directly or not,
  and an edit to any of them turns the build off too.
"""

from __future__ import annotations

import importlib.machinery
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Final

__all__ = ["MODULES", "build", "native_dir", "status"]

MODULES: Final = (
    # the Axon rules and hashing
    "capigate.addresses",
    "capigate.checking",
    "capigate.epoch",
    "capigate.events",
    "capigate.identity",
    "capigate.matchkeys",
    "capigate.personal",
    "capigate.axon.rules",
    "capigate.axon.typed",
    "capigate.axon.user_data",
    # the request's path around them: reading it, the handlers, the journal entry, the store's call
    "capigate.kept",
    "capigate.http.accept",
    "capigate.http.app",
    "capigate.http.appsflyer",
    "capigate.http.asgi",
    "capigate.http.axon",
    "capigate.http.deadlines",
    "capigate.http.journal",
    "capigate.http.outcome",
    "capigate.http.routing",
    "capigate.http.state",
    "capigate.http.proxies",
    "capigate.store.sqlite.store",
    # what every request also calls: its counters, the store's health, its relay's name
    "capigate.metrics",
    "capigate.health",
    "capigate.relay.destinations",
    # the writer's rows (the SQLite writer's thread or process)
    "capigate.store.sqlite.ingest",
    "capigate.store.sqlite.rows",
    # what each group commit also runs: the dedupe keys' copy, the journal's extras and totals,
    # the files' check (the writer's connection class stays interpreted: connection.py)
    "capigate.store.sqlite.dedupe",
    "capigate.store.sqlite.inspector",
    "capigate.store.inspector",
    "capigate.store.sqlite.opened",
    "capigate.store.sqlite.writer",
    "capigate.store.sqlite.writer_process",
)
_PACKAGE: Final = Path(__file__).resolve().parent
_OFF: Final = frozenset({"0", "false", "no", "off"})
_ON: Final = frozenset({"1", "true", "yes", "on"})
_MANIFEST: Final = "manifest.json"


def native_dir() -> Path:
    """Where the build goes and is read from: ``CAPIGATE_NATIVE_DIR`` (relative to the
    working directory), else ``sys.prefix``/capigate-native."""
    return Path(os.environ.get("CAPIGATE_NATIVE_DIR") or Path(sys.prefix) / "capigate-native").absolute()


def _source(module: str, root: Path = _PACKAGE.parent) -> Path:
    """The file of ``module`` under ``root``: a package's is its ``__init__.py``."""
    path = root.joinpath(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _imported(modules: Sequence[str], root: Path) -> list[str]:
    """The capigate modules that ``modules`` import, directly or not, and the packages above
    each (all run at import), but not ``modules`` themselves: mypyc copies their ``Final``
    constants into the compiled code."""
    import ast  # here: ``import capigate`` imports this module, and most never built it

    seen: set[str] = set()
    todo = list(modules)
    while todo:
        name = todo.pop()
        if name in seen or not _source(name, root).is_file():
            continue
        seen.add(name)
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        for node in ast.walk(ast.parse(_source(name, root).read_text())):
            if isinstance(node, ast.Import):
                todo += [alias.name for alias in node.names if alias.name.startswith("capigate")]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("capigate"):
                todo += [node.module or "", *(f"{node.module}.{alias.name}" for alias in node.names)]
    return sorted(seen - set(modules))


def _digest(path: Path) -> str:
    import hashlib  # here: ``import capigate`` imports this module, and most never built it

    return hashlib.sha256(path.read_bytes()).hexdigest()


def build(target: Path | None = None, modules: Sequence[str] = MODULES) -> Path:
    """Compiles ``modules`` into ``target`` (native_dir()); returns it. Raises
    RuntimeError with mypyc's output when the compiler or mypy is missing or fails."""
    import shutil  # here, not at the top: ``import capigate`` imports this module
    import subprocess
    import tempfile

    target = target or native_dir()
    with tempfile.TemporaryDirectory(prefix="capigate-native-") as tmp:
        work = Path(tmp)
        shutil.copytree(_PACKAGE, work / "capigate", ignore=shutil.ignore_patterns("*.so", "__pycache__"))
        paths = [str(Path(*m.split(".")).with_suffix(".py")) for m in modules]
        done = subprocess.run(
            [sys.executable, "-m", "mypyc", *paths], cwd=work, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            hint = "\nmypyc comes with mypy: pip install 'capigate[native]' (in a clone: pip install -e '.[native]')"
            missing = "No module named mypyc" in done.stderr
            raise RuntimeError(
                f"mypyc failed (exit {done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}{hint if missing else ''}"
            )
        suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
        fresh = target.with_name(target.name + ".new")
        shutil.rmtree(fresh, ignore_errors=True)
        (fresh / "lib").mkdir(parents=True)
        shared = [path.name.removesuffix(suffix) for path in work.glob(f"*__mypyc{suffix}")]
        for name in [*shared, *modules]:  # the shared library holds the code each module loads
            built = work / f"{name}{suffix}" if name in shared else work.joinpath(*name.split(".")).with_suffix(suffix)
            shutil.copy2(built, fresh / "lib" / f"{name}{suffix}")
        # The copy's digests: a source edited while mypyc ran differs from what was compiled.
        digests = {m: _digest(_source(m, work)) for m in modules}
        imported = {m: _digest(_source(m, work)) for m in _imported(modules, work)}
    manifest = {
        "tag": sys.implementation.cache_tag,
        "suffix": suffix,
        "shared": shared,
        "modules": digests,
        "imports": imported,
    }
    (fresh / _MANIFEST).write_text(json.dumps(manifest, indent=1))
    shutil.rmtree(target, ignore_errors=True)
    fresh.rename(target)
    return target


class _CompiledModules:
    """Finds the compiled modules and their shared library, by name, before any other finder
    on ``sys.meta_path`` (a finder need not subclass importlib.abc.MetaPathFinder, whose
    import costs 12 ms)."""

    def __init__(self, files: dict[str, Path]) -> None:
        self.files = files

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        file = self.files.get(fullname)
        if file is None:
            return None
        loader = importlib.machinery.ExtensionFileLoader(fullname, str(file))
        spec = importlib.machinery.ModuleSpec(fullname, loader, origin=str(file))
        spec.has_location = True  # __file__ is the compiled file
        return spec


def _usable(directory: Path) -> tuple[dict[str, Path], str]:
    """The compiled modules of ``directory`` to load, by name, or none and why."""
    switch = os.environ.get("CAPIGATE_NATIVE", "1").strip().lower()
    if switch in _OFF:
        return {}, f"off: CAPIGATE_NATIVE={os.environ['CAPIGATE_NATIVE']}"
    if switch not in _ON:
        return {}, f"off: CAPIGATE_NATIVE={os.environ['CAPIGATE_NATIVE']!r} is neither 1 nor 0"
    try:
        manifest = json.loads((directory / _MANIFEST).read_text())
    except (OSError, ValueError):
        return {}, f"off: not built (capigate native build makes {directory})"
    if isinstance(manifest, dict) and "modules" in manifest and "imports" not in manifest:
        return {}, "off: built by an earlier capigate, which did not record the modules imported: build again"
    try:
        tag, suffix, shared, modules = manifest["tag"], manifest["suffix"], manifest["shared"], manifest["modules"]
        imports = manifest["imports"]
        files = {name: directory / "lib" / f"{name}{suffix}" for name in [*shared, *modules]}
        if not (isinstance(modules, dict) and all(str(m).startswith("capigate.") for m in modules)):
            raise TypeError("only capigate's own modules")  # the finder answers for these names
        if not isinstance(imports, dict):
            raise TypeError("imports: a mapping")
    except (KeyError, TypeError):
        return {}, f"off: {directory / _MANIFEST} is not a build's: build again"
    if tag != sys.implementation.cache_tag:
        return {}, f"off: built for {tag}, this is {sys.implementation.cache_tag}: build again"
    if changed := _changed(modules):
        return {}, f"off: {', '.join(changed)} changed since the build: build again"
    if changed := _changed(imports):
        return {}, f"off: {', '.join(changed)} (imported by the compiled modules) changed since the build: build again"
    if missing := [name for name, file in files.items() if not file.is_file()]:
        return {}, f"off: {', '.join(missing)} missing from {directory / 'lib'}: build again"
    return files, f"on: {len(modules)} modules from {directory}"


def _changed(digests: dict[str, str]) -> list[str]:
    """The modules whose source is not the one recorded (or is gone): run at every ``import
    capigate`` with a build, for ~100 modules, so each file is found and read once."""
    return sorted(m for m, digest in digests.items() if _digest_of(m) != digest)


def _digest_of(module: str) -> str | None:
    try:
        return _digest(_source(module))
    except OSError:  # no such file any more
        return None


_STATUS = "off: not activated"


def activate() -> None:
    """Called once by ``import capigate``: loads the compiled modules from now on if they
    match their sources (all or none)."""
    global _STATUS
    directory = native_dir()
    files, _STATUS = _usable(directory)
    if files and not any(isinstance(f, _CompiledModules) for f in sys.meta_path):
        sys.meta_path.insert(0, _CompiledModules(files))


def status() -> str:
    """Whether the compiled modules are in use: "on: …", or "off: " and why."""
    return _STATUS
