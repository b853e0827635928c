"""What the console shows, read through the CLI's own functions.

The overview is `ml-sandbox status`'s rows (`commands.runtime.all_status`), grouped by isvc and
joined with the catalog; a prediction is `ml-sandbox predict`'s request and checks
(`runtime.smoke.post`, `checks.evaluate`); recent requests are the gateway's access log, read
across rotated files as `ml-sandbox logs gateway` reads it (`processes.tail`). Everything here
blocks (files, /proc, HTTP): the server runs it in a thread.
"""

from __future__ import annotations

import calendar
import json
import os
import re
import subprocess
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from sandbox import catalog
from sandbox.catalog import Sample, Service
from sandbox.checks import evaluate
from sandbox.commands.runtime import all_status
from sandbox.errors import RunError
from sandbox.hints import prog
from sandbox.runtime import ingress, processes, smoke, state, targets

PUBLIC_PREFIX = "/service/lw/inference"  # api.wikimedia.org's form, as the gateway serves it
# The gateway's access-log line (`runtime/gateway.py`, `_access_log`):
#   2026-12-03 08:00:00,123 gateway <host> "<METHOD> <path>" <status> <ms>ms
ACCESS_LINE = re.compile(
    r"^(?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),\d{3} gateway (?P<host>\S+) "
    r'"(?P<method>[A-Z]+) (?P<path>.*)" (?P<status>\d{3}) (?P<ms>[\d.]+)ms$'
)
ACCESS_LINES_READ = 20000  # how far back the access log is read
RECENT_REQUESTS = 200
STARTING_BANNER = re.compile(r"^--- \d{4}-\d\d-\d\d \d\d:\d\d:\d\d starting: ")


# -- overview -----------------------------------------------------------------------------------
def overview(target: str | None = None) -> dict[str, Any]:
    """Every isvc of the catalog with its components as `status` sees them, the platform's own
    processes (gateway, MediaWiki replay server, orphans), the MediaWiki mode and the gateway."""
    st = state.read()
    rows = all_status(target)
    services = _catalog()
    isvcs: dict[str, dict[str, Any]] = {
        name: {
            "name": name,
            "namespace": s.namespace,
            "host": s.host,
            "target": None,
            "state": "stopped",
            "components": [],
        }
        for name, s in services.items()
    }
    platform = []
    for row in rows:
        item = {**asdict(row), **_run_facts(row.target, row.isvc, row.component, row.pid)}
        if row.component in ("predictor", "transformer") and row.isvc in isvcs:
            entry = isvcs[row.isvc]
            entry["target"] = row.target
            docker_up = row.target == "docker" and row.state != "exited"
            item["container"] = row.detail if docker_up else None
            entry["components"].append(item)
        else:
            platform.append(item)
    for entry in isvcs.values():
        entry["state"] = _isvc_state([c["state"] for c in entry["components"]])
    return {
        "gateway": ingress.gateway_url(st),
        "mediawiki": mediawiki_mode(st),
        "isvcs": list(isvcs.values()),
        "platform": platform,
        "cli": prog(),
        "time": time.time(),
    }


_catalog_cache: tuple[tuple, dict[str, Service]] | None = None


def _catalog() -> dict[str, Service]:
    """The catalog, parsed again only when a service.yaml changes (YAML parsing is most of the
    overview's cost, and the page asks for it every second or two)."""
    global _catalog_cache
    files = catalog.service_files()
    sig = tuple((str(f), f.stat().st_mtime_ns) for f in files if f.exists())
    if _catalog_cache is None or _catalog_cache[0] != sig:
        _catalog_cache = (sig, catalog.load_all())
    return _catalog_cache[1]


def _isvc_state(states: list[str]) -> str:
    if not states:
        return "stopped"
    for worst in ("exited", "orphan", "starting"):
        if worst in states:
            return worst
    return "running"


def mediawiki_mode(st: state.State) -> list[dict[str, Any]]:
    """Where MediaWiki requests go, per target: the replay server's mode (from what `up` recorded
    it was started as), else the live wikis or a URL given to `up --mediawiki`."""
    modes = []
    for target, comp in sorted(st.mediawiki.items()):
        try:
            _image, kind, directory = json.loads(comp.spec)
        except (ValueError, TypeError):
            kind, directory = "replay", None
        label = {"emulate": "replay (fixture wikis)", "replay": "replay", "record": "record"}
        modes.append(
            {
                "target": target,
                "mode": label.get(kind, kind),
                "directory": directory,
                "url": comp.url,
            }
        )
    return modes or [{"target": "-", "mode": "live", "directory": None, "url": None}]


_started_cache: dict[str, float] = {}


def _run_facts(target: str, isvc: str, component: str, pid: int | None) -> dict[str, Any]:
    return {
        "started_at": _started_at(target, pid, isvc, component),
        "restarts": _restarts(target, isvc, component),
    }


def _started_at(target: str, pid: int | None, isvc: str, component: str) -> float | None:
    """When the process (its pid, from /proc) or container (`docker inspect`) started, epoch
    seconds: the page counts the uptime from it."""
    if pid:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            btime = next(
                int(line.split()[1])
                for line in Path("/proc/stat").read_text().splitlines()
                if line.startswith("btime ")
            )
        except (OSError, IndexError, ValueError, StopIteration):
            return None
        return btime + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    if target == "docker":
        return _container_started(isvc, component)
    return None


def _container_started(isvc: str, component: str) -> float | None:
    """A container's start time (`docker inspect`), cached: a container never restarts in place."""
    rec = state.read().isvcs.get(f"docker/{isvc}")
    comp = rec.components.get(component) if rec else None
    name = comp.container if comp else None
    if not name:
        return None
    if name not in _started_cache:
        try:
            out = subprocess.run(
                ["docker", "inspect", "-f", "{{.State.StartedAt}}", name],
                capture_output=True,
                text=True,
                timeout=5,
            ).stdout.strip()
            stamp = out[:19]  # 2026-12-03T08:00:00.123456789Z -> seconds, UTC
            _started_cache[name] = calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%S"))
        except (OSError, subprocess.TimeoutExpired, ValueError):
            return None
    return _started_cache[name]


def _restarts(target: str, isvc: str, component: str) -> int | None:
    """How often the component was started before this run, counted from its log (the banner
    `processes.spawn` writes at each start), across rotated files: local target only."""
    if target != "local" or component not in ("predictor", "transformer"):
        return None
    files = processes.log_files(state.logs_dir() / f"{isvc}-{component}.log")
    return max(0, sum(_banners(f) for f in files) - 1)


# inode -> (bytes read, start banners in them): a log is read once, then only what was appended,
# even as rotation renames it (FILE -> FILE.1).
_banner_counts: dict[int, tuple[int, int]] = {}


def _banners(path: Path) -> int:
    try:
        with open(path, "rb") as fh:
            ino = os.fstat(fh.fileno()).st_ino
            done, count = _banner_counts.get(ino, (0, 0))
            if os.fstat(fh.fileno()).st_size < done:  # truncated: a new file on a reused inode
                done, count = 0, 0
            fh.seek(done)
            chunk = fh.read()
    except OSError:
        return 0
    whole = chunk[: chunk.rfind(b"\n") + 1]  # complete lines only; the rest is read next time
    count += sum(1 for line in whole.splitlines() if STARTING_BANNER.match(line.decode("latin-1")))
    _banner_counts[ino] = (done + len(whole), count)
    return count


# -- one isvc -----------------------------------------------------------------------------------
def isvc_page(name: str, target: str | None = None) -> dict[str, Any]:
    """The isvc's service.yaml facts, its samples and how to call it."""
    service = catalog.get(name)
    facts = service.model_dump(mode="json", exclude={"samples"})
    yaml_file = service.dir / "service.yaml"
    try:
        text = yaml_file.read_text()
    except OSError:
        text = yaml.safe_dump(facts, sort_keys=False)
    components = [n for n, _ in service.component_items()]
    return {
        "name": service.name,
        "namespace": service.namespace,
        "description": service.description,
        "host": service.host,
        "predict_path": service.predict_path,
        "public_path": PUBLIC_PREFIX + service.predict_path,
        "components": components,
        "facts": facts,
        "service_yaml": text,
        "service_yaml_path": str(yaml_file),
        "samples": [_sample(s) for s in service.samples],
        "gateway": ingress_url(target),
    }


def _sample(sample: Sample) -> dict[str, Any]:
    return {
        "name": sample.name,
        "description": sample.description,
        "body": sample.body().decode(errors="replace"),
        "expect_status": sample.expect.status,
        "checks": [_check_label(c) for c in sample.expect.checks],
    }


def _check_label(check: Any) -> str:
    rules = check.model_dump(exclude={"path"}, exclude_unset=True)
    return f"{check.path}: " + ", ".join(f"{k} {v!r}" for k, v in rules.items())


def ingress_url(target: str | None) -> str | None:
    """Where requests enter: the target's ingress URL (the gateway for local and docker, the
    Istio ingress for minikube), as `predict` and the smoke test use it; None if nothing serves."""
    try:
        return targets.get(target or "local").ingress_url()
    except RunError:
        return None


def predict(
    name: str, sample_name: str | None, body: str | None, target: str | None = None
) -> dict[str, Any]:
    """`ml-sandbox predict`: POST through the ingress with the isvc's Host; with a sample, its
    checks, each shown ✓ or ✗ (each evaluated alone by the same `evaluate`)."""
    service = catalog.get(name)
    base = ingress_url(target)
    if base is None:
        raise RunError(f"the gateway is not running; start the isvc: {prog()} up {service.name}")
    sample = service.sample(sample_name) if sample_name else None
    raw = sample.body() if sample else (body or "").encode()
    started = time.monotonic()
    status, payload = smoke.post(base, service, raw)
    ms = (time.monotonic() - started) * 1000
    answer = payload.decode(errors="replace")
    result: dict[str, Any] = {
        "request": {
            "url": base + service.predict_path,
            "host": service.host,
            "body": raw.decode(errors="replace"),
        },
        "status": status,
        "answer": answer,
        "ms": round(ms, 1),
        "ok": 200 <= status < 300,
        "checks": [],
    }
    if sample is not None:
        result["sample"] = sample.name
        result["ok"] = not evaluate(sample, status, payload)
        result["checks"] = _each_check(service, sample, status, payload)
    return result


def _each_check(service: Service, sample: Sample, status: int, payload: bytes) -> list[dict]:
    status_fail = f"expected {sample.expect.status}, got {status}"
    rows = [
        {
            "label": f"status {sample.expect.status}",
            "ok": status == sample.expect.status,
            "why": "" if status == sample.expect.status else status_fail,
        }
    ]
    for check in sample.expect.checks:
        expect = sample.expect.model_copy(update={"status": status, "checks": [check]})
        alone = sample.model_copy(update={"expect": expect})
        failures = evaluate(alone, status, payload)
        rows.append({"label": _check_label(check), "ok": not failures, "why": "; ".join(failures)})
    return rows


# -- recent requests ----------------------------------------------------------------------------
def recent_requests(name: str) -> dict[str, Any]:
    """The gateway's access-log lines for this isvc (its Host, or its public path), newest last."""
    service = catalog.get(name)
    log = state.logs_dir() / "gateway.log"
    public = PUBLIC_PREFIX + f"/v1/models/{service.name}:"
    found = []
    for line in processes.tail(log, ACCESS_LINES_READ).splitlines():
        m = ACCESS_LINE.match(line)
        if not m:
            continue
        path = m["path"]
        if m["host"].split(":")[0] != service.host and not path.startswith(public):
            continue
        found.append(
            {
                "time": m["time"],
                "method": m["method"],
                "path": path,
                "status": int(m["status"]),
                "ms": float(m["ms"]),
            }
        )
    return {"log": str(log), "requests": found[-RECENT_REQUESTS:]}
