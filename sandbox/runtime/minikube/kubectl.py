"""Command lines for the cluster (kubectl, minikube) and the runner that executes them.

Building a command line is a pure function of the facts, tested without a cluster; `Kube.run` is
where the target runs them.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sandbox import manifests
from sandbox.catalog import Service
from sandbox.errors import RunError
from sandbox.hints import venv_tool
from sandbox.runtime.minikube.facts import ClusterFacts

log = logging.getLogger(__name__)

ISVC_LABEL = "serving.kserve.io/inferenceservice"
FIELD_MANAGER = "ml-sandbox"


def kubectl_argv(facts: ClusterFacts, *args: str) -> list[str]:
    context = ["--context", facts.context] if facts.context else []
    return [facts.tool("kubectl"), *context, *args]


def minikube_argv(facts: ClusterFacts, *args: str) -> list[str]:
    return [facts.tool("minikube"), "-p", facts.profile, *args]


def apply_argv(facts: ClusterFacts, path: Path) -> list[str]:
    """Server-side apply: the InferenceService CRD is too big for client-side apply's annotation,
    and the sandbox owns these objects, so it takes over fields someone edited by hand."""
    return kubectl_argv(
        facts,
        "apply",
        "--server-side",
        f"--field-manager={FIELD_MANAGER}",
        "--force-conflicts",
        "-f",
        str(path),
    )


def get_isvc_argv(facts: ClusterFacts, service: Service) -> list[str]:
    return kubectl_argv(
        facts, "get", "inferenceservice", service.name, "-n", service.namespace, "-o", "json"
    )


def list_isvcs_argv(facts: ClusterFacts) -> list[str]:
    selector = ",".join(f"{k}={v}" for k, v in manifests.MANAGED_BY.items())
    return kubectl_argv(facts, "get", "inferenceservice", "-A", "-l", selector, "-o", "json")


def delete_isvc_argv(facts: ClusterFacts, name: str, namespace: str) -> list[str]:
    return kubectl_argv(
        facts,
        "delete",
        "inferenceservice",
        name,
        "-n",
        namespace,
        "--ignore-not-found",
        "--wait=true",
        "--timeout=180s",
    )


def pods_argv(facts: ClusterFacts, service: Service) -> list[str]:
    return kubectl_argv(
        facts,
        "get",
        "pods",
        "-n",
        service.namespace,
        "-l",
        f"{ISVC_LABEL}={service.name}",
        "-o",
        "json",
    )


def logs_argv(
    facts: ClusterFacts,
    namespace: str,
    pod: str,
    container: str,
    *,
    previous: bool = False,
    tail: int = 200,
) -> list[str]:
    argv = kubectl_argv(facts, "logs", "-n", namespace, pod, "-c", container, f"--tail={tail}")
    return [*argv, "--previous"] if previous else argv


def follow_logs_argv(
    facts: ClusterFacts, service: Service, component: str | None, follow: bool
) -> list[str]:
    selector = f"{ISVC_LABEL}={service.name}"
    if component:
        selector += f",component={component}"
    argv = kubectl_argv(
        facts,
        "logs",
        "-n",
        service.namespace,
        "-l",
        selector,
        "--all-containers",
        "--prefix",
        "--tail=200",
        "--max-log-requests=20",
    )
    return [*argv, "--follow"] if follow else argv


def port_forward_argv(facts: ClusterFacts, local_port: int) -> list[str]:
    return kubectl_argv(
        facts,
        "port-forward",
        "-n",
        facts.s3_namespace,
        f"service/{facts.s3_service}",
        f"{local_port}:{facts.s3_port}",
        "--address=127.0.0.1",
    )


def docker_build_env(docker_env_output: str) -> dict[str, str]:
    """`minikube docker-env --shell bash` output (`export KEY="value"` lines) as a dict."""
    env: dict[str, str] = {}
    for raw in docker_env_output.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        if sep and key.isidentifier():
            env[key] = value.strip().strip('"').strip("'")
    return env


def stable_ref(ref: str) -> str:
    """`dev.local/ml-sandbox/x:<hash>` -> `dev.local/ml-sandbox/x:sandbox` (the committed tag)."""
    repository, sep, tag = ref.rpartition(":")
    if not sep or "/" in tag:
        return f"{ref}:{manifests.STABLE_TAG}"
    return f"{repository}:{manifests.STABLE_TAG}"


class Kube:
    """Runs cluster command lines; a failure is a RunError with the tool's own message."""

    def __init__(self, facts: ClusterFacts):
        self.facts = facts

    def run(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        env: Mapping[str, str] | None = None,
        timeout: float | None = 600,
    ) -> subprocess.CompletedProcess:
        log.debug("$ %s", " ".join(argv))
        try:
            proc = subprocess.run(
                list(argv),
                capture_output=True,
                text=True,
                env={**os.environ, **(env or {})},
                timeout=timeout,
                check=False,
            )
        except FileNotFoundError:
            raise RunError(
                f"{argv[0]} not found; `{venv_tool('ansible-playbook')} sandbox.yml` installs the "
                f"sandbox tools into {self.facts.bin_dir}"
            ) from None
        except subprocess.TimeoutExpired:
            raise RunError(f"timed out after {timeout}s: {' '.join(argv)}") from None
        if check and proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip()
            raise RunError(f"`{' '.join(argv[:4])} ...` failed: {detail}")
        return proc

    def json(self, argv: Sequence[str], *, missing_ok: bool = False) -> dict[str, Any] | None:
        proc = self.run(argv, check=False)
        if proc.returncode != 0:
            if missing_ok and "NotFound" in proc.stderr:
                return None
            raise RunError(f"`{' '.join(argv[:5])} ...` failed: {proc.stderr.strip()}")
        try:
            return json.loads(proc.stdout)
        except ValueError:
            raise RunError(f"`{' '.join(argv[:5])} ...` did not print JSON") from None
