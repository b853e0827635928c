"""The tts stand-in (services/production/builders/tts_onnx.py): production's file layout (as the
isvc's README in the checkout draws it), deterministic to the sha256 of the entry, and graphs with
the names, dtypes and axes that the isvc's code feeds and reads, checked with the isvc's own
onnxruntime, numpy and transformers."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox import catalog, models
from tests.fasttext_proxy import isvc_python
from tests.production_support import checkout

pytestmark = pytest.mark.unit

CHECKOUT = checkout()
if CHECKOUT is None:
    pytest.skip("no inference-services checkout", allow_module_level=True)

# Run in the isvc's venv: what its code does with the files (inference.py, alignment.py).
_PROBE = r"""
import json, sys
import numpy as np
import onnxruntime as ort
from transformers import Wav2Vec2Processor

root = sys.argv[1]
def io(session):
    return {
        "inputs": [[i.name, i.type, i.shape] for i in session.get_inputs()],
        "outputs": [[o.name, o.type, o.shape] for o in session.get_outputs()],
    }
kokoro = ort.InferenceSession(root + "/kokoro/kokoro-v1.0.onnx", providers=["CPUExecutionProvider"])
voices = np.load(root + "/kokoro/voices-v1.0.bin")
style = voices["af_heart"][5]
audio = kokoro.run(None, {"tokens": [[0, 50, 51, 52, 0]], "style": style,
                          "speed": np.ones(1, dtype=np.float32)})[0]
slower = kokoro.run(None, {"tokens": [[0, 50, 51, 52, 0]], "style": style,
                           "speed": np.full(1, 2.0, dtype=np.float32)})[0]
w2v2 = ort.InferenceSession(root + "/wav2vec2/model.onnx")
processor = Wav2Vec2Processor.from_pretrained(root + "/wav2vec2/processor")
values = processor(np.zeros(16000, dtype=np.float32) + 0.1, sampling_rate=16000,
                   return_tensors="np", padding=True).input_values
logits = w2v2.run(None, {"input_values": values})[0]
print(json.dumps({
    "kokoro": io(kokoro), "w2v2": io(w2v2),
    "voices": {k: [list(voices[k].shape), str(voices[k].dtype)] for k in voices.files},
    "audio": [list(audio.shape), str(audio.dtype), float(abs(audio).max()),
              float(abs(slower).max())],
    "logits": [list(logits.shape), str(logits.dtype)],
    "blank": processor.tokenizer.pad_token_id,
    "vocab": len(processor.tokenizer.get_vocab()),
    "sampling_rate": processor.feature_extractor.sampling_rate,
}))
"""


@pytest.fixture(scope="module")
def service() -> Iterator[catalog.Service]:
    mp = pytest.MonkeyPatch()
    mp.setenv(catalog.INFERENCE_SERVICES_ENV, str(CHECKOUT))
    mp.delenv(catalog.SERVICES_PATH_ENV, raising=False)
    yield catalog.Catalog().services["tts"]
    mp.undo()


def _build(service: catalog.Service, out: Path) -> Path:
    out.mkdir(parents=True)
    subprocess.run(
        [isvc_python(service), str(service.dir / service.model.build), str(out)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return out


@pytest.fixture(scope="module")
def built(service, tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("tts")
    return _build(service, tmp / "a" / "models"), _build(service, tmp / "b" / "models")


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def _readme_layout() -> list[str]:
    """The files of the tree that production's README draws under PATH_TO_MODEL_DIR."""
    text = (CHECKOUT / "src/models/tts/README.md").read_text()
    drawing = text.split("PATH_TO_MODEL_DIR\n", 1)[1].split("```", 1)[0]
    files, parents = [], []
    for line in drawing.splitlines():
        match = re.match(r"^((?:│   |    )*)[├└]── (\S+)$", line)
        if not match:
            continue
        depth = len(match.group(1)) // 4
        parents[depth:] = [match.group(2)]
        files.append("/".join(parents))
    folders = {f.rsplit("/", 1)[0] for f in files if "/" in f}
    return sorted(f for f in files if f not in folders)


def test_the_stand_in_has_productions_layout(built) -> None:
    layout = _readme_layout()
    assert "kokoro/kokoro-v1.0.onnx" in layout and len(layout) == 7, layout
    assert _files(built[0]) == layout


def test_the_stand_in_is_deterministic_and_hashes_to_its_entry(service, built) -> None:
    a, b = built
    for name in _files(a):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert models.tree_sha256(a) == service.model.sha256
    assert (a / service.model.file).is_file()


def test_the_graphs_take_and_give_what_the_isvcs_code_feeds_and_reads(service, built) -> None:
    proc = subprocess.run(
        [isvc_python(service), "-c", _PROBE, str(built[0])],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    # kokoro_onnx 0.5.0's feeds for an export with a `tokens` input; output 0 is the waveform.
    assert got["kokoro"]["inputs"] == [
        ["tokens", "tensor(int64)", [1, "tokens_len"]],
        ["style", "tensor(float)", [1, 256]],
        ["speed", "tensor(float)", [1]],
    ]
    assert got["kokoro"]["outputs"] == [["audio", "tensor(float)", ["num_samples"]]]
    shape, dtype, peak, slower_peak = got["audio"]
    assert shape == [5 * 600] and dtype == "float32"  # 25 ms of 24 kHz audio per token
    assert 0 < peak <= 1 and slower_peak < peak  # speed reaches the output
    # A pack per voice, indexed by the token count: production's default voice among them.
    assert got["voices"]["af_heart"] == [[510, 1, 256], "float32"]
    # The aligner: optimum's ASR export names; a frame per 20 ms of 16 kHz audio.
    assert got["w2v2"]["inputs"] == [
        ["input_values", "tensor(float)", ["batch_size", "sequence_length"]]
    ]
    assert got["w2v2"]["outputs"][0][0] == "logits"
    assert got["logits"] == [[1, (16000 - 400) // 320 + 1, got["vocab"]], "float32"]
    assert got["blank"] == 0 and got["vocab"] == 32 and got["sampling_rate"] == 16000
