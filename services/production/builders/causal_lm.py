"""Stand-in for an HF causal-LM directory served by vLLM (cope-a-9b's merged Gemma-2): a tiny random
decoder in the production model's architecture (2 layers, hidden 64, 2 query heads
and 1 KV head of 64: vLLM's CPU attention takes no head size under 32)
and a byte-level BPE tokenizer built here (no merges: every byte is a token, so any text
tokenizes), saved with `save_pretrained` as production's directory is (config.json,
model.safetensors, tokenizer.json, tokenizer_config.json). Runs in the isvc's own venv (the
transformers and torch that vLLM brings). Deterministic: fixed seed, one thread.

    python causal_lm.py ARCHITECTURE OUTPUT_DIR      (ARCHITECTURE: gemma2 or qwen3)
"""

import sys
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoModelForCausalLM, Gemma2Config, PreTrainedTokenizerFast, Qwen3Config

SPECIAL = ["<pad>", "<eos>", "<bos>", "<unk>"]
SHAPE = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=1,
    head_dim=64,
    max_position_embeddings=4096,
)


def tokenizer() -> PreTrainedTokenizerFast:
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {token: i for i, token in enumerate(SPECIAL + alphabet)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        eos_token="<eos>",
        bos_token="<bos>",
        unk_token="<unk>",
    )


def config(architecture: str, vocab_size: int):
    ids = dict(pad_token_id=0, eos_token_id=1, bos_token_id=2)
    if architecture == "gemma2":
        return Gemma2Config(vocab_size=vocab_size, sliding_window=4096, **SHAPE, **ids)
    if architecture == "qwen3":
        return Qwen3Config(vocab_size=vocab_size, tie_word_embeddings=True, **SHAPE, **ids)
    raise SystemExit(f"unknown architecture {architecture!r} (gemma2 or qwen3)")


def main(architecture: str, out: Path) -> None:
    torch.manual_seed(18)
    torch.set_num_threads(1)
    tok = tokenizer()
    model = AutoModelForCausalLM.from_config(config(architecture, len(tok)), dtype=torch.bfloat16)
    model.save_pretrained(out)
    tok.save_pretrained(out)


if __name__ == "__main__":
    main(sys.argv[-2], Path(sys.argv[-1]))
