"""sandbox.venvs: the per-requirements virtualenvs (real installs of a tiny package)."""

from __future__ import annotations

import json
import re
import subprocess
import threading
from pathlib import Path

import pytest

from sandbox import venvs
from sandbox.venvs import VenvError

pytestmark = pytest.mark.unit

SMALL_PIN = "six==1.17.0"


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private sandbox cache, so every test builds cold (the installers' caches stay warm)."""
    root = tmp_path / "cache"
    monkeypatch.setenv("SANDBOX_CACHE_DIR", str(root))
    monkeypatch.delenv("SANDBOX_INSTALLER", raising=False)
    return root


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def run_in(venv: Path, code: str) -> subprocess.CompletedProcess[str]:
    # From a neutral directory: `-c` puts the working directory on sys.path.
    return subprocess.run(
        [str(venvs.python_of(venv)), "-c", code],
        capture_output=True,
        text=True,
        check=False,
        cwd=venv,
    )


# -- the key -----------------------------------------------------------------------------------
def test_includes_are_followed_relative_to_the_including_file(tmp_path: Path) -> None:
    shared = write(tmp_path / "python" / "requirements.txt", "six\n")
    cons = write(tmp_path / "constraints.txt", "six==1.17.0\n")
    top = write(
        tmp_path / "src" / "isvc" / "requirements.txt",
        "-r ../../python/requirements.txt  # shared\n--constraint=../../constraints.txt\nsix\n",
    )
    assert venvs.requirement_files([top]) == [top.resolve(), shared.resolve(), cons.resolve()]


def test_missing_include_names_the_including_file(tmp_path: Path) -> None:
    top = write(tmp_path / "requirements.txt", "-r nowhere.txt\n")
    with pytest.raises(VenvError, match=r"nowhere\.txt does not exist \(included by "):
        venvs.requirement_files([top])


def test_key_follows_contents_not_paths(tmp_path: Path) -> None:
    interp = venvs.interpreter()
    a = write(tmp_path / "a" / "requirements.txt", "-r shared.txt\n")
    shared_a = write(tmp_path / "a" / "shared.txt", "six==1.17.0\n")
    b = write(tmp_path / "b" / "requirements.txt", "-r shared.txt\n")
    write(tmp_path / "b" / "shared.txt", "six==1.17.0\n")
    assert venvs.venv_key([a], interp) == venvs.venv_key([b], interp)
    before = venvs.venv_key([a], interp)
    shared_a.write_text("six==1.16.0\n")  # only the included file changes
    assert venvs.venv_key([a], interp) != before
    other = venvs.Interpreter(interp.executable, "3.99.0", interp.implementation)
    assert venvs.venv_key([a], other) != venvs.venv_key([a], interp)


# -- building ----------------------------------------------------------------------------------
@pytest.mark.parametrize("tool", ["uv", "pip"])
def test_builds_an_isolated_venv_once(
    tool: str, cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SANDBOX_INSTALLER", tool)
    # The caller's PYTHONPATH points at the sandbox's packages: it must not reach the venv.
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[2]))
    reqs = write(tmp_path / "requirements.txt", f"{SMALL_PIN}\n")
    messages: list[str] = []
    venv = venvs.ensure([reqs], progress=messages.append)
    assert venv.parent == cache / "venvs"
    started = [m for m in messages if m.startswith("building")]
    assert len(started) == 1 and tool in messages[0]
    stamp = json.loads((venv / venvs.STAMP).read_text())
    assert stamp["installer"] == tool
    monkeypatch.delenv("PYTHONPATH")
    probe = run_in(
        venv,
        "import sys, six, importlib.util as u; "
        "print(sys.prefix, six.__version__, u.find_spec('sandbox'), u.find_spec('kserve'))",
    )
    assert probe.returncode == 0, probe.stderr
    prefix, version, sandbox_spec, kserve_spec = probe.stdout.split()
    assert (Path(prefix), version) == (venv, "1.17.0")
    assert (sandbox_spec, kserve_spec) == ("None", "None")
    assert "include-system-site-packages = false" in (venv / "pyvenv.cfg").read_text()
    # No temporary directory left, and the scripts name the final directory.
    assert sorted(p.name for p in venv.parent.iterdir() if p.is_dir()) == [venv.name]
    assert str(venv) in (venv / "bin" / "activate").read_text()
    # Cached: the second call builds nothing (says nothing).
    before = len(messages)
    assert venvs.ensure([reqs], progress=messages.append) == venv
    assert len(messages) == before


def test_failed_install_leaves_nothing_and_shows_the_installer_output(
    cache: Path, tmp_path: Path
) -> None:
    reqs = write(tmp_path / "requirements.txt", "./no-such-local-package\n")
    with pytest.raises(VenvError) as err:
        venvs.ensure([reqs], progress=None)
    message = str(err.value)
    assert "no-such-local-package" in message  # the installer's own words
    assert "nothing was left behind" in message
    assert [p.name for p in (cache / "venvs").iterdir() if p.is_dir()] == []


def test_interrupted_build_leaves_nothing(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reqs = write(tmp_path / "requirements.txt", f"{SMALL_PIN}\n")
    real_run = venvs._run

    def interrupted(cmd: list[str], env: dict[str, str], what: str, progress) -> None:
        real_run(cmd, env, what, progress)
        raise KeyboardInterrupt  # Ctrl-C right after the venv was created

    monkeypatch.setattr(venvs, "_run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        venvs.ensure([reqs], progress=None)
    assert [p.name for p in (cache / "venvs").iterdir() if p.is_dir()] == []


def test_a_long_build_shows_progress_with_the_elapsed_time(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 15, defect 13: heartbeat lines while the installer runs, then `done (Xs)`."""
    monkeypatch.setenv("SANDBOX_PROGRESS_INTERVAL", "0.05")
    reqs = write(tmp_path / "requirements.txt", f"{SMALL_PIN}\n")
    said: list[str] = []
    venvs.ensure([reqs], progress=said.append)
    assert said[0].startswith("building a Python")
    beats = [line for line in said if "… still installing" in line]
    assert beats and all(re.search(r"\(\d+s\)", b) for b in beats), said
    assert re.fullmatch(r"  done \(\d+\.\ds\)", said[-1]), said


def test_half_made_venv_is_rebuilt(cache: Path, tmp_path: Path) -> None:
    reqs = write(tmp_path / "requirements.txt", f"{SMALL_PIN}\n")
    key = venvs.venv_key([reqs], venvs.interpreter())
    (cache / "venvs" / key / "bin").mkdir(parents=True)  # no stamp: not a finished venv
    venv = venvs.ensure([reqs], progress=None)
    assert run_in(venv, "import six").returncode == 0


def test_concurrent_calls_build_once(cache: Path, tmp_path: Path) -> None:
    reqs = write(tmp_path / "requirements.txt", f"{SMALL_PIN}\n")
    builds: list[str] = []
    results: list[Path] = []
    errors: list[BaseException] = []

    def call() -> None:
        try:
            results.append(venvs.ensure([reqs], progress=builds.append))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len([b for b in builds if b.startswith("building")]) == 1
    assert len(set(results)) == 1 and len(results) == 3


def test_unknown_installer_is_refused(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDBOX_INSTALLER", "conda")
    with pytest.raises(VenvError, match="SANDBOX_INSTALLER must be one of uv, pip"):
        venvs.installer()


def test_uv_is_trusted_with_pips_ca_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.setenv("PIP_CERT", "/etc/ssl/certs/ca-certificates.crt")
    monkeypatch.setenv("PYTHONPATH", "/somewhere")
    env = venvs._clean_env()
    assert env["SSL_CERT_FILE"] == "/etc/ssl/certs/ca-certificates.crt"
    assert "PYTHONPATH" not in env


@pytest.mark.parametrize("tool", ["uv", "pip"])
def test_a_base_layer_is_installed_first_and_the_isvc_pins_win_over_it(
    tool: str, cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As in a vLLM image: the base's packages are there before the isvc's `pip install -r`, which
    may change one of them (one resolve of both files would refuse the clash); `without` removes
    what the base brings that cannot run here."""
    monkeypatch.setenv("SANDBOX_INSTALLER", tool)
    base = write(tmp_path / "image.txt", "six==1.16.0\nidna==3.10\n")
    own = write(tmp_path / "requirements.txt", f"{SMALL_PIN}\n")
    venv = venvs.ensure([own], base=[base], without=["idna"], progress=None)
    probe = run_in(
        venv, "import six, importlib.util as u; print(six.__version__, u.find_spec('idna'))"
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.split() == ["1.17.0", "None"]
    stamp = json.loads((venv / venvs.STAMP).read_text())
    assert stamp["requirements"] == [str(base.resolve()), str(own.resolve())]
    assert stamp["without"] == ["idna"]
    # The layering and the removals are part of the key.
    interp = venvs.interpreter()
    assert venv.name == venvs.venv_key([own], interp, [base], ["idna"])
    assert venvs.venv_key([own], interp, [base]) != venv.name
    assert venvs.venv_key([own, base], interp) not in (venv.name, venvs.venv_key([own], interp))
