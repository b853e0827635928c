"""Requests to an isvc the way Lift Wing's clients send them, and the samples' checks.

Every target smoke-tests through this module: the local and docker targets through the gateway,
the minikube target through the Istio ingress. `ml-sandbox predict` uses it too.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request

from sandbox.catalog import Sample, Service
from sandbox.checks import evaluate
from sandbox.errors import RunError

TIMEOUT_S = 120


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


def run(base_url: str, services: list[Service], timeout_s: float = TIMEOUT_S) -> int:
    """Send every sample of every service; the number of samples that failed their checks."""
    failed = 0
    for service in services:
        for sample in service.samples:
            status, payload = post(base_url, service, sample.body(), timeout_s)
            failed += not report(service, sample, status, payload, quiet=True)
    return failed
