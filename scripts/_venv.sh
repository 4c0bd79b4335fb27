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
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$ROOT$2"
  touch "$VENV/.capigate-installed-$1"
  echo "installed $what into .venv in $((SECONDS - started)) s" >&2
fi
