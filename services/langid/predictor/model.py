"""langid predictor: the language of a text, from a fastText model with NLLB `xxx_Latn` labels."""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path
from typing import Any

import fasttext
import kserve

from sandbox.serving import inputs, server
from sandbox.serving.executor import run_cpu

# The label -> (wikicode, language name) table the model was trained with.
LANGUAGES_TSV = Path(__file__).resolve().parent.parent / "training" / "languages.tsv"
LABEL_PREFIX = "__label__"


def load_languages(path: Path = LANGUAGES_TSV) -> dict[str, tuple[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        rows = csv.reader((line for line in f if not line.startswith("#")), delimiter="\t")
        return {row[0]: (row[1], row[2]) for row in rows if row}


class LangIdModel(kserve.Model):
    def __init__(self, name: str, model_path: str):
        super().__init__(name)
        self.model_path = model_path
        self.model: Any = None
        self.languages: dict[str, tuple[str, str]] = {}

    def load(self) -> bool:
        self.model = fasttext.load_model(self.model_path)
        self.languages = load_languages()
        unknown = [
            lbl for lbl in self.model.get_labels() if lbl[len(LABEL_PREFIX) :] not in self.languages
        ]
        if unknown:
            raise ValueError(f"labels missing from {LANGUAGES_TSV.name}: {unknown}")
        self.ready = True
        return self.ready

    def _identify(self, text: str) -> dict[str, Any]:
        labels, scores = self.model.predict(" ".join(text.split()), k=1)
        language = labels[0][len(LABEL_PREFIX) :]
        wikicode, name = self.languages[language]
        return {
            "language": language,
            "wikicode": wikicode,
            "languagename": name,
            "score": round(float(min(scores[0], 1.0)), 4),
        }

    async def predict(self, payload: Any, headers: dict[str, str] | None = None) -> dict:
        text = inputs.text_field(inputs.require_object(payload), "text")
        return await run_cpu(self._identify, text)


def make_model(args: argparse.Namespace) -> LangIdModel:
    return LangIdModel(
        args.model_name, os.environ.get("MODEL_PATH", "/mnt/models/lid201-model.bin")
    )


if __name__ == "__main__":
    server.run(make_model, description="langid predictor (KServe model server)")
