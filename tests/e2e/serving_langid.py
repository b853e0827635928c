"""A model server written against the sandbox's optional serving helpers (sandbox.serving): the
sandbox langid model behind `server.run` (loopback bind, body limit) with its CPU-bound prediction
offloaded to a worker process (`Offload`). tests/e2e/test_model_server.py starts it; the reference
isvcs themselves run on the stock kserve server."""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path
from typing import Any

import fasttext
import kserve

from sandbox.serving import inputs, server
from sandbox.serving.executor import Offload

# The label -> (wikicode, language name) table the model was trained with.
LANGUAGES_TSV = Path(__file__).resolve().parents[2] / "services/langid/training/languages.tsv"
LABEL_PREFIX = "__label__"

# The loaded model, module-level so that forked inference workers inherit it.
_model: Any = None
_languages: dict[str, tuple[str, str]] = {}


def load_languages(path: Path = LANGUAGES_TSV) -> dict[str, tuple[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        rows = csv.reader((line for line in f if not line.startswith("#")), delimiter="\t")
        return {row[0]: (row[1], row[2]) for row in rows if row}


def identify(text: str) -> dict[str, Any]:
    labels, scores = _model.predict(" ".join(text.split()), k=1)
    language = labels[0][len(LABEL_PREFIX) :]
    wikicode, name = _languages[language]
    return {
        "language": language,
        "wikicode": wikicode,
        "languagename": name,
        "score": round(float(min(scores[0], 1.0)), 4),
    }


class LangIdModel(kserve.Model):
    def __init__(self, name: str, model_path: str):
        super().__init__(name)
        self.model_path = model_path
        self.offload = Offload()

    def load(self) -> bool:
        global _model, _languages
        _model = fasttext.load_model(self.model_path)
        _languages = load_languages()
        labels = [lbl[len(LABEL_PREFIX) :] for lbl in _model.get_labels()]
        unknown = [lbl for lbl in labels if lbl not in _languages]
        if unknown:
            raise ValueError(f"labels missing from {LANGUAGES_TSV.name}: {unknown}")
        self.offload.start()
        self.ready = True
        return self.ready

    async def predict(self, payload: Any, headers: dict[str, str] | None = None) -> dict:
        text = inputs.text_field(inputs.require_object(payload), "text")
        return await self.offload.run(identify, text, cost=len(text))


def make_model(args: argparse.Namespace) -> LangIdModel:
    path = os.environ.get("MODEL_PATH", "/mnt/models/lid201-model.bin")
    return LangIdModel(args.model_name, path)


if __name__ == "__main__":
    server.run(make_model, description="langid predictor (KServe model server)")
