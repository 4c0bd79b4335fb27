# Sourced by scripts/serve and scripts/test: make .venv and install capigate into it.
# $1: the install's name (runtime, test); $2: its extras ("" or "[test]").
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
VENV="$ROOT/.venv"
installed() { [ -f "$VENV/.capigate-installed-$1" ] && [ ! "$ROOT/pyproject.toml" -nt "$VENV/.capigate-installed-$1" ]; }
# The test install holds the runtime's too.
if ! installed "$1" && ! { [ "$1" = runtime ] && installed test; }; then
  # Said before the wait, on stderr: the first run is otherwise silent for a minute or more.
  what="capigate and its dependencies"
  [ "$1" = runtime ] || what="capigate, its dependencies and its $1 tools"
  if [ -f "$VENV/.capigate-installed-$1" ]; then
    echo "updating $what in .venv (pyproject.toml changed)…" >&2
  else
    echo "installing $what into .venv (first run, ~1 min)…" >&2
  fi
  started=$SECONDS
  # venv's and pip's output is shown only when they fail: pip warns of every index location it
  # finds empty, even with --quiet, and buried scripts/test's banner under those warnings. An
  # explicit check, not set -e: that is ignored where this file is sourced in an && list.
  pip_log="$(mktemp)"
  if ! { [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"; } >"$pip_log" 2>&1 \
    || ! "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$ROOT$2" >>"$pip_log" 2>&1; then
    cat "$pip_log" >&2
    rm -f "$pip_log"
    echo "could not install $what into .venv: pip's output is above" >&2
    return 1 2>/dev/null || exit 1
  fi
  rm -f "$pip_log"
  touch "$VENV/.capigate-installed-$1"
  echo "installed $what into .venv in $((SECONDS - started)) s" >&2
fi
