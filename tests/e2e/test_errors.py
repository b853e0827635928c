"""Bad input and faults, through the ingress on each target: clear 4xx/5xx JSON, never a crash."""

from __future__ import annotations

import json
import urllib.request

import pytest

pytestmark = pytest.mark.e2e

TONI = json.dumps({"lang": "en", "page_title": "Toni Morrison", "threshold": 0.3}).encode()


def test_unknown_host_is_404(sandbox, services):
    resp = sandbox.post(services["langid"], b"{}", host="nope.llm.wikimedia.org")
    assert resp.status == 404
    assert "nope.llm.wikimedia.org" in resp.json()["error"]


@pytest.mark.parametrize("isvc", ["langid", "outlink-topic-model"])
def test_body_over_limit_is_413(sandbox, services, isvc):
    big = json.dumps({"text": "a" * (2 * 1024 * 1024)}).encode()
    resp = sandbox.post(services[isvc], big)
    assert resp.status == 413
    assert "larger than" in resp.json()["error"]


def test_wrong_model_name_is_404(sandbox, services):
    svc = services["langid"]
    resp = sandbox.post(svc, b'{"text": "hello"}', host=svc.host)
    assert resp.status == 200
    other = type("S", (), {"predict_path": "/v1/models/nope:predict", "host": svc.host})()
    resp = sandbox.post(other, b'{"text": "hello"}')
    assert resp.status == 404


@pytest.mark.parametrize(
    ("fault", "status", "words"),
    [
        ({"mode": "error500"}, 502, "500"),
        ({"mode": "malformed"}, 502, "JSON"),
        ({"mode": "reset"}, 502, ""),
        ({"mode": "apierror"}, 502, ""),
        ({"mode": "slow", "delay_s": 30}, 504, "5"),
    ],
    ids=["error500", "malformed", "reset", "apierror", "slow"],
)
def test_mediawiki_faults_are_502_504_and_service_recovers(sandbox, services, fault, status, words):
    svc = services["outlink-topic-model"]
    sandbox.set_fault(**fault)
    try:
        resp = sandbox.post(svc, TONI)
        assert resp.status == status, resp.body
        assert words in resp.json()["error"]
    finally:
        sandbox.set_fault(mode="none")
    ok = sandbox.post(svc, TONI)
    assert ok.status == 200, ok.body
    assert ok.json()["prediction"]["results"]


def test_outlinks_follow_continuation(sandbox, services):
    """Toni Morrison's outlinks span several API pages: the transformer follows `continue`."""
    if sandbox.mediawiki_url is None:
        pytest.skip(f"the replay server is not reachable from the tests on {sandbox.target}")
    resp = sandbox.post(services["outlink-topic-model"], TONI)
    assert resp.status == 200
    with urllib.request.urlopen(f"{sandbox.mediawiki_url}/__replay__/requests") as r:
        log = json.loads(r.read())["requests"]
    assert any("gplcontinue" in json.dumps(entry) for entry in log), log[-3:]


def test_predictions_differ_by_article(sandbox, services):
    """The model really reads the outlinks: a different article gets different topics."""
    svc = services["outlink-topic-model"]
    first = sandbox.post(svc, TONI).json()["prediction"]["results"][0]["topic"]
    assert first == "Culture.Biography.Biography*"
    salt = json.dumps({"lang": "en", "page_title": "Sodium chloride"}).encode()
    topics = [r["topic"] for r in sandbox.post(svc, salt).json()["prediction"]["results"]]
    assert topics and topics[0].startswith("STEM.") and "Culture.Biography.Biography*" not in topics
    redirect = json.dumps({"lang": "en", "page_title": "Chloe Wofford"}).encode()
    resp = sandbox.post(svc, redirect)
    assert resp.status == 200, resp.body
    assert resp.json()["prediction"]["article"].endswith("/Toni_Morrison")
