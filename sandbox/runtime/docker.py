"""The docker target's backend: each component its production image, run as a container the way
KServe runs the pod's container, behind the same Host-routing gateway as the local target.

Per sandbox (run directory) there is one user-defined network; on it run the predictor (the model
staged on the host, mounted read-only at /mnt/models, the pod's env from service.yaml), the
transformer (`--predictor_host <predictor container>:8080`) and, with `--mediawiki replay`, the
MediaWiki replay server (WIKI_URL points at it by container name). Every container publishes its
port on 127.0.0.1 only; the gateway routes the isvc's Host to the entry component's published port.
A container's name ends in its revision (the isvc's fingerprint), so a changed isvc's new
containers start beside the old ones and replace them without a gap.

Containers and the network carry labels naming the sandbox, so `down` removes them even when the
state file is gone. The lifecycle is `sandbox.runtime.lifecycle.HostTarget`.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import urllib.parse
from pathlib import Path
from typing import Any

from sandbox import images
from sandbox.catalog import Component, Service
from sandbox.errors import RunError
from sandbox.paths import REPO_ROOT, run_dir
from sandbox.runtime.base import MediaWikiMode, UpOptions
from sandbox.runtime.lifecycle import HostTarget, component_env, replay_mode_args
from sandbox.runtime.state import ComponentRecord, State

CONTAINER_PORT = 8080
MODELS_MOUNT = "/mnt/models"
LABEL_SANDBOX = "org.ml-sandbox.sandbox"
LABEL_ISVC = "org.ml-sandbox.isvc"
LABEL_COMPONENT = "org.ml-sandbox.component"
MEDIAWIKI = "mediawiki"
LOOPBACK_HOSTS = {"localhost", "::1", "0.0.0.0"}
# As the local target runs it: a small gpllimit=max so the fixture articles need continuation.
REPLAY_ARGS = ["--max-limit", "50"]
RECORDINGS_MOUNT = "/srv/recordings"
# Container logs rotate by size, as the kubelet rotates a pod's (json-file driver options).
LOG_OPTS = ["--log-opt", "max-size=10m", "--log-opt", "max-file=3"]


def sandbox_id() -> str:
    """Names the sandbox's containers and network: `ml-sandbox` for the default run directory,
    `ml-sandbox-<hash>` for another one (tests), so two sandboxes never collide."""
    rd = run_dir().resolve()
    if rd == (REPO_ROOT / ".sandbox").resolve():
        return "ml-sandbox"
    return f"ml-sandbox-{hashlib.sha256(str(rd).encode()).hexdigest()[:8]}"


def network_name() -> str:
    return sandbox_id()


def container_name(isvc: str, component: str, revision: str) -> str:
    return f"{sandbox_id()}-{isvc}-{component}-{revision}"


def _docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return images.docker(*args, check=check)


# -- resources: service.yaml's Kubernetes quantities as docker flags ---------------------------
def cpus(quantity: str) -> str:
    """`250m` -> `0.25`, `1` -> `1`."""
    if quantity.endswith("m"):
        return f"{int(quantity[:-1]) / 1000:g}"
    return f"{float(quantity):g}"


_MEMORY_UNITS = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "K": 1000, "M": 1000**2, "G": 1000**3}


def memory_bytes(quantity: str) -> int:
    """`512Mi` -> 536870912."""
    for unit, factor in _MEMORY_UNITS.items():
        if quantity.endswith(unit):
            return int(float(quantity[: -len(unit)]) * factor)
    return int(quantity)


# -- container helpers -------------------------------------------------------------------------
def _inspect_state(container: str) -> dict[str, Any] | None:
    proc = _docker("inspect", "--format", "{{json .State}}", container, check=False)
    if proc.returncode != 0:
        return None
    return json.loads(proc.stdout)


def _published_port(container: str) -> int:
    out = _docker("port", container, f"{CONTAINER_PORT}/tcp").stdout
    for line in out.splitlines():
        host, _, port = line.strip().rpartition(":")
        if host in ("127.0.0.1", "0.0.0.0"):
            return int(port)
    raise RunError(f"{container} publishes no port on 127.0.0.1: {out.strip()!r}")


def _log_tail(container: str, lines: int) -> str:
    proc = subprocess.run(
        [images.docker_binary(), "logs", "--tail", str(lines), container],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    return proc.stdout.rstrip()


def _remove_containers(names: list[str], grace_s: int = 10) -> None:
    """SIGTERM (as the kubelet does), SIGKILL after `grace_s`, then remove."""
    if names:
        _docker("stop", "--time", str(grace_s), *names, check=False)
        _docker("rm", "--force", "--volumes", *names, check=False)


def _labelled(*filters: str) -> list[str]:
    args = ["ps", "--all", "--format", "{{.Names}}"]
    args += ["--filter", f"label={LABEL_SANDBOX}={sandbox_id()}"]
    for f in filters:
        args += ["--filter", f"label={f}"]
    return _docker(*args).stdout.split()


def check_mediawiki_url(value: str) -> None:
    """A MediaWiki URL on the host's loopback is the container itself from inside: refuse it."""
    if value == "live" or MediaWikiMode.of(value):
        return
    host = urllib.parse.urlsplit(value).hostname or ""
    if host in LOOPBACK_HOSTS or host.startswith("127."):
        raise RunError(
            f"--mediawiki {value}: {host} inside a container is the container itself; give a "
            "URL the containers can reach, or use --mediawiki replay"
        )


def _run(
    name: str, image: str, labels: dict[str, str], args: list[str], flags: list[str]
) -> ComponentRecord:
    """`docker run` a labelled container on the sandbox network, its port on 127.0.0.1."""
    cmd = ["run", "--detach", "--name", name, "--network", network_name(), *LOG_OPTS]
    for key, value in {LABEL_SANDBOX: sandbox_id(), **labels}.items():
        cmd += ["--label", f"{key}={value}"]
    cmd += ["--publish", f"127.0.0.1::{CONTAINER_PORT}", *flags, image, *args]
    _docker(*cmd)
    component = labels.get(LABEL_COMPONENT, "")
    return ComponentRecord(component, _published_port(name), container=name, image=image)


class DockerBackend:
    name = "docker"
    unit = "container"

    def check(self, opts: UpOptions) -> None:
        if not images.daemon_answers():
            raise RunError(
                "no Docker daemon answers (`docker info` failed): start dockerd, or use "
                "--target local"
            )
        check_mediawiki_url(opts.mediawiki)
        mode = MediaWikiMode.of(opts.mediawiki)
        if mode and mode.kind == "record":
            raise RunError(
                "--mediawiki record runs on the local target (the recorder needs the host's "
                "network and writes into your folder); record there once, then replay the "
                "recordings on any target with --mediawiki replay:DIR"
            )

    def prepare(self, services: list[Service], opts: UpOptions) -> dict[str, Any]:
        """Build every image in one batch (the wheelhouse and base image are checked once), and
        make sure the sandbox network exists."""
        specs = [
            images.component_spec(s, n) for s in services for n, c in s.component_items()
            if not c.stock
        ]  # fmt: skip
        if MediaWikiMode.of(opts.mediawiki):
            specs.append(images.replay_spec())
        built = dict(zip([sp.name for sp in specs], images.build_specs(specs), strict=True))
        for s in services:
            for n, c in s.component_items():
                if c.stock:
                    built[images.image_name(s, n)] = images.build_stock_image(s, n)
        if _docker("network", "inspect", network_name(), check=False).returncode != 0:
            _docker("network", "create", "--label", f"{LABEL_SANDBOX}={sandbox_id()}",
                    network_name())  # fmt: skip
        return {"built": built, "replay_image": built.get(images.REPLAY_IMAGE)}

    def plan(
        self,
        service: Service,
        name: str,
        component: Component,
        opts: UpOptions,
        wiki_url: str | None,
        prepared: dict[str, Any],
    ) -> dict[str, Any]:
        limits = component.resources.limits
        return {
            "image": prepared["built"][images.image_name(service, name)],
            "env": component_env(component, wiki_url, opts),
            "args": component.args,
            "cpus": cpus(limits.cpu),
            "memory": memory_bytes(limits.memory),
            "network": network_name(),
        }

    def start(
        self,
        service: Service,
        name: str,
        plan: dict[str, Any],
        models_dir: Path,
        revision: str,
        peers: dict[str, ComponentRecord],
    ) -> ComponentRecord:
        args = ["--model_name", service.name, "--http_port", str(CONTAINER_PORT)]
        if name == "transformer":
            args += ["--predictor_host", f"{peers['predictor'].container}:{CONTAINER_PORT}"]
        if service.production is not None:
            # Production's isvcs (services/production/) start as their pods do: the image's own
            # entrypoint with no arguments (deployment-charts sets none; inference-services'
            # entrypoint.sh reads its first argument as the model server's path).
            args = []
            plan = {**plan, "args": []}
        flags = ["--cpus", plan["cpus"], "--memory", str(plan["memory"])]
        if name == "predictor":
            flags += ["--volume", f"{models_dir.resolve()}:{MODELS_MOUNT}:ro"]
        for key, value in plan["env"].items():
            flags += ["--env", f"{key}={value}"]
        labels = {LABEL_ISVC: service.name, LABEL_COMPONENT: name}
        container = container_name(service.name, name, revision)
        _remove_containers([container])  # a leftover of an interrupted run of this revision
        return _run(container, plan["image"], labels, [*args, *plan["args"]], flags)

    def alive(self, comp: ComponentRecord) -> bool:
        st = _inspect_state(comp.container or "")
        return bool(st and st.get("Running"))

    def why_dead(self, comp: ComponentRecord) -> str:
        st = _inspect_state(comp.container or "")
        if st is None:
            return f"its container {comp.container} is gone"
        return f"its container {comp.container} exited (code {st.get('ExitCode')})"

    def log_tail(self, comp: ComponentRecord, lines: int) -> str:
        return _log_tail(comp.container or "", lines)

    def stop(self, comps: list[ComponentRecord]) -> None:
        _remove_containers([c.container for c in comps if c.container])

    def start_replay(self, prepared: dict[str, Any], mode: MediaWikiMode) -> ComponentRecord:
        container = f"{sandbox_id()}-{MEDIAWIKI}"
        _remove_containers([container])
        flags = []
        if mode.directory:  # replay only (check() refuses record): the recordings, read-only
            flags = ["--volume", f"{mode.directory}:{RECORDINGS_MOUNT}:ro"]
        args = [*REPLAY_ARGS, *replay_mode_args(mode, RECORDINGS_MOUNT)]
        return _run(container, prepared["replay_image"], {LABEL_COMPONENT: MEDIAWIKI}, args, flags)

    def replay_url(self, comp: ComponentRecord) -> str:
        return f"http://{comp.container}:{CONTAINER_PORT}"

    def cleanup_idle(self, st: State) -> None:
        """No docker isvc left: remove the sandbox's remaining containers and its network."""
        _remove_containers(_labelled())
        if _docker("network", "inspect", network_name(), check=False).returncode == 0:
            _docker("network", "rm", network_name(), check=False)

    def _known(self, st: State) -> set[str]:
        comps = [
            c for r in [*st.isvcs.values(), *st.starting.values()] for c in r.components.values()
        ]
        comps += [c for t, c in st.mediawiki.items() if t == self.name]
        return {c.container for c in comps if c.container}

    def _orphans(self, st: State) -> list[str]:
        if not images.daemon_answers():
            return []
        return [n for n in _labelled() if n not in self._known(st)]

    def orphans(self, st: State) -> list[str]:
        return [f"container {n}" for n in self._orphans(st)]

    def stop_orphans(self, st: State) -> None:
        _remove_containers(self._orphans(st))

    def logs_by_name(self, isvc: str, component: str | None) -> list[ComponentRecord]:
        filters = [f"{LABEL_ISVC}={isvc}"] + (
            [f"{LABEL_COMPONENT}={component}"] if component else []
        )
        return [ComponentRecord(component or "", 0, container=n) for n in _labelled(*filters)]

    def logs(self, comps: list[ComponentRecord], follow: bool, lines: int | None) -> None:
        names = [c.container for c in comps if c.container]
        base = [images.docker_binary(), "logs"]
        if lines is not None:
            base += ["--tail", str(lines)]
        if follow:
            procs = [subprocess.Popen([*base, "--follow", n]) for n in names]
            try:
                for p in procs:
                    p.wait()
            except KeyboardInterrupt:
                for p in procs:
                    p.terminate()
            return
        for n in names:
            if len(names) > 1:
                print(f"==> {n} <==", flush=True)
            subprocess.run([*base, n], check=False)


def target() -> HostTarget:
    return HostTarget(DockerBackend())
