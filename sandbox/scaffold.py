"""`ml-sandbox init`: a minimal working isvc, written the way Wikimedia's isvcs are.

The folder holds a plain kserve isvc (stock `ModelServer`, its own pinned requirements, its own
Blubber v4 file), a training script that builds its small model, and a service.yaml with one
sample. `./scripts/deploy.sh <isvc>` serves it at once (the folder under services/, or with
`--service-dir`), and the tests pick it up. Every file is a starting point to edit.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from pathlib import Path

from sandbox.catalog import DNS_LABEL, load_file
from sandbox.errors import CatalogError
from sandbox.fsutil import build_into

# outlink-topic-model's production pin; kserve 0.14.1 needs numpy < 2.
REQUIREMENTS = "kserve==0.14.1\nnumpy<2\n"
MODEL_FILE = "model.json"

PREDICTOR = '''\
"""{name}: a plain kserve isvc. Replace the model with yours: load() reads /mnt/models (the
storage-initializer puts the model there in production; the sandbox stages it the same way)."""

import json
import logging
import os
from typing import Any

from kserve import Model, ModelServer
from kserve.errors import InvalidInput


class {cls}(Model):
    def __init__(self, name: str):
        super().__init__(name)
        self.keywords: set[str] = set()
        self.load()

    def load(self) -> None:
        path = os.environ.get("MODEL_PATH", "/mnt/models/{model_file}")
        with open(path) as f:
            self.keywords = set(json.load(f)["keywords"])
        self.ready = True

    def preprocess(self, payload: Any, headers: dict[str, str] | None = None) -> list[str]:
        text = payload.get("text") if isinstance(payload, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise InvalidInput("'text' must be a non-empty string")
        return text.lower().split()

    def predict(self, words: list[str], headers: dict[str, str] | None = None) -> dict:
        found = sorted(set(words) & self.keywords)
        logging.debug("%d words, %d keywords", len(words), len(found))
        return {{"prediction": {{"keywords": found, "score": len(found) / max(len(words), 1)}}}}


if __name__ == "__main__":
    model = {cls}(os.environ.get("MODEL_NAME", "{name}"))
    ModelServer(workers=1).start([model])
'''

TRANSFORMER = '''\
"""{name}'s transformer: shapes the client's request for the predictor (in production it often
fetches data from MediaWiki first). KServe gives it --predictor_host."""

import os
from typing import Any

from kserve import Model, ModelServer, model_server
from kserve.errors import InvalidInput


class {cls}Transformer(Model):
    def __init__(self, name: str, predictor_host: str):
        super().__init__(name)
        self.predictor_host = predictor_host
        self.ready = True

    def preprocess(self, payload: Any, headers: dict[str, str] | None = None) -> dict:
        text = payload.get("text") if isinstance(payload, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise InvalidInput("'text' must be a non-empty string")
        return {{"text": " ".join(payload["text"].split())}}


if __name__ == "__main__":
    args, _ = model_server.parser.parse_known_args()
    model = {cls}Transformer(os.environ.get("MODEL_NAME", "{name}"), args.predictor_host)
    ModelServer(workers=1).start([model])
'''

TRAIN = '''\
"""Builds {name}'s small model deterministically: `python train.py OUTPUT`.
Put the sha256 of OUTPUT into service.yaml's model.sha256 whenever you change this file."""

import json
import sys
from pathlib import Path

KEYWORDS = ["inference", "kserve", "lift", "model", "wing"]

Path(sys.argv[1]).write_text(json.dumps({{"keywords": sorted(KEYWORDS)}}, sort_keys=True) + "\\n")
'''

BLUBBER = """\
# syntax=docker-registry.wikimedia.org/repos/releng/blubber/buildkit:v0.21.1
# {name}'s production image, in the Blubber v4 form of inference-services' .pipeline files.
version: v4
base: docker-registry.wikimedia.org/bookworm:20260816
runs:
  insecurely: true
  environment:
    PYTHONPATH: /srv/app
lives:
  in: /srv/app
variants:
  build:
    apt:
      packages: [python3-pip]
    builders:
      - python:
          version: python3
          requirements: [requirements.txt]
  production:
    copies:
      - from: local
        source: .
        destination: {name}/
      - from: build
        source: /opt/lib/python/site-packages
        destination: /opt/lib/python/site-packages
    python:
      version: python3
      use-system-flag: false
    apt:
      packages: [python3]
    entrypoint: ["python3", "{name}/{entrypoint}"]
"""

SERVICE = """\
# {name}: written by `ml-sandbox init`; the single source of truth for this isvc.
# Required: name (= this folder's name), namespace, description, components.predictor
# (entrypoint, resources), model (file, storage_uri ending in /, sha256, build), autoscaling,
# and at least one sample. Paths are relative to this folder (`source:` moves the code's root).
name: {name}
namespace: {namespace}
description: A new isvc; say what it predicts.
components:
{components}model:
  file: {model_file}                 # the file name under /mnt/models
  # Production's folder of the model in Swift; it must end with a slash.
  storage_uri: s3://wmf-ml-models/{name}/20260101000000/
  # sha256 of what the training script builds (`sha256sum`); `ml-sandbox models build` checks it.
  sha256: "{sha256}"
  build: training/train.py
autoscaling: {{min_replicas: 1, max_replicas: 1, metric: rps, target: 5}}
samples:
  - name: keywords
    data: {{text: "Lift Wing serves the model"}}
    expect:
      checks:
        - {{path: prediction.keywords, equals: [lift, model, wing]}}
  - name: empty-text
    data: {{text: ""}}
    expect:
      status: 400
"""

COMPONENT = """\
  {component}:
    entrypoint: {entrypoint}
    requirements: [requirements.txt]   # its own pins: the stock kserve server, in its own venv
    image: {{blubber: blubber.yaml, variant: production}}
    env:
      MODEL_NAME: {name}
{extra_env}    resources:
      requests: {{cpu: 250m, memory: 512Mi}}
      limits: {{cpu: "1", memory: 1Gi}}
"""


def _class_name(name: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[-_]", name)) or "Isvc"


def write(name: str, parent: Path, *, transformer: bool = False, namespace: str = "experimental"):
    """Write the isvc folder `parent/name` and return it. Refuses to overwrite anything."""
    if not re.fullmatch(DNS_LABEL, name) or len(name) > 45:
        raise CatalogError(
            f"{name!r} is not an isvc name: lowercase letters, digits and '-', at most 45 "
            "characters, starting and ending with a letter or digit"
        )
    if not re.fullmatch(DNS_LABEL, namespace):
        raise CatalogError(f"--namespace {namespace!r} is not a Kubernetes namespace name")
    folder = parent / name
    if folder.exists():
        raise CatalogError(f"{folder} already exists; choose another name or --dir")
    cls = _class_name(name)
    with build_into(folder, replace=False) as work:
        (work / "model.py").write_text(PREDICTOR.format(name=name, cls=cls, model_file=MODEL_FILE))
        (work / "requirements.txt").write_text(REQUIREMENTS)
        (work / "training").mkdir()
        (work / "training" / "train.py").write_text(TRAIN.format(name=name))
        entry = "transformer.py" if transformer else "model.py"
        (work / "blubber.yaml").write_text(BLUBBER.format(name=name, entrypoint=entry))
        components = COMPONENT.format(
            component="predictor",
            entrypoint="model.py",
            name=name,
            extra_env=f"      MODEL_PATH: /mnt/models/{MODEL_FILE}\n",
        )
        if transformer:
            (work / "transformer.py").write_text(TRANSFORMER.format(name=name, cls=cls))
            components += COMPONENT.format(
                component="transformer", entrypoint="transformer.py", name=name, extra_env=""
            )
        sha = _build_model(work)
        (work / "service.yaml").write_text(
            SERVICE.format(
                name=name,
                namespace=namespace,
                components=components,
                model_file=MODEL_FILE,
                sha256=sha,
            )
        )
    load_file(folder / "service.yaml")  # what init writes must load
    return folder


def _build_model(folder: Path) -> str:
    out = folder / ".model-check"
    subprocess.run([sys.executable, str(folder / "training" / "train.py"), str(out)], check=True)
    try:
        return hashlib.sha256(out.read_bytes()).hexdigest()
    finally:
        out.unlink()
