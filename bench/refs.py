"""The capigate package of another commit, for an A/B (``--ref REV``), run as this tree runs.

When this tree runs compiled modules (``capigate native build``, capigate/native.py), a ref
that has them is compiled too, into its own directory: the build beside the interpreter is
this tree's, and a ref finds its sources changed there, so it would run as Python and the A/B
would measure the compiler, not the commits. A ref from before capigate/native.py runs as
Python, as it always did.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bench.procstat import native_status

__all__ = ["archive", "ref_env"]

REPO = Path(__file__).resolve().parent.parent


def archive(ref: str, root: Path) -> Path:
    """Commit ``ref``'s capigate package extracted under ``root`` (PYTHONPATH for it), its hot
    modules compiled into ``native/`` beside it if this tree runs them compiled."""
    tree = root / f"tree-{ref}"
    tree.mkdir(parents=True)
    package = subprocess.run(["git", "archive", ref, "capigate"], cwd=REPO, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=package, check=True)
    if native_status().startswith("on") and (tree / "capigate" / "native.py").is_file():
        build = "from capigate import native; native.build()"
        env = ref_env(tree)
        done = subprocess.run([sys.executable, "-c", build], cwd=tree, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"compiling {ref}'s modules failed:\n{done.stderr[-3000:]}")
    return tree


def ref_env(tree: Path, *, with_repo: bool = False) -> dict[str, str]:
    """The environment that runs ``tree`` (from ``archive``): its package first on the path
    (this tree's bench after it if ``with_repo``), and its own compiled modules, if any."""
    path = f"{tree}{os.pathsep}{REPO}" if with_repo else str(tree)
    return {**os.environ, "PYTHONPATH": path, "CAPIGATE_NATIVE_DIR": str(tree / "native")}
