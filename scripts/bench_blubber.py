#!/usr/bin/env python3
"""Benchmark building an isvc image from its own Blubber file offline (sandbox.images.blubber via
sandbox.images.build); prints a Markdown table.

    .venv/bin/python scripts/bench_blubber.py [--requirement SPEC]... [--blubber-version vX.Y.Z]

Writes, in a temporary folder, a minimal isvc laid out like inference-services (a stock kserve
model server in src/models/echo/, a shared python/ package, .pipeline/echo/blubber.yaml with a
`build` variant that pip-installs two requirements files and a `production` variant that copies
site-packages from it), then measures: an uncached build (`--no-cache`, the wheelhouse already
downloaded), a rebuild with the layer cache after a change to the model's code, a call with the
image's content-hash tag present (nothing to build), and the image's size. `--blubber-version`
names the version on the file's `# syntax=` line (default v0.21.1): from v0.23.0 on, the python
builder installs into a venv at /opt/lib/venv and production copies its site-packages, as
inference-services' newer files do. Needs a Docker daemon
with the local base image; takes a few minutes. The images are removed at the end.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sandbox import images  # noqa: E402

NAME = "ml-sandbox/bench-blubber-echo"
DEFAULT_REQUIREMENTS = ["kserve==0.14.1"]

BLUBBER = """\
# syntax=docker-registry.wikimedia.org/repos/releng/blubber/buildkit:{version}
version: v4
base: docker-registry.wikimedia.org/bookworm:20260816
runs:
  insecurely: true
  environment:
    PYTHONPATH: /srv/app{pythonpath}
lives:
  in: /srv/app
variants:
  build:
    apt:
      packages: [python3-pip{venv_pkg}]
    builders:
      - python:
          version: python3
          requirements: [src/models/echo/requirements.txt, python/requirements.txt]
  production:
    copies:
      - from: local
        source: src/models/echo/
        destination: echo/
      - from: local
        source: python
        destination: python/
      - from: build
        source: {site}
        destination: {site}
    python:
      version: python3
      {system}: false
    apt:
      packages: [python3]
    entrypoint: ["python3", "echo/model.py"]
"""
VENV_SITE = "/opt/lib/venv/lib/python3.11/site-packages"


def blubber_text(version: str) -> str:
    if tuple(int(x) for x in version.lstrip("v").split(".")) >= (0, 23, 0):
        return BLUBBER.format(
            version=version,
            pythonpath=f":{VENV_SITE}",
            venv_pkg=", python3-venv",
            site=VENV_SITE,
            system="use-system-site-packages",
        )
    return BLUBBER.format(
        version=version,
        pythonpath="",
        venv_pkg="",
        site="/opt/lib/python/site-packages",
        system="use-system-flag",
    )


MODEL = """\
from kserve import Model, ModelServer
from python.helper import VERSION


class Echo(Model):
    def __init__(self):
        super().__init__("echo")
        self.ready = True

    def predict(self, payload, headers=None):
        return {"echo": payload, "version": VERSION}


ModelServer(workers=1).start([Echo()])
"""


def write_isvc(root: Path, pins: list[str], version: str = "v0.21.1") -> Path:
    (root / ".pipeline" / "echo").mkdir(parents=True)
    (root / ".pipeline" / "echo" / "blubber.yaml").write_text(blubber_text(version))
    (root / "src" / "models" / "echo").mkdir(parents=True)
    (root / "src" / "models" / "echo" / "model.py").write_text(MODEL)
    (root / "src" / "models" / "echo" / "requirements.txt").write_text(
        "".join(f"{p}\n" for p in pins)
    )
    (root / "python").mkdir()
    (root / "python" / "__init__.py").write_text("")
    (root / "python" / "helper.py").write_text("VERSION = 1\n")
    (root / "python" / "requirements.txt").write_text("# stdlib only\n")
    return root / ".pipeline" / "echo" / "blubber.yaml"


def timed(recipe: images.Recipe, **kwargs) -> tuple[float, str]:
    started = time.monotonic()
    tag = images.build(recipe, **kwargs)
    return time.monotonic() - started, tag


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--requirement", action="append", help="default: kserve==0.14.1")
    parser.add_argument("--blubber-version", default="v0.21.1", help="default: v0.21.1")
    args = parser.parse_args()
    pins = args.requirement or DEFAULT_REQUIREMENTS
    rows = []
    tags = set()
    with tempfile.TemporaryDirectory(prefix="bench-blubber-") as tmp:
        root = Path(tmp) / "inference-services"
        blubber_file = write_isvc(root, pins, args.blubber_version)
        recipe = images.Recipe(NAME, blubber_file, "production", root)
        started = time.monotonic()
        images.ensure_wheelhouse(recipe, images.daemon_arch())
        rows.append(("wheelhouse (host pip download; 0 when cached)", time.monotonic() - started))
        seconds, tag = timed(recipe, force=True, no_cache=True)
        tags.add(tag)
        rows.append(("uncached build (--no-cache)", seconds))
        seconds, tag = timed(recipe)
        rows.append(("tag present (nothing to build)", seconds))
        (root / "python" / "helper.py").write_text("VERSION = 2\n")
        seconds, tag = timed(recipe)
        tags.add(tag)
        rows.append(("code changed (layer cache: only the copies)", seconds))
        size = int(images.docker("image", "inspect", "--format", "{{.Size}}", tag).stdout)
    for ref in tags:
        images.docker("image", "rm", ref, check=False)
    print(
        f"Image from a Blubber file (blubber {args.blubber_version}): {', '.join(pins)}; "
        f"size {size / 2**20:.0f} MiB\n"
    )
    print("| build | seconds |\n|---|---:|")
    for label, s in rows:
        print(f"| {label} | {s:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
