"""fastText for the tests, in an isvc's own venv: the sandbox's venv has no fastText (the model
builders and the isvcs run in the isvcs' venvs). One subprocess per model, asked over a pipe."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from sandbox import environments, venvs
from sandbox.catalog import Service

_SERVER = """
import json, sys
import fasttext
model = fasttext.load_model(sys.argv[1])
for line in sys.stdin:
    ask = json.loads(line)
    if ask["op"] == "labels":
        out = list(model.get_labels())
    else:
        labels, scores = model.predict(ask["text"], k=ask["k"], threshold=ask["threshold"])
        out = [list(labels), [float(s) for s in scores]]
    print(json.dumps(out), flush=True)
"""


def isvc_python(service: Service) -> str:
    """The interpreter of the isvc predictor's own venv (built if not cached)."""
    return str(venvs.python_of(environments.venv_for(service, service.components.predictor)))


class FastTextModel:
    """`fasttext.load_model(path)` with the isvc's fastText: predict() and get_labels()."""

    def __init__(self, service: Service, path: Path):
        self._proc = subprocess.Popen(
            [isvc_python(service), "-c", _SERVER, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def _ask(self, **ask):
        assert self._proc.stdin and self._proc.stdout
        self._proc.stdin.write(json.dumps(ask) + "\n")
        self._proc.stdin.flush()
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the fastText helper exited ({self._proc.wait()})")
        return json.loads(line)

    def get_labels(self) -> list[str]:
        return self._ask(op="labels")

    def predict(
        self, text: str, k: int = 1, threshold: float = 0.0
    ) -> tuple[list[str], list[float]]:
        labels, scores = self._ask(op="predict", text=text, k=k, threshold=threshold)
        return labels, scores

    def close(self) -> None:
        if self._proc.stdin:
            self._proc.stdin.close()
        self._proc.wait(timeout=30)
