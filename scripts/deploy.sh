#!/usr/bin/env bash
# Deploy isvcs and smoke-test them with the samples in their service.yaml.
#
#   ./scripts/deploy.sh <isvc>... | --all  [--target auto|local|docker|minikube]
#                       [--mediawiki live|replay|URL] [--port 8080] [--delete]
#
# --target auto (default) uses the minikube sandbox when its kube context answers, else local.
# --mediawiki replay serves MediaWiki from recorded fixtures (no internet needed).
# Creates the project's virtualenv on first use. Exit codes: 0 ok, 1 failure, 2 bad usage.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=scripts/lib/venv.sh
source "$here/lib/venv.sh"

if [ $# -eq 0 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
  sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
  [ $# -eq 0 ] && exit 2 || exit 0
fi

ensure_venv runtime
exec "$VENV_PY" -m sandbox deploy "$@"
