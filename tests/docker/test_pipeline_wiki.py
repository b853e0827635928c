"""`ml-sandbox pipeline --mediawiki replay` (the default) with real containers: production's
outlink unit-test stage runs green offline, its calls to https://fi.wikipedia.org and
https://en.wikipedia.org answered by the MediaWiki replay server (a per-run CA the container
trusts through SSL_CERT_FILE; no change to the isvc's code or tests); a request no fixture has
fails the step, and the step's notes name it.

Offline, without the replay server (`--mediawiki live`), the same stage gives 71 passed, 4 failed:
`test_outlink_model.py::test_get_outlinks[9457-fi-expected0]` and the three
`test_v2_protocol.py::TestPreprocessProtocolDetection` tests call the wikis
(inference-services@bce944c:test/unit/outlink_topic_model/). tox passes SSL_CERT_FILE on to its
test envs (tox 4.67.16, the test variant's: `tox/tox_env/api.py` `_default_pass_env`).
pytest's per-test results do not reach the output (tox passes no PYTEST_ADDOPTS), so the test
counts 75 passed and the requests the replay server answered per wiki."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sandbox import cli
from sandbox.docker_cli import docker
from sandbox.paths import REPO_ROOT

pytestmark = pytest.mark.docker

CHECKOUT = REPO_ROOT.parent / "shared" / "inference-services"

BLUBBER = """\
# syntax=docker-registry.wikimedia.org/repos/releng/blubber/buildkit:v1.5.1
version: v4
base: docker-registry.wikimedia.org/bookworm:20260816
runs:
  insecurely: true
lives:
  in: /srv/app
variants:
  test:
    apt: {packages: [python3]}
    copies:
      - from: local
        source: wiki.py
        destination: wiki.py
    entrypoint: [python3, wiki.py]
"""

CONFIG = """\
pipelines:
  wiki:
    blubberfile: wiki/blubber.yaml
    stages:
      - name: run-test
        build: test
        run: true
"""

# A unit test of its own kind: the standard library's HTTPS client, as an isvc's test would call
# a wiki; one request the fixtures hold, one they do not.
SCRIPT = """\
import json, sys, urllib.error, urllib.request

def get(query):
    url = "https://fi.wikipedia.org/w/api.php?" + query
    request = urllib.request.Request(url, headers={"User-Agent": "ml-sandbox test"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)

status, body = get("action=query&format=json&formatversion=2&generator=links&prop=pageprops"
                   "&ppprop=wikibase_item&gplnamespace=0&gpllimit=500&pageids=9457")
print("with fixture:", status, len(body["query"]["pages"]), flush=True)
status, body = get("action=query&format=json&pageids=424242")
print("without fixture:", status, body["error"]["code"], flush=True)
sys.exit(0 if status == 200 else 1)
"""


def _leftovers(token: str) -> list[str]:
    containers = docker("ps", "-a", "--format", "{{.Names}}").stdout.split()
    networks = docker("network", "ls", "--format", "{{.Name}}").stdout.split()
    return [n for n in [*containers, *networks] if token in n]


@pytest.mark.skipif(not CHECKOUT.is_dir(), reason="../shared/inference-services is not here")
@pytest.mark.timeout(2400)  # a cold build of outlink's test variant, then tox installs its deps
def test_outlink_unit_tests_pass_through_the_replay_server(docker_ready, capsys) -> None:
    before = _leftovers("ml-sandbox-pipeline-wiki-")
    args = ["pipeline", "outlink", "--source", str(CHECKOUT), "--stage", "run-test"]
    code = cli.main([*args, "--skip-lint"])
    out = capsys.readouterr().out
    assert code == 0, out[-4000:]
    # pytest's last line: "===== 75 passed in 9.87s =====", no failure (71 passed, 4 failed
    # without the replay server).
    assert re.search(r"│ =+ 75 passed in [\d.]+s =+$", out, re.MULTILINE), out[-4000:]
    # The 4 tests that call the wikis reached the replay server: fi once, en once per test.
    assert "requests it answered: en.wikipedia.org 3, fi.wikipedia.org 1" in out
    assert "has no fixture for" not in out
    assert "pipeline passed" in out
    assert _leftovers("ml-sandbox-pipeline-wiki-") == before  # container and network removed


def test_a_request_without_fixture_fails_the_step_and_is_named(
    docker_ready, tmp_path: Path, capsys
) -> None:
    root = tmp_path / "repo"
    (root / ".pipeline" / "wiki").mkdir(parents=True)
    (root / ".pipeline" / "wiki" / "blubber.yaml").write_text(BLUBBER)
    (root / ".pipeline" / "config.yaml").write_text(CONFIG)
    (root / "wiki.py").write_text(SCRIPT)
    assert cli.main(["pipeline", "wiki", "--source", str(root)]) == 1
    out = capsys.readouterr().out
    assert "│ with fixture: 200 206" in out  # TLS verified against the run's CA
    assert "│ without fixture: 501 replay-not-in-fixtures" in out
    assert "the MediaWiki replay server has no fixture for: GET fi.wikipedia.org/w/api.php" in out
    assert "pageids=424242" in out
    assert "pipeline FAILED (run-test)" in out
