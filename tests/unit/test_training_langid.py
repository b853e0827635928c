"""The sandbox langid model: deterministic, NLLB `xxx_Latn` labels, classifies unseen sentences."""

from __future__ import annotations

import csv
import hashlib
import re
import subprocess
from pathlib import Path

import pytest

from sandbox import catalog
from tests.fasttext_proxy import FastTextModel, isvc_python

pytestmark = pytest.mark.unit

SERVICE = catalog.get("langid")
TRAINING = SERVICE.dir / "training"

# Sentences written for this test and absent from training/text/: the model never saw them.
HELD_OUT = {
    "eng_Latn": [
        "I think it will rain tomorrow afternoon.",
        "My brother is looking for a new job.",
    ],
    "fra_Latn": ["Je ne sais pas pourquoi il est parti si vite.", "Mon frère cherche un travail."],
    "deu_Latn": ["Ich weiß nicht, warum er so schnell gegangen ist.", "Mein Bruder sucht Arbeit."],
    "spa_Latn": ["No sé por qué se fue tan rápido.", "Mañana vamos a visitar a mis primos."],
    "ita_Latn": ["Non so perché sia andato via così in fretta.", "Domani andiamo al mare."],
    "por_Latn": ["Amanhã vamos visitar os meus primos na praia.", "Não sei porque ele saiu."],
    "nld_Latn": ["Ik weet niet waarom hij zo snel wegging.", "Morgen gaan we naar de kust."],
    "swe_Latn": ["Jag vet inte varför han gick så fort.", "Min bror letar efter ett nytt jobb."],
    "pol_Latn": ["Nie wiem, dlaczego wyszedł tak szybko.", "Jutro odwiedzimy moich kuzynów."],
    "tur_Latn": ["Neden bu kadar çabuk gittiğini bilmiyorum.", "Kardeşim yeni bir iş arıyor."],  # noqa: RUF001
    "ind_Latn": ["Saya tidak tahu mengapa dia pergi begitu cepat.", "Besok kami ke pantai."],
    "fin_Latn": ["En tiedä, miksi hän lähti niin nopeasti.", "Veljeni etsii uutta työtä."],
    "ces_Latn": ["Nevím, proč odešel tak rychle.", "Můj bratr hledá novou práci v jiném městě."],
    "hun_Latn": ["Nem tudom, miért ment el ilyen gyorsan.", "A bátyám új munkát keres."],
    "vie_Latn": ["Tôi không biết tại sao anh ấy đi nhanh như vậy.", "Anh trai tôi đang tìm việc."],
}


def _train(out: Path) -> Path:
    subprocess.run(
        [isvc_python(SERVICE), str(SERVICE.dir / SERVICE.model.build), str(out)],
        check=True,
        capture_output=True,
    )
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("langid")
    return _train(tmp / "a" / SERVICE.model.file), _train(tmp / "b" / SERVICE.model.file)


@pytest.fixture(scope="module")
def model(built: tuple[Path, Path]):
    proxy = FastTextModel(SERVICE, built[0])
    yield proxy
    proxy.close()


def _languages() -> dict[str, tuple[str, str]]:
    with (TRAINING / "languages.tsv").open(encoding="utf-8") as f:
        rows = csv.reader((x for x in f if not x.startswith("#")), delimiter="\t")
        return {r[0]: (r[1], r[2]) for r in rows if r}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_build_is_deterministic_and_matches_service_yaml(built: tuple[Path, Path]) -> None:
    a, b = built
    assert _sha(a) == _sha(b)
    assert _sha(a) == SERVICE.model.sha256


def test_labels_are_nllb_codes_listed_in_languages_tsv(model) -> None:
    labels = {lbl.removeprefix("__label__") for lbl in model.get_labels()}
    assert len(labels) >= 12
    assert all(re.fullmatch(r"[a-z]{3}_Latn", lbl) for lbl in labels), labels
    assert labels == set(_languages())


def test_languages_tsv_maps_to_wikicodes_and_names() -> None:
    languages = _languages()
    assert languages["eng_Latn"] == ("en", "English")
    assert languages["fra_Latn"] == ("fr", "French")
    assert languages["deu_Latn"] == ("de", "German")
    assert all(re.fullmatch(r"[a-z]{2,3}", code) and name for code, name in languages.values())


def test_held_out_sentences_are_not_training_text() -> None:
    training = "\n".join(p.read_text(encoding="utf-8") for p in (TRAINING / "text").glob("*.txt"))
    for sentences in HELD_OUT.values():
        for sentence in sentences:
            assert sentence not in training


@pytest.mark.parametrize(("label", "sentence"), [(k, s) for k, v in HELD_OUT.items() for s in v])
def test_classifies_unseen_sentences(model, label: str, sentence: str) -> None:
    labels, scores = model.predict(sentence, k=1)
    assert labels[0] == f"__label__{label}", (sentence, labels, scores)


def test_service_samples_get_their_expected_language(model) -> None:
    checked = 0
    for sample in SERVICE.samples:
        expected = [c.equals for c in sample.expect.checks if c.path == "language" and c.equals]
        if expected:
            # As the isvc normalizes: blanks folded, the first MAX_TEXT_LENGTH (100) characters.
            text = re.sub(r"[\n\r\v\t ]+", " ", sample.data["text"]).strip()[:100]
            labels, _ = model.predict(text, k=1)
            assert labels[0] == f"__label__{expected[0]}", sample.name
            checked += 1
    assert checked >= 3
