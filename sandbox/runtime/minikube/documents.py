"""Reading the cluster's documents (`kubectl get ... -o json`): readiness, revisions, status rows,
which container logs to show, which events matter. Pure functions, tested on recorded documents.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sandbox.runtime.targets import ComponentStatus

# KServe's defaulting webhook renames the single custom container to this.
KSERVE_CONTAINER = "kserve-container"


@dataclass(frozen=True)
class Condition:
    type: str
    status: str
    reason: str = ""
    message: str = ""

    def line(self) -> str:
        text = f"{self.type:<28} {self.status:<8} {self.reason}"
        return f"{text}  {self.message}".rstrip() if self.message else text.rstrip()


def conditions(isvc: Mapping[str, Any]) -> list[Condition]:
    return [
        Condition(
            type=c.get("type", "?"),
            status=c.get("status", "Unknown"),
            reason=c.get("reason", ""),
            message=c.get("message", ""),
        )
        for c in (isvc.get("status") or {}).get("conditions") or []
    ]


def is_ready(isvc: Mapping[str, Any]) -> bool:
    """Ready=True for the spec we applied (the status has caught up with the generation)."""
    status = isvc.get("status") or {}
    generation = (isvc.get("metadata") or {}).get("generation")
    observed = status.get("observedGeneration")
    if generation is not None and observed is not None and observed < generation:
        return False
    return any(c.type == "Ready" and c.status == "True" for c in conditions(isvc))


def generation(isvc: Mapping[str, Any] | None) -> int | None:
    if not isvc:
        return None
    return (isvc.get("metadata") or {}).get("generation")


def latest_revisions(isvc: Mapping[str, Any]) -> dict[str, str]:
    """Component -> latest created Knative revision, from the isvc status."""
    comps = (isvc.get("status") or {}).get("components") or {}
    return {
        name: c["latestCreatedRevision"]
        for name, c in comps.items()
        if isinstance(c, dict) and c.get("latestCreatedRevision")
    }


def component_statuses(isvc_list: Mapping[str, Any]) -> list[ComponentStatus]:
    """`ml-sandbox status` rows from `kubectl get isvc -A -o json`."""
    rows = []
    for item in isvc_list.get("items") or []:
        meta = item.get("metadata") or {}
        conds = {c.type: c for c in conditions(item)}
        comps = (item.get("status") or {}).get("components") or {}
        for name in ("predictor", "transformer"):
            if name not in (item.get("spec") or {}):
                continue
            cond = conds.get(f"{name.capitalize()}Ready")
            state = "ready" if cond and cond.status == "True" else "not ready"
            comp = comps.get(name) or {}
            rows.append(
                ComponentStatus(
                    target="minikube",
                    isvc=meta.get("name", "?"),
                    component=name,
                    state=state,
                    address=comp.get("url") or f"{meta.get('namespace', '?')}/{meta.get('name')}",
                    detail=(cond.message or cond.reason) if cond and cond.status != "True" else "",
                )
            )
    return rows


@dataclass(frozen=True)
class LogTarget:
    pod: str
    container: str
    previous: bool  # the container restarted: its last run's log says why


def log_targets(pods: Mapping[str, Any]) -> list[LogTarget]:
    """Every init and app container of the isvc's pods (storage-initializer first)."""
    targets = []
    for pod in pods.get("items") or []:
        name = (pod.get("metadata") or {}).get("name", "?")
        status = pod.get("status") or {}
        spec = pod.get("spec") or {}
        restarts = {
            s.get("name"): int(s.get("restartCount") or 0)
            for s in (status.get("initContainerStatuses") or [])
            + (status.get("containerStatuses") or [])
        }
        for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
            cname = c.get("name", "?")
            targets.append(LogTarget(name, cname, previous=restarts.get(cname, 0) > 0))
    return targets


def relevant_events(events: Mapping[str, Any], isvc: str) -> list[str]:
    """Events of the isvc and of the objects KServe and Knative make for it, oldest first."""
    rows = []
    for e in events.get("items") or []:
        obj = e.get("involvedObject") or {}
        name = obj.get("name", "")
        if name != isvc and not name.startswith(f"{isvc}-"):
            continue
        when = e.get("lastTimestamp") or e.get("eventTime") or e.get("firstTimestamp") or ""
        rows.append(
            (
                when,
                f"{when}  {e.get('type', ''):<8} {obj.get('kind', '')}/{name}: "
                f"{e.get('reason', '')}: {e.get('message', '').strip()}",
            )
        )
    return [text for _, text in sorted(rows)]
