"""Every sample of every service.yaml, through the ingress with the Host header, on each target."""

from __future__ import annotations

import pytest

from sandbox import catalog
from sandbox.checks import evaluate

pytestmark = pytest.mark.e2e

SAMPLES = [(s.name, x.name) for s in catalog.load_all().values() for x in s.samples]


@pytest.mark.parametrize(("isvc", "sample"), SAMPLES, ids=[f"{i}/{s}" for i, s in SAMPLES])
def test_sample(sandbox, services, isvc, sample):
    service = services[isvc]
    spec = service.sample(sample)
    resp = sandbox.post(service, spec.body())
    assert evaluate(spec, resp.status, resp.body) == []
