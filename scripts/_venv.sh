# Sourced by scripts/serve and scripts/test: make .venv and install capigate into it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
if [ ! -x "$ROOT/.venv/bin/python" ]; then
  "$PY" -m venv "$ROOT/.venv"
fi
VENV="$ROOT/.venv"
installed() { [ -f "$VENV/.capigate-installed-$1" ] && [ ! "$ROOT/pyproject.toml" -nt "$VENV/.capigate-installed-$1" ]; }
# The test install holds the runtime's too.
if ! installed "$1" && ! { [ "$1" = runtime ] && installed test; }; then
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$ROOT$2"
  touch "$VENV/.capigate-installed-$1"
fi
