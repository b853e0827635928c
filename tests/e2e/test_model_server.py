"""A model server on the sandbox's optional serving helpers (sandbox.serving), on its own:
binding, limits, a busy event loop. The server is tests/e2e/serving_langid.py."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import aiohttp
import pytest

from sandbox import catalog, models
from sandbox.runtime.processes import free_port

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def langid_server(tmp_path_factory):
    svc = catalog.get("langid")
    models_dir = tmp_path_factory.mktemp("models")
    models.stage(svc, models_dir)
    port = free_port()
    proc = subprocess.Popen(
        [
            *(sys.executable, str(Path(__file__).with_name("serving_langid.py"))),
            *("--model_name", "langid", "--http_port", str(port)),
        ],
        env={
            **os.environ,
            "MODEL_PATH": str(models_dir / svc.model.file),
            "MAX_BODY_BYTES": "3000000",
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/v1/models/langid", timeout=1):
                break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
            time.sleep(0.1)
    yield url, port
    proc.terminate()
    proc.wait(15)


def test_binds_loopback_only(langid_server):
    _, port = langid_server
    out = subprocess.run(["ss", "-ltn"], capture_output=True, text=True).stdout
    lines = [line for line in out.splitlines() if f":{port} " in line]
    assert lines and all("127.0.0.1:" in line for line in lines)


def test_body_limit_is_413_json(langid_server):
    url, _ = langid_server

    async def go():
        async with aiohttp.ClientSession() as s:
            body = json.dumps({"text": "a" * 3_100_000})
            async with s.post(f"{url}/v1/models/langid:predict", data=body) as r:
                return r.status, await r.json()

    status, body = asyncio.run(go())
    assert status == 413
    assert "3000000 bytes" in body["error"]


def test_health_answers_while_a_big_prediction_runs(langid_server):
    """A big input runs in a worker process: readiness is answered while it is still running
    (inline, the loop would be blocked and readiness would come second)."""
    url, _ = langid_server
    text = "Le petit chat dort sur le canapé pendant que les enfants jouent. " * 40_000
    order: list[str] = []

    async def predict(s):
        async with s.post(f"{url}/v1/models/langid:predict", json={"text": text}) as r:
            assert r.status == 200
            assert (await r.json())["language"] == "fra_Latn"
            order.append("predict")

    async def health(s):
        await asyncio.sleep(0.1)  # the prediction is under way by then
        async with s.get(f"{url}/v1/models/langid") as r:
            assert r.status == 200
            order.append("health")

    async def go():
        async with aiohttp.ClientSession() as s:
            await asyncio.gather(predict(s), health(s))

    asyncio.run(go())
    assert order == ["health", "predict"]
