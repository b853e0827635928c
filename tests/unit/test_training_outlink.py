"""The sandbox outlink topic model: deterministic, production's 64 labels, predicts from QIDs."""

from __future__ import annotations

import csv
import hashlib
import random
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from sandbox import catalog
from sandbox.paths import REPO_ROOT
from tests.fasttext_proxy import FastTextModel, isvc_python

pytestmark = pytest.mark.unit

SERVICE = catalog.get("outlink-topic-model")
TRAINING = SERVICE.dir / "training"
FIXTURE = REPO_ROOT / "sandbox" / "mediawiki" / "fixtures" / "en.wikipedia.org.articles.yaml"

# Wikimedia's article-topic taxonomy (the labels of production's outlink model and ORES).
ARTICLE_TOPICS = {
    *(
        f"Culture.{t}"
        for t in [
            "Biography.Biography*", "Biography.Women", "Food_and_drink", "Internet_culture",
            "Linguistics", "Literature", "Media.Books", "Media.Entertainment", "Media.Films",
            "Media.Media*", "Media.Music", "Media.Radio", "Media.Software", "Media.Television",
            "Media.Video_games", "Performing_arts", "Philosophy_and_religion", "Sports",
            "Visual_arts.Architecture", "Visual_arts.Comics_and_Anime", "Visual_arts.Fashion",
            "Visual_arts.Visual_arts*",
        ]
    ),
    "Geography.Geographical",
    *(
        f"Geography.Regions.{t}"
        for t in [
            "Africa.Africa*", "Africa.Central_Africa", "Africa.Eastern_Africa",
            "Africa.Northern_Africa", "Africa.Southern_Africa", "Africa.Western_Africa",
            "Americas.Central_America", "Americas.North_America", "Americas.South_America",
            "Asia.Asia*", "Asia.Central_Asia", "Asia.East_Asia", "Asia.North_Asia",
            "Asia.South_Asia", "Asia.Southeast_Asia", "Asia.West_Asia", "Europe.Eastern_Europe",
            "Europe.Europe*", "Europe.Northern_Europe", "Europe.Southern_Europe",
            "Europe.Western_Europe", "Oceania",
        ]
    ),
    *(
        f"History_and_Society.{t}"
        for t in [
            "Business_and_economics", "Education", "History", "Military_and_warfare",
            "Politics_and_government", "Society", "Transportation",
        ]
    ),
    *(
        f"STEM.{t}"
        for t in [
            "Biology", "Chemistry", "Computing", "Earth_and_environment", "Engineering",
            "Libraries_&_Information", "Mathematics", "Medicine_&_Health", "Physics", "STEM*",
            "Space", "Technology",
        ]
    ),
}  # fmt: skip


def _train(out: Path) -> Path:
    subprocess.run(
        [isvc_python(SERVICE), str(SERVICE.dir / SERVICE.model.build), str(out)],
        check=True,
        capture_output=True,
    )
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("outlink")
    return _train(tmp / "a" / "model.bin"), _train(tmp / "b" / "model.bin")


@pytest.fixture(scope="module")
def model(built: tuple[Path, Path]):
    proxy = FastTextModel(SERVICE, built[0])
    yield proxy
    proxy.close()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _vocabulary() -> dict[str, list[str]]:
    vocab: dict[str, list[str]] = {}
    with (TRAINING / "topic_qids.tsv").open() as f:
        for row in csv.DictReader((x for x in f if not x.startswith("#")), delimiter="\t"):
            vocab.setdefault(row["topic"], []).append(row["qid"])
    return vocab


def _predict(model, qids: list[str], threshold: float) -> list[tuple[str, float]]:
    labels, scores = model.predict(" ".join(qids), k=-1, threshold=threshold)
    return [
        (lbl.removeprefix("__label__"), float(s)) for lbl, s in zip(labels, scores, strict=True)
    ]


def test_taxonomy_has_64_topics() -> None:
    assert len(ARTICLE_TOPICS) == 64


def test_build_is_deterministic_and_matches_service_yaml(built: tuple[Path, Path]) -> None:
    a, b = built
    assert _sha(a) == _sha(b)
    assert _sha(a) == SERVICE.model.sha256


def test_model_has_exactly_the_article_topic_labels(model) -> None:
    labels = {lbl.removeprefix("__label__") for lbl in model.get_labels()}
    assert labels == ARTICLE_TOPICS


def test_vocabulary_covers_every_topic_with_wellformed_qids() -> None:
    vocab = _vocabulary()
    assert set(vocab) == ARTICLE_TOPICS
    for topic, qids in vocab.items():
        assert len(qids) >= 10, topic
        assert all(re.fullmatch(r"Q[1-9][0-9]*", q) for q in qids), topic


def test_biography_outlinks_predict_biography_first(model) -> None:
    rng = random.Random(7)
    biography = _vocabulary()["Culture.Biography.Biography*"]
    results = _predict(model, rng.sample(biography, 25), threshold=0.1)
    assert results[0][0] == "Culture.Biography.Biography*"
    assert results[0][1] >= 0.5


@pytest.mark.parametrize(
    "topic", ["STEM.Chemistry", "Culture.Sports", "STEM.Space", "Geography.Regions.Asia.East_Asia"]
)
def test_other_topics_win_on_their_own_outlinks(model, topic: str) -> None:
    qids = random.Random(topic).sample(_vocabulary()[topic], 10)
    assert _predict(model, qids, threshold=0.0)[0][0] == topic


def _fixture_pages() -> dict[str, dict]:
    doc = yaml.safe_load(FIXTURE.read_text())
    assert doc["wiki"] == "en.wikipedia.org"
    return {p["title"]: p for p in doc["pages"]}


def _fixture_qids(page: dict) -> list[str]:
    return [link["wikibase_item"] for link in page["links"] if link.get("wikibase_item")]


@pytest.mark.parametrize("threshold", [0.3, 0.5])
def test_toni_morrison_fixture_passes_the_service_samples(model, threshold: float) -> None:
    page = _fixture_pages()["Toni Morrison"]
    assert page["pageid"] == 43165
    assert len(page["links"]) >= 120
    results = _predict(model, _fixture_qids(page), threshold)
    scores = [s for _, s in results]
    assert scores == sorted(scores, reverse=True)
    assert results[0][0] == "Culture.Biography.Biography*"
    assert results[0][1] >= 0.5
    assert all(s >= threshold for s in scores)


def test_fixture_articles_get_different_topics(model) -> None:
    tops = {
        title: _predict(model, _fixture_qids(page), 0.0)[0][0]
        for title, page in _fixture_pages().items()
    }
    assert tops["Toni Morrison"] == "Culture.Biography.Biography*"
    assert tops["Sodium chloride"] == "STEM.Chemistry"
    assert tops["Manchester United F.C."] == "Culture.Sports"
    assert len(set(tops.values())) == len(tops)
