"""sandbox.pipeline's reading of PipelineLib's `.pipeline/config.yaml` and `blubber check`, with
no daemon: stages, defaults and references as PipelineLib defines them
(wikimedia/integration-pipelinelib@b23da56:src/org/wikimedia/integration/PipelineStage.groovy
defaultConfig, Pipeline.groovy, PipelineRunner.groovy qualifyRegistryPath)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox import cli, pipeline
from sandbox.paths import REPO_ROOT

pytestmark = pytest.mark.unit

CHECKOUT = REPO_ROOT.parent / "shared" / "inference-services"

CONFIG = """\
pipelines:
  svc:
    stages:
      - name: test
      - name: candidate
        build: {variant: production, context: sub}
      - name: lint
        run: {image: '${test.imageID}', arguments: [lint], env: {A: b}}
      - name: publish
        build: production
        publish:
          image:
            name: '${setup.project}-svc'
            tags: [stable, '${setup.tag}']
        promote: true
    execution:
      - [test, lint]
      - [test, candidate, publish]
"""


def write(root: Path, text: str = CONFIG) -> Path:
    (root / ".pipeline").mkdir(parents=True)
    (root / ".pipeline" / "config.yaml").write_text(text)
    (root / ".gitreview").write_text("[gerrit]\nproject=machinelearning/liftwing/svc.git\n")
    return root


def test_stages_and_defaults(tmp_path: Path) -> None:
    p = pipeline.load(write(tmp_path), "svc")
    assert p.blubberfile == tmp_path / ".pipeline" / "svc" / "blubber.yaml"  # <name>/blubber.yaml
    assert p.directory == tmp_path and p.project == "machinelearning/liftwing/svc"
    assert [s.name for s in p.stages] == ["test", "lint", "candidate", "publish"]  # execution
    test, lint, candidate, publish = p.stages
    assert (test.variant, test.run) == ("test", {})  # name only: build and run that variant
    assert (candidate.variant, candidate.context, candidate.run) == ("production", "sub", None)
    assert lint.variant is None and lint.run["arguments"] == ["lint"]
    assert publish.skipped_steps == ("promote",)


def test_published_refs(tmp_path: Path) -> None:
    p = pipeline.load(write(tmp_path), "svc")
    ctx = {"setup.project": p.project, "setup.tag": "", "setup.timestamp": "T", ".stage": "publish"}
    assert pipeline.published_refs(p, p.stages[3], ctx) == [
        "docker-registry.wikimedia.org/wikimedia/machinelearning-liftwing-svc-svc:T-publish",
        "docker-registry.wikimedia.org/wikimedia/machinelearning-liftwing-svc-svc:stable",
    ]


def test_skip_lint_drops_only_the_lint_argument() -> None:
    assert pipeline._lint_dropped(["./entrypoint.sh", "ci-lint", "ci-unit"]) == [
        "./entrypoint.sh",
        "ci-unit",
    ]
    assert pipeline._lint_dropped(["./entrypoint.sh", "ci-unit"]) is None


@pytest.mark.parametrize(
    ("text", "name", "says"),
    [
        (CONFIG, "nope", "has no pipeline 'nope'; it has: svc"),
        ("pipelines: {svc: {stages: []}}\n", "svc", "a list of stages"),
        ("pipelines: {svc: {stages: [{build: x}]}}\n", "svc", "with a `name`"),
        ("pipelines: {svc: {stages: [{name: a, run: 3}]}}\n", "svc", "true or a mapping"),
        (
            "pipelines: {svc: {stages: [{name: a}], execution: [[b]]}}\n",
            "svc",
            "no stage 'b'",
        ),
        ("[1, 2\n", "svc", "not valid YAML"),
    ],
)
def test_bad_configs_are_clear_errors(tmp_path: Path, text: str, name: str, says: str) -> None:
    with pytest.raises(pipeline.PipelineError, match=says):
        pipeline.load(write(tmp_path, text), name)


def test_cli_exits_2_for_a_bad_pipeline_or_stage(tmp_path: Path, capsys) -> None:
    root = write(tmp_path)
    assert cli.main(["pipeline", "nope", "--source", str(root)]) == 2
    assert "has no pipeline 'nope'" in capsys.readouterr().err
    assert cli.main(["pipeline", "svc", "--source", str(root), "--stage", "x"]) == 2
    assert "has no stage 'x'" in capsys.readouterr().err
    assert cli.main(["pipeline", "svc", "--source", str(root), "--env", "NOEQUALS"]) == 2
    assert "expected K=V" in capsys.readouterr().err


@pytest.mark.parametrize(
    "value, message",
    [
        ("record", "a pipeline runs with live, replay or replay:DIR"),
        ("http://127.0.0.1:1", "a pipeline runs with live, replay or replay:DIR"),
        ("replay:/nonexistent/recordings", "is not a folder of recordings"),
        ("mirror", "--mediawiki must be"),
    ],
)
def test_cli_exits_2_for_a_mediawiki_mode_a_pipeline_cannot_use(
    tmp_path: Path, capsys, value: str, message: str
) -> None:
    root = write(tmp_path)
    assert cli.main(["pipeline", "svc", "--source", str(root), "--mediawiki", value]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.skipif(not CHECKOUT.is_dir(), reason="../shared/inference-services is not here")
def test_production_pipelines_load() -> None:
    outlink = pipeline.load(CHECKOUT, "outlink")
    assert [(s.name, s.variant, s.run) for s in outlink.stages] == [
        ("run-test", "test", {}),
        ("production", "production", None),
    ]
    assert outlink.blubberfile == CHECKOUT / ".pipeline" / "outlink" / "blubber.yaml"
    assert outlink.project == "machinelearning/liftwing/inference-services"


@pytest.mark.skipif(not CHECKOUT.is_dir(), reason="../shared/inference-services is not here")
def test_blubber_check_over_production(capsys) -> None:
    assert cli.main(["blubber", "check", str(CHECKOUT)]) == 1  # some bases have no stand-in
    out = capsys.readouterr().out
    assert ".pipeline/outlink/blubber.yaml test" in out and "v0.21.0  ok" in out
    assert ".pipeline/tts/blubber.yaml production" in out
    assert "unsupported variants.build.base: base docker-registry.wikimedia.org/ml/amd-vllm" in out
    assert "24 of 32 files translate in every variant" in out
    assert cli.main(["blubber", "check", str(REPO_ROOT / "sandbox")]) == 2


def test_unreachable_hosts_are_named() -> None:
    lines = [
        "E   mwapi.errors.ConnectionError: Cannot connect to host fi.wikipedia.org:443 ssl:default",
        "fatal: unable to access 'https://github.com/x/': Could not resolve host: github.com",
    ]
    hosts = {
        next(g for g in m.groups() if g)
        for line in lines
        for m in pipeline._UNREACHABLE.finditer(line)
    }
    assert hosts == {"fi.wikipedia.org", "github.com"}
    assert pipeline._OFFLINE_LINT.search(lines[1])


def test_mediawiki_modes_of_a_pipeline(tmp_path: Path) -> None:
    from sandbox.commands.pipeline import wiki_mode
    from sandbox.pipeline_wiki import RECORDINGS_IN_CONTAINER, WikiMode

    assert wiki_mode("live") is None
    assert wiki_mode("replay") == WikiMode()
    assert WikiMode().server_args() == [] and WikiMode().volumes() == []
    recorded = wiki_mode(f"replay:{tmp_path}")
    assert recorded == WikiMode(tmp_path) and str(recorded) == f"replay:{tmp_path}"
    assert recorded.server_args() == ["--replay", RECORDINGS_IN_CONTAINER, "--emulate"]
    assert recorded.volumes() == [f"{tmp_path}:{RECORDINGS_IN_CONTAINER}:ro"]
