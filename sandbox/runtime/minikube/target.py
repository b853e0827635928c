"""The minikube target: an isvc on the cluster sandbox `ansible-playbook sandbox.yml` stands up.

`up` does what a Lift Wing deployment does, locally:

1. builds the component images inside the minikube node (the node's Docker daemon through
   `minikube docker-env`, so no registry is needed and the node keeps the layer cache) and tags
   them `dev.local/<image>:<content hash>` (Knative skips tag resolution for dev.local);
2. uploads the model to the sandbox's S3 store at its production path (`model_store`);
3. applies `manifests/isvcs/<isvc>.yaml` (rendered with those tags) server-side;
4. waits for the InferenceService's Ready condition with a deadline.

`deploy` then sends every sample through the Istio ingress (`ingress_url`) with the production
Host header, as on every target (`sandbox.runtime.smoke`); an isvc that fails gets its
`diagnostics`: the isvc conditions, the revision and pod events and the container logs
(storage-initializer included). Re-applying an unchanged service leaves
its generation (and revision) as it was; a changed image or env rolls a new revision.

The cluster is reached through `kubectl.Kube` (kubectl and minikube command lines), the model
store through `model_store` (a port-forward and S3); everything else here is plain logic.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox import manifests
from sandbox.catalog import Service
from sandbox.docker_cli import docker, image_exists
from sandbox.errors import RunError
from sandbox.hints import venv_tool
from sandbox.paths import run_dir
from sandbox.runtime.minikube import model_store
from sandbox.runtime.minikube.documents import (
    component_statuses,
    conditions,
    generation,
    is_ready,
    latest_revisions,
    log_targets,
    relevant_events,
)
from sandbox.runtime.minikube.facts import ClusterFacts, load_facts
from sandbox.runtime.minikube.kubectl import (
    Kube,
    apply_argv,
    delete_isvc_argv,
    docker_build_env,
    follow_logs_argv,
    get_isvc_argv,
    kubectl_argv,
    list_isvcs_argv,
    logs_argv,
    minikube_argv,
    pods_argv,
    stable_ref,
)
from sandbox.runtime.options import UpOptions
from sandbox.runtime.targets import ComponentStatus

# How long `context_answers()` waits for the API server before the CLI picks another target.
PROBE_TIMEOUT_S = 5.0
POLL_S = 3.0


def ingress_url() -> str:
    """The Istio ingress as the host reaches it (the playbook publishes its NodePort)."""
    facts = load_facts()
    return f"http://{facts.ingress_host}:{facts.ingress_port}"


def context_answers(timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """Whether the sandbox's kube context has an API server answering, within the timeout.

    The CLI's `--target auto` uses it to pick minikube; it never raises.
    """
    try:
        facts = load_facts()
    except RunError:
        return False
    argv = kubectl_argv(facts, f"--request-timeout={int(max(timeout_s, 1))}s", "version", "-o=json")
    try:
        out = subprocess.run(argv, capture_output=True, timeout=timeout_s + 2, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    if out.returncode != 0:
        return False
    return b"serverVersion" in out.stdout


@dataclass
class MinikubeTarget:
    name: str = "minikube"
    # A sample is retried while it gets 502/503 or no answer: a pod scaling from zero, a route
    # being programmed.
    settle_s: float = 60.0
    facts: ClusterFacts = field(default_factory=load_facts)
    out: Any = field(default_factory=lambda: sys.stdout)
    _node_env: dict[str, str] | None = field(default=None, init=False, repr=False)

    @property
    def kube(self) -> Kube:
        return Kube(self.facts)

    def _say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def _require_cluster(self) -> None:
        if not context_answers():
            raise RunError(
                f"the cluster sandbox (kube context {self.facts.context or '(current)'!r}) does "
                f"not answer; start it with `{venv_tool('ansible-playbook')} sandbox.yml`"
            )

    # -- images --

    def _docker_env(self) -> dict[str, str]:
        """The minikube node's Docker daemon (`minikube docker-env`), for builds into the node."""
        if self._node_env is None:
            argv = minikube_argv(self.facts, "docker-env", "--shell", "bash")
            proc = self.kube.run(argv, check=False)
            if proc.returncode != 0:
                raise RunError(f"minikube docker-env failed: {proc.stderr.strip()}")
            self._node_env = docker_build_env(proc.stdout)
            self._ensure_base_image(self._node_env)
        return self._node_env

    def _ensure_base_image(self, node_env: dict[str, str]) -> None:
        """The node builds FROM the base image too: load the host's copy into it once."""
        from sandbox import images

        base = images.base_image()
        if image_exists(base, node_env) or not image_exists(base):
            return  # already there, or missing on the host (images says how to fix it)
        self._say(f"loading the base image {base} into the minikube node")
        self.kube.run(minikube_argv(self.facts, "image", "load", base), timeout=900)

    def build_images(self, service: Service) -> dict[str, str]:
        """Build every component image into the node; component -> `dev.local/<image>:<hash>`.
        An image whose content-hash tag the node already has is not rebuilt."""
        from sandbox import images

        env = self._docker_env()
        refs = images.build_images(service, registry=manifests.IMAGE_REGISTRY, env=env)
        for ref in refs.values():
            self._tag_stable(ref, env)
        return refs

    def _tag_stable(self, ref: str, env: dict[str, str]) -> None:
        """Also tag the build `:sandbox`, so the committed manifests apply by hand too."""
        docker("tag", ref, stable_ref(ref), env=env)

    # -- model --

    def upload_model(self, service: Service, model_file: Path) -> None:
        model_store.upload(self.facts, service, model_file, self._say)

    # -- the InferenceService --

    def _isvc(self, service: Service) -> dict[str, Any] | None:
        return self.kube.json(get_isvc_argv(self.facts, service), missing_ok=True)

    def apply(self, service: Service, doc: Mapping[str, Any]) -> bool:
        """Apply server-side; True when the spec changed (a new revision rolls out)."""
        before = generation(self._isvc(service))
        state = run_dir() / "minikube"
        state.mkdir(parents=True, exist_ok=True)
        path = state / f"{service.name}.yaml"
        path.write_text(manifests.dump([dict(doc)], f"services/{service.name}/service.yaml"))
        self.kube.run(apply_argv(self.facts, path))
        after = generation(self._isvc(service))
        changed = before != after
        if before is None:
            self._say(f"created InferenceService {service.namespace}/{service.name}")
        elif changed:
            self._say(f"updated {service.name}: generation {before} -> {after}, new revision")
        else:
            self._say(f"{service.name} unchanged (generation {after})")
        return changed

    def wait_ready(self, service: Service, timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        last: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            last = self._isvc(service)
            if last and is_ready(last):
                return last
            time.sleep(POLL_S)
        raise RunError(
            f"{service.name} not Ready within {timeout_s:.0f}s (a first deploy pulls the sidecar "
            "and storage-initializer images: raise --timeout)"
            + "".join(f"\n  {c.line()}" for c in conditions(last or {}))
        )

    def diagnostics(self, service: Service) -> str:
        """Conditions, events, and container logs; for the user when a deploy fails."""
        parts = [f"=== {service.name}: InferenceService conditions"]
        isvc = self.kube.json(get_isvc_argv(self.facts, service), missing_ok=True) or {}
        parts += [c.line() for c in conditions(isvc)] or ["(no status)"]
        parts.append(f"latest revisions: {latest_revisions(isvc) or '(none)'}")
        events = self.kube.json(
            kubectl_argv(self.facts, "get", "events", "-n", service.namespace, "-o", "json")
        )
        parts.append(f"=== {service.name}: events (isvc, revisions, pods)")
        parts += relevant_events(events or {}, service.name) or ["(none)"]
        pods = self.kube.json(pods_argv(self.facts, service)) or {}
        for t in log_targets(pods):
            proc = self.kube.run(
                logs_argv(self.facts, service.namespace, t.pod, t.container, previous=t.previous),
                check=False,
            )
            which = " (previous run)" if t.previous else ""
            parts.append(f"=== logs {t.pod}/{t.container}{which}")
            parts.append((proc.stdout or proc.stderr).rstrip() or "(empty)")
        return "\n".join(parts)

    # -- the replay --

    def deploy_replay(self, timeout_s: float) -> None:
        from sandbox import images

        env = self._docker_env()
        image = images.build_replay_image(registry=manifests.IMAGE_REGISTRY, env=env)
        self._tag_stable(image, env)
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write(manifests.dump(manifests.render_replay(image), "sandbox/manifests.py"))
        try:
            self.kube.run(apply_argv(self.facts, Path(f.name)))
        finally:
            Path(f.name).unlink()
        self.kube.run(
            kubectl_argv(
                self.facts,
                "rollout",
                "status",
                f"deployment/{manifests.REPLAY_NAME}",
                "-n",
                manifests.REPLAY_NAMESPACE,
                f"--timeout={int(timeout_s)}s",
            ),
            timeout=timeout_s + 10,
        )

    # -- Target protocol --

    def up(self, services: list[Service], opts: UpOptions) -> None:
        from sandbox import models

        if opts.model_source != "sandbox":
            raise RunError(
                "--model-source applies to the local and docker targets; on minikube the "
                "storage-initializer fetches the sandbox model from the S3 store"
            )
        mode = opts.mediawiki
        if mode.kind in ("replay", "record"):
            raise RunError(
                "--mediawiki replay:DIR and record:DIR run on the local and docker targets; on "
                "minikube, use --mediawiki replay (the fixture wikis) or live"
            )
        self._require_cluster()
        env: dict[str, str] = {}
        if mode.kind in ("emulate", "live"):
            # WIKI_URL stays production's (the API proxy); the mesh routes it to the mode's end.
            mesh_mode = "replay" if mode.kind == "emulate" else "live"
            if mesh_mode == "replay":
                self.deploy_replay(opts.timeout_s)
            self.kube.run(apply_argv(self.facts, manifests.mediawiki_proxy_manifest(mesh_mode)))
        elif mode.url is not None:
            env["WIKI_URL"] = mode.url
        failed = []
        for service in services:
            refs = self.build_images(service)
            self.upload_model(service, models.build(service))
            doc = manifests.render_isvc(
                service, image_refs=refs, env_overrides=env, extra_env=opts.env
            )
            self.apply(service, doc)
            try:
                self.wait_ready(service, opts.timeout_s)
                self._say(f"{service.name} Ready")
            except RunError as e:
                self._say(f"{e}\n{self.diagnostics(service)}")
                failed.append(service.name)
        if failed:
            raise RunError(f"deploy failed on minikube: {', '.join(failed)}")

    def ingress_url(self) -> str:
        """The Istio ingress as the host reaches it (KServe's VirtualService matches the
        production Host form as well as its domainTemplate URL)."""
        return f"http://{self.facts.ingress_host}:{self.facts.ingress_port}"

    def down(self, names: list[str] | None = None) -> bool:
        """Delete the named InferenceServices (all, and the replay server, when none is named);
        True when anything was deleted."""
        from sandbox import catalog

        self._require_cluster()
        if names:
            targets = [(s.name, s.namespace) for s in map(catalog.get, names)]
        else:
            listed = self.kube.json(list_isvcs_argv(self.facts)) or {}
            targets = [
                (i["metadata"]["name"], i["metadata"]["namespace"])
                for i in listed.get("items") or []
            ]
        for name, namespace in targets:
            self.kube.run(delete_isvc_argv(self.facts, name, namespace), timeout=240)
            self._say(f"deleted InferenceService {namespace}/{name}")
        replay = False
        if not names:
            replay = self._replay_deployed()
            self.kube.run(
                kubectl_argv(
                    self.facts,
                    "delete",
                    "namespace",
                    manifests.REPLAY_NAMESPACE,
                    "--ignore-not-found",
                    "--wait=false",
                )
            )
        return bool(targets) or replay

    def _replay_deployed(self) -> bool:
        namespace = manifests.REPLAY_NAMESPACE
        argv = kubectl_argv(self.facts, "get", "namespace", namespace, "-o", "json")
        return self.kube.json(argv, missing_ok=True) is not None

    def status(self) -> list[ComponentStatus]:
        self._require_cluster()
        return component_statuses(self.kube.json(list_isvcs_argv(self.facts)) or {})

    def logs(self, isvc: str, component: str | None, follow: bool, lines: int | None = None) -> int:
        from sandbox import catalog

        argv = follow_logs_argv(self.facts, catalog.get(isvc), component, follow)
        if lines is not None:
            argv.append(f"--tail={lines}")
        try:
            return subprocess.call(argv)
        except FileNotFoundError:
            raise RunError(
                f"{argv[0]} not found; run `{venv_tool('ansible-playbook')} sandbox.yml`"
            ) from None
