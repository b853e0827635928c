"""The docker target's backend: each component its production image, run as a container the way
KServe runs the pod's container, behind the same Host-routing gateway as the local target.

Per sandbox (run directory) there is one user-defined network; on it run the predictor (the model
staged on the host, mounted read-only at /mnt/models, the pod's env from service.yaml), the
transformer (`--predictor_host <predictor container>:8080`) and, with `--mediawiki replay`, the
MediaWiki replay server (WIKI_URL points at it by container name; the wikis' own domains resolve
to it in every isvc container, on the ports production's mesh routes them on: mesh.py). Every
container publishes its port on 127.0.0.1 only; the gateway routes the isvc's Host to the entry
component's published port.
A container's name ends in its revision (the isvc's fingerprint), so a changed isvc's new
containers start beside the old ones and replace them without a gap.

Containers and the network carry labels naming the sandbox, so `down` removes them even when the
state file is gone. The lifecycle is `sandbox.runtime.lifecycle.HostTarget`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import subprocess
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox import docker_cli
from sandbox.catalog import Component, Service
from sandbox.errors import RunError
from sandbox.paths import REPO_ROOT, run_dir
from sandbox.runtime import mesh
from sandbox.runtime.lifecycle import (
    HostTarget,
    Plan,
    Prepared,
    component_env,
    replay_mode_args,
)
from sandbox.runtime.options import MediaWiki, UpOptions
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
    return docker_cli.docker(*args, check=check)


# -- resources: service.yaml's Kubernetes quantities as docker flags ---------------------------
def cpus(quantity: str, host_cpus: int | None = None) -> str:
    """`250m` -> `0.25`, `1` -> `1`; at most the host's CPUs (`host_cpus`, default this machine's):
    Docker refuses a limit above them, where production's nodes have more (edit-check asks 4)."""
    value = int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)
    return f"{min(value, host_cpus or os.cpu_count() or 1):g}"


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
        [docker_cli.docker_binary(), "logs", "--tail", str(lines), container],
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


def _known_wikis(mode: MediaWiki) -> set[str]:
    """The wikis the replay server answers in `mode`: its fixture wikis, and the recorded ones."""
    from sandbox.mediawiki.fixtures import load_wikis

    names = set(load_wikis())
    if mode.directory:
        from sandbox.mediawiki.recordings import RecordingStore

        with contextlib.suppress(Exception):  # a bad recording stops the server, which says why
            names |= set(RecordingStore([Path(mode.directory)]).hosts())
    return names


def check_mediawiki_url(mode: MediaWiki) -> None:
    """A MediaWiki URL on the host's loopback is the container itself from inside: refuse it."""
    if mode.kind != "url":
        return
    host = urllib.parse.urlsplit(mode.url).hostname or ""
    if host in LOOPBACK_HOSTS or host.startswith("127."):
        raise RunError(
            f"--mediawiki {mode}: {host} inside a container is the container itself; give a "
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


@dataclass
class DockerPrepared(Prepared):
    images: dict[str, str] = field(default_factory=dict)  # "<isvc>/<component>" -> tag


@dataclass(frozen=True)
class DockerPlan(Plan):
    image: str = ""
    cpus: str = ""
    memory: int = 0
    network: str = ""
    add_hosts: tuple[str, ...] = ()  # `--add-host NAME:IP`: the mesh's egress (mesh.py)


class DockerBackend:
    name = "docker"
    unit = "container"

    def check(self, opts: UpOptions) -> None:
        if not docker_cli.daemon_answers():
            raise RunError(
                "no Docker daemon answers (`docker info` failed): start dockerd, or use "
                "--target local"
            )
        check_mediawiki_url(opts.mediawiki)
        if opts.mediawiki.kind == "record":
            raise RunError(
                "--mediawiki record runs on the local target (the recorder needs the host's "
                "network and writes into your folder); record there once, then replay the "
                "recordings on any target with --mediawiki replay:DIR"
            )

    def prepare(self, services: list[Service], opts: UpOptions) -> DockerPrepared:
        """Build every image (each one's content-hash tag is checked first), and make sure the
        sandbox network exists."""
        from sandbox import images  # the build module, only where something is built

        built = {
            f"{s.name}/{n}": images.build(images.component_recipe(s, n))
            for s in services
            for n, _ in s.component_items()
        }
        replay = (
            images.build(images.replay_recipe())
            if opts.mediawiki.replay_server_for(services)
            else None
        )
        if _docker("network", "inspect", network_name(), check=False).returncode != 0:
            _docker("network", "create", "--label", f"{LABEL_SANDBOX}={sandbox_id()}",
                    network_name())  # fmt: skip
        return DockerPrepared(replay_image=replay, images=built)

    def ready(
        self, services: list[Service], opts: UpOptions, prepared: DockerPrepared
    ) -> contextlib.AbstractContextManager[Iterator[Service]]:
        """`prepare` built every image: all are ready, in order."""
        return contextlib.nullcontext(iter(services))

    def plan(
        self,
        service: Service,
        name: str,
        component: Component,
        opts: UpOptions,
        wiki_url: str | None,
        prepared: DockerPrepared,
    ) -> DockerPlan:
        limits = component.resources.limits
        return DockerPlan(
            env=component_env(component, wiki_url, opts),
            args=tuple(component.args),
            image=prepared.images[f"{service.name}/{name}"],
            cpus=cpus(limits.cpu),
            memory=memory_bytes(limits.memory),
            network=network_name(),
            add_hosts=self._wiki_hosts(wiki_url, opts),
        )

    def _wiki_hosts(self, wiki_url: str | None, opts: UpOptions) -> tuple[str, ...]:
        """`NAME:IP` of the replay container for every wiki domain production's mesh routes to
        the MediaWiki API (mesh.py), when the replay container stands for MediaWiki: the same
        routes as the local target's launcher, for every isvc. The replay container serves the
        mesh's ports (start_replay)."""
        if wiki_url is None or not opts.mediawiki.replay_server:
            return ()
        container = urllib.parse.urlsplit(wiki_url).hostname or ""
        ip = _docker(
            "inspect", "--format",
            f'{{{{(index .NetworkSettings.Networks "{network_name()}").IPAddress}}}}',
            container,
        ).stdout.strip()  # fmt: skip
        return tuple(f"{n}:{ip}" for n in mesh.container_hosts(_known_wikis(opts.mediawiki)))

    def start(
        self,
        service: Service,
        name: str,
        plan: DockerPlan,
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
            plan = dataclasses.replace(plan, args=())
        flags = ["--cpus", plan.cpus, "--memory", str(plan.memory)]
        if name == "predictor":
            flags += ["--volume", f"{models_dir.resolve()}:{MODELS_MOUNT}:ro"]
        for key, value in plan.env.items():
            flags += ["--env", f"{key}={value}"]
        for host in plan.add_hosts:
            flags += ["--add-host", host]
        labels = {LABEL_ISVC: service.name, LABEL_COMPONENT: name}
        container = container_name(service.name, name, revision)
        _remove_containers([container])  # a leftover of an interrupted run of this revision
        return _run(container, plan.image, labels, [*args, *plan.args], flags)

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

    def start_replay(self, prepared: DockerPrepared, mode: MediaWiki) -> ComponentRecord:
        container = f"{sandbox_id()}-{MEDIAWIKI}"
        _remove_containers([container])
        flags = []
        if mode.directory:  # replay only (check() refuses record): the recordings, read-only
            flags = ["--volume", f"{mode.directory}:{RECORDINGS_MOUNT}:ro"]
        _, ports = mesh.proxied_domains()  # the wikis' domains connect here on the mesh's ports
        args = [*REPLAY_ARGS, *(f"--also-port={p}" for p in ports if p != CONTAINER_PORT)]
        args += replay_mode_args(mode, RECORDINGS_MOUNT)
        assert prepared.replay_image is not None  # prepare built it: the mode needs the server
        return _run(container, prepared.replay_image, {LABEL_COMPONENT: MEDIAWIKI}, args, flags)

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
        if not docker_cli.daemon_answers():
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
        base = [docker_cli.docker_binary(), "logs"]
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
