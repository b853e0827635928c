"""The local runtime's lifecycle through the real CLI: idempotent up, crash in status, clean down,
a failing up leaving nothing behind, the predictor's 4xx passed through the transformer."""

from __future__ import annotations

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

from sandbox.runtime import processes, state
from sandbox.runtime.processes import free_port
from tests.e2e.conftest import cli

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def run_dir(tmp_path, monkeypatch):
    """A sandbox of its own, so lifecycle tests never disturb the shared e2e sandbox."""
    monkeypatch.setenv("SANDBOX_RUN_DIR", str(tmp_path / "run"))
    yield tmp_path / "run"
    cli("down", check=False)


def _pids() -> list[int]:
    """Recorded pids: the isvcs' components, then the replay server and the gateway."""
    st = state.read()
    comps = [c for r in st.isvcs.values() for c in r.components.values()]
    pids = [c.process.pid for c in [*comps, *st.mediawiki.values()] if c.process]
    return pids + ([st.gateway.process.pid] if st.gateway else [])


def _procs_with_port(port: int) -> list[int]:
    """Processes whose command line serves `port`: a server and any worker it forked."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"--http_port" in args and str(port).encode() in args and _alive(int(proc.name)):
            found.append(int(proc.name))
    return found


def _marked() -> list[int]:
    """Live processes that carry this sandbox's mark."""
    return [p for p in map(int, filter(str.isdigit, os.listdir("/proc")))
            if processes.carries_mark(p) and _alive(p)]  # fmt: skip


def _assert_nothing_left() -> None:
    st = state.read()
    assert st.isvcs == {} and st.starting == {} and st.mediawiki == {} and st.gateway is None
    assert _marked() == []


def _probe_while(port: str, host: str) -> tuple[list[int], threading.Event]:
    """Statuses of GET /v1/models/<isvc> through the gateway, as fast as it answers, until the
    returned event is set."""
    seen: list[int] = []
    done = threading.Event()

    def probe() -> None:
        while not done.is_set():
            req = urllib.request.Request(
                f"http://127.0.0.1:{port}/v1/models/{host.split('.')[0]}", headers={"Host": host}
            )
            try:
                with urllib.request.urlopen(req, timeout=5) as r:
                    seen.append(r.status)
            except urllib.error.HTTPError as e:
                seen.append(e.code)
            except OSError:
                seen.append(0)

    threading.Thread(target=probe, daemon=True).start()
    return seen, done


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] != "Z"


def test_up_is_idempotent_status_shows_crash_and_down_cleans_up(run_dir):
    port = str(free_port())
    cli("up", "langid", "--port", port)
    first = _pids()
    assert len(first) == 2  # predictor + gateway
    again = cli("up", "langid", "--port", port)
    assert "up to date" in again.stderr
    assert _pids() == first

    status = cli("status")
    assert "langid" in status.stdout and "running" in status.stdout

    # A changed isvc (here: its environment) is replaced; the gateway stays.
    changed = cli("up", "langid", "--port", port, "--env", "SANDBOX_TEST_MARK=1")
    assert "starting the new langid" in changed.stderr
    assert "stopping the previous langid" in changed.stderr
    assert _pids()[-1] == first[-1] and _pids()[0] != first[0]
    assert not _alive(first[0])

    comp = state.read().isvcs["local/langid"].components["predictor"]
    predictor, crashed_port = comp.process, comp.port
    # logpipe and the stock server (one process: `ModelServer(workers=1)`)
    assert len(_procs_with_port(crashed_port)) == 2
    os.kill(predictor.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while processes.alive(predictor):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    crashed = cli("status", check=False)
    assert crashed.returncode == 1
    assert "exited" in crashed.stdout

    # up restarts what crashed, and its Host is never unknown meanwhile (issue 16, item 12):
    # 502 (the crashed one) or 503 with a reason (being replaced), never 404.
    seen, done = _probe_while(port, "langid.llm.wikimedia.org")
    try:
        restarted = cli("up", "langid", "--port", port)
    finally:
        done.set()
    assert "stopping langid (it has a stopped process)" in restarted.stderr
    assert seen and 404 not in seen, sorted(set(seen))
    ok = cli("predict", "langid", "english")
    assert "eng_Latn" in ok.stdout

    logs = cli("logs", "langid")
    assert "Uvicorn running" in logs.stdout or "uvicorn" in logs.stdout.lower()

    pids = _pids()
    new_port = state.read().isvcs["local/langid"].components["predictor"].port
    cli("down")
    assert not any(_alive(p) for p in pids)
    # Nothing is left behind: not the new server's worker, nor the crashed server's.
    assert _procs_with_port(new_port) == [] and _procs_with_port(crashed_port) == []
    assert "nothing is running" in cli("status").stdout
    assert "nothing is running" in cli("down").stderr


def test_logs_follow_shows_new_gateway_lines(run_dir):
    port = free_port()
    cli("up", "langid", "--port", str(port))
    follow = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "logs", "gateway", "--follow", "--lines", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1)  # let it reach the end of the file before the request
        assert "eng_Latn" in cli("predict", "langid", "english").stdout
        line = follow.stdout.readline()
        assert "langid.llm.wikimedia.org" in line and "200" in line
    finally:
        follow.terminate()
        follow.wait(10)


def test_failing_up_leaves_nothing_running(run_dir):
    """The predictor cannot load its model: up fails with its log, and nothing keeps running."""
    proc = cli(
        "up",
        "langid",
        "--port",
        str(free_port()),
        "--env",
        "MODEL_PATH=/nonexistent/model.bin",
        check=False,
    )
    assert proc.returncode == 1
    assert "did not become ready: its process" in proc.stderr
    # The stock predictor's own last log lines (fastText's error) follow the CLI's message,
    # which itself is no traceback.
    assert "cannot be opened for loading" in proc.stderr
    assert "Nothing this command started is left running" in proc.stderr
    assert "Traceback" not in proc.stderr.split("did not become ready")[0]
    # The progress line does not claim success before the error (finding 3).
    assert "done (" not in proc.stderr.split("starting langid")[1]
    _assert_nothing_left()

    # A second failure shows only its own run's output, not the previous run's lines.
    again = cli(
        "up", "langid", "--port", str(free_port()), "--env", "MODEL_PATH=/elsewhere/m.bin",
        check=False,
    )  # fmt: skip
    assert "/elsewhere/m.bin" in again.stderr
    assert "/nonexistent/model.bin" not in again.stderr


def test_gateway_port_taken_is_a_clear_error(run_dir):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = cli("up", "langid", "--port", str(port), check=False)
    assert proc.returncode == 1
    assert f"port {port} is already in use" in proc.stderr and "--port" in proc.stderr
    assert "Traceback" not in proc.stderr
    _assert_nothing_left()


def test_bad_options_are_cli_errors(run_dir):
    for args, words in [
        (["--max-body-bytes", "-1"], "max-body-bytes"),
        (["--mediawiki", "ftp://x"], "--mediawiki"),
        (["--env", "NOEQUALS"], "KEY=VALUE"),
    ]:
        proc = cli("up", "langid", *args, check=False)
        assert proc.returncode != 0, args
        assert words in proc.stderr and "Traceback" not in proc.stderr


def test_unknown_isvc_exits_2_and_lists_known(run_dir):
    proc = cli("up", "nope", check=False)
    assert proc.returncode == 2
    assert "langid" in proc.stderr and "outlink-topic-model" in proc.stderr
    script = subprocess.run(
        [str(REPO / "scripts" / "deploy.sh"), "nope", "--target", "local"],
        capture_output=True,
        text=True,
    )
    assert script.returncode == 2
    assert "outlink-topic-model" in script.stderr


def test_model_source_uri_stages_the_model_from_a_folder(run_dir, tmp_path):
    """`--model-source URI` stages the model as KServe's storage-initializer would."""
    from sandbox import catalog, models

    svc = catalog.get("langid")
    store = tmp_path / "store"
    store.mkdir()
    (store / svc.model.file).write_bytes(models.build(svc).read_bytes())
    proc = cli("up", "langid", "--port", str(free_port()), "--model-source", str(store))
    assert f"copying {store / svc.model.file}" in proc.stderr
    staged = Path(state.read().isvcs["local/langid"].models_dir) / svc.model.file
    assert staged.read_bytes() == (store / svc.model.file).read_bytes()
    assert "deu_Latn" in cli("predict", "langid", "german").stdout
