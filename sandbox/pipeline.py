"""`ml-sandbox pipeline <name> --source <checkout>`: an isvc's CI pipeline (`.pipeline/config.yaml`,
Wikimedia's PipelineLib) run on this machine the way Jenkins runs it, without pushing anything.

The config semantics follow PipelineLib (wikimedia/integration-pipelinelib@b23da56,
src/org/wikimedia/integration/Pipeline.groovy, PipelineStage.groovy, PipelineRunner.groovy):

- `pipelines.<name>`: `blubberfile` (default `<name>/blubber.yaml`, relative to `.pipeline/`),
  `directory` (default `.`), `stages`, and `execution` (branches of stage names; default: the
  stages in order);
- a stage with only a `name` builds the variant of that name and runs it;
- `build: VARIANT` (or `{variant, context}`) builds that variant of the Blubber file, with the
  build context `context` (default `.`) under `directory`; here through the sandbox's offline
  translation (`images.build`);
- `run: true` (or `{image, arguments, env}`) runs the image's entrypoint with the arguments
  (`docker run --rm`), streams its output, and fails the pipeline on a non-zero exit;
- `publish: {image: ...}` prints the name and tags Jenkins would push
  (`docker-registry.wikimedia.org/wikimedia/<name>:<tag>`; `${setup.project}` is the Gerrit
  project from `.gitreview`, `/` made `-`), and pushes nothing;
- `copy`, `promote`, `deploy`, `exports`, `trigger` are Jenkins/cluster steps: reported, skipped.

Differences from Jenkins, each because this machine has no internet: the run step gets the
machine's CA bundle (`PIP_CERT`) so tox's pip can reach the package index through a
TLS-intercepting proxy; with `--mediawiki replay` (the default) its calls to the wikis reach the
sandbox's MediaWiki replay server over HTTPS instead (sandbox/pipeline_wiki.py); pre-commit
(the `ci-lint` tox env of inference-services' test variants) fetches its hooks from GitHub and
fails offline, which the summary says; `--skip-lint` runs the same entrypoint without its
`ci-lint` argument, so the unit tests run on their own.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import yaml

from sandbox import images
from sandbox.docker_cli import docker, docker_binary
from sandbox.errors import RunError, SandboxError
from sandbox.pipeline_wiki import WikiMode, WikiReplay

REGISTRY = "docker-registry.wikimedia.org"
REPOSITORY = "wikimedia"
RUN_TIMEOUT_S = 20 * 60  # PipelineRunner.run: timeout(time: 20, unit: "MINUTES")
JENKINS_ONLY_STEPS = ("copy", "promote", "deploy", "exports", "trigger")
LINT_ARG = "ci-lint"
CA_IN_CONTAINER = "/run/ml-sandbox-ca.pem"
_OFFLINE_LINT = re.compile(
    r"Could not resolve host|Failed to connect|unable to access 'https://github\.com|"
    r"Network is unreachable|Temporary failure in name resolution|CalledProcessError.*git",
)


_UNREACHABLE = re.compile(
    r"Cannot connect to host ([\w.-]+)|Could not resolve host:? ([\w.-]+)|"
    r"Failed to resolve '([\w.-]+)'|Max retries exceeded with url: .* host='([\w.-]+)'"
)


class PipelineError(SandboxError):
    """A config.yaml or pipeline the runner cannot follow (exit 2)."""

    exit_code = 2


@dataclass(frozen=True)
class Stage:
    name: str
    variant: str | None = None
    context: str = "."
    run: dict[str, Any] | None = None
    publish: dict[str, Any] | None = None
    skipped_steps: tuple[str, ...] = ()


@dataclass(frozen=True)
class Pipeline:
    name: str
    checkout: Path
    blubberfile: Path
    directory: Path
    stages: tuple[Stage, ...]
    project: str


@dataclass
class StageResult:
    name: str
    status: str = "ok"  # ok | failed | skipped
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def _project(checkout: Path) -> str:
    """PipelineLib's `${setup.project}`: the Gerrit project, from `.gitreview` here."""
    try:
        for line in (checkout / ".gitreview").read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip() == "project":
                return value.strip().removesuffix(".git")
    except OSError:
        pass
    return checkout.resolve().name


def _stage(raw: Any, where: str) -> Stage:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise PipelineError(f"{where}: a stage is a mapping with a `name`")
    name = raw["name"]
    if set(raw) == {"name"}:  # shorthand: build and run the variant of that name
        return Stage(name, variant=name, run={})
    build = raw.get("build")
    variant, context = None, "."
    if isinstance(build, str):
        variant = build
    elif isinstance(build, dict):
        variant = str(build.get("variant") or name)
        context = str(build.get("context") or ".")
    elif build is not None:
        raise PipelineError(f"{where}.build: a variant name or a mapping")
    run = raw.get("run")
    if run is True:
        run = {}
    elif run in (None, False):
        run = None
    elif not isinstance(run, dict):
        raise PipelineError(f"{where}.run: true or a mapping")
    publish = raw.get("publish")
    if publish is not None and not isinstance(publish, dict):
        raise PipelineError(f"{where}.publish: a mapping")
    skipped = tuple(s for s in JENKINS_ONLY_STEPS if raw.get(s))
    return Stage(name, variant, context, run, publish, skipped)


def load(checkout: Path, name: str) -> Pipeline:
    """Pipeline `name` of `<checkout>/.pipeline/config.yaml`."""
    checkout = Path(checkout).expanduser()
    config = checkout / ".pipeline" / "config.yaml"
    try:
        data = yaml.safe_load(config.read_text())
    except OSError as e:
        raise PipelineError(f"cannot read {config}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise PipelineError(f"{config} is not valid YAML: {e}") from None
    pipelines = data.get("pipelines") if isinstance(data, dict) else None
    if not isinstance(pipelines, dict):
        raise PipelineError(f"{config}: no `pipelines` mapping")
    if name not in pipelines:
        raise PipelineError(
            f"{config} has no pipeline {name!r}; it has: {', '.join(sorted(pipelines))}"
        )
    cfg = pipelines[name] or {}
    where = f"{config}: pipelines.{name}"
    raw_stages = cfg.get("stages")
    if not isinstance(raw_stages, list) or not raw_stages:
        raise PipelineError(f"{where}.stages: a list of stages")
    stages = {
        s.name: s for s in (_stage(r, f"{where}.stages[{i}]") for i, r in enumerate(raw_stages))
    }
    order = list(stages)
    execution = cfg.get("execution")
    if execution is not None:
        if not (isinstance(execution, list) and all(isinstance(b, list) for b in execution)):
            raise PipelineError(f"{where}.execution: `execution` graph must be a list of lists")
        order = list(dict.fromkeys(s for branch in execution for s in branch))
        unknown = [s for s in order if s not in stages]
        if unknown:
            raise PipelineError(f"{where}.execution: no stage {unknown[0]!r}")
    directory = checkout / str(cfg.get("directory") or ".")
    blubberfile = checkout / ".pipeline" / str(cfg.get("blubberfile") or f"{name}/blubber.yaml")
    return Pipeline(
        name=name,
        checkout=checkout,
        blubberfile=blubberfile,
        directory=directory,
        stages=tuple(stages[s] for s in order),
        project=_project(checkout),
    )


def _substitute(value: str, context: dict[str, str]) -> str:
    """PipelineLib's `${stage.key}` / `${.key}` / `${setup.key}` references."""
    return re.sub(r"\$\{([\w.-]*)\}", lambda m: context.get(m.group(1), m.group(0)), value)


def _image_name(name: str) -> str:
    return name.lower().replace("/", "-")  # PipelineStage.sanitizeImageName


def published_refs(pipeline: Pipeline, stage: Stage, context: dict[str, str]) -> list[str]:
    """What `publish.image` would push: registry/wikimedia/<name>:<tag> for its tag and tags."""
    image = (stage.publish or {}).get("image")
    if not image:
        return []
    image = {} if image is True else dict(image)
    name = _image_name(_substitute(str(image.get("name") or "${setup.project}"), context))
    tag = _substitute(str(image.get("tag") or "${setup.timestamp}-${.stage}"), context)
    tags = [_substitute(str(t), context) for t in image.get("tags") or ["${setup.tag}"]]
    return [f"{REGISTRY}/{REPOSITORY}/{name}:{t}" for t in [tag, *tags] if t]


def _lint_dropped(entrypoint: list[str]) -> list[str] | None:
    if LINT_ARG not in entrypoint[1:]:
        return None
    return [a for i, a in enumerate(entrypoint) if i == 0 or a != LINT_ARG]


def _run_container(
    image: str,
    args: list[str],
    env: dict[str, str],
    entrypoint: list[str] | None,
    tail: deque[str],
    seen: list[str],
    hosts: set[str],
    docker_args: list[str] | None = None,
) -> int:
    name = f"ml-sandbox-pipeline-{secrets.token_hex(4)}"
    cmd = [docker_binary(), "run", "--rm", "--name", name, *(docker_args or [])]
    bundle = images.ca_bundle()
    if bundle is not None:
        cmd += ["-v", f"{bundle}:{CA_IN_CONTAINER}:ro", "-e", f"PIP_CERT={CA_IN_CONTAINER}"]
    for k, v in env.items():
        cmd += ["-e", f"{k}={v}"]
    if entrypoint is not None:
        cmd += ["--entrypoint", entrypoint[0], image, *entrypoint[1:], *args]
    else:
        cmd += [image, *args]
    print(f"  $ {' '.join(cmd)}", flush=True)
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    )
    deadline = time.monotonic() + RUN_TIMEOUT_S
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            tail.append(line.rstrip("\n"))
            if len(seen) < 100 and ("pre-commit" in line or _OFFLINE_LINT.search(line)):
                seen.append(line.rstrip("\n"))
            for m in _UNREACHABLE.finditer(line):
                hosts.add(next(g for g in m.groups() if g))
            print(f"  │ {line.rstrip()}", flush=True)
            if time.monotonic() > deadline:
                raise RunError(f"the run step ran longer than {RUN_TIMEOUT_S // 60} minutes")
        return proc.wait()
    except BaseException:
        subprocess.run([docker_binary(), "rm", "-f", name], capture_output=True, check=False)
        proc.kill()
        proc.wait()
        raise


def run(
    pipeline: Pipeline,
    *,
    only: list[str] | None = None,
    keep_going: bool = False,
    skip_lint: bool = False,
    env: dict[str, str] | None = None,
    mediawiki: WikiMode | None = None,
) -> list[StageResult]:
    """Run the pipeline's stages (or only those named), printing progress; the results."""
    known = [s.name for s in pipeline.stages]
    for name in only or []:
        if name not in known:
            raise PipelineError(
                f"pipeline {pipeline.name} has no stage {name!r}; it has: {', '.join(known)}"
            )
    context = {
        "setup.project": pipeline.project,
        "setup.tag": "",
        "setup.timestamp": time.strftime("%Y-%m-%d-%H%M%S", time.gmtime()),
    }
    results: list[StageResult] = []
    failed = False
    wanted = [s for s in pipeline.stages if not only or s.name in only]
    for n, stage in enumerate(wanted, 1):
        result = StageResult(stage.name)
        results.append(result)
        if failed and not keep_going:
            result.status = "skipped"
            result.notes.append("an earlier stage failed (--keep-going runs it anyway)")
            continue
        print(f"\n▶ stage {n}/{len(wanted)}: {stage.name}", flush=True)
        started = time.monotonic()
        context[".stage"] = stage.name
        try:
            _run_stage(pipeline, stage, context, result, skip_lint, env or {}, mediawiki)
        except SandboxError as e:
            result.status = "failed"
            result.notes.append(str(e))
        result.seconds = time.monotonic() - started
        mark = {"ok": "✓", "failed": "✗", "skipped": "-"}[result.status]
        print(f"{mark} stage {stage.name}: {result.status} ({result.seconds:.1f}s)", flush=True)
        for note in result.notes:
            print(f"  {note}", flush=True)
        failed = failed or result.status == "failed"
    return results


def _run_stage(
    pipeline: Pipeline,
    stage: Stage,
    context: dict[str, str],
    result: StageResult,
    skip_lint: bool,
    extra_env: dict[str, str],
    mediawiki: WikiMode | None = None,
) -> None:
    if stage.variant:
        tag = images.build(
            images.Recipe(
                f"ml-sandbox/pipeline-{_image_name(pipeline.name)}-{_image_name(stage.variant)}",
                pipeline.blubberfile,
                _substitute(stage.variant, context),
                pipeline.directory / stage.context,
            )
        )
        context[f"{stage.name}.imageID"] = context[".imageID"] = tag
        result.notes.append(f"built {stage.variant}: {tag}")
    if stage.run is not None:
        image = _substitute(str(stage.run.get("image") or "${.imageID}"), context)
        if "${" in image:
            raise RunError(f"run.image {image!r} names no image built so far")
        args = [_substitute(str(a), context) for a in stage.run.get("arguments") or []]
        env = {
            str(k): _substitute(str(v), context) for k, v in (stage.run.get("env") or {}).items()
        }
        env.update(extra_env)
        entrypoint = None
        if skip_lint:
            config = docker("image", "inspect", "--format", "{{json .Config.Entrypoint}}", image)
            current = yaml.safe_load(config.stdout) or []
            entrypoint = _lint_dropped([str(a) for a in current])
            if entrypoint is not None:
                result.notes.append(f"--skip-lint: ran {' '.join(entrypoint)} (without {LINT_ARG})")
        tail: deque[str] = deque(maxlen=200)
        seen: list[str] = []  # the lines that tell a lint step that could not fetch its hooks
        hosts: set[str] = set()  # hosts the run could not reach
        with _wikis(mediawiki) as wiki:
            docker_args = wiki.run_args if wiki is not None else []
            code = _run_container(image, args, env, entrypoint, tail, seen, hosts, docker_args)
            missed = wiki.misses() if wiki is not None else []
            served = wiki.served() if wiki is not None else {}
        if wiki is not None:
            answered = ", ".join(f"{host} {n}" for host, n in served.items()) or "none"
            result.notes.append(
                f"--mediawiki {mediawiki}: the wikis' HTTPS calls went to the MediaWiki replay "
                f"server ({len(wiki.hosts)} fixture wikis); requests it answered: {answered}"
            )
        for request in missed:
            result.notes.append(
                f"the MediaWiki replay server has no fixture for: {request}; add the page to "
                "sandbox/mediawiki/fixtures (or record it: ml-sandbox mediawiki --record DIR, "
                "then --mediawiki replay:DIR), or run with --mediawiki live where the wikis are "
                "reachable"
            )
        if code != 0:
            result.status = "failed"
            result.notes.append(f"the image's entrypoint exited {code}")
            text = "\n".join(seen)
            if "pre-commit" in text and _OFFLINE_LINT.search(text):
                result.notes.append(
                    "the lint step (pre-commit, tox env ci-lint) fetches its hooks from GitHub, "
                    "which this machine cannot reach; rerun with --skip-lint to run the unit "
                    "tests on their own"
                )
            if hosts - {"github.com"}:
                result.notes.append(
                    "the run could not reach "
                    + ", ".join(sorted(hosts - {"github.com"}))
                    + ": tests that call outside hosts fail offline (the container's network is "
                    "this machine's; --mediawiki replay answers the wikis of the replay server's "
                    "fixtures)"
                )
            return
    if stage.publish is not None:
        refs = published_refs(pipeline, stage, context)
        for ref in refs:
            result.notes.append(f"would push {ref} (nothing pushed)")
        if not refs:
            result.notes.append("publish: nothing this runner knows how to publish")
    for step in stage.skipped_steps:
        result.notes.append(f"{step}: a Jenkins/cluster step, skipped")


@contextlib.contextmanager
def _wikis(mode: WikiMode | None) -> Iterator[WikiReplay | None]:
    """The replay server for one run step, or None (`--mediawiki live`: the container's own
    network)."""
    if mode is None:
        yield None
        return
    with WikiReplay(mode) as wiki:
        yield wiki


def summary(results: list[StageResult], out: TextIO | None = None) -> None:
    out = out or sys.stdout
    print("\nsummary", file=out)
    for r in results:
        print(f"  {r.name:30} {r.status:8} {r.seconds:7.1f}s", file=out)
    total = sum(r.seconds for r in results)
    failed = [r.name for r in results if r.status == "failed"]
    verdict = f"FAILED ({', '.join(failed)})" if failed else "passed"
    print(f"pipeline {verdict} in {total:.1f}s", file=out, flush=True)
