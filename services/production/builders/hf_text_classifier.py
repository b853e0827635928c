"""Stand-in for an HF sequence-classification model directory (edit-check's peacock model): a tiny
random BERT (2 layers, hidden 32, labels LABEL_0/LABEL_1) and its WordPiece tokenizer, saved with
`save_pretrained` as production's directory is (config.json, model.safetensors, tokenizer files).
Runs in the isvc's own venv (its transformers and torch). Deterministic: fixed seed, one thread.

    python hf_text_classifier.py OUTPUT_DIR
"""

import sys
from pathlib import Path

import torch
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _vocab


def main(out: Path) -> None:
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
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    vocab.unlink()


if __name__ == "__main__":
    main(Path(sys.argv[-1]))
