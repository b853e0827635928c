"""The lifecycle under faults: `up` interrupted at every stage (Ctrl-C, SIGTERM, SIGHUP) stops
exactly what it started; a SIGKILLed `up` leaves processes that `status` finds and `down` stops; a
corrupt state file is reported; `down` waits for an `up` in progress; a changed isvc is replaced
without a gap under a steady stream of requests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from sandbox import catalog
from sandbox.runtime import processes, state
from sandbox.runtime.processes import free_port
from tests.e2e.conftest import cli
from tests.e2e.test_local_runtime import _assert_nothing_left, _marked

pytestmark = pytest.mark.e2e


@pytest.fixture
def run_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("SANDBOX_RUN_DIR", str(tmp_path / "run"))
    yield tmp_path / "run"
    cli("down", check=False)


def _up(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "sandbox", "up", *args],
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_line(proc: subprocess.Popen, marker: str, seen: list[str]) -> None:
    assert proc.stderr is not None
    for line in proc.stderr:
        seen.append(line)
        if marker in line:
            return
    raise AssertionError(f"`up` ended before {marker!r}:\n{''.join(seen)}")


# Each stage of `up`, by the progress line that starts it. The predictor's model is a FIFO, so
# readiness never comes and the last stage lasts until the signal arrives.
STAGES = [
    "gateway listening",
    "starting the MediaWiki replay server",
    "staging the outlink-topic-model model",
    "starting outlink-topic-model",
]


# Ctrl-C at every stage; SIGTERM (`timeout`, a cancelled CI job) and SIGHUP (a closed terminal)
# at the last one, which takes the same path.
CASES = [(stage, signal.SIGINT) for stage in STAGES] + [
    (STAGES[-1], signal.SIGTERM),
    (STAGES[-1], signal.SIGHUP),
]


@pytest.mark.parametrize(("stage", "sig"), CASES, ids=[f"{s}-{g.name}" for s, g in CASES])
def test_interrupted_up_stops_what_it_started(run_dir, tmp_path, stage, sig):
    fifo = tmp_path / "model.bin"
    os.mkfifo(fifo)
    port = str(free_port())
    proc = _up("outlink-topic-model", "--mediawiki", "replay", "--port", port,
               "--env", f"MODEL_PATH={fifo}")  # fmt: skip
    seen: list[str] = []
    _wait_for_line(proc, stage, seen)
    proc.send_signal(sig)
    rest = proc.stderr.read()
    code = proc.wait(60)
    assert code == 130, "".join(seen) + rest
    assert "Traceback" not in rest
    assert "stopped what this command started" in rest
    said = [line for line in rest.splitlines() if line.startswith("interrupted")]
    assert len(said) == 1, rest  # said once (issue 15, small things)
    _assert_nothing_left()


def test_interrupt_keeps_what_ran_before(run_dir, tmp_path):
    """Only what this `up` started is stopped: an isvc that was already serving keeps serving."""
    port = str(free_port())
    cli("up", "langid", "--port", port)
    before = state.read().isvcs["local/langid"]
    fifo = tmp_path / "model.bin"
    os.mkfifo(fifo)
    proc = _up("outlink-topic-model", "--port", port, "--env", f"MODEL_PATH={fifo}")
    _wait_for_line(proc, "starting outlink-topic-model", [])
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 130
    after = state.read()
    assert list(after.isvcs) == ["local/langid"] and after.gateway is not None
    pid = before.components["predictor"].process.pid
    assert processes.alive(after.isvcs["local/langid"].components["predictor"].process)
    assert after.isvcs["local/langid"].components["predictor"].process.pid == pid
    assert "eng_Latn" in cli("predict", "langid", "english").stdout


def test_sigkilled_up_leaves_nothing_down_cannot_stop(run_dir, tmp_path):
    fifo = tmp_path / "model.bin"
    os.mkfifo(fifo)
    port = str(free_port())
    proc = _up("outlink-topic-model", "--mediawiki", "replay", "--port", port,
               "--env", f"MODEL_PATH={fifo}")  # fmt: skip
    _wait_for_line(proc, "starting outlink-topic-model", [])
    time.sleep(1)  # both components spawned
    proc.kill()
    proc.wait(10)
    assert _marked(), "the killed up's processes should still run"
    # The state recorded each process as it started: status shows them, down stops them.
    status = cli("status", check=False)
    assert "outlink-topic-model" in status.stdout and "starting" in status.stdout
    cli("down")
    _assert_nothing_left()
    # The port is free again: a new up works.
    cli("up", "langid", "--port", port)


def test_processes_missing_from_the_state_are_orphans_that_down_stops(run_dir):
    port = str(free_port())
    cli("up", "langid", "--port", port)
    st = state.read()
    pids = [st.gateway.process.pid, st.isvcs["local/langid"].components["predictor"].process.pid]
    state.state_path().unlink()  # lost (say, deleted by hand)
    status = cli("status", check=False)
    assert status.returncode == 1
    assert "orphan" in status.stdout and "down` stops them" in status.stdout
    taken = cli("up", "langid", "--port", port, check=False)
    assert taken.returncode == 1 and "orphan" in taken.stderr
    cli("down")
    assert _marked() == []
    assert not any(processes.alive(p) for p in [st.gateway.process] if p.pid in pids)


@pytest.mark.parametrize("content", ["{not json", "", "[]", '{"isvcs": null}', '{"version": 2}'])
def test_a_corrupt_state_file_is_reported_and_moved_aside(run_dir, content):
    run_dir.mkdir(parents=True)
    state.state_path().write_text(content)
    proc = cli("status", check=False)
    assert "Traceback" not in proc.stderr
    assert "is not a state file this version can read" in proc.stderr
    assert "moved it to state.corrupt-" in proc.stderr
    assert not state.state_path().exists()
    assert list(run_dir.glob("state.corrupt-*.json"))


def test_down_waits_for_an_up_in_progress(run_dir, tmp_path):
    fifo = tmp_path / "model.bin"
    os.mkfifo(fifo)
    proc = _up("langid", "--port", str(free_port()), "--env", f"MODEL_PATH={fifo}",
               "--timeout", "4")  # fmt: skip
    _wait_for_line(proc, "starting langid", [])
    down = subprocess.run(
        [sys.executable, "-m", "sandbox", "down"], capture_output=True, text=True, timeout=120
    )
    assert "waiting for another ml-sandbox command" in down.stderr
    assert proc.wait(60) == 1  # the up timed out on its own and rolled back
    _assert_nothing_left()


def test_run_files_are_private(run_dir):
    cli("up", "langid", "--port", str(free_port()))
    assert run_dir.stat().st_mode & 0o777 == 0o700
    for path in [state.state_path(), *run_dir.glob("logs/*.log"), run_dir / "routes.json"]:
        assert path.stat().st_mode & 0o777 == 0o600, path


def test_a_changed_isvc_is_replaced_without_a_gap(run_dir):
    """Like a Knative revision roll-out: new processes start beside the old ones, the route
    switches when they are ready, and then the old ones drain and stop."""
    port = free_port()
    cli("up", "langid", "--port", str(port))
    svc = catalog.get("langid")
    body = json.dumps({"text": "The cat sleeps on the sofa."}).encode()
    errors: list[str] = []
    sent = 0
    stop = threading.Event()

    def stream() -> None:
        nonlocal sent
        while not stop.is_set():
            req = urllib.request.Request(
                f"http://127.0.0.1:{port}{svc.predict_path}",
                data=body,
                headers={"Host": svc.host},
            )
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    r.read()
            except urllib.error.HTTPError as e:
                errors.append(f"{e.code} {e.read()[:200]!r}")
            except OSError as e:
                errors.append(str(e))
            sent += 1

    t = threading.Thread(target=stream)
    t.start()
    try:
        time.sleep(0.5)
        replaced = cli("up", "langid", "--port", str(port), "--env", "SANDBOX_TEST_MARK=2")
        time.sleep(0.5)
    finally:
        stop.set()
        t.join(60)
    assert sent > 20
    assert errors == []
    assert "stopping the previous langid" in replaced.stderr
    assert "processs" not in replaced.stderr


def test_logs_are_rotated_and_read_across_files(run_dir, monkeypatch):
    monkeypatch.setenv("SANDBOX_LOG_MAX_BYTES", "4096")
    port = str(free_port())
    cli("up", "langid", "--port", port)
    svc = catalog.get("langid")
    for _ in range(200):  # ~90 bytes of access log each
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/models/langid", headers={"Host": svc.host}
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            r.read()
    gateway_logs = sorted(p.name for p in (run_dir / "logs").glob("gateway.log*"))
    assert gateway_logs == ["gateway.log", "gateway.log.1", "gateway.log.2"]
    assert all((run_dir / "logs" / n).stat().st_size <= 4096 for n in gateway_logs)
    shown = cli("logs", "gateway", "--lines", "40").stdout.splitlines()
    assert len(shown) == 40 and all('"GET /v1/models/langid"' in line for line in shown[-5:])


def test_logs_into_a_closed_pipe_is_quiet(run_dir):
    cli("up", "langid", "--port", str(free_port()))
    proc = subprocess.run(
        f"{sys.executable} -m sandbox logs langid --lines 500 | head -1",
        shell=True,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.stdout.count("\n") == 1
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr


def test_up_records_mediawiki_then_replays_it_without_the_wiki(run_dir, tmp_path, monkeypatch):
    """`up --mediawiki record:DIR` sends the isvc's MediaWiki traffic to the wiki (here a local
    HTTPS origin serving fixture wikis) and records it; `replay:DIR` answers it byte for byte
    with the wiki gone."""
    from tests.component.test_mediawiki_record import Origin, make_tls

    (tmp_path / "tls").mkdir()
    tls = make_tls(tmp_path / "tls")
    origin = Origin(tls).start()
    monkeypatch.setenv("SANDBOX_MEDIAWIKI_UPSTREAM", origin.url)
    monkeypatch.setenv("SANDBOX_MEDIAWIKI_UPSTREAM_CA", str(tls.bundle))
    svc = catalog.get("outlink-topic-model")
    body = json.dumps({"lang": "en", "page_title": "Toni Morrison", "threshold": 0.1}).encode()
    recordings = tmp_path / "recordings"
    port = free_port()

    def ask() -> tuple[int, bytes]:
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}{svc.predict_path}", data=body, headers={"Host": svc.host}
        )
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()

    try:
        cli("up", svc.name, "--port", str(port), "--mediawiki", f"record:{recordings}")
        recorded = ask()
    finally:
        origin.stop()
    assert origin.seen and {s["host"] for s in origin.seen} == {"en.wikipedia.org"}
    files = sorted(recordings.rglob("*.yaml"))
    assert files and all(f.parent.name == "en.wikipedia.org" for f in files)
    up = cli("up", svc.name, "--port", str(port), "--mediawiki", f"replay:{recordings}")
    assert "starting the MediaWiki replay server (replay" in up.stderr  # restarted in its mode
    assert ask() == recorded
