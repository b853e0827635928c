"""`ml-sandbox dev` on the local target, on a copy of langid: a saved change serves through the
gateway; a syntax error keeps the old answer and prints the error, and its fix rolls again; a
steady stream of requests during 5 rolls has no failure; Ctrl-C leaves nothing running.

The tests run in order on one `dev` process (a module fixture): each is one step of an author's
session. Every request goes to the gateway on 127.0.0.1; every wait has a deadline."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from sandbox.paths import REPO_ROOT
from sandbox.runtime.processes import free_port
from tests.e2e.test_local_runtime import _assert_nothing_left

pytestmark = pytest.mark.e2e

HOST = "langid.llm.wikimedia.org"
ROLL_TIMEOUT_S = 60
START_TIMEOUT_S = 600  # a first run builds langid's venv and model


@dataclass
class Dev:
    proc: subprocess.Popen
    output: Path
    model_py: Path
    port: int
    run_dir: Path
    service_dir: Path

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def wait_for(self, pattern: str, after: int = 0, timeout: float = ROLL_TIMEOUT_S) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.text()[after:]
            if re.search(pattern, text):
                return text
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"no {pattern!r} in dev's output:\n{self.text()[after:]}")

    def predict(self) -> dict:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/v1/models/langid:predict",
            data=b'{"text": "The quick brown fox jumps over the lazy dog."}',
            headers={"Host": HOST, "Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def save_revision(self, rev: str) -> None:
        """Edit the answer as an author would: one more field in the response."""
        text = re.sub(r'\n\s*"rev": "[^"]*",', "", self.model_py.read_text())
        marker = '"score": float(scores[0]),'
        assert marker in text
        text = text.replace(marker, f'{marker}\n            "rev": "{rev}",')
        self.model_py.write_text(text)

    def wait_for_rev(self, rev: str, timeout: float = ROLL_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.predict().get("rev") == rev:
                return
            time.sleep(0.05)
        raise AssertionError(f"revision {rev} not served within {timeout}s:\n{self.text()}")


@pytest.fixture(scope="module")
def dev(tmp_path_factory):
    root = tmp_path_factory.mktemp("dev")
    services = root / "services"
    shutil.copytree(REPO_ROOT / "services" / "langid", services / "langid")
    run_dir = root / "run"
    port = free_port()
    output = root / "dev.out"
    env = {**os.environ, "SANDBOX_RUN_DIR": str(run_dir)}
    cmd = [sys.executable, "-m", "sandbox", "--service-dir", str(services), "dev", "langid"]
    cmd += ["--port", str(port), "--mediawiki", "replay"]
    with output.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    d = Dev(proc, output, services / "langid" / "predictor" / "model.py", port, run_dir, services)
    try:
        d.wait_for("watching", timeout=START_TIMEOUT_S)
        yield d
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_start_serves_and_checks_the_samples(dev):
    text = dev.text()
    assert "✓ langid/english: HTTP 200" in text
    assert "✓ langid/empty-text: HTTP 400" in text
    assert "rev" not in dev.predict()


def test_a_saved_change_serves_the_new_answer(dev):
    dev.save_revision("one")
    dev.wait_for_rev("one")
    dev.wait_for(r"roll 2 \(code: model\.py\)")


def test_a_syntax_error_keeps_the_old_answer_and_prints_the_error_then_the_fix_rolls(dev):
    before = len(dev.text())
    good = dev.model_py.read_text()
    dev.model_py.write_text(good + "\ndef broken(:\n")
    text = dev.wait_for("did not take over", after=before)
    dev.wait_for("SyntaxError", after=before)
    assert "model.py" in text
    assert dev.predict()["rev"] == "one"  # the old version keeps serving
    dev.model_py.write_text(good)
    dev.save_revision("fixed")
    dev.wait_for_rev("fixed")


def test_a_steady_stream_during_five_rolls_has_no_failure(dev):
    results = {"ok": 0, "failed": []}
    stop = threading.Event()

    def stream() -> None:
        deadline = time.monotonic() + 5 * ROLL_TIMEOUT_S
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                dev.predict()
                results["ok"] += 1
            except (urllib.error.URLError, OSError, ValueError) as e:
                results["failed"].append(repr(e))

    thread = threading.Thread(target=stream)
    thread.start()
    try:
        for n in range(5):
            dev.save_revision(f"stream-{n}")
            dev.wait_for_rev(f"stream-{n}")
    finally:
        stop.set()
        thread.join(30)
    assert results["failed"] == []
    assert results["ok"] > 20


def test_ctrl_c_leaves_nothing_running(dev):
    dev.proc.send_signal(signal.SIGINT)
    assert dev.proc.wait(60) == 130
    text = dev.text()
    assert "stopping what dev started" in text and "stopped the gateway" in text
    leftovers = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(dev.run_dir) in cmdline or str(dev.service_dir) in cmdline:
            leftovers.append(f"{entry.name}: {cmdline}")
    assert leftovers == []
    env_run_dir = os.environ.get("SANDBOX_RUN_DIR")
    os.environ["SANDBOX_RUN_DIR"] = str(dev.run_dir)
    try:
        _assert_nothing_left()
    finally:
        if env_run_dir is not None:
            os.environ["SANDBOX_RUN_DIR"] = env_run_dir
