#!/usr/bin/env bash
# Run the whole test suite the way CI does: lint, format check, then pytest.
#
#   ./scripts/test.sh [pytest args...]
#
# Creates the project's virtualenv (with the dev extra) on first use. Tiers that need something
# absent (a Docker daemon, a minikube cluster) skip with the reason shown in the summary.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
# shellcheck source=scripts/lib/venv.sh
source "$here/lib/venv.sh"
ensure_venv dev
cd "$root"
bin="$(dirname "$VENV_PY")"
echo "• ruff check" >&2
"$bin/ruff" check .
echo "• ruff format --check" >&2
"$bin/ruff" format --check .
echo "• pytest" >&2
# A throwaway run directory and gateway port, so tests never touch a sandbox you have running.
export SANDBOX_RUN_DIR="${SANDBOX_RUN_DIR:-$(mktemp -d -t ml-sandbox-test.XXXXXX)}"
exec "$VENV_PY" -m pytest "$@"
