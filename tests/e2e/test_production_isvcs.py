"""Production's isvcs served unmodified from an inference-services checkout: the light tier
(patterns A and B, outlink as production runs it today, and tts: ONNX Runtime, no torch) serves
every sample of its catalog entry on the local target, measured with `ml-sandbox coverage --run` as
a user runs it. The heavy entries (torch, TensorFlow, vLLM) are the `heavy` tier: `pytest -m heavy`
(the nightly workflow runs it).

Needs a checkout (SANDBOX_INFERENCE_SERVICES, else ../shared/inference-services); skipped
without one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.production_support import checkout

CHECKOUT = checkout()
if CHECKOUT is None:
    pytest.skip("no inference-services checkout", allow_module_level=True)

LIGHT = ["editing-suggestions", "outlink-topic-model", "langid", "tts", "article-country"]
HEAVY = [
    "edit-check",
    "jina-embeddings",
    "revise-tone-task-generator",
    "cope-a-9b",
    "revertrisk-wikidata",
]


def _coverage_run(
    tmp_path: Path, isvcs: list[str], target: str = "local", checkout: Path | None = None
) -> dict:
    results = tmp_path / "coverage.json"
    env = {**os.environ, "SANDBOX_RUN_DIR": str(tmp_path / "run")}
    env.pop("SANDBOX_GATEWAY_PORT", None)
    where = str(checkout or CHECKOUT)
    cmd = [sys.executable, "-m", "sandbox", "--inference-services", where, "coverage"]
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
@pytest.mark.docker
def test_article_country_serves_its_samples_on_docker(tmp_path) -> None:
    """Production's image from its Blubber v0.24.0 file; its code reaches http://<lang>.wikipedia.org
    and http://www.wikidata.org by name, which the replay container answers (--add-host)."""
    from tests.e2e.conftest import docker_answers

    if not docker_answers():
        pytest.skip("no Docker daemon")
    recorded = _coverage_run(tmp_path, ["article-country"], target="docker")
    assert recorded["article-country"]["ok"], recorded
    assert recorded["article-country"]["samples"] >= 10


@pytest.mark.e2e
@pytest.mark.heavy
@pytest.mark.parametrize("name", HEAVY)
def test_heavy_entries_serve_their_samples_on_local(tmp_path, name) -> None:
    result = _coverage_run(tmp_path, [name])[name]
    assert result["ok"], result


# logo-detection's pins as the checkout (bce944c) has them: kserve 0.11.2 (pydantic<2 through
# fastapi 0.95) and python/requirements.txt's pydantic-settings 2.8.1 (pydantic>=2.7).
LOGO_PINS = ("src/models/logo_detection/model_server/requirements.txt", "kserve==0.11.2")
SHARED_PINS = ("python/requirements.txt", "pydantic-settings==2.8.1")


def _pins(checkout: Path, where: tuple[str, str]) -> bool:
    path = checkout / where[0]
    return path.is_file() and where[1] in path.read_text().split()


@pytest.mark.e2e
def test_logo_detection_fails_to_build_as_productions_pipeline_would(tmp_path) -> None:
    """Blubber v0.22 resolves both requirement files together (no `no-deps`), and so does the
    local venv: the install fails on the same conflict, and the error says production's build
    fails too and names the image production runs."""
    if not (_pins(CHECKOUT, LOGO_PINS) and _pins(CHECKOUT, SHARED_PINS)):
        pytest.skip("this checkout's logo-detection pins are not the conflicting ones of bce944c")
    result = _coverage_run(tmp_path, ["logo-detection"])["logo-detection"]
    assert not result["ok"] and result["passed"] == 0, result
    assert "pydantic-settings==2.8.1" in result["error"], result["error"]
    assert "kserve==0.11.2" in result["error"], result["error"]
    assert "logo-detection in production: production's pipeline cannot build" in result["error"]


@pytest.mark.e2e
@pytest.mark.heavy
def test_logo_detection_serves_its_samples_once_its_pins_resolve(tmp_path) -> None:
    """TensorFlow 2.16.1 CPU and Keras 3.2.1: the `.keras` stand-in, built in the isvc's venv, is
    read by production's own `keras.models.load_model` and answers every sample, errors included.
    The checkout is copied and its python/requirements.txt loses the one pin kserve 0.11.2 cannot
    share a venv with (pydantic-settings, which no logo-detection code imports); production's
    running image was built before that pin (see the entry's production.blocked)."""
    if not _pins(CHECKOUT, LOGO_PINS):
        pytest.skip("this checkout's logo-detection does not pin kserve 0.11.2")
    copy = tmp_path / "inference-services"
    shutil.copytree(CHECKOUT, copy, ignore=shutil.ignore_patterns(".git"))
    shared = copy / SHARED_PINS[0]
    kept = [ln for ln in shared.read_text().splitlines() if not ln.startswith("pydantic-settings")]
    shared.write_text("\n".join(kept) + "\n")
    result = _coverage_run(tmp_path, ["logo-detection"], checkout=copy)["logo-detection"]
    assert result["ok"], result
    assert result["passed"] == result["samples"] >= 9, result
