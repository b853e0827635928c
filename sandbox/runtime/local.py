"""The local target: each component a kserve model-server process on 127.0.0.1, behind the gateway.

Processes are detached (they outlive the CLI) and recorded in `.sandbox/state.json`, so `status`,
`logs` and `down` work from any shell. `up` is idempotent: an isvc whose code, service.yaml and
options are unchanged is left running; a changed one is restarted.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from sandbox import models
from sandbox.catalog import Service
from sandbox.paths import REPO_ROOT, run_dir
from sandbox.runtime import ingress, processes, state
from sandbox.runtime.base import ComponentStatus, RuntimeError_, UpOptions
from sandbox.runtime.progress import step

CONTAINER_MODELS_DIR = "/mnt/models"
SERVING_DIR = REPO_ROOT / "sandbox" / "serving"


def _key(isvc: str) -> str:
    return f"local/{isvc}"


def fingerprint(service: Service, env: dict[str, Any]) -> str:
    """Changes whenever anything that shapes the running isvc changes: its folder, the shared
    serving code, the model, the environment it gets."""
    h = hashlib.sha256()
    for root in (service.dir, SERVING_DIR):
        for path in sorted(root.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                h.update(str(path.relative_to(root)).encode())
                h.update(path.read_bytes())
    h.update(json.dumps(env, sort_keys=True).encode())
    return h.hexdigest()[:16]


def _ready(port: int, model_name: str) -> bool:
    url = f"http://127.0.0.1:{port}/v1/models/{model_name}"
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return bool(json.loads(r.read()).get("ready"))
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _wait_ready(
    service: Service, started: dict[str, dict[str, Any]], deadline: float
) -> str | None:
    """Wait until every component answers ready. Returns the failing component, or None."""
    pending = dict(started)
    while pending:
        for name, comp in list(pending.items()):
            if _ready(comp["port"], service.name):
                del pending[name]
            elif not processes.alive(comp["process"]) or time.monotonic() > deadline:
                return name
        time.sleep(0.05)
    return None


class LocalTarget:
    name = "local"

    # -- up -------------------------------------------------------------------------------------
    def up(self, services: list[Service], opts: UpOptions) -> None:
        with state.locked() as st:
            if ingress.ensure_gateway(st, opts.gateway_port):
                print(
                    f"• gateway listening on http://127.0.0.1:{opts.gateway_port}", file=sys.stderr
                )
            wiki_url = self._mediawiki_url(st, opts)
            for service in services:
                self._up_one(st, service, opts, wiki_url)

    def _mediawiki_url(self, st: dict[str, Any], opts: UpOptions) -> str | None:
        if opts.mediawiki == "live":
            return None
        if opts.mediawiki != "replay":
            return opts.mediawiki
        mw = st.get("mediawiki")
        if mw and processes.alive(mw["process"]):
            return mw["url"]
        port = processes.free_port()
        # --max-limit 50: the fixture articles (100+ links) then need continuation, as big
        # articles do on Wikipedia, so every run exercises it.
        cmd = [
            sys.executable,
            "-m",
            "sandbox.mediawiki",
            "--host",
            "127.0.0.1",
            "--max-limit",
            "50",
        ]
        cmd += ["--port", str(port)]
        url = f"http://127.0.0.1:{port}"
        with step("starting the MediaWiki replay server"):
            rec = processes.spawn_ready(
                cmd,
                state.logs_dir() / "mediawiki.log",
                f"{url}/__replay__/health",
                "the replay server",
            )
        st["mediawiki"] = {"url": url, "process": rec.to_dict()}
        return url

    def _env(
        self,
        component_env: dict[str, str],
        models_dir: Path,
        wiki_url: str | None,
        opts: UpOptions,
    ) -> dict[str, str]:
        env: dict[str, str] = {}
        for k, v in component_env.items():
            env[k] = (
                v.replace(CONTAINER_MODELS_DIR, str(models_dir), 1)
                if v.startswith(CONTAINER_MODELS_DIR)
                else v
            )
        if wiki_url is not None and "WIKI_URL" in component_env:
            env["WIKI_URL"] = wiki_url
        env.update(opts.env)
        env["SANDBOX_HTTP_HOST"] = "127.0.0.1"
        return env

    def _up_one(
        self, st: dict[str, Any], service: Service, opts: UpOptions, wiki_url: str | None
    ) -> None:
        key = _key(service.name)
        models_dir = run_dir() / "models" / service.name
        envs = {
            name: self._env(comp.env, models_dir, wiki_url, opts)
            for name, comp in service.component_items()
        }
        fp = fingerprint(service, {"env": envs, "model_source": opts.model_source})
        if ingress.keep_if_current(
            st, key, service, fp, _all_alive, lambda: self._stop_isvc(st, service.name)
        ):
            return

        with step(f"staging the {service.name} model into {models_dir}"):
            models.stage(service, models_dir, opts.model_source)

        # The state records each process as soon as it exists, so that a failure or Ctrl-C at
        # any point below stops exactly what this `up` started.
        started: dict[str, dict[str, Any]] = {}
        st["isvcs"][key] = {
            "target": "local",
            "isvc": service.name,
            "host": service.host,
            "url": "",
            "fingerprint": fp,
            "components": started,
        }
        try:
            ports = {name: processes.free_port() for name, _ in service.component_items()}
            for name, comp in service.component_items():
                cmd = [sys.executable, str(service.dir / comp.entrypoint)]
                cmd += ["--model_name", service.name, "--http_port", str(ports[name])]
                if name == "transformer":
                    cmd += ["--predictor_host", f"127.0.0.1:{ports['predictor']}"]
                cmd += comp.args
                log = state.logs_dir() / f"{service.name}-{name}.log"
                rec = processes.spawn(cmd, log, env={**os.environ, **envs[name]}, cwd=service.dir)
                started[name] = {"port": ports[name], "process": rec.to_dict()}
            url = f"http://127.0.0.1:{started[service.entry_component]['port']}"
            st["isvcs"][key]["url"] = url
            with step(f"waiting for {service.name} to be ready"):
                failed = _wait_ready(service, started, time.monotonic() + opts.timeout_s)
            if failed:
                log = started[failed]["process"]["log"]
                raise RuntimeError_(
                    f"{service.name}'s {failed} did not become ready within {opts.timeout_s:.0f}s"
                    f"; nothing was left running. Last lines of {log}:\n{processes.tail(log, 25)}"
                )
        except BaseException:
            self._stop_isvc(st, service.name)
            ingress.stop_gateway_if_idle(st)
            raise
        ingress.set_route(st, service.host, url, owner=key)
        print(f"✓ {service.name} is up: Host {service.host}", file=sys.stderr)

    # -- down -----------------------------------------------------------------------------------
    def _stop_isvc(self, st: dict[str, Any], isvc: str) -> None:
        entry = st["isvcs"].pop(_key(isvc), None)
        if not entry:
            return
        # Stop the entry component (transformer) first, so no request reaches a dead predictor.
        for comp in reversed(list(entry["components"].values())):
            processes.stop(comp["process"])
        if st["routes"].get(entry["host"], {}).get("owner") == _key(isvc):
            ingress.remove_route(st, entry["host"])

    def running(self) -> list[str]:
        return [v["isvc"] for k, v in state.read()["isvcs"].items() if k.startswith("local/")]

    def down(self, names: list[str] | None = None) -> None:
        with state.locked() as st:
            targets = names if names is not None else self.running()
            for isvc in targets:
                if _key(isvc) not in st["isvcs"]:
                    print(f"• {isvc} is not running locally", file=sys.stderr)
                    continue
                with step(f"stopping {isvc}"):
                    self._stop_isvc(st, isvc)
            if ingress.stop_gateway_if_idle(st):
                print("• stopped the gateway", file=sys.stderr)

    # -- status and logs ------------------------------------------------------------------------
    def status(self) -> list[ComponentStatus]:
        st = state.read()
        rows = []
        for key, entry in st["isvcs"].items():
            if not key.startswith("local/"):
                continue
            for name, comp in entry["components"].items():
                alive = processes.alive(comp["process"])
                rows.append(
                    ComponentStatus(
                        target="local",
                        isvc=entry["isvc"],
                        component=name,
                        state="running" if alive else "exited",
                        address=f"127.0.0.1:{comp['port']}",
                        pid=comp["process"]["pid"],
                        detail="" if alive else f"see {comp['process']['log']}",
                    )
                )
        return rows

    def log_files(self, isvc: str, component: str | None) -> list[Path]:
        """The log files of an isvc's components (also after `down`), the gateway or mediawiki."""
        if isvc in ("gateway", "mediawiki"):
            return [state.logs_dir() / f"{isvc}.log"]
        entry = state.read()["isvcs"].get(_key(isvc))
        if entry:
            comps = entry["components"]
            return [Path(c["process"]["log"]) for n, c in comps.items() if component in (None, n)]
        return sorted(state.logs_dir().glob(f"{isvc}-{component or '*'}.log"))

    def logs(self, isvc: str, component: str | None, follow: bool, lines: int | None = None) -> int:
        files = [f for f in self.log_files(isvc, component) if f.exists()]
        if not files:
            print(f"no logs for {isvc} (has it been started?)", file=sys.stderr)
            return 1
        for f in files:
            if len(files) > 1:
                print(f"==> {f} <==")
            print(processes.tail(f, 100 if lines is None else lines), end="")
        if follow:
            _follow(files)
        return 0


def _follow(files: list[Path]) -> None:
    """Print lines appended to `files` until interrupted, like `tail -f`."""
    handles = [f.open(errors="replace") for f in files]
    for h in handles:
        h.seek(0, os.SEEK_END)
    try:
        while True:
            quiet = True
            for h in handles:
                for line in iter(h.readline, ""):
                    quiet = False
                    sys.stdout.write(line)
            sys.stdout.flush()
            if quiet:
                time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        for h in handles:
            h.close()


def _all_alive(entry: dict[str, Any]) -> bool:
    return all(processes.alive(c["process"]) for c in entry["components"].values())
