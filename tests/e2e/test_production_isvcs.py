"""Production's isvcs served unmodified from an inference-services checkout: the light tier
(patterns A and B, outlink as production runs it today) serves every sample of its catalog entry on
the local target, measured with `ml-sandbox coverage --run` as a user runs it. The heavy entries
(torch, TensorFlow, vLLM) are the `heavy` tier: `pytest -m heavy` (the nightly workflow runs it).

Needs a checkout (SANDBOX_INFERENCE_SERVICES, else ../shared/inference-services); skipped
without one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.production_support import checkout

CHECKOUT = checkout()
if CHECKOUT is None:
    pytest.skip("no inference-services checkout", allow_module_level=True)

LIGHT = ["editing-suggestions", "outlink-topic-model", "langid"]
HEAVY = ["edit-check", "jina-embeddings", "revertrisk-wikidata"]


def _coverage_run(tmp_path: Path, isvcs: list[str], target: str = "local") -> dict:
    results = tmp_path / "coverage.json"
    env = {**os.environ, "SANDBOX_RUN_DIR": str(tmp_path / "run")}
    env.pop("SANDBOX_GATEWAY_PORT", None)
    cmd = [sys.executable, "-m", "sandbox", "--inference-services", str(CHECKOUT), "coverage"]
    cmd += ["--run", "--target", target, "--results", str(results), *isvcs]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(results.read_text())[target]


@pytest.mark.e2e
def test_light_entries_serve_their_samples_on_local(tmp_path) -> None:
    recorded = _coverage_run(tmp_path, LIGHT)
    for name in LIGHT:
        result = recorded[name]
        assert result["ok"], (name, result)
        assert result["passed"] == result["samples"] >= 10, (name, result)


@pytest.mark.e2e
@pytest.mark.docker
def test_outlink_serves_its_samples_on_docker(tmp_path) -> None:
    """Production's image from production's Blubber file (v0.21), started as its pod is."""
    from tests.e2e.conftest import docker_answers

    if not docker_answers():
        pytest.skip("no Docker daemon")
    recorded = _coverage_run(tmp_path, ["outlink-topic-model"], target="docker")
    assert recorded["outlink-topic-model"]["ok"], recorded


@pytest.mark.e2e
@pytest.mark.heavy
@pytest.mark.parametrize("name", HEAVY)
def test_heavy_entries_serve_their_samples_on_local(tmp_path, name) -> None:
    result = _coverage_run(tmp_path, [name])[name]
    assert result["ok"], result
