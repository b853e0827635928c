# shellcheck shell=bash
# Sourced by the scripts: makes sure the project's virtualenv exists and is current.
#   ensure_venv [runtime|dev]   -> sets VENV_PY to the venv's python
# The venv lives in .venv (override with SANDBOX_VENV). It is (re)built when pyproject.toml changes.

ensure_venv() {
  local flavour="${1:-runtime}"
  local root venv stamp hash have extras py
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
  venv="${SANDBOX_VENV:-$root/.venv}"
  stamp="$venv/.ml-sandbox-stamp"
  extras=""
  [ "$flavour" = dev ] && extras="[dev]"
  hash="$(sha256sum "$root/pyproject.toml" | cut -c1-16)"
  export VENV_PY="$venv/bin/python"

  # Current when installed from this pyproject.toml, with the dev extra if that is asked for.
  have="$(cat "$stamp" 2>/dev/null || true)"
  if [ "$have" = "$hash dev" ] || [ "$have" = "$hash $flavour" ]; then
    return 0
  fi

  py="${PYTHON:-python3}"
  if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "ml-sandbox needs Python >= 3.11 (found: $("$py" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
    exit 1
  fi
  if [ ! -x "$venv/bin/python" ]; then
    echo "• creating the virtualenv in $venv" >&2
    "$py" -m venv "$venv" || { echo "cannot create a venv: install python3-venv" >&2; exit 1; }
  fi
  echo "• installing ml-sandbox$extras and its pinned dependencies into $venv (first run: a few minutes)" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2 || true
  if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$root$extras" >&2; then
    echo "pip install failed; see the output above" >&2
    exit 1
  fi
  echo "$hash $flavour" > "$stamp"
}
