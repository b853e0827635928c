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


# The outlink transformer's answer when MediaWiki fails for good (production's message,
# wikimedia/machinelearning-liftwing-inference-services@bce944c:
# src/models/outlink_topic_model/model_server/model.py).
MW_FAILED = "An unexpected error has occurred while trying to get outlinks from MW API."
TONI_BY_ID = json.dumps({"lang": "en", "page_id": 43165, "threshold": 0.3}).encode()


@pytest.mark.parametrize(
    "fault",
    [
        {"mode": "error500"},
        {"mode": "malformed"},
        {"mode": "reset"},
        {"mode": "apierror"},
        {"mode": "slow", "delay_s": 30},
    ],
    ids=["error500", "malformed", "reset", "apierror", "slow"],
)
def test_mediawiki_failures_are_production_500_and_service_recovers(sandbox, services, fault):
    """A MediaWiki that keeps failing (after MW_API_MAX_RETRIES retries of the transient
    failures; slow: AIOHTTP_CLIENT_TIMEOUT each) is production's 500 with its message."""
    svc = services["outlink-topic-model"]
    sandbox.set_fault(**fault)
    try:
        resp = sandbox.post(svc, TONI_BY_ID)
        assert resp.status == 500, resp.body
        assert resp.json()["error"].startswith(MW_FAILED)
    finally:
        sandbox.set_fault(mode="none")
    ok = sandbox.post(svc, TONI_BY_ID)
    assert ok.status == 200, ok.body
    assert ok.json()["prediction"]["results"]


@pytest.mark.parametrize("mode", ["error500", "reset", "apierror"])
def test_transient_mediawiki_failures_are_retried(sandbox, services, mode):
    """Two transient failures in a row, then MediaWiki answers: MW_API_MAX_RETRIES (2) covers
    them and the client gets its prediction."""
    svc = services["outlink-topic-model"]
    sandbox.set_fault(mode=mode, times=2)
    try:
        resp = sandbox.post(svc, TONI_BY_ID)
    finally:
        sandbox.set_fault(mode="none")
    assert resp.status == 200, resp.body
    assert resp.json()["prediction"]["results"][0]["topic"] == "Culture.Biography.Biography*"


def test_a_malformed_answer_is_not_retried(sandbox, services):
    """Not JSON is no transient failure: one bad answer is enough for a 500."""
    svc = services["outlink-topic-model"]
    sandbox.set_fault(mode="malformed", times=1)
    try:
        resp = sandbox.post(svc, TONI_BY_ID)
    finally:
        sandbox.set_fault(mode="none")
    assert resp.status == 500, resp.body
    assert resp.json()["error"].startswith(MW_FAILED)


def test_outlinks_follow_continuation(sandbox, services):
    """Toni Morrison's outlinks span several API pages: the transformer follows `continue`."""
    if sandbox.mediawiki_url is None:
        pytest.skip(f"the replay server is not reachable from the tests on {sandbox.target}")
    resp = sandbox.post(services["outlink-topic-model"], TONI)
    assert resp.status == 200
    with urllib.request.urlopen(f"{sandbox.mediawiki_url}/__replay__/requests") as r:
        log = json.loads(r.read())["requests"]
    assert any("gplcontinue" in json.dumps(entry) for entry in log), log[-3:]
    # Production's query: 500 links a request (the replay server caps it lower, so that the
    # fixtures need continuation), formatversion 2, its User-Agent.
    links = [e for e in log if e["params"].get("generator") == "links"]
    assert links and all(e["params"]["gpllimit"] == "500" for e in links)
    assert all(e["params"]["formatversion"] == "2" for e in links)
    assert all(e["user_agent"] == "WMF ML Team outlink-topic-model svc" for e in links)


def test_outlinks_stop_after_about_1000(sandbox, services):
    """A page with 1,100 linked items: the transformer stops asking once it has more than 1,000,
    as production does (21 pages of 50 here, not the 22 that list all of them)."""
    if sandbox.mediawiki_url is None:
        pytest.skip(f"the replay server is not reachable from the tests on {sandbox.target}")

    def requests_for_page() -> int:
        with urllib.request.urlopen(f"{sandbox.mediawiki_url}/__replay__/requests") as r:
            log = json.loads(r.read())["requests"]
        return sum(1 for e in log if e["params"].get("pageids") == "900000002")

    before = requests_for_page()
    body = json.dumps({"lang": "en", "page_id": 900000002, "debug": True}).encode()
    resp = sandbox.post(services["outlink-topic-model"], body)
    assert resp.status == 200, resp.body
    assert requests_for_page() - before == 21


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
    # As production: the title is looked up without following the redirect, the outlinks query
    # follows it (`redirects`), and the article URL keeps the title as sent.
    assert resp.json()["prediction"]["article"] == "https://en.wikipedia.org/wiki/Chloe Wofford"
    assert resp.json()["prediction"]["results"][0]["topic"] == "Culture.Biography.Biography*"


def test_predict_names_the_mediawiki_answer_that_is_missing(sandbox, services):
    """A page the fixtures do not have: the isvc answers with production's error, and
    `ml-sandbox predict` says which MediaWiki request was missing and how to record it."""
    if sandbox.target not in ("local", "docker"):
        pytest.skip("predict reads the replay server from this machine's state")
    from tests.e2e.conftest import cli

    data = json.dumps({"lang": "en", "page_title": "Douglas Adams", "threshold": 0.3})
    proc = cli("predict", "outlink-topic-model", "--data", data, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert (
        "MediaWiki answer missing: GET en.wikipedia.org/w/api.php?action=query&format=json"
        "&titles=Douglas Adams; record it with "
    ) in proc.stderr, proc.stderr
