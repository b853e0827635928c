"""Stand-in for the tts isvc's models (Kokoro-82M + a Wav2Vec2-CTC aligner, both ONNX), in
production's layout under /mnt/models:

    kokoro/kokoro-v1.0.onnx     tokens int64 [1, n] + style float32 [1, 256] + speed float32 [1]
                                -> audio float32 [samples], 24 kHz
    kokoro/voices-v1.0.bin      an .npz of voice packs, float32 [510, 1, 256] each
    wav2vec2/model.onnx         input_values float32 [batch, samples] (16 kHz)
                                -> logits float32 [batch, frames, vocab], one frame per 20 ms
    wav2vec2/processor/         a Wav2Vec2Processor (feature extractor + CTC character tokenizer)

Where these come from:
- The Kokoro feeds are kokoro_onnx 0.5.0's for an export with a `tokens` input (its other branch,
  `input_ids`, is for later exports); kokoro-v1.0.onnx is that export:
  thewh1teagle/kokoro-onnx@5bfc03c:src/kokoro_onnx/__init__.py ("update to version 1.0") feeds
  it `tokens`, a float32 `style` and a float32 `speed`, and reads output 0 as the waveform.
- voices-v1.0.bin is `np.savez` of the voice packs (thewh1teagle/kokoro-onnx@0442834:
  scripts/fetch_voices.py); a pack has 510 rows, indexed by the token count (kokoro_onnx's
  `voice[len(tokens)]`), which is why the isvc's phoneme guard rejects 510 phonemes.
- The aligner's names are optimum's ONNX export for automatic-speech-recognition
  (huggingface/optimum@v1.23.3: optimum/exporters/onnx/config.py AudioOnnxConfig.inputs,
  optimum/exporters/onnx/base.py `logits`); the frames follow wav2vec2's feature encoder (a
  400-sample receptive field, a 320-sample stride); the vocabulary is the 32-symbol upper-case
  character set of the English CTC checkpoints (<pad> is the blank the aligner reads).

The weights are random: the audio is noise and the alignment arbitrary, but every request runs
through production's code (kokoro_onnx, onnxruntime, transformers' processor, the aligner) and
answers in production's contract. Runs in the isvc's own venv, with its numpy and protobuf (kserve's
pin): the ONNX files are written by _onnx.py, since the venv has onnxruntime but not `onnx`.
Deterministic: a fixed seed, zip members with a fixed time, sorted JSON, deterministic protobuf.

    python tts_onnx.py OUTPUT_DIR
"""

import io
import json
import sys
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _onnx

OPSET = 17  # the opset of kokoro-onnx's export script (scripts/export.py)
STYLE_DIM = 256
VOICE_ROWS = 510  # kokoro_onnx.config.MAX_PHONEME_LENGTH
KOKORO_VOCAB = 178  # token ids 0..177: kokoro_onnx's config.json vocabulary
SAMPLES_PER_TOKEN = 600  # 25 ms at 24 kHz: "Hello world." is about 0.4 s of audio
# A few of Kokoro v1.0's voice names: production's default (af_heart) and one per accent and sex.
VOICES = ("af_heart", "af_bella", "am_adam", "bf_emma", "bm_george")
W2V2_KERNEL, W2V2_STRIDE = 400, 320
W2V2_SPECIALS = ("<pad>", "<s>", "</s>", "<unk>", "|")
W2V2_LETTERS = "ETAONIHSRDLUMWCFGYPBVK'XJQZ"
ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def kokoro_graph(rng: np.random.Generator) -> bytes:
    """audio = reshape(tanh(table[tokens] * wave + style @ w) * 0.25 / speed, [-1])."""
    initializers = [
        _onnx.tensor("table", rng.standard_normal((KOKORO_VOCAB, 1), dtype=np.float32)),
        _onnx.tensor("wave", rng.standard_normal((1, 1, SAMPLES_PER_TOKEN), dtype=np.float32)),
        _onnx.tensor("style_w", rng.standard_normal((STYLE_DIM, 1), dtype=np.float32) / 16),
        _onnx.tensor("gain", np.array([0.25], dtype=np.float32)),
        _onnx.tensor("flat", np.array([-1], dtype=np.int64)),
    ]
    nodes = [
        _onnx.node("Gather", ["table", "tokens"], ["embedded"], axis=0),  # [1, n, 1]
        _onnx.node("Mul", ["embedded", "wave"], ["frames"]),  # [1, n, 600]
        _onnx.node("MatMul", ["style", "style_w"], ["style_bias"]),  # [1, 1]
        _onnx.node("Add", ["frames", "style_bias"], ["voiced"]),
        _onnx.node("Tanh", ["voiced"], ["bounded"]),
        _onnx.node("Div", ["gain", "speed"], ["level"]),
        _onnx.node("Mul", ["bounded", "level"], ["scaled"]),
        _onnx.node("Reshape", ["scaled", "flat"], ["audio"]),
    ]
    inputs = [
        _onnx.value_info("tokens", _onnx.INT64, [1, "tokens_len"]),
        _onnx.value_info("style", _onnx.FLOAT, [1, STYLE_DIM]),
        _onnx.value_info("speed", _onnx.FLOAT, [1]),
    ]
    outputs = [_onnx.value_info("audio", _onnx.FLOAT, ["num_samples"])]
    return _onnx.model_bytes("kokoro", nodes, inputs, outputs, initializers, OPSET)


def wav2vec2_graph(rng: np.random.Generator, vocab_size: int) -> bytes:
    """logits = transpose(conv1d(input_values, kernel 400, stride 320)): [batch, frames, vocab]."""
    weight = rng.standard_normal((vocab_size, 1, W2V2_KERNEL), dtype=np.float32)
    initializers = [
        _onnx.tensor("conv_w", weight),
        _onnx.tensor("channel_axis", np.array([1], dtype=np.int64)),
    ]
    nodes = [
        _onnx.node("Unsqueeze", ["input_values", "channel_axis"], ["mono"]),
        _onnx.node(
            "Conv",
            ["mono", "conv_w"],
            ["scores"],
            kernel_shape=[W2V2_KERNEL],
            strides=[W2V2_STRIDE],
        ),
        _onnx.node("Transpose", ["scores"], ["logits"], perm=[0, 2, 1]),
    ]
    inputs = [_onnx.value_info("input_values", _onnx.FLOAT, ["batch_size", "sequence_length"])]
    outputs = [_onnx.value_info("logits", _onnx.FLOAT, ["batch_size", "frames", vocab_size])]
    return _onnx.model_bytes("wav2vec2", nodes, inputs, outputs, initializers, OPSET)


def write_voices(path: Path, rng: np.random.Generator) -> None:
    """np.savez's layout (one `<name>.npy` member per voice), with fixed member times."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for name in VOICES:
            pack = rng.standard_normal((VOICE_ROWS, 1, STYLE_DIM), dtype=np.float32) / 4
            member = io.BytesIO()
            np.lib.format.write_array(member, pack, allow_pickle=False)
            archive.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=ZIP_TIME), member.getvalue())


def write_processor(folder: Path) -> int:
    """The four files of a Wav2Vec2Processor as production's folder has them (a transformers 4.x
    `save_pretrained`: transformers 5 writes processor_config.json instead, which production's
    folder lacks); returns the vocabulary's size."""
    vocab = {token: i for i, token in enumerate((*W2V2_SPECIALS, *W2V2_LETTERS))}
    specials = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}
    files = {
        "preprocessor_config.json": {
            "do_normalize": True,
            "feature_extractor_type": "Wav2Vec2FeatureExtractor",
            "feature_size": 1,
            "padding_side": "right",
            "padding_value": 0.0,
            "processor_class": "Wav2Vec2Processor",
            "return_attention_mask": False,
            "sampling_rate": 16000,
        },
        "special_tokens_map.json": specials,
        "tokenizer_config.json": {
            **specials,
            "do_lower_case": False,
            "processor_class": "Wav2Vec2Processor",
            "replace_word_delimiter_char": " ",
            "target_lang": None,
            "tokenizer_class": "Wav2Vec2CTCTokenizer",
            "word_delimiter_token": "|",
        },
        "vocab.json": vocab,
    }
    for name, content in files.items():
        (folder / name).write_text(json.dumps(content, indent=2, sort_keys=True) + "\n")
    return len(vocab)


def main(out: Path) -> None:
    rng = np.random.default_rng(18)
    kokoro = out / "kokoro"
    wav2vec2 = out / "wav2vec2"
    kokoro.mkdir(parents=True)
    (wav2vec2 / "processor").mkdir(parents=True)
    (kokoro / "kokoro-v1.0.onnx").write_bytes(kokoro_graph(rng))
    write_voices(kokoro / "voices-v1.0.bin", rng)
    vocab_size = write_processor(wav2vec2 / "processor")
    (wav2vec2 / "model.onnx").write_bytes(wav2vec2_graph(rng, vocab_size))


if __name__ == "__main__":
    main(Path(sys.argv[-1]))
