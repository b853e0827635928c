"""The reference isvcs against production's code: the same requests to production's langid and
outlink-topic-model, served unmodified by the sandbox from an inference-services checkout, and to
services/<isvc>, with the same model, pins and MediaWiki fixtures, give the same status and JSON;
the exceptions are the differences the README lists (bad input that production answers with a 500
from an exception is a 400 here).

Production's side is the catalog's own entries (services/production/langid and
outlink-topic-model, served with `--inference-services`): one description of production, not two.
Needs a checkout of wikimedia/machinelearning-liftwing-inference-services (bce944c was compared)
outside this repository: SANDBOX_INFERENCE_SERVICES, else ../shared/inference-services beside the
repository. Skipped without one; no production code enters this repository.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox import catalog
from sandbox.runtime.processes import free_port
from tests.e2e.conftest import Sandbox
from tests.production_support import checkout

pytestmark = pytest.mark.e2e

CHECKOUT = checkout()
if CHECKOUT is None or not (CHECKOUT / "src/models/langid/model.py").is_file():
    pytest.skip(
        "set SANDBOX_INFERENCE_SERVICES to an inference-services checkout to compare with "
        "production's code",
        allow_module_level=True,
    )

# Production's code (services/production/<isvc>): one pod for outlink since 2025.
PRODUCTION = ["langid", "outlink-topic-model"]

LANGID_SAME = [
    {"text": "The quick brown fox jumps over the lazy dog while the children watch."},
    {"text": "Le petit chat\n\tdort sur le canapé\r\n  pendant que les enfants jouent."},
    {"text": "The weather is nice today and we walk along the river to the old bridge. " * 3},
    {"text": "hello"},
    {"text": ""},
    {"text": "  \n\t "},
    {"txt": "hello"},
    {"text": 42},
    {"text": 0},
    {"text": ["a"]},
    {"text": None},
    {"text": "x" * 5000},
    '{"text": ',
]
LANGID_OURS_400 = [[1, 2], '"just a string"']

OUTLINK_SAME = [
    {"lang": "en", "page_title": "Toni Morrison", "threshold": 0.3},
    {"lang": "en", "page_title": "Toni Morrison"},
    {"lang": "en", "page_id": 43165},
    {"lang": "en", "page_id": "43165"},
    {"wiki_id": "enwiki", "page_title": "Toni Morrison"},
    {"wiki_id": "nowiki_x", "page_title": "Toni Morrison"},
    {"lang": "en", "page_title": "Toni Morrison", "debug": True},
    {"lang": "en", "page_title": "Toni Morrison", "threshold": 1},
    {"lang": "en", "page_title": "Toni Morrison", "threshold": "high"},
    {"lang": "en", "page_title": "Chloe Wofford"},
    {"lang": "en", "page_title": "Sodium chloride"},
    {"lang": "en", "page_title": "This page does not exist at all"},
    {"lang": "en", "page_id": 999999901},
    {"lang": "en", "page_id": 900000001},
    {"lang": "en", "page_id": 900000002, "debug": True},
    {
        "lang": "en",
        "page_title": "Sandbox edge case (many outlinks)",
        "revision_id": 1900000002,
        "threshold": 0.1,
    },
    {"lang": "en", "page_id": 900000002, "revision_id": 1999999901},
    {"lang": "en", "revision_id": 1900000002},
    {"lang": "en", "page_title": "Toni Morrison", "page_id": 43165},
    {"lang": "en"},
    {"page_title": "Toni Morrison"},
    {"lang": 5, "page_title": "Toni Morrison"},
    {"lang": "en", "features_str": "Q5 Q36180", "page_id": 5},
    '{"lang": "en", "page_title": ',
]
OUTLINK_OURS_400 = [
    {"lang": "en\n", "page_title": "Toni Morrison"},
    {"lang": "xx-not-a-wiki", "page_title": "Toni Morrison"},
    {"lang": "en", "page_id": {"a": 1}},
    {"lang": "en", "features_str": "Q1\nQ2", "page_id": 5},
    [1, 2],
]


def _up(run_dir: Path, *extra: str) -> tuple[Sandbox, dict]:
    port = free_port()
    env = {**os.environ, "SANDBOX_RUN_DIR": str(run_dir)}
    cmd = [sys.executable, "-m", "sandbox", *extra, "up", *PRODUCTION, "--port", str(port)]
    proc = subprocess.run(
        [*cmd, "--mediawiki", "replay"], env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return Sandbox("local", f"http://127.0.0.1:{port}", None), env


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("parity")
    ours, ours_env = _up(tmp / "ours")
    try:
        prod, prod_env = _up(tmp / "prod", "--inference-services", str(CHECKOUT))
    except BaseException:
        subprocess.run([sys.executable, "-m", "sandbox", "down"], env=ours_env, check=False)
        raise
    yield ours, prod
    for env in (ours_env, prod_env):
        subprocess.run([sys.executable, "-m", "sandbox", "down"], env=env, capture_output=True)


def _send(sb: Sandbox, name: str, case) -> tuple[int, object]:
    body = case if isinstance(case, str) else json.dumps(case)
    resp = sb.post(catalog.get(name), body.encode())
    try:
        return resp.status, resp.json()
    except ValueError:
        return resp.status, resp.body


def _without_replay_port(answer: tuple[int, object]) -> tuple[int, object]:
    """The stock server's 500 for a failed title lookup names the replay server's URL, whose
    port differs between the two sandboxes."""
    status, body = answer
    if isinstance(body, dict) and "127.0.0.1:" in str(body.get("error", "")):
        head, _, rest = body["error"].partition("127.0.0.1:")
        body = {"error": head + "127.0.0.1:PORT" + rest.lstrip("0123456789")}
    return status, body


@pytest.mark.parametrize(
    ("name", "same", "ours_400"),
    [
        ("langid", LANGID_SAME, LANGID_OURS_400),
        ("outlink-topic-model", OUTLINK_SAME, OUTLINK_OURS_400),
    ],
)
def test_same_status_and_json_as_production(pair, name, same, ours_400):
    ours, prod = pair
    for case in same:
        got, want = _send(ours, name, case), _send(prod, name, case)
        assert _without_replay_port(got) == _without_replay_port(want), case
    for case in ours_400:
        got, want = _send(ours, name, case), _send(prod, name, case)
        assert got[0] == 400 and want[0] == 500, (case, got, want)
