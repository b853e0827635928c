"""outlink-topic-model predictor: article topics from the QIDs of an article's outlinks (fastText).

Request (from the transformer):
    {"qids": ["Q1", ...], "threshold": 0.5, "article": URL, "debug": false}
Response: {"prediction": {"article": URL, "results": [{"topic": ..., "score": ...}, ...]}}
"""

from __future__ import annotations

import argparse
import os
import re
from typing import Any

import fasttext
import kserve
from kserve.errors import InvalidInput

from sandbox.serving import inputs, server
from sandbox.serving.executor import Offload

LABEL_PREFIX = "__label__"
QID = re.compile(r"^Q[1-9][0-9]*$")
# Most articles have far fewer outlinks; the transformer sends them all.
MAX_QIDS = int(os.environ.get("MAX_QIDS", "5000"))


# The loaded model, module-level so that forked inference workers inherit it.
_model: Any = None


def topics(qids: list[str], threshold: float) -> list[dict[str, Any]]:
    if not qids:
        return []
    labels, scores = _model.predict(" ".join(qids), k=-1, threshold=threshold)
    results = [
        {"topic": label[len(LABEL_PREFIX) :], "score": round(float(min(score, 1.0)), 4)}
        for label, score in zip(labels, scores, strict=True)
    ]
    results.sort(key=lambda r: r["score"], reverse=True)
    return results


class OutlinkTopicModel(kserve.Model):
    def __init__(self, name: str, model_path: str):
        super().__init__(name)
        self.model_path = model_path
        self.offload = Offload()

    def load(self) -> bool:
        global _model
        _model = fasttext.load_model(self.model_path)
        self.offload.start()
        self.ready = True
        return self.ready

    @staticmethod
    def _qids(payload: dict[str, Any]) -> list[str]:
        qids = payload.get("qids")
        if not isinstance(qids, list):
            raise InvalidInput("field 'qids' must be a list of Wikidata item ids")
        bad = [q for q in qids if not isinstance(q, str) or not QID.fullmatch(q)]
        if bad:
            raise InvalidInput(f"field 'qids' has values that are not Wikidata ids: {bad[:5]!r}")
        if len(qids) > MAX_QIDS:
            raise InvalidInput(f"field 'qids' has {len(qids)} items; the limit is {MAX_QIDS}")
        return qids

    async def predict(self, payload: Any, headers: dict[str, str] | None = None) -> dict:
        payload = inputs.require_object(payload)
        qids = self._qids(payload)
        threshold = inputs.number_field(payload, "threshold", 0.5, 0.0, 1.0)
        article = inputs.text_field(payload, "article", required=False)
        results = await self.offload.run(topics, qids, threshold, cost=len(qids))
        prediction: dict[str, Any] = {"article": article, "results": results}
        if inputs.bool_field(payload, "debug"):
            prediction["qids"] = qids
        return {"prediction": prediction}


def make_model(args: argparse.Namespace) -> OutlinkTopicModel:
    path = os.environ.get("MODEL_PATH", "/mnt/models/model.bin")
    return OutlinkTopicModel(args.model_name, path)


if __name__ == "__main__":
    server.run(make_model, description="outlink-topic-model predictor (KServe model server)")
