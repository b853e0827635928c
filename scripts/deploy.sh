#!/usr/bin/env bash
# Deploy isvcs and smoke-test them with the samples in their service.yaml.
#
#   ./scripts/deploy.sh <isvc>... | --all  [--target auto|local|docker|minikube]
#                       [--mediawiki live|replay|URL] [--port 8080] [--timeout SECONDS]
#                       [--model-source sandbox|production|URI] [--env KEY=VALUE] [--delete]
#
# --target auto (default) uses the minikube sandbox when its kube context answers, else local.
# --mediawiki replay serves MediaWiki from recorded fixtures (no internet needed).
# --timeout is the readiness deadline (default 60 s; 900 s on minikube).
# Every option: ./scripts/deploy.sh --help-all (the `ml-sandbox deploy --help` text).
# Creates the project's virtualenv on first use. Exit codes: 0 ok, 1 failure, 2 bad usage.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=scripts/lib/venv.sh
source "$here/lib/venv.sh"

if [ $# -eq 0 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
  [ $# -eq 0 ] && exit 2 || exit 0
fi

ensure_venv runtime
if [ "$1" = "--help-all" ]; then
  exec "$VENV_PY" -m sandbox deploy --help
fi
exec "$VENV_PY" -m sandbox deploy "$@"
