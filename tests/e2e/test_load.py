"""`ml-sandbox load` against langid served on the local target (127.0.0.1 only, a few seconds
per run): production's own locust test, and one generated from the samples compared with a given
baseline, write locust's CSVs, its report and the plot."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox.load import report, suite
from sandbox.paths import REPO_ROOT
from sandbox.runtime.processes import free_port
from tests.e2e.conftest import cli
from tests.unit.test_load import PREDICT, stats_csv

pytestmark = pytest.mark.e2e

CHECKOUT = REPO_ROOT.parent / "shared" / "inference-services"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """langid up on the local target, in a run directory of its own."""
    run = tmp_path_factory.mktemp("load-run")
    saved = os.environ.get("SANDBOX_RUN_DIR")
    os.environ["SANDBOX_RUN_DIR"] = str(run)
    try:
        cli("up", "langid", "--port", str(free_port()))
        yield run
    finally:
        cli("down", check=False)
        if saved is None:
            os.environ.pop("SANDBOX_RUN_DIR", None)
        else:
            os.environ["SANDBOX_RUN_DIR"] = saved


def load(*args: str, checkout: Path | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != suite.CHECKOUT_ENV}
    if checkout is not None:
        env[suite.CHECKOUT_ENV] = str(checkout)
    return subprocess.run(
        [sys.executable, "-m", "sandbox", "load", "langid", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def assert_results(folder: Path) -> None:
    for name in ("stats", "stats_history", "failures"):
        assert (folder / f"langid_{name}.csv").is_file(), name
    assert "<html" in (folder / "report.html").read_text().lower()
    assert (folder / "plot.png").read_bytes()[:8] == PNG_MAGIC


def test_production_load_test_writes_csvs_plot_and_compares_with_production(served, tmp_path):
    folder = tmp_path / "results"
    proc = load("--run-time", "3", "--users", "2", "--results", str(folder), checkout=CHECKOUT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "production's load test MODEL=langid" in proc.stdout
    assert_results(folder)
    stats = report.read_stats(folder / "langid_stats.csv")
    assert stats[PREDICT].requests > 0 and stats[PREDICT].failures == 0
    assert "compared with production's baseline" in proc.stdout
    assert any(PREDICT in line and "38.5 →" in line for line in proc.stdout.splitlines())
    assert f"plot: {folder / 'plot.png'}" in proc.stdout


def test_generated_load_test_flags_a_regression_against_a_given_baseline(served, tmp_path):
    # A baseline 1000x faster than any real run: the row is flagged, and the gate fails.
    baseline = stats_csv(tmp_path / "fast.csv", [(PREDICT, 100, 0, 0.01, 0.01, 1e6)])
    folder = tmp_path / "results"
    proc = load(
        "--run-time", "3", "--baseline", str(baseline), "--fail-over", "50",
        "--results", str(folder), "--from-samples", "--save-baseline", checkout=CHECKOUT,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "generated from the samples" in proc.stdout
    assert_results(folder)
    flagged = [line for line in proc.stdout.splitlines() if "⚠" in line]
    assert len(flagged) == 1 and PREDICT in flagged[0]
    assert "average latency" in proc.stderr and "beyond --fail-over 50%" in proc.stderr
    assert report.read_stats(folder / "langid_stats.csv")[PREDICT].failures == 0
    saved = served / "load" / "baselines" / "langid_stats.csv"  # no failure: saved
    assert saved.read_text() == (folder / "langid_stats.csv").read_text()
