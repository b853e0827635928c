"""Stand-in for a SentenceTransformer model directory (jina-embeddings): a tiny random BERT,
mean pooling and a Normalize module, with production's prompt names (`query`, `document`) in
config_sentence_transformers.json, saved with SentenceTransformer.save. Runs in the isvc's own venv
(its sentence-transformers, transformers and torch). Deterministic: fixed seed, one thread.

    python sentence_transformer.py OUTPUT_DIR
"""

import sys
from pathlib import Path

import torch
from sentence_transformers import SentenceTransformer, models
from transformers import BertConfig, BertModel, BertTokenizerFast

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _vocab


def main(out: Path) -> None:
    torch.manual_seed(18)
    torch.set_num_threads(1)
    base = out.parent / "bert"
    base.mkdir()
    vocab = out.parent / "vocab.txt"
    _vocab.write(vocab)
    BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True).save_pretrained(base)
    config = BertConfig(
        vocab_size=len(_vocab.words()),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
    )
    BertModel(config).save_pretrained(base)
    encoder = models.Transformer(str(base), max_seq_length=128)
    pooling = models.Pooling(encoder.get_word_embedding_dimension(), pooling_mode="mean")
    model = SentenceTransformer(
        modules=[encoder, pooling, models.Normalize()],
        prompts={"query": "Query: ", "document": "Document: "},
        default_prompt_name="query",
        device="cpu",
    )
    model.save(str(out))
    vocab.unlink()


if __name__ == "__main__":
    main(Path(sys.argv[-1]))
