"""Requests to an isvc the way Lift Wing's clients send them, and the samples' checks.

Written once over a target's ingress URL (`Target.ingress_url()`): the gateway for the local and
docker targets, the Istio ingress for minikube. `ml-sandbox predict` and `deploy` use it.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import TYPE_CHECKING

from sandbox.catalog import Sample, Service
from sandbox.checks import evaluate
from sandbox.errors import RunError

if TYPE_CHECKING:
    from sandbox.runtime.targets import Target

TIMEOUT_S = 120
# Answers that mean "not serving yet" while a route is programmed or a pod scales from zero.
NOT_YET = (0, 502, 503)
SETTLE_POLL_S = 3.0


def post(base_url: str, service: Service, body: bytes, timeout_s: float = TIMEOUT_S):
    """POST `body` to the isvc's predict path at `base_url` with its Host header.
    Returns (status, body); a connection failure is a RunError naming the address."""
    req = urllib.request.Request(
        base_url + service.predict_path,
        data=body,
        headers={"Host": service.host, "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, OSError) as e:
        raise RunError(f"cannot reach {base_url}: {getattr(e, 'reason', e)}") from None


def report(
    service: Service, sample: Sample | None, status: int, payload: bytes, quiet: bool = False
) -> bool:
    """Print the answer (and, for a sample, its checks); True when it is what was expected."""
    try:
        pretty = json.dumps(json.loads(payload), indent=None if quiet else 2, ensure_ascii=False)
    except ValueError:
        pretty = payload.decode(errors="replace")
    if sample is None:
        print(pretty)
        ok = 200 <= status < 300
        if not ok:
            print(f"HTTP {status}", file=sys.stderr)
        return ok
    failures = evaluate(sample, status, payload)
    mark = "✓" if not failures else "✗"
    shown = pretty[:200] if quiet else pretty
    print(f"{mark} {service.name}/{sample.name}: HTTP {status} {shown}")
    for f in failures:
        print(f"    {f}", file=sys.stderr)
    return not failures


def send(
    base_url: str, service: Service, sample: Sample, timeout_s: float, settle_s: float
) -> tuple[int, bytes]:
    """POST a sample; for `settle_s`, an answer that means "not serving yet" (no connection,
    502, 503) is retried, unless that is what the sample expects."""
    deadline = time.monotonic() + settle_s
    while True:
        try:
            status, payload = post(base_url, service, sample.body(), timeout_s)
        except RunError as e:
            status, payload = 0, str(e).encode()
        settled = status not in NOT_YET or status == sample.expect.status
        if settled or time.monotonic() >= deadline:
            if status == 0:
                raise RunError(payload.decode())
            return status, payload
        time.sleep(SETTLE_POLL_S)


def run(
    base_url: str,
    services: list[Service],
    timeout_s: float = TIMEOUT_S,
    *,
    settle_s: float = 0.0,
    diagnostics: Callable[[Service], str] | None = None,
) -> int:
    """Send every sample of every service; the number of samples that failed their checks.
    `diagnostics(service)` is printed for an isvc with a failed sample."""
    failed = 0
    for service in services:
        before = failed
        for sample in service.samples:
            status, payload = send(base_url, service, sample, timeout_s, settle_s)
            failed += not report(service, sample, status, payload, quiet=True)
        if failed > before and diagnostics is not None:
            print(diagnostics(service), file=sys.stderr)
    return failed


def run_on(target: Target, services: list[Service]) -> int:
    """`run` over a target's ingress, with its settle time and diagnostics: what `deploy` and
    `dev` check after a roll-out, on every target alike."""
    return run(
        target.ingress_url(), services, settle_s=target.settle_s, diagnostics=target.diagnostics
    )
