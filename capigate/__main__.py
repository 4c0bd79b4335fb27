"""``python -m capigate``, and the ``capigate`` script's entry point (pyproject.toml)."""

from __future__ import annotations

import os
import signal
from types import FrameType

__all__ = ["run"]


def run() -> None:
    """The command line. Ctrl-C while its modules load and its arguments are read exits 130
    at once, quietly, as Ctrl-C in a command does (capigate.cli, which restores Python's
    handler as the command starts): a traceback was printed for the first ~0.3 s of every
    command (a trial), and "Aborted!" with status 1 while click read the arguments (CI). An
    exit, not KeyboardInterrupt: raised inside the import machinery's callbacks, that one is
    printed as ignored and the command goes on (a re-check)."""
    signal.signal(signal.SIGINT, _exit_interrupted)
    from capigate.cli import main

    main()


def _exit_interrupted(signum: int, frame: FrameType | None) -> None:
    os._exit(128 + signum)  # nothing is done yet: nothing to flush or undo


if __name__ == "__main__":
    run()
