#!/usr/bin/env bash
# End-to-end run of the sandbox on minikube: the steps of the nightly workflow, callable from any
# CI (GitHub Actions, Jenkins, GitLab) or by hand.
#
#   scripts/e2e.sh all            # every step below in order; diagnostics + teardown always run
#   scripts/e2e.sh STEP...        # runner setup release-urls base-image cluster idempotence deploy test
#                                 # diagnostics teardown
#   scripts/e2e.sh changed-count LOG   # sum of changed= in an ansible-playbook PLAY RECAP
#
# Environment:
#   E2E_ARTIFACTS_DIR   where logs and diagnostics go (default: ./e2e-artifacts)
#   E2E_PLAYBOOK_ARGS   extra ansible-playbook arguments, e.g. "-e ingress_host_port=9090"
#   E2E_DEPLOY_ARGS     extra deploy.sh arguments (default: "--mediawiki replay --timeout 900":
#                       hermetic wikis; a first deploy pulls the sidecar images)
#   E2E_KEEP=1          `all` leaves the cluster up instead of tearing it down
#   PYTHON              the interpreter that creates .venv (default: python3; scripts/lib/venv.sh)
set -euo pipefail

CALLER_DIR="$PWD"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# shellcheck source=scripts/lib/venv.sh
source "$ROOT/scripts/lib/venv.sh"

ARTIFACTS="${E2E_ARTIFACTS_DIR:-$ROOT/e2e-artifacts}"
VENV="${SANDBOX_VENV:-$ROOT/.venv}"
read -r -a PLAYBOOK_ARGS <<<"${E2E_PLAYBOOK_ARGS:-}"
read -r -a DEPLOY_ARGS <<<"${E2E_DEPLOY_ARGS-"--mediawiki replay --timeout 900"}"
export ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0 PY_COLORS=0
export SANDBOX_E2E_TARGET=minikube
export PATH="$VENV/bin:$PATH"

log() { printf '\n=== %s: %s\n' "$(date -u +%H:%M:%S)" "$*"; }
die() { printf 'e2e: %s\n' "$*" >&2; exit 1; }

# The sum of changed=N over the host lines of the last PLAY RECAP in an ansible-playbook log.
changed_count() {
  [[ -r "$1" ]] || die "cannot read $1"
  awk '
    /^PLAY RECAP/ { recap = 1; total = 0; seen = 0; next }
    recap && /changed=[0-9]+/ {
      for (i = 1; i <= NF; i++) if ($i ~ /^changed=[0-9]+$/) { split($i, kv, "="); total += kv[2] }
      seen = 1
    }
    END { if (!seen) exit 2; print total }
  ' "$1" || die "$1 has no PLAY RECAP"
}

# A pinned tool from the sandbox bin dir the playbook fills, else from PATH.
sandbox_tool() {
  local bin="${SANDBOX_BIN_DIR:-$HOME/.local/share/ml-sandbox/bin}/$1"
  if [[ -x "$bin" ]]; then echo "$bin"; else echo "$1"; fi
}
PROFILE="${SANDBOX_MINIKUBE_PROFILE:-ml-sandbox}"
kubectl_sandbox() { "$(sandbox_tool kubectl)" --context "$PROFILE" "$@"; }
minikube_sandbox() { "$(sandbox_tool minikube)" -p "$PROFILE" "$@"; }

# A CI runner needs 4 vCPUs and 30 GB free (preflight). GitHub's standard runners guarantee 14 GB
# of free disk, so this removes the preinstalled toolchains the run never uses (only where they
# are, and only on a CI runner: CI=true), then checks both.
E2E_MIN_CPUS="${E2E_MIN_CPUS:-4}"
E2E_MIN_FREE_GB="${E2E_MIN_FREE_GB:-30}"
step_runner() {
  log "runner: ${E2E_MIN_CPUS} vCPUs and ${E2E_MIN_FREE_GB} GB of free disk"
  local cpus free_gb
  cpus="$(nproc)"
  [[ "$cpus" -ge "$E2E_MIN_CPUS" ]] ||
    die "$cpus vCPUs; the stack needs $E2E_MIN_CPUS (on GitHub, private repositories get 2: use a 4-core runner)"
  if [[ "${CI:-}" == "true" ]]; then
    local sudo=()
    [[ $EUID -eq 0 ]] || sudo=(sudo)
    "${sudo[@]}" rm -rf /usr/share/dotnet /usr/local/lib/android /opt/ghc /usr/local/.ghcup \
      /opt/hostedtoolcache/CodeQL /usr/share/swift /usr/local/share/boost
    docker image prune --all --force >/dev/null 2>&1 || true
  fi
  free_gb="$(df -Pk "$HOME" | awk 'NR == 2 { print int($4 / 1048576) }')"
  df -h "$HOME"
  [[ "$free_gb" -ge "$E2E_MIN_FREE_GB" ]] ||
    die "$free_gb GB free under $HOME; the playbook's preflight needs $E2E_MIN_FREE_GB"
}

step_setup() {
  log "setup: the project venv with the dev extra (ansible, pytest)"
  ensure_venv dev
}

# One HEAD request per release asset the playbook downloads, before it starts: a pin naming a
# release without that asset fails here, naming the URL (scripts/check_release_urls.py).
step_release_urls() {
  log "release-urls: every release asset the playbook downloads exists"
  "$VENV/bin/python" scripts/check_release_urls.py
}

step_base_image() {
  log "base-image: the debootstrapped bookworm the isvc images build FROM"
  local sudo=()
  [[ $EUID -eq 0 ]] || sudo=(sudo "--preserve-env=DEBIAN_MIRROR,SANDBOX_BASE_IMAGE")
  if ! command -v debootstrap >/dev/null; then
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y -qq debootstrap debian-archive-keyring
  fi
  "${sudo[@]}" ./scripts/build-base-image.sh
}

step_cluster() {
  log "cluster: ansible-playbook sandbox.yml"
  ansible-playbook sandbox.yml "${PLAYBOOK_ARGS[@]}" 2>&1 | tee "$ARTIFACTS/playbook-run1.log"
}

step_idempotence() {
  log "idempotence: a second run must report changed=0"
  ansible-playbook sandbox.yml "${PLAYBOOK_ARGS[@]}" 2>&1 | tee "$ARTIFACTS/playbook-run2.log"
  local changed
  changed="$(changed_count "$ARTIFACTS/playbook-run2.log")"
  if [[ "$changed" != "0" ]]; then
    grep -E '^changed:' "$ARTIFACTS/playbook-run2.log" >&2 || true
    die "the second playbook run changed $changed task(s); it must report changed=0"
  fi
  echo "second run: changed=0"
}

step_deploy() {
  log "deploy: every isvc onto the sandbox"
  ./scripts/deploy.sh --all --target minikube "${DEPLOY_ARGS[@]}" 2>&1 | tee "$ARTIFACTS/deploy.log"
}

step_test() {
  log "test: the e2e suite on the minikube target"
  pytest -m e2e --target minikube --junitxml="$ARTIFACTS/e2e-junit.xml" 2>&1 |
    tee "$ARTIFACTS/e2e-pytest.log"
}

step_heavy() {
  # The heavy tier: production's isvcs on torch, TensorFlow or vLLM, served on the local target from
  # an inference-services checkout (SANDBOX_INFERENCE_SERVICES, default ../inference-services).
  export SANDBOX_INFERENCE_SERVICES="${SANDBOX_INFERENCE_SERVICES:-$ROOT/../inference-services}"
  log "heavy: production isvcs from $SANDBOX_INFERENCE_SERVICES on the local target"
  pytest -m heavy tests/e2e/test_production_isvcs.py --junitxml="$ARTIFACTS/heavy-junit.xml" 2>&1 |
    tee "$ARTIFACTS/heavy-pytest.log"
}

step_diagnostics() {
  log "diagnostics into $ARTIFACTS"
  local d="$ARTIFACTS/cluster"
  mkdir -p "$d"
  kubectl_sandbox get nodes -o wide >"$d/nodes.txt" 2>&1 || true
  kubectl_sandbox get all,inferenceservices,ksvc,revisions -A -o wide >"$d/objects.txt" 2>&1 || true
  kubectl_sandbox get inferenceservices -A -o yaml >"$d/inferenceservices.yaml" 2>&1 || true
  kubectl_sandbox get events -A --sort-by=.lastTimestamp >"$d/events.txt" 2>&1 || true
  local ns pod
  while read -r ns pod; do
    kubectl_sandbox logs -n "$ns" "$pod" --all-containers --prefix --tail=2000 \
      >"$d/logs-$ns-$pod.txt" 2>&1 || true
    kubectl_sandbox logs -n "$ns" "$pod" --all-containers --prefix --previous \
      >"$d/logs-$ns-$pod-previous.txt" 2>/dev/null || rm -f "$d/logs-$ns-$pod-previous.txt"
  done < <(kubectl_sandbox get pods -A --no-headers \
    -o custom-columns=NS:.metadata.namespace,NAME:.metadata.name 2>/dev/null || true)
  minikube_sandbox logs --file="$d/minikube.txt" >/dev/null 2>&1 || true
}

step_teardown() {
  log "teardown: playbooks/teardown.yml"
  ansible-playbook playbooks/teardown.yml "${PLAYBOOK_ARGS[@]}" 2>&1 |
    tee "$ARTIFACTS/teardown.log"
}

# `all`: diagnostics and teardown run whatever happened, and the first failure is the exit code.
finish_all() {
  local status=$?
  set +e
  step_diagnostics
  if [[ "${E2E_KEEP:-0}" != "1" ]] && ! step_teardown && [[ $status -eq 0 ]]; then status=1; fi
  exit "$status"
}

run_all() {
  trap finish_all EXIT
  step_runner
  step_setup
  step_release_urls
  step_base_image
  step_cluster
  step_idempotence
  step_deploy
  step_test
  step_heavy
}

main() {
  [[ $# -gt 0 ]] || set -- all
  if [[ "$1" == "changed-count" ]]; then
    [[ $# -eq 2 ]] || die "usage: $0 changed-count PLAYBOOK_LOG"
    local file="$2"
    [[ "$file" == /* ]] || file="$CALLER_DIR/$file"
    changed_count "$file"
    return
  fi
  local step
  for step in "$@"; do
    case "$step" in
      all | runner | setup | release-urls | base-image | cluster | idempotence | deploy | test | heavy | diagnostics | teardown) ;;
      *) die "unknown step '$step' (all runner setup release-urls base-image cluster idempotence deploy test heavy diagnostics teardown; changed-count LOG)" ;;
    esac
  done
  mkdir -p "$ARTIFACTS"
  for step in "$@"; do
    if [[ "$step" == "all" ]]; then run_all; else "step_${step//-/_}"; fi
  done
}

main "$@"
