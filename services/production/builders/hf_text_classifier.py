"""Stand-in for an HF sequence-classification model directory (edit-check's peacock model): a tiny
random BERT (2 layers, hidden 32, labels LABEL_0/LABEL_1) and its WordPiece tokenizer, saved with
`save_pretrained` as production's directory is (config.json, model.safetensors, tokenizer files).
Runs in the isvc's own venv (its transformers and torch). Deterministic: fixed seed, one thread.

    python hf_text_classifier.py [--label1-bias B] OUTPUT_DIR

A random tiny BERT scores every text alike (LABEL_0, about 0.504). `--label1-bias B` adds B to
the classifier's LABEL_1 bias, so that every text scores LABEL_1 (B=1: about 0.73): an isvc
whose work starts at a LABEL_1 (revise-tone's flagged paragraphs and their `set` event) then runs
those paths. Without it the model is the same, byte for byte.
"""

import argparse
import sys
from pathlib import Path

import torch
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _vocab


def main(out: Path, label1_bias: float = 0.0) -> None:
    torch.manual_seed(18)
    torch.set_num_threads(1)
    vocab = out.parent / "vocab.txt"
    _vocab.write(vocab)
    tokenizer = BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True)
    config = BertConfig(
        vocab_size=len(_vocab.words()),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        num_labels=2,
    )
    model = BertForSequenceClassification(config)
    if label1_bias:
        with torch.no_grad():
            model.classifier.bias[1] += label1_bias
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    vocab.unlink()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--label1-bias", type=float, default=0.0, help="added to LABEL_1's bias")
    parser.add_argument("output", type=Path, help="the model folder to fill")
    args = parser.parse_args()
    main(args.output, args.label1_bias)
