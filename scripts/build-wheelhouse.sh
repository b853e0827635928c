#!/usr/bin/env bash
# Download the isvc images' Python dependencies as wheels for Debian bookworm's Python 3.11, with
# this machine's pip (its index, proxy and CA settings), so image builds need no network.
# Default destination: ~/.cache/ml-sandbox/wheelhouse (or $SANDBOX_WHEELHOUSE), which the image
# builds use; pass --dest ./wheelhouse for a `docker build` by hand from the repository root.
# Usage: scripts/build-wheelhouse.sh [--dest DIR] [--arch x86_64|aarch64] [--force]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
[[ -x "$PYTHON" ]] || PYTHON=python3
cd "$ROOT"
exec "$PYTHON" -m sandbox.images wheelhouse "$@"
