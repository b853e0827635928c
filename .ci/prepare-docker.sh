#!/usr/bin/env bash
# Make the docker tier runnable in CI: a Docker daemon that answers and the debootstrapped base
# image. Called by .ci/run (as root) before the tests; safe to run again (each step is skipped
# when already done). Exits non-zero, saying why, when the daemon cannot be had: the docker tests
# then skip with that reason.
#   1. installs docker.io and debootstrap if missing (apt);
#   2. starts dockerd if no daemon answers, and waits for it;
#   3. builds ml-sandbox/bookworm:latest with scripts/build-base-image.sh if missing.
# Image builds pass the host CA bundle as the BuildKit secret `ca` by themselves
# (sandbox/images/: SANDBOX_CA_BUNDLE, PIP_CERT, or /etc/ssl/certs/ca-certificates.crt).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DOCKERD_LOG="${DOCKERD_LOG:-/var/log/ml-sandbox-dockerd.log}"
WAIT_S="${DOCKERD_WAIT_S:-60}"

log() { printf '[prepare-docker] %s\n' "$*" >&2; }

if [[ "$(id -u)" -ne 0 ]]; then
  log "not root: leaving Docker as it is"
  if docker info >/dev/null 2>&1; then exit 0; fi
  log "no Docker daemon answers; the docker tier will skip"
  exit 1
fi

missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if [[ ${#missing[@]} -gt 0 ]]; then
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
  log "starting dockerd (log: $DOCKERD_LOG)"
  nohup dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &
  for ((i = 0; i < WAIT_S; i++)); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
  if ! docker info >/dev/null 2>&1; then
    log "dockerd did not answer within ${WAIT_S}s; last lines of $DOCKERD_LOG:"
    tail -n 20 "$DOCKERD_LOG" >&2 || true
    exit 1
  fi
fi
log "Docker $(docker version --format '{{.Server.Version}}') answers"

"$ROOT/scripts/build-base-image.sh"
