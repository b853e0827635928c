"""Train the sandbox language-identification model: a real fastText classifier in production's form.

Production serves OpenLID's `lid201-model.bin`: a fastText supervised model whose labels are
NLLB-200 codes (`__label__eng_Latn`). It cannot be downloaded here, so this script builds a small
one with the same label form from the sentences in `text/<label>.txt` (written for this project,
one file per language in `languages.tsv`). Character n-grams let it classify short texts it has
never seen. Training is deterministic (one thread, fixed seeds): the same bytes on every run.

    python train.py OUTPUT_PATH
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
import tempfile
from pathlib import Path

import fasttext

HERE = Path(__file__).resolve().parent
LANGUAGES = HERE / "languages.tsv"
TEXT_DIR = HERE / "text"
SEED = 201

FRAGMENTS_PER_SENTENCE = 6  # extra short windows of each sentence, so short inputs work too

FASTTEXT_PARAMS = {
    "dim": 16,
    "minn": 2,
    "maxn": 5,
    "bucket": 50000,
    "epoch": 30,
    "lr": 0.5,
    "wordNgrams": 1,
    "minCount": 1,
    "thread": 1,
    "seed": 1,
    "verbose": 0,
}


def load_languages(path: Path = LANGUAGES) -> dict[str, tuple[str, str]]:
    """NLLB label (`eng_Latn`) -> (wikicode, language name)."""
    with path.open(newline="", encoding="utf-8") as f:
        rows = csv.reader((line for line in f if not line.startswith("#")), delimiter="\t")
        return {row[0]: (row[1], row[2]) for row in rows if row}


def load_sentences(label: str) -> list[str]:
    path = TEXT_DIR / f"{label}.txt"
    if not path.is_file():
        raise SystemExit(f"{path}: missing training text for {label} (listed in {LANGUAGES.name})")
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def examples(sentence: str, rng: random.Random) -> list[str]:
    """The sentence, its lower-case form and a few short windows of its words."""
    words = sentence.split()
    out = [sentence, sentence.lower()]
    for _ in range(FRAGMENTS_PER_SENTENCE):
        size = rng.randint(2, min(6, len(words)))
        start = rng.randint(0, len(words) - size)
        out.append(" ".join(words[start : start + size]))
    return out


def training_lines(seed: int = SEED) -> list[str]:
    rng = random.Random(seed)
    lines = []
    for label in sorted(load_languages()):
        for sentence in load_sentences(label):
            lines += [f"__label__{label} {text}" for text in examples(sentence, rng)]
    rng.shuffle(lines)
    return lines


def train(output: Path) -> None:
    lines = training_lines()
    print(
        f"langid: {len(lines)} training lines, {len(load_languages())} languages", file=sys.stderr
    )
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "train.txt"
        data.write_text("\n".join(lines) + "\n", encoding="utf-8")
        model = fasttext.train_supervised(input=str(data), **FASTTEXT_PARAMS)
    output.parent.mkdir(parents=True, exist_ok=True)
    model.save_model(str(output))
    print(f"langid: wrote {output} ({output.stat().st_size} bytes)", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path, help="where to write lid201-model.bin")
    args = parser.parse_args(argv)
    train(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
