"""The docker target: each component its production image, run as a container the way KServe runs
the pod's container, behind the same Host-routing gateway as the local target.

Per sandbox (run directory) there is one user-defined network; on it run the predictor (the model
staged on the host, mounted read-only at /mnt/models, the pod's env from service.yaml), the
transformer (`--predictor_host <predictor container>:8080`) and, with `--mediawiki replay`, the
MediaWiki replay server (WIKI_URL points at it by container name). Every container publishes its
port on 127.0.0.1 only; the gateway (the one host process of `sandbox.runtime.ingress`, shared with
the local target) routes the isvc's Host to the entry component's published port.

Containers and the network carry labels naming the sandbox, so `down` removes them even when the
state file is gone. State lives in `.sandbox/state.json` under `isvcs["docker/<isvc>"]` and
`docker`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from sandbox import images, models
from sandbox.catalog import Component, Service
from sandbox.paths import REPO_ROOT, run_dir
from sandbox.runtime import ingress, state
from sandbox.runtime.base import ComponentStatus, RuntimeError_, UpOptions
from sandbox.runtime.progress import step

CONTAINER_PORT = 8080
MODELS_MOUNT = "/mnt/models"
LABEL_SANDBOX = "org.ml-sandbox.sandbox"
LABEL_ISVC = "org.ml-sandbox.isvc"
LABEL_COMPONENT = "org.ml-sandbox.component"
MEDIAWIKI = "mediawiki"
LOG_TAIL_LINES = 25
LOOPBACK_HOSTS = {"localhost", "::1", "0.0.0.0"}
# As the local target runs it: a small gpllimit=max so the fixture articles need continuation.
REPLAY_ARGS = ["--max-limit", "50"]


def _key(isvc: str) -> str:
    return f"docker/{isvc}"


def sandbox_id() -> str:
    """Names the sandbox's containers and network: `ml-sandbox` for the default run directory,
    `ml-sandbox-<hash>` for another one (tests), so two sandboxes never collide."""
    rd = run_dir().resolve()
    if rd == (REPO_ROOT / ".sandbox").resolve():
        return "ml-sandbox"
    return f"ml-sandbox-{hashlib.sha256(str(rd).encode()).hexdigest()[:8]}"


def network_name() -> str:
    return sandbox_id()


def container_name(isvc: str, component: str) -> str:
    return f"{sandbox_id()}-{isvc}-{component}"


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
    raise RuntimeError_(f"{container} publishes no port on 127.0.0.1: {out.strip()!r}")


def _log_tail(container: str, lines: int = LOG_TAIL_LINES) -> str:
    proc = subprocess.run(
        [images.docker_binary(), "logs", "--tail", str(lines), container],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    return proc.stdout.rstrip() or "(no output)"


def _remove_containers(names: list[str], grace_s: int = 10) -> None:
    """SIGTERM (as the kubelet does), SIGKILL after `grace_s`, then remove."""
    if names:
        _docker("stop", "--time", str(grace_s), *names, check=False)
        _docker("rm", "--force", "--volumes", *names, check=False)


def _labelled(*filters: str) -> list[str]:
    args = [
        "ps",
        "--all",
        "--format",
        "{{.Names}}",
        "--filter",
        f"label={LABEL_SANDBOX}={sandbox_id()}",
    ]
    for f in filters:
        args += ["--filter", f"label={f}"]
    return _docker(*args).stdout.split()


def _http_json(url: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return json.loads(r.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _wait(containers: dict[str, tuple[str, str]], deadline: float) -> tuple[str, str] | None:
    """Wait until every container answers its URL (ready). Returns (name, why) on failure."""
    pending = dict(containers)
    while pending:
        for name, (container, url) in list(pending.items()):
            answer = _http_json(url)
            if answer is not None and answer.get("ready", answer.get("status") == "ok"):
                del pending[name]
                continue
            st = _inspect_state(container)
            if st is None or not st.get("Running"):
                code = st.get("ExitCode") if st else "?"
                return name, f"its container {container} exited (code {code})"
            if time.monotonic() > deadline:
                return name, f"{container} did not become ready in time"
        time.sleep(0.1)
    return None


def check_mediawiki_url(value: str) -> None:
    """A MediaWiki URL on the host's loopback is the container itself from inside: refuse it."""
    if value in ("live", "replay"):
        return
    host = urllib.parse.urlsplit(value).hostname or ""
    if host in LOOPBACK_HOSTS or host.startswith("127."):
        raise RuntimeError_(
            f"--mediawiki {value}: {host} inside a container is the container itself; give a "
            "URL the containers can reach, or use --mediawiki replay"
        )


class DockerTarget:
    name = "docker"

    # -- up -------------------------------------------------------------------------------------
    def up(self, services: list[Service], opts: UpOptions) -> None:
        if not images.daemon_answers():
            raise RuntimeError_(
                "no Docker daemon answers (`docker info` failed): start dockerd, or use "
                "--target local"
            )
        check_mediawiki_url(opts.mediawiki)
        # One batch: the wheelhouse and base image are checked once for every image.
        specs = [images.component_spec(s, n) for s in services for n, _ in s.component_items()]
        if opts.mediawiki == "replay":
            specs.append(images.replay_spec())
        built = dict(zip([sp.name for sp in specs], images.build_specs(specs), strict=True))
        tags = {
            s.name: {n: built[images.image_name(s, n)] for n, _ in s.component_items()}
            for s in services
        }
        replay_tag = built.get(images.REPLAY_IMAGE)
        with state.locked() as st:
            if ingress.ensure_gateway(st, opts.gateway_port):
                print(
                    f"• gateway listening on http://127.0.0.1:{opts.gateway_port}", file=sys.stderr
                )
            try:
                self._ensure_network(st)
                wiki_url = self._mediawiki_url(st, opts, replay_tag)
                for service in services:
                    self._up_one(st, service, opts, tags[service.name], wiki_url)
            except BaseException:
                self._cleanup_if_idle(st)
                raise

    def _ensure_network(self, st: dict[str, Any]) -> None:
        net = network_name()
        if _docker("network", "inspect", net, check=False).returncode != 0:
            _docker("network", "create", "--label", f"{LABEL_SANDBOX}={sandbox_id()}", net)
        st.setdefault("docker", {})["network"] = net

    def _mediawiki_url(
        self, st: dict[str, Any], opts: UpOptions, replay_tag: str | None
    ) -> str | None:
        """WIKI_URL for the containers: the replay container on the network, a given URL (which
        must be reachable from containers), or None for the live wikis."""
        if opts.mediawiki == "live":
            return None
        if opts.mediawiki != "replay":
            return opts.mediawiki
        assert replay_tag is not None
        docker_state = st.setdefault("docker", {})
        current = docker_state.get(MEDIAWIKI)
        container = f"{sandbox_id()}-{MEDIAWIKI}"
        running = _inspect_state(container)
        if current and current["image"] == replay_tag and running and running.get("Running"):
            return current["internal_url"]
        _remove_containers([container])
        with step("starting the MediaWiki replay server container"):
            _docker(
                "run", "--detach", "--name", container, "--network", network_name(),
                "--label", f"{LABEL_SANDBOX}={sandbox_id()}",
                "--label", f"{LABEL_COMPONENT}={MEDIAWIKI}",
                "--publish", f"127.0.0.1::{CONTAINER_PORT}",
                replay_tag, *REPLAY_ARGS,
            )  # fmt: skip
            port = _published_port(container)
            url = f"http://127.0.0.1:{port}"
            failed = _wait(
                {MEDIAWIKI: (container, f"{url}/__replay__/health")}, time.monotonic() + 30
            )
            if failed:
                log = _log_tail(container)
                _remove_containers([container])
                raise RuntimeError_(f"the replay server did not start: {failed[1]}:\n{log}")
        docker_state[MEDIAWIKI] = {
            "container": container,
            "image": replay_tag,
            "url": url,
            "internal_url": f"http://{container}:{CONTAINER_PORT}",
        }
        return docker_state[MEDIAWIKI]["internal_url"]

    def _env(self, comp: Component, wiki_url: str | None, opts: UpOptions) -> dict[str, str]:
        """The pod's env (service.yaml), WIKI_URL pointed at the chosen MediaWiki, then extras."""
        env = dict(comp.env)
        if wiki_url is not None and "WIKI_URL" in env:
            env["WIKI_URL"] = wiki_url
        env.update(opts.env)
        return env

    def _args(self, service: Service, name: str, comp: Component) -> list[str]:
        args = ["--model_name", service.name, "--http_port", str(CONTAINER_PORT)]
        if name == "transformer":
            args += ["--predictor_host", f"{container_name(service.name, 'predictor')}:8080"]
        return args + comp.args

    def _up_one(
        self,
        st: dict[str, Any],
        service: Service,
        opts: UpOptions,
        tags: dict[str, str],
        wiki_url: str | None,
    ) -> None:
        key = _key(service.name)
        plan = {
            name: {
                "image": tags[name],
                "env": self._env(comp, wiki_url, opts),
                "args": self._args(service, name, comp),
            }
            for name, comp in service.component_items()
        }
        fp = hashlib.sha256(
            json.dumps(
                [plan, service.model.sha256, opts.model_source, network_name()], sort_keys=True
            ).encode()
        ).hexdigest()[:16]
        stop = functools.partial(self._stop_isvc, st, service.name)
        if ingress.keep_if_current(st, key, service, fp, self._all_running, stop, "container"):
            return
        _remove_containers(_labelled(f"{LABEL_ISVC}={service.name}"))

        models_dir = run_dir() / "models" / service.name
        with step(f"staging the {service.name} model into {models_dir}"):
            models.stage(service, models_dir, opts.model_source)

        started: dict[str, dict[str, Any]] = {}
        st["isvcs"][key] = entry = {
            "target": "docker",
            "isvc": service.name,
            "host": service.host,
            "url": None,
            "fingerprint": fp,
            "components": started,
        }
        try:
            self._start_containers(service, plan, models_dir, started)
            entry["url"] = f"http://127.0.0.1:{started[service.entry_component]['port']}"
            with step(f"waiting for {service.name}'s containers to be ready"):
                self._wait_ready(service, started, opts)
        except BaseException:
            self._stop_isvc(st, service.name)
            raise
        ingress.set_route(st, service.host, entry["url"], owner=key)
        print(f"✓ {service.name} is up in docker: Host {service.host}", file=sys.stderr)

    def _start_containers(
        self,
        service: Service,
        plan: dict[str, dict[str, Any]],
        models_dir: Path,
        started: dict[str, dict[str, Any]],
    ) -> None:
        for name, comp in service.component_items():
            container = container_name(service.name, name)
            limits = comp.resources.limits
            cmd = ["run", "--detach", "--name", container, "--network", network_name()]
            cmd += [
                "--label",
                f"{LABEL_SANDBOX}={sandbox_id()}",
                "--label",
                f"{LABEL_ISVC}={service.name}",
            ]
            cmd += ["--label", f"{LABEL_COMPONENT}={name}"]
            cmd += ["--publish", f"127.0.0.1::{CONTAINER_PORT}"]
            cmd += ["--cpus", cpus(limits.cpu), "--memory", str(memory_bytes(limits.memory))]
            if name == "predictor":
                cmd += ["--volume", f"{models_dir.resolve()}:{MODELS_MOUNT}:ro"]
            for k, v in plan[name]["env"].items():
                cmd += ["--env", f"{k}={v}"]
            cmd += [plan[name]["image"], *plan[name]["args"]]
            _docker(*cmd)
            port = _published_port(container)
            started[name] = {"container": container, "image": plan[name]["image"], "port": port}

    def _wait_ready(
        self, service: Service, started: dict[str, dict[str, Any]], opts: UpOptions
    ) -> None:
        urls = {
            name: (c["container"], f"http://127.0.0.1:{c['port']}/v1/models/{service.name}")
            for name, c in started.items()
        }
        failed = _wait(urls, time.monotonic() + opts.timeout_s)
        if failed:
            name, why = failed
            log = _log_tail(started[name]["container"])
            raise RuntimeError_(
                f"{service.name}'s {name} did not become ready within {opts.timeout_s:.0f}s: "
                f"{why}; nothing was left running. Last lines of its log:\n{log}"
            )

    def _all_running(self, entry: dict[str, Any]) -> bool:
        for comp in entry["components"].values():
            st = _inspect_state(comp["container"])
            if not st or not st.get("Running"):
                return False
        return bool(entry["components"])

    # -- down -----------------------------------------------------------------------------------
    def _stop_isvc(self, st: dict[str, Any], isvc: str) -> None:
        entry = st["isvcs"].pop(_key(isvc), None)
        names = _labelled(f"{LABEL_ISVC}={isvc}")
        if entry:
            names += [c["container"] for c in entry["components"].values()]
            if st["routes"].get(entry["host"], {}).get("owner") == _key(isvc):
                ingress.remove_route(st, entry["host"])
        # The transformer first, so no request reaches a removed predictor.
        _remove_containers(sorted(set(names), key=lambda n: not n.endswith("-transformer")))

    def _cleanup_if_idle(self, st: dict[str, Any]) -> None:
        """No docker isvc left: remove the replay container and the network; stop the gateway
        when no target uses it."""
        if not self.running(st):
            _remove_containers(_labelled())
            if _docker("network", "inspect", network_name(), check=False).returncode == 0:
                _docker("network", "rm", network_name(), check=False)
            st.pop("docker", None)
        ingress.stop_gateway_if_idle(st)

    def running(self, st: dict[str, Any] | None = None) -> list[str]:
        st = st if st is not None else state.read()
        return [v["isvc"] for k, v in st["isvcs"].items() if k.startswith("docker/")]

    def down(self, names: list[str] | None = None) -> None:
        with state.locked() as st:
            targets = names if names is not None else self.running(st)
            for isvc in targets:
                if _key(isvc) not in st["isvcs"] and not _labelled(f"{LABEL_ISVC}={isvc}"):
                    print(f"• {isvc} is not running in docker", file=sys.stderr)
                    continue
                with step(f"removing {isvc}'s containers"):
                    self._stop_isvc(st, isvc)
            had_network = "docker" in st
            self._cleanup_if_idle(st)
            if had_network and "docker" not in st:
                print(f"• removed the docker network {network_name()}", file=sys.stderr)

    # -- status and logs ------------------------------------------------------------------------
    def status(self) -> list[ComponentStatus]:
        st = state.read()
        rows = []
        for key, entry in st["isvcs"].items():
            if not key.startswith("docker/"):
                continue
            for name, comp in entry["components"].items():
                rows.append(self._row(entry["isvc"], name, comp["container"], comp["port"]))
        mw = st.get("docker", {}).get(MEDIAWIKI)
        if mw:
            port = int(mw["url"].rsplit(":", 1)[1])
            rows.append(self._row("-", MEDIAWIKI, mw["container"], port))
        return rows

    def _row(self, isvc: str, component: str, container: str, port: int) -> ComponentStatus:
        st = _inspect_state(container)
        if st is None:
            state_, detail = "missing", f"container {container} is gone"
        elif st.get("Running"):
            state_, detail = "running", container
        else:
            state_ = f"exited ({st.get('ExitCode')})"
            detail = f"{container}; see ml-sandbox logs {isvc}"
        return ComponentStatus(
            target="docker",
            isvc=isvc,
            component=component,
            state=state_,
            address=f"127.0.0.1:{port}",
            pid=(st or {}).get("Pid") or None,
            detail=detail,
        )

    def containers(self, isvc: str, component: str | None = None) -> list[str]:
        """The containers of an isvc (or of the replay server: `mediawiki`)."""
        if isvc == MEDIAWIKI:
            return _labelled(f"{LABEL_COMPONENT}={MEDIAWIKI}")
        entry = state.read()["isvcs"].get(_key(isvc))
        if entry:
            comps = entry["components"]
            return [c["container"] for n, c in comps.items() if component in (None, n)]
        filters = [f"{LABEL_ISVC}={isvc}"]
        if component:
            filters.append(f"{LABEL_COMPONENT}={component}")
        return _labelled(*filters)

    def logs(self, isvc: str, component: str | None, follow: bool, lines: int | None = None) -> int:
        names = self.containers(isvc, component)
        if not names:
            print(
                f"no containers of {isvc} (has it been started with --target docker?)",
                file=sys.stderr,
            )
            return 1
        cmd_base = [images.docker_binary(), "logs"]
        if lines is not None:
            cmd_base += ["--tail", str(lines)]
        if follow:
            procs = [subprocess.Popen([*cmd_base, "--follow", n]) for n in names]
            try:
                for p in procs:
                    p.wait()
            except KeyboardInterrupt:
                for p in procs:
                    p.terminate()
            return 0
        for n in names:
            if len(names) > 1:
                print(f"==> {n} <==", flush=True)
            subprocess.run([*cmd_base, n], check=False)
        return 0
