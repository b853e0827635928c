"""Where the cluster sandbox is: the facts `ansible-playbook sandbox.yml` used, as it recorded them.

The playbook's `verify` step writes `<sandbox home>/state/cluster.json` (mode 0600) with the
profile, kube context, driver, bin dir, ingress address and model store it set up, including any
`-e` overrides. This module reads that file and nothing else, so the CLI never re-derives a fact
the playbook decided.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox.errors import RunError
from sandbox.hints import venv_tool

# `sandbox_home` of playbooks/group_vars/all/sandbox.yml, on the host that ran the playbook.
SANDBOX_HOME = Path.home() / ".local" / "share" / "ml-sandbox"
# Under the sandbox home: `sandbox_state_dir` files the playbook writes (a test keeps them equal).
FACTS_RELPATH = "state/cluster.json"
CREDENTIALS_RELPATH = "state/s3-credentials.json"


def sandbox_home(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    return Path(env.get("SANDBOX_HOME", str(SANDBOX_HOME)))


def facts_file(env: Mapping[str, str] | None = None) -> Path:
    return sandbox_home(env) / FACTS_RELPATH


@dataclass(frozen=True)
class ClusterFacts:
    """What the playbook set up."""

    provider: str  # minikube | existing
    driver: str  # docker | none (minikube only)
    profile: str  # the minikube profile
    context: str  # the kube context ("" = the current context, for `existing`)
    bin_dir: Path  # the pinned kubectl/minikube the playbook installs
    ingress_host: str  # where clients reach the Istio ingress
    ingress_port: int
    s3_namespace: str
    s3_service: str
    s3_port: int
    s3_bucket: str
    s3_region: str
    s3_credentials_file: Path  # 0600, written by the playbook

    def tool(self, name: str) -> str:
        """A pinned tool from the sandbox bin dir, else from PATH, else its bare name."""
        pinned = self.bin_dir / name
        if pinned.is_file():
            return str(pinned)
        return shutil.which(name) or name


def _field(doc: Mapping[str, Any], path: str, kind: type) -> Any:
    cur: Any = doc
    for part in path.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            raise KeyError(path)
        cur = cur[part]
    if kind is int and isinstance(cur, str) and cur.isdigit():
        cur = int(cur)
    if not isinstance(cur, kind) or isinstance(cur, bool):
        raise TypeError(f"{path} must be a {kind.__name__}, got {cur!r}")
    return cur


def load_facts(path: Path | None = None) -> ClusterFacts:
    """The recorded cluster facts; a RunError saying how to create them when there are none."""
    path = path or facts_file()
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise RunError(
            f"no cluster sandbox is recorded ({path} does not exist): set one up with "
            f"`{venv_tool('ansible-playbook')} sandbox.yml`; its verify step records it"
        ) from None
    except (OSError, ValueError) as e:
        raise RunError(f"cannot read the cluster facts {path}: {e}") from None
    try:
        return ClusterFacts(
            provider=_field(doc, "provider", str),
            driver=_field(doc, "driver", str),
            profile=_field(doc, "profile", str),
            context=_field(doc, "context", str),
            bin_dir=Path(_field(doc, "bin_dir", str)),
            ingress_host=_field(doc, "ingress.host", str),
            ingress_port=_field(doc, "ingress.port", int),
            s3_namespace=_field(doc, "model_store.namespace", str),
            s3_service=_field(doc, "model_store.service", str),
            s3_port=_field(doc, "model_store.s3_port", int),
            s3_bucket=_field(doc, "model_store.bucket", str),
            s3_region=_field(doc, "model_store.region", str),
            s3_credentials_file=Path(_field(doc, "model_store.credentials_file", str)),
        )
    except KeyError as e:
        raise RunError(f"{path}: {e.args[0]} is missing; re-run the playbook") from None
    except TypeError as e:
        raise RunError(f"{path}: {e}; re-run the playbook") from None
