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
if ! "$bin/ruff" check .; then
  echo "lint failed: fix the findings above ($bin/ruff check --fix . fixes many of them)" >&2
  exit 1
fi
echo "• ruff format --check" >&2
if ! "$bin/ruff" format --check .; then
  echo "format check failed: run $bin/ruff format . and commit the result" >&2
  exit 1
fi
echo "• pytest" >&2
# A throwaway run directory, so tests never touch a sandbox you have running (even one named by an
# exported SANDBOX_RUN_DIR); removed afterwards.
SANDBOX_RUN_DIR="$(mktemp -d -t ml-sandbox-test.XXXXXX)"
export SANDBOX_RUN_DIR
trap 'rm -rf "$SANDBOX_RUN_DIR"' EXIT
"$VENV_PY" -m pytest "$@"
