#!/usr/bin/env bash
# Build the Debian bookworm base image `ml-sandbox/bookworm:latest` with debootstrap, for
# machines that cannot pull images (CI, air-gapped hosts). It is what the isvc images build FROM
# by default (ARG BASE_IMAGE); production builds FROM docker-registry.wikimedia.org/bookworm.
#
# Usage: scripts/build-base-image.sh [--force] [--image NAME:TAG]
#        (as root, or as a user: it re-runs itself with sudo for debootstrap)
# Env:   DEBIAN_MIRROR   apt mirror (default: the Debian mirror this machine's apt uses,
#                        else http://deb.debian.org/debian)
#        SANDBOX_BASE_IMAGE  image name (default ml-sandbox/bookworm:latest)
#        DOCKER          docker CLI (default: docker)
# Needs a Docker daemon, and root for debootstrap (as a user, it re-runs itself with sudo).
# Idempotent: skips when the image exists; --force rebuilds it.
set -euo pipefail

SUITE=bookworm
PACKAGES=python3,python3-venv,ca-certificates
IMAGE="${SANDBOX_BASE_IMAGE:-ml-sandbox/bookworm:latest}"
DOCKER="${DOCKER:-docker}"
FORCE=0
ARGS=("$@")

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; }
log() { printf '[build-base-image] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --force) FORCE=1 ;;
    --image) [[ $# -ge 2 ]] || die "--image needs a value"; IMAGE="$2"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
  shift
done

# The Debian mirror apt is configured with here (deb822 `URIs:` or one-line `deb URI suite`).
configured_mirror() {
  local files=(/etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources)
  local f uri
  for f in "${files[@]}"; do
    [[ -r "$f" ]] || continue
    uri="$(awk -v suite="$SUITE" '
      /^[[:space:]]*#/ { next }
      /^URIs:/ { uris = $2 }
      /^Suites:/ { if (uris != "" && index($0, " " suite) && uris !~ /security/) { print uris; exit } }
      /^[[:space:]]*$/ { uris = "" }
      $1 == "deb" {
        i = 2; if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
        if ($(i + 1) == suite && $i !~ /security/) { print $i; exit }
      }' "$f")"
    if [[ -n "$uri" ]]; then
      printf '%s\n' "$uri"
      return 0
    fi
  done
  return 1
}

MIRROR="${DEBIAN_MIRROR:-$(configured_mirror || echo http://deb.debian.org/debian)}"

command -v "$DOCKER" >/dev/null || die "docker CLI not found ($DOCKER)"
"$DOCKER" info >/dev/null 2>&1 || die "no Docker daemon answers ('$DOCKER info' failed)"

if [[ "$FORCE" -eq 0 ]] && "$DOCKER" image inspect "$IMAGE" >/dev/null 2>&1; then
  log "$IMAGE exists; nothing to do (use --force to rebuild)"
  exit 0
fi

command -v debootstrap >/dev/null || die "debootstrap not found (apt-get install debootstrap)"
if [[ "$(id -u)" -ne 0 ]]; then
  command -v sudo >/dev/null || die "debootstrap needs root: run this script as root (sudo is not installed)"
  log "debootstrap needs root: re-running with sudo"
  exec sudo --preserve-env=DEBIAN_MIRROR,SANDBOX_BASE_IMAGE,DOCKER,TMPDIR "$0" "${ARGS[@]}"
fi

ROOTFS="$(mktemp -d "${TMPDIR:-/tmp}/ml-sandbox-rootfs.XXXXXX")"
cleanup() { rm -rf --one-file-system "$ROOTFS"; }
trap cleanup EXIT

KEYRING_ARGS=()
if [[ -r /usr/share/keyrings/debian-archive-keyring.gpg ]]; then
  KEYRING_ARGS=(--keyring=/usr/share/keyrings/debian-archive-keyring.gpg)
fi

start=$SECONDS
log "debootstrap $SUITE (minbase + $PACKAGES) from $MIRROR into $ROOTFS"
debootstrap --variant=minbase --include="$PACKAGES" "${KEYRING_ARGS[@]}" \
  "$SUITE" "$ROOTFS" "$MIRROR" \
  | while IFS= read -r line; do
      # debootstrap prints I: per package; keep the phases, not every package.
      case "$line" in
        "I: Retrieving"* | "I: Validating"* | "I: Extracting"* | "I: Unpacking "* | "I: Configuring "*) ;;
        *) log "  $line" ;;
      esac
    done
[[ -x "$ROOTFS/usr/bin/python3" ]] || die "debootstrap finished without python3"

log "trimming the root filesystem"
printf 'deb %s %s main\n' "$MIRROR" "$SUITE" >"$ROOTFS/etc/apt/sources.list"
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* \
  "$ROOTFS"/var/log/* "$ROOTFS"/tmp/* "$ROOTFS"/root/.cache
: >"$ROOTFS/etc/machine-id"

log "importing as $IMAGE"
tar --numeric-owner -C "$ROOTFS" -c . | "$DOCKER" import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["/bin/bash"]' \
  --message "debootstrap $SUITE minbase + $PACKAGES from $MIRROR" \
  - "$IMAGE" >/dev/null

version="$("$DOCKER" run --rm "$IMAGE" python3 --version)"
size="$("$DOCKER" image inspect --format '{{.Size}}' "$IMAGE")"
log "built $IMAGE ($version, $((size / 1024 / 1024)) MiB) in $((SECONDS - start))s"
