"""langid: the language of a text, from a fastText model with NLLB-200 labels (`eng_Latn`).

A plain kserve isvc on production's pins (kserve 0.13.1, fasttext 0.9.3), with production's
request contract (wikimedia/machinelearning-liftwing-inference-services@bce944c:
src/models/langid/model.py):

    request:  {"text": "..."}
    response: {"language": "eng_Latn", "wikicode": "en", "languagename": "English", "score": 0.97}

The text is normalized before the model sees it: runs of spaces, tabs and line breaks become one
space, the ends are stripped, and only the first MAX_TEXT_LENGTH (default 100) characters are kept.
The score is the model's probability as it comes, unrounded.

Env: MODEL_NAME (default langid), MODEL_PATH (default /mnt/models/lid201-model.bin),
MAX_TEXT_LENGTH.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import fasttext
from kserve import Model, ModelServer
from kserve.errors import InvalidInput

LABEL_PREFIX = "__label__"
LANGUAGES_TSV = Path(__file__).resolve().parent / "languages.tsv"
# Line feed, carriage return, vertical tab, tab and space: what production folds into one space.
BLANKS = re.compile(r"[\n\r\v\t ]+")


def read_languages(path: Path = LANGUAGES_TSV) -> dict[str, tuple[str, str]]:
    """label -> (wikicode, language name), from the table's non-comment rows."""
    table: dict[str, tuple[str, str]] = {}
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.reader((line for line in f if not line.startswith("#")), delimiter="\t"):
            if row:
                label, wikicode, name = row
                table[label] = (wikicode, name)
    return table


def normalize(text: str, max_length: int) -> str:
    return BLANKS.sub(" ", text).strip()[:max_length]


def text_of(payload: Any) -> str:
    """The request's text, or InvalidInput (400) with production's messages."""
    if isinstance(payload, bytes):  # a body sent without a JSON content type
        try:
            payload = json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise InvalidInput("Please verify that request input is a json dict") from None
    if not isinstance(payload, dict):
        raise InvalidInput("Please verify that request input is a json dict")
    text = payload.get("text")
    if not text:
        raise InvalidInput("The parameter text is required.")
    if not isinstance(text, str):
        raise InvalidInput("The input 'text' should be a string.")
    return text


class LangId(Model):
    def __init__(self, name: str):
        super().__init__(name)
        self.max_text_length = int(os.environ.get("MAX_TEXT_LENGTH", "100"))
        self.model_path = os.environ.get("MODEL_PATH", "/mnt/models/lid201-model.bin")
        self.languages = read_languages()
        self.model: Any = None
        self.load()

    def load(self) -> None:
        self.model = fasttext.load_model(self.model_path)
        labels = [label[len(LABEL_PREFIX) :] for label in self.model.get_labels()]
        unknown = sorted(set(labels) - set(self.languages))
        if unknown:
            raise ValueError(f"model labels missing from {LANGUAGES_TSV}: {unknown}")
        self.ready = True

    def preprocess(self, payload: Any, headers: dict[str, str] | None = None) -> str:
        return normalize(text_of(payload), self.max_text_length)

    def predict(self, text: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
        labels, scores = self.model.predict(text)
        language = labels[0][len(LABEL_PREFIX) :]
        wikicode, name = self.languages[language]
        logging.debug("%s %.4f for %d characters", language, scores[0], len(text))
        return {
            "language": language,
            "wikicode": wikicode,
            "languagename": name,
            "score": float(scores[0]),
        }


if __name__ == "__main__":
    ModelServer(workers=1).start([LangId(os.environ.get("MODEL_NAME", "langid"))])
