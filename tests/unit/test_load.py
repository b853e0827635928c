"""`ml-sandbox load` without traffic: finding production's locust test, the generated locustfile,
locust's CSVs read back, the comparison with a baseline (production's rule), and clear errors."""

from __future__ import annotations

import ast
import csv
import shutil
from pathlib import Path

import pytest
import yaml

from sandbox import catalog
from sandbox.cli import main
from sandbox.load import report, run, suite
from sandbox.paths import REPO_ROOT

pytestmark = pytest.mark.unit

CHECKOUT = REPO_ROOT.parent / "shared" / "inference-services"
HEADER = (
    "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,"
    "Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s"
)
PREDICT = "/v1/models/langid:predict"


def stats_csv(path: Path, rows: list[tuple[str, int, int, float, float, float]]) -> Path:
    """A locust stats CSV: (name, requests, failures, median, average, rps) per row."""
    lines = [HEADER]
    for name, n, f, median, avg, rps in rows:
        kind = "" if name == report.AGGREGATED else "POST"
        lines.append(f"{kind},{name},{n},{f},{median},{avg},1,200,90,{rps},0.0")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def checkout(monkeypatch):
    if not (CHECKOUT / "test" / "locust" / "locustfile.py").is_file():
        pytest.fail(f"the inference-services snapshot is missing: {CHECKOUT}")
    monkeypatch.setenv(suite.CHECKOUT_ENV, str(CHECKOUT))
    return CHECKOUT.resolve()  # the suite names files by their real path (../shared may be a link)


def test_production_tests_of_the_reference_isvcs_are_found(checkout):
    for name, module in (("langid", "langid"), ("outlink-topic-model", "articletopic_outlink")):
        test = suite.production_test(catalog.get(name), required=True)
        assert test is not None and test.kind == "production"
        assert test.env == {"MODEL": module}
        assert test.cwd == checkout / "test" / "locust"
        assert test.baseline == checkout / "test" / "locust" / "results" / f"{module}_stats.csv"
        assert test.requirements[0] == checkout / "test" / "locust" / "requirements.txt"


def test_missing_production_test_is_a_clear_error(tmp_path, monkeypatch, capsys):
    (tmp_path / "test" / "locust").mkdir(parents=True)
    # A checkout with production's langid files (the catalog's entry then serves its code) but
    # no locust test for it.
    entry = yaml.safe_load((REPO_ROOT / "services/production/langid/service.yaml").read_text())
    predictor = entry["components"]["predictor"]
    for rel in [predictor["entrypoint"], *predictor["requirements"], predictor["image"]["blubber"]]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).touch()
    monkeypatch.setenv(suite.CHECKOUT_ENV, str(tmp_path))
    assert suite.production_test(catalog.get("langid"), required=False) is None
    assert main(["load", "langid", "--production-test"]) == 1
    err = capsys.readouterr().err
    assert "--production-test" in err and "langid" in err and str(tmp_path) in err
    assert "Traceback" not in err


def test_isvc_that_names_no_production_test_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(catalog.SERVICES_PATH_ENV, "")  # --service-dir sets it: undone after
    svc = tmp_path / "langid"
    shutil.copytree(REPO_ROOT / "services" / "langid", svc)
    yaml_file = svc / "service.yaml"
    yaml_file.write_text(yaml_file.read_text().replace("load_test: langid\n", ""))
    code = main(["--service-dir", str(tmp_path), "load", "langid", "--production-test"])
    assert code == 1
    assert "names no production load test" in capsys.readouterr().err


def test_unknown_isvc_exits_2(capsys):
    assert main(["load", "no-such-isvc"]) == 2
    err = capsys.readouterr().err
    assert "unknown isvc 'no-such-isvc'" in err and "langid" in err


def test_isvc_not_running_says_how_to_start_it(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("SANDBOX_RUN_DIR", str(tmp_path / "run"))  # a sandbox with nothing up
    assert main(["load", "langid"]) == 1
    assert "up langid" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--users=0", "--run-time=-1", "--spawn-rate=0", "--fail-over=-5"])
def test_bad_numbers_are_clear_errors(flag, capsys):
    assert main(["load", "langid", flag]) == 2  # bad usage
    assert flag.split("=")[0] in capsys.readouterr().err


def test_generated_locustfile_posts_only_2xx_samples_with_the_host_header(tmp_path):
    service = catalog.get("langid")
    test = suite.generated_test(service, tmp_path)
    text = test.locustfile.read_text()
    assigned = {
        node.targets[0].id: node.value
        for node in ast.parse(text).body
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
    }
    ok = [s.body().decode() for s in service.samples if s.expect.status == 200]
    assert ast.literal_eval(assigned["BODIES"]) == ok and len(ok) == 6
    assert "The parameter text is required" not in text  # no 4xx sample is posted
    assert '"Host": "langid.llm.wikimedia.org"' in text and PREDICT in text
    assert test.requirements == [suite.GENERATED_LOCUST, suite.PLOT_REQUIREMENTS]


def test_locust_command_keeps_the_tests_own_settings_unless_given(checkout):
    test = suite.production_test(catalog.get("langid"), required=True)
    out = run.Outputs(Path("/r"), "langid")
    cmd = run.command(Path("py"), test, run.Settings("http://127.0.0.1:1", None, None, None), out)
    assert "--users" not in cmd and "--run-time" not in cmd  # production's locust.conf decides
    assert cmd[cmd.index("--host") + 1] == "http://127.0.0.1:1"
    assert cmd[cmd.index("--csv") + 1] == "/r/langid"
    cmd = run.command(Path("py"), test, run.Settings("http://h", 4, 2.0, 7), out)
    assert cmd[cmd.index("--users") + 1] == "4" and cmd[cmd.index("--run-time") + 1] == "67s"
    env = run.environment(test)
    assert env["MODEL"] == "langid" and env["PYTHONDONTWRITEBYTECODE"] == "1"


def test_comparison_flags_a_row_beyond_the_threshold(tmp_path):
    base = stats_csv(
        tmp_path / "base.csv",
        [
            (PREDICT, 100, 0, 36, 38.5, 1.3),
            ("/other", 10, 0, 10, 10, 5),
            ("Aggregated", 110, 0, 36, 38, 6),
        ],
    )
    new = stats_csv(
        tmp_path / "new.csv",
        [
            (PREDICT, 100, 0, 36, 45.0, 1.3),
            ("/other", 10, 0, 10, 10.5, 5.2),
            ("Aggregated", 110, 0, 9, 9, 9),
        ],
    )
    changes = report.compare(report.read_stats(base), report.read_stats(new))
    assert [c.name for c in changes] == [PREDICT, "/other"]  # Aggregated left out
    flagged = {c.name: c.flagged(report.THRESHOLD_PCT) for c in changes}
    assert flagged == {PREDICT: True, "/other": False}
    assert changes[0].average_pct == round((45.0 - 38.5) * 100 / 38.5, 1) == 16.9
    text = report.table(changes, report.THRESHOLD_PCT, "the baseline")
    flagged_lines = [line for line in text.splitlines() if "⚠" in line]
    assert len(flagged_lines) == 1 and PREDICT in flagged_lines[0]
    assert report.regressions(changes, 20) == []
    assert report.regressions(changes, 15) == [
        f"{PREDICT}: average latency +16.9% (beyond --fail-over 15%)"
    ]


def test_a_throughput_drop_is_a_regression_but_not_a_flag(tmp_path):
    # Production's rule flags only rises; a gate also fails on fewer requests/s.
    base = stats_csv(tmp_path / "b.csv", [(PREDICT, 10, 0, 10, 10, 10.0)])
    new = stats_csv(tmp_path / "n.csv", [(PREDICT, 10, 0, 10, 10, 5.0)])
    changes = report.compare(report.read_stats(base), report.read_stats(new))
    assert not changes[0].flagged(10)
    assert report.regressions(changes, 10) == [
        f"{PREDICT}: requests/s -50.0% (beyond --fail-over 10%)"
    ]


def test_production_baselines_read_back(checkout):
    rows = report.read_stats(checkout / "test" / "locust" / "results" / "langid_stats.csv")
    assert rows[PREDICT].requests == 154 and rows[PREDICT].median_ms == 36
    assert report.AGGREGATED in rows


def test_not_a_stats_csv_is_a_clear_error(tmp_path):
    bad = tmp_path / "x.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(report.RunError, match="not a locust stats CSV"):
        report.read_stats(bad)


def test_progress_reads_the_last_aggregated_history_row(tmp_path):
    history = tmp_path / "h.csv"
    cols = ["Timestamp", "User Count", "Type", "Name", "Requests/s", "Failures/s", "50%", "95%"]
    cols += ["Total Request Count", "Total Failure Count"]
    with history.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        w.writerow([100, 0, "", "Aggregated", 0, 0, "N/A", "N/A", 0, 0])
        w.writerow([101, 2, "POST", PREDICT, 50, 0, 4, 9, 50, 0])
        w.writerow([103, 2, "", "Aggregated", 80.5, 0, 5, 12, 170, 1])
    p = report.latest_progress(history)
    assert p is not None and (p.seconds, p.users, p.requests, p.failures) == (3, 2, 170, 1)
    assert "80.5 req/s" in p.line() and "p95 12 ms" in p.line()
    assert report.latest_progress(tmp_path / "missing.csv") is None


def test_baseline_order_given_then_productions_then_the_saved_one(checkout, tmp_path, monkeypatch):
    from sandbox.commands import load as load_cmd

    monkeypatch.setenv("SANDBOX_RUN_DIR", str(tmp_path / "run"))
    service = catalog.get("langid")
    production = suite.production_test(service, required=True)
    generated = suite.generated_test(service, tmp_path / "gen")
    given = stats_csv(tmp_path / "given.csv", [(PREDICT, 1, 0, 1, 1, 1)])
    assert load_cmd.choose_baseline(service, production, given)[0] == given
    assert load_cmd.choose_baseline(service, production, None)[0] == production.baseline
    assert load_cmd.choose_baseline(service, generated, None) == (None, "")
    saved = load_cmd.baselines_dir() / "langid_stats.csv"
    saved.parent.mkdir(parents=True)
    stats_csv(saved, [(PREDICT, 1, 0, 1, 1, 1)])
    path, label = load_cmd.choose_baseline(service, generated, None)
    assert path == saved and "sandbox baseline" in label
