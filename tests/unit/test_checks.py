"""Sample checks: each kind of assertion passes when it should and fails when it should."""

from __future__ import annotations

import json

import pytest

from sandbox.catalog import Sample
from sandbox.checks import evaluate

pytestmark = pytest.mark.unit


def _sample(*checks, status=200) -> Sample:
    return Sample.model_validate(
        {"name": "s", "data": {}, "expect": {"status": status, "checks": list(checks)}}
    )


BODY = json.dumps(
    {
        "prediction": {
            "article": "https://en.wikipedia.org/wiki/X",
            "results": [{"topic": "A", "score": 0.9}, {"topic": "B", "score": 0.4}],
        },
        "flag": True,
    }
)


@pytest.mark.parametrize(
    "check",
    [
        {"path": "prediction.results.0.topic", "equals": "A"},
        {"path": "prediction.results.1.topic", "one_of": ["B", "C"]},
        {"path": "prediction.article", "contains": "wiki/X"},
        {"path": "prediction.results", "type": "list"},
        {"path": "prediction.results", "min_items": 2},
        {"path": "prediction.results.0.score", "gte": 0.5},
        {"path": "prediction.results.0.score", "lte": 1},
        {"path": "prediction.results", "sorted_desc_by": "score"},
        {"path": "flag", "type": "boolean"},
    ],
)
def test_passing_checks(check):
    assert evaluate(_sample(check), 200, BODY) == []


@pytest.mark.parametrize(
    ("check", "words"),
    [
        ({"path": "prediction.results.0.topic", "equals": "B"}, "expected 'B'"),
        ({"path": "prediction.results.1.topic", "one_of": ["C"]}, "not one of"),
        ({"path": "prediction.article", "contains": "nope"}, "does not contain"),
        ({"path": "flag", "type": "number"}, "expected a number"),
        ({"path": "prediction.results", "min_items": 3}, "at least 3"),
        ({"path": "prediction.results.1.score", "gte": 0.5}, ">= 0.5"),
        ({"path": "prediction.results.0.score", "lte": 0.5}, "<= 0.5"),
        ({"path": "prediction.results", "sorted_desc_by": "topic"}, "not sorted"),
        ({"path": "prediction.nothing", "equals": 1}, "missing"),
    ],
)
def test_failing_checks(check, words):
    failures = evaluate(_sample(check), 200, BODY)
    assert len(failures) == 1 and words in failures[0]


def test_status_mismatch_and_non_json():
    assert "expected 400, got 200" in evaluate(_sample(status=400), 200, BODY)[0]
    assert any("not JSON" in f for f in evaluate(_sample(), 200, b"<html>"))


def test_check_must_assert_something():
    with pytest.raises(ValueError, match="asserts nothing"):
        _sample({"path": "x"})
