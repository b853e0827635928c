#!/usr/bin/env bash
# Debian tools some static checks use, installed when missing (as root; idempotent):
# the linter shellcheck (scripts/*.sh), vagrant (`vagrant validate --ignore-provider`), and
# chromium with chromium-driver (the console's browser tests, headless).
# Without them those tests skip, saying why; CI provides them.
set -euo pipefail

log() { printf '[prepare-tools] %s\n' "$*" >&2; }

missing=()
command -v shellcheck >/dev/null || missing+=(shellcheck)
command -v vagrant >/dev/null || missing+=(vagrant)
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi
log "installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
