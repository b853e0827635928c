"""Stand-in for revertrisk-wikidata's model file (wikidata_revertrisk_graph2text_v2.pkl): a joblib
pickle of the object its `load()` reads (inference-services@bce944c
src/models/revertrisk_wikidata/model_server/model.py): an instance of a dataclass pickled as
`__main__.RevertRiskWikidataGraph2TextModel` (the isvc binds that name to its own
RevertRiskWikidataGraph2TextModelForLoad before `joblib.load`) with

- `metadata_classifier`: a catboost CatBoostClassifier; predict reads its `feature_names_` and
  `get_cat_feature_indices()`. Its features are the ones predict and `_fetch_metadata_features`
  compute: the six BERT scores (`add_score_mean` ... `change_score_max`), `user_is_anonymous`,
  `user_is_bot` and `event_user_groups-<group>` (categorical, as strings), `user_age`,
  `page_seconds_since_previous_revision`, `page_age`. Trained on a few synthetic rows.
- `text_classifier`: a transformers text-classification Pipeline over a tiny random BERT
  (labels LABEL_0/LABEL_1): builders/hf_text_classifier.py's directory, loaded with
  `from_pretrained`; load() takes its `.model` and `.tokenizer` apart and builds a new pipeline;
- `model_version`: an int.

Runs in the isvc's own venv (its catboost, transformers, torch, joblib). Deterministic: fixed seeds,
one thread, a fixed pickle protocol.

    python revertrisk_wikidata.py OUTPUT_FILE
"""

import io
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import catboost
import joblib
import numpy as np
import torch
import transformers

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hf_text_classifier

MODEL_VERSION = 2  # the file name's v2
SCORES = [
    f"{kind}_score_{stat}" for kind in ("add", "remove", "change") for stat in ("mean", "max")
]
GROUPS = ["bot", "autoconfirmed", "rollbacker", "sysop"]
CATEGORICAL = ["user_is_anonymous", "user_is_bot", *(f"event_user_groups-{g}" for g in GROUPS)]
NUMERIC = ["user_age", "page_seconds_since_previous_revision", "page_age"]
FEATURES = [*SCORES, *CATEGORICAL, *NUMERIC]


@dataclass
class RevertRiskWikidataGraph2TextModel:
    """The training code's class: pickled by name from `__main__`."""

    metadata_classifier: catboost.CatBoostClassifier
    text_classifier: transformers.Pipeline
    model_version: int


RevertRiskWikidataGraph2TextModel.__module__ = "__main__"


def _stable_storage_pickles() -> None:
    """A pickled torch tensor carries its storage as a legacy `torch.save` blob (torch/storage.py
    `__reduce__`) keyed by the storage's memory address (torch/serialization.py `_legacy_save`:
    `str(storage._cdata)`), so two builds differ. The key only pairs the blob's one storage with
    its data, so it is written as "0": the same blob, loaded by the same `_load_from_bytes`."""

    def reduce(self: torch.storage.TypedStorage) -> tuple:
        blob = io.BytesIO()
        torch.save(self, blob, _use_new_zipfile_serialization=False)
        key = str(getattr(self, "_untyped_storage", self)._cdata).encode()
        pickled_key = b"X" + len(key).to_bytes(4, "little") + key  # BINUNICODE, protocol 2
        data = blob.getvalue()
        if data.count(pickled_key) != 2:  # the storage's persistent id and the list of keys
            raise SystemExit("torch's legacy storage format is not the expected one")
        stable = b"X" + (1).to_bytes(4, "little") + b"0"
        return (torch.storage._load_from_bytes, (data.replace(pickled_key, stable),))

    torch.storage.TypedStorage.__reduce__ = reduce
    torch.storage.UntypedStorage.__reduce__ = reduce


def _rows(n: int) -> tuple[list[list], list[int]]:
    """Synthetic edits: anonymous or young accounts with big removals are reverted."""
    rng = np.random.default_rng(18)
    rows, labels = [], []
    for _ in range(n):
        anonymous = bool(rng.random() < 0.4)
        groups = [] if anonymous else [g for g in GROUPS if rng.random() < 0.3]
        scores = [float(round(rng.random(), 3)) for _ in SCORES]
        age = -999 if anonymous else int(rng.integers(0, 4000))
        cats = [
            str(anonymous),
            "-1" if anonymous else str(int("bot" in groups)),
            *("nan" if anonymous else str(float(g in groups)) for g in GROUPS),
        ]
        numeric = [age, int(rng.integers(0, 10**7)), int(rng.integers(0, 4000))]
        rows.append([*scores, *cats, *numeric])
        labels.append(int((anonymous or 0 <= age < 30) and scores[3] > 0.3))
    return rows, labels


def main(out: Path) -> None:
    out = out.resolve()
    rows, labels = _rows(64)
    classifier = catboost.CatBoostClassifier(
        iterations=20,
        depth=3,
        random_seed=18,
        thread_count=1,
        verbose=False,
        allow_writing_files=False,
    )
    classifier.fit(catboost.Pool(rows, labels, cat_features=CATEGORICAL, feature_names=FEATURES))
    # Each training stamps a random model_guid and its finish time into the model: fixed here.
    metadata = classifier.get_metadata()
    metadata["model_guid"] = "00000000-00000000-00000000-00000018"
    metadata["train_finish_time"] = "2025-11-04T12:13:12Z"  # the storage_uri's timestamp
    with tempfile.TemporaryDirectory(dir=out.parent) as work:
        # edit-check's tiny BERT directory, loaded back by a relative name: the model and the
        # tokenizer keep the name they were loaded from, which must not be a random folder's.
        here = os.getcwd()
        os.chdir(work)
        try:
            hf_text_classifier.main(Path("bert"))
            model = transformers.AutoModelForSequenceClassification.from_pretrained("bert")
            tokenizer = transformers.AutoTokenizer.from_pretrained("bert")
        finally:
            os.chdir(here)
    pipeline = transformers.pipeline(
        "text-classification", model=model, tokenizer=tokenizer, device=-1
    )
    _stable_storage_pickles()
    joblib.dump(
        RevertRiskWikidataGraph2TextModel(classifier, pipeline, MODEL_VERSION), out, protocol=4
    )


if __name__ == "__main__":
    main(Path(sys.argv[-1]))
