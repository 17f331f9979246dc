#!/usr/bin/env bash
# Installs the Python client into a fresh venv and runs its tests against a live server.
#
# 1. build/client-venv gets `pip install ./clients/python pytest` and nothing else;
# 2. sympy and numpy must NOT be importable there (the client must not pull them in);
# 3. the client tests run against `chainrule serve` from the main venv (numpy tests skip);
# 4. the `[numpy]` extra is added and the tests run again, numpy paths included.
#
# Usage: scripts/client_venv_check.sh   (env: PYTHON, CHAINRULE_SERVER, CLIENT_VENV)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
VENV="${CLIENT_VENV:-$ROOT/build/client-venv}"
export CHAINRULE_SERVER="${CHAINRULE_SERVER:-$ROOT/.venv/bin/chainrule}"
PYTEST_VERSION="$(grep -oE '"pytest==[0-9.]+"' "$ROOT/pyproject.toml" | tr -d '"' || true)"

if [[ ! -x "$CHAINRULE_SERVER" ]]; then
  echo "client_venv_check: no server at $CHAINRULE_SERVER (run make setup)" >&2
  exit 1
fi

rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
# a copy of the client source, so that pip's build never writes into the work tree
BUILD_DIR="$(mktemp -d)"
trap 'rm -rf "$BUILD_DIR"' EXIT
cp -r "$ROOT/clients/python/." "$BUILD_DIR/"
rm -rf "$BUILD_DIR"/*.egg-info "$BUILD_DIR/build"

"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$BUILD_DIR" "${PYTEST_VERSION:-pytest}"

for absent in sympy numpy; do
  if "$VENV/bin/python" -c "import $absent" 2>/dev/null; then
    echo "client_venv_check: '$absent' is installed with chainrule-client; it must not be" >&2
    exit 1
  fi
done
echo "client_venv_check: sympy and numpy are absent; running the client tests without numpy"

# the installed copy must be the one under test: show where it comes from
(cd "$BUILD_DIR/.." && "$VENV/bin/python" -c "import chainrule.client as c; print('client from', c.__file__)")
# rootdir = clients/python, whose pyproject holds the pytest settings; the pytest script (not
# `python -m pytest`) keeps the work tree's chainrule/ off sys.path
cd "$ROOT/clients/python"
"$VENV/bin/pytest" tests -q

"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$BUILD_DIR[numpy]"
"$VENV/bin/python" -c "import numpy"
echo "client_venv_check: the [numpy] extra is installed; running the client tests again"
"$VENV/bin/pytest" tests -q
