"""Train the sandbox outlink topic model: a real fastText supervised model in production's format.

Production's model (articletopic/outlink, `model.bin`) is a fastText classifier over the Wikidata
QIDs of an article's outlinks, with the 64 Wikimedia article-topic labels. It cannot be downloaded
here, so this script builds a small one of the same shape from `topic_qids.tsv`: synthetic articles
made of QIDs drawn mostly from their topics' vocabularies, plus noise. Training is deterministic
(one thread, fixed seeds), so the same script always writes the same bytes.

    python train.py OUTPUT_PATH
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import fasttext

HERE = Path(__file__).resolve().parent
VOCABULARY = HERE / "topic_qids.tsv"
N_LABELS = 64
SEED = 20221111

N_ARTICLES = 8000
MIN_OUTLINKS, MAX_OUTLINKS = 12, 160
NOISE_SHARE = 0.15  # outlinks drawn from the whole vocabulary, not the article's topics

# Small and fast; production's model has more dimensions and millions of QIDs.
FASTTEXT_PARAMS = {
    "loss": "ova",  # one-vs-all: independent per-topic scores, as an article has several topics
    "dim": 32,
    "epoch": 20,
    "lr": 0.3,
    "wordNgrams": 1,
    "minCount": 1,
    "thread": 1,
    "seed": 1,
    "verbose": 0,
}


def load_vocabulary(path: Path = VOCABULARY) -> dict[str, list[str]]:
    """topic -> its QIDs, in file order."""
    vocab: dict[str, list[str]] = defaultdict(list)
    with path.open(newline="") as f:
        rows = csv.DictReader((line for line in f if not line.startswith("#")), delimiter="\t")
        for row in rows:
            vocab[row["topic"]].append(row["qid"])
    if len(vocab) != N_LABELS:
        raise SystemExit(f"{path}: expected {N_LABELS} topics, found {len(vocab)}")
    return dict(vocab)


def star_label(topic: str, topics: list[str]) -> str | None:
    """The catch-all label of a topic's group (`Culture.Media.Films` -> `Culture.Media.Media*`)."""
    parent = topic.rsplit(".", 1)[0]
    for t in topics:
        if t != topic and t.endswith("*") and t.rsplit(".", 1)[0] == parent:
            return t
    return None


def article_labels(rng: random.Random, topics: list[str]) -> list[str]:
    """One primary topic (uniform, so every label is learnt), its group's star, and co-topics."""
    primary = rng.choice(topics)
    labels = [primary]
    star = star_label(primary, topics)
    if star and (primary == "Culture.Biography.Women" or rng.random() < 0.4):
        labels.append(star)
    if not primary.startswith("Geography.") and rng.random() < 0.5:
        labels.append(rng.choice([t for t in topics if t.startswith("Geography.Regions.")]))
    if rng.random() < 0.3:
        labels.append(rng.choice(topics))
    return list(dict.fromkeys(labels))


def article_outlinks(
    rng: random.Random, labels: list[str], vocab: dict[str, list[str]], everything: list[str]
) -> list[str]:
    """A bag of outlink QIDs: mostly from the article's topics, the primary one weighted most."""
    n = rng.randint(MIN_OUTLINKS, MAX_OUTLINKS)
    weights = [1.0] + [0.6] * (len(labels) - 1)
    qids = []
    for _ in range(n):
        if rng.random() < NOISE_SHARE:
            qids.append(rng.choice(everything))
        else:
            topic = rng.choices(labels, weights=weights)[0]
            qids.append(rng.choice(vocab[topic]))
    return qids


def training_lines(vocab: dict[str, list[str]], n: int = N_ARTICLES, seed: int = SEED) -> list[str]:
    rng = random.Random(seed)
    topics = sorted(vocab)
    everything = sorted({q for qs in vocab.values() for q in qs})
    lines = []
    for _ in range(n):
        labels = article_labels(rng, topics)
        qids = article_outlinks(rng, labels, vocab, everything)
        lines.append(" ".join([*(f"__label__{t}" for t in labels), *qids]))
    return lines


def train(output: Path) -> None:
    vocab = load_vocabulary()
    lines = training_lines(vocab)
    print(f"outlink: {len(lines)} synthetic articles over {len(vocab)} topics", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "train.txt"
        data.write_text("\n".join(lines) + "\n")
        model = fasttext.train_supervised(input=str(data), **FASTTEXT_PARAMS)
    labels = model.get_labels()
    if len(labels) != N_LABELS:
        raise SystemExit(f"trained {len(labels)} labels, expected {N_LABELS}")
    output.parent.mkdir(parents=True, exist_ok=True)
    model.save_model(str(output))
    print(f"outlink: wrote {output} ({output.stat().st_size} bytes)", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path, help="where to write model.bin")
    args = parser.parse_args(argv)
    train(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
