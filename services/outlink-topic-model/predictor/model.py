"""outlink-topic-model predictor: article topics from the Wikidata items an article links to.

A plain kserve isvc on production's pins (kserve 0.14.1, fasttext-wheel 0.9.2). It takes what
the transformer sends (production's `features_str` request,
wikimedia/machinelearning-liftwing-inference-services@bce944c:
src/models/outlink_topic_model/model_server/model.py):

    {"features_str": "Q1 Q2 ...", "lang": "en", "page_title": "..." | null, "page_id": 123,
     "threshold": 0.5, "debug": false}

and answers {"prediction": {"article": URL, "results": [{"topic": ..., "score": ...}, ...]}}:
every topic whose score is at least the threshold, best first, scores at full precision. The
article is https://<lang>.wikipedia.org/wiki/<page_title> as given, or .../wiki?curid=<page_id>.

Env: MODEL_PATH (default /mnt/models/model.bin), MODEL_NAME.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import fasttext
from kserve import Model, ModelServer, model_server
from kserve.errors import InvalidInput

LABEL_PREFIX = "__label__"


def request_of(payload: Any) -> dict[str, Any]:
    """The transformer's request, checked: a 400 naming the field, never a 500."""
    if not isinstance(payload, dict):
        raise InvalidInput("Please verify that request input is a json dict")
    features = payload.get("features_str")
    if not isinstance(features, str) or "\n" in features:
        raise InvalidInput('Expected "features_str" to be a string of space-separated QIDs.')
    lang = payload.get("lang")
    if not isinstance(lang, str) or not lang:
        raise InvalidInput('Expected "lang" to be a string.')
    threshold = payload.get("threshold", 0.5)
    if not isinstance(threshold, float):
        raise InvalidInput('Expected "threshold" to be a float')
    title = payload.get("page_title")
    if title is not None and not isinstance(title, str):
        raise InvalidInput('Expected "page_title" to be a string.')
    return {
        "features_str": features,
        "lang": lang,
        "page_title": title,
        "page_id": payload.get("page_id"),
        "threshold": threshold,
        "debug": bool(payload.get("debug", False)),
    }


def article_url(lang: str, page_title: str | None, page_id: Any) -> str:
    if page_title is not None:
        return f"https://{lang}.wikipedia.org/wiki/{page_title}"
    return f"https://{lang}.wikipedia.org/wiki?curid={page_id}"


class OutlinkTopicModel(Model):
    def __init__(self, name: str):
        super().__init__(name)
        self.model_path = os.environ.get("MODEL_PATH", "/mnt/models/model.bin")
        self.model: Any = None
        self.load()

    def load(self) -> None:
        self.model = fasttext.load_model(self.model_path)
        self.ready = True

    def preprocess(self, payload: Any, headers: dict[str, str] | None = None) -> dict[str, Any]:
        return request_of(payload)

    def predict(self, request: dict[str, Any], headers: dict[str, str] | None = None) -> dict:
        labels, scores = self.model.predict(request["features_str"], k=-1)
        ranked = sorted(zip(labels, scores, strict=True), key=lambda pair: pair[1], reverse=True)
        threshold = request["threshold"]
        results = [
            {"topic": label[len(LABEL_PREFIX) :], "score": float(score)}
            for label, score in ranked
            if score >= threshold
        ]
        if request["debug"]:
            qids = len(request["features_str"].split())
            logging.info("%d topics for %d QIDs", len(results), qids)
        article = article_url(request["lang"], request["page_title"], request["page_id"])
        return {"prediction": {"article": article, "results": results}}


if __name__ == "__main__":
    args, _ = model_server.parser.parse_known_args()
    name = os.environ.get("MODEL_NAME") or args.model_name or "outlink-topic-model"
    ModelServer(workers=1).start([OutlinkTopicModel(name)])
