#!/usr/bin/env bash
# Benchmark entry point: installs wrk if missing, then runs bench/run.py (see bench/README.md).
# Usage: bench/run.sh [--target all|ceiling-only|capigate-only] [--quick] [run.py options]
#        bench/run.sh peer [peer.py options]   # capigate vs Prism, then the in-process ratios (bench/peer.py)
#        bench/run.sh instructions [options]   # the in-process limits in instructions (bench/instructions.py)
#        bench/run.sh anatomy [options]        # where a W2 request's time and CPU go over HTTP (bench/anatomy.py)
set -euo pipefail
cd "$(dirname "$0")/.."

# need TOOL: install the Debian package TOOL with apt-get when the command is missing.
need() {
    if ! command -v "$1" >/dev/null 2>&1; then
        echo "bench: $1 not found, installing it with apt-get" >&2
        SUDO=""
        if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
        $SUDO apt-get update
        $SUDO apt-get install -y "$1"
    fi
}

need wrk

PYTHON=".venv/bin/python"
if [ ! -x "$PYTHON" ]; then PYTHON="python3"; fi
if [ "${1:-}" = "instructions" ]; then
    shift
    need valgrind
    exec "$PYTHON" -m bench.instructions "$@"
fi
if [ "${1:-}" = "anatomy" ]; then
    shift
    exec "$PYTHON" -m bench.anatomy "$@"
fi
if [ "${1:-}" = "peer" ]; then
    shift
    exec "$PYTHON" -m bench.peer "$@"
fi
exec "$PYTHON" -m bench.run "$@"
