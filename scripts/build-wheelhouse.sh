#!/usr/bin/env bash
# Download the images' Python dependencies (each Blubber file's requirement files) as wheels for
# Debian bookworm's Python 3.11, with this machine's pip (its index, proxy and CA settings), so
# image builds need no network. Destination: ~/.cache/ml-sandbox/wheelhouse/<hash>, one folder
# per set of requirements, which the image builds use (the first build runs this for you).
# Usage: scripts/build-wheelhouse.sh [ISVC...] [--arch x86_64|aarch64] [--force]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
[[ -x "$PYTHON" ]] || PYTHON=python3
cd "$ROOT"
exec "$PYTHON" -m sandbox.images wheelhouse "$@"
