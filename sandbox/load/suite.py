"""Which locust test loads an isvc: production's own, or one generated from its samples.

Production's load tests live in inference-services' `test/locust/`: one `FastHttpUser` per isvc
under `models/<name>/`, selected by `MODEL=<name>`, run from that folder (it reads `locust.conf`,
`data/` and `utils.py` by relative path) on the pins of its `requirements.txt`, with a committed
baseline in `results/<name>_stats.csv`. The sandbox runs it unmodified: only `--host`, the
user count, spawn rate, run time and the CSV/HTML outputs are given on the command line.

An isvc's service.yaml names its production test (`load_test: <name>`); the checkout is
`SANDBOX_INFERENCE_SERVICES`, else the first folder above the isvc's source that holds
`test/locust/locustfile.py`. Without one, the test is generated: one `FastHttpUser` posting the
isvc's samples that expect a 2xx answer, with its Host header, named by the predict path as
production's requests are (so the two compare row by row).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from sandbox.catalog import INFERENCE_SERVICES_ENV, Service
from sandbox.errors import RunError

CHECKOUT_ENV = INFERENCE_SERVICES_ENV  # the checkout the catalog serves production from
LOCUST_DIR = Path("test") / "locust"
REQUIREMENTS_DIR = Path(__file__).parent / "requirements"
GENERATED_LOCUST = REQUIREMENTS_DIR / "locust.txt"
PLOT_REQUIREMENTS = REQUIREMENTS_DIR / "plot.txt"
# What a generated test runs with when not told otherwise: production's locust.conf
# (2 users, spawn rate 10), for a shorter time.
GENERATED_DEFAULTS = {"users": 2, "spawn_rate": 10.0, "run_time": 60}


@dataclass(frozen=True)
class LoadTest:
    kind: str  # production | generated
    locustfile: Path
    cwd: Path
    requirements: list[Path]
    env: dict[str, str] = field(default_factory=dict)
    # Production's committed baseline (None: none committed, or a generated test).
    baseline: Path | None = None
    # Locust options production's locust.conf does not set, or a generated test needs.
    defaults: dict[str, float] = field(default_factory=dict)

    def describe(self) -> str:
        if self.kind == "production":
            return f"production's load test MODEL={self.env['MODEL']} ({self.cwd})"
        return f"a load test generated from the samples ({self.locustfile})"


def find_checkout(service: Service) -> Path | None:
    """The inference-services checkout whose `test/locust` to use, or None."""
    env = os.environ.get(CHECKOUT_ENV)
    if env:
        return Path(env).expanduser().resolve()
    for folder in [service.source_dir, *service.source_dir.parents]:
        if (folder / LOCUST_DIR / "locustfile.py").is_file():
            return folder
    return None


def production_test(service: Service, required: bool) -> LoadTest | None:
    """Production's locust test of this isvc; None when there is none (a RunError saying why
    when `required`)."""

    def missing(why: str) -> None:
        if required:
            raise RunError(f"--production-test: {why}")
        return None

    name = service.load_test
    if not name:
        return missing(
            f"{service.name}'s service.yaml names no production load test (load_test: <name of "
            f"its folder under inference-services' {LOCUST_DIR}/models>)"
        )
    checkout = find_checkout(service)
    if checkout is None:
        return missing(
            f"no inference-services checkout found for {service.name}'s load test {name!r}: set "
            f"{CHECKOUT_ENV} to the checkout's folder"
        )
    root = checkout / LOCUST_DIR
    module = root / "models" / name
    if not (root / "locustfile.py").is_file() or not module.is_dir():
        where = module if (root / "locustfile.py").is_file() else root / "locustfile.py"
        return missing(f"{service.name}'s load test {name!r} is not in {checkout}: no {where}")
    requirements = root / "requirements.txt"
    if not requirements.is_file():
        return missing(f"{requirements} does not exist (production's locust pins)")
    baseline = root / "results" / f"{name}_stats.csv"
    return LoadTest(
        kind="production",
        locustfile=root / "locustfile.py",
        cwd=root,
        requirements=[requirements, PLOT_REQUIREMENTS],
        env={"MODEL": name},
        baseline=baseline if baseline.is_file() else None,
    )


def generated_test(service: Service, folder: Path) -> LoadTest:
    """Write a locustfile that posts the isvc's 2xx samples into `folder`."""
    bodies = [s.body().decode() for s in service.samples if 200 <= s.expect.status < 300]
    if not bodies:
        raise RunError(
            f"{service.name} has no sample that expects a 2xx answer to load-test with: add one "
            f"to its service.yaml, or use its production test (--production-test)"
        )
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "locustfile.py"
    path.write_text(render_locustfile(service, bodies))
    return LoadTest(
        kind="generated",
        locustfile=path,
        cwd=folder,
        requirements=[GENERATED_LOCUST, PLOT_REQUIREMENTS],
        defaults=dict(GENERATED_DEFAULTS),
    )


def render_locustfile(service: Service, bodies: list[str]) -> str:
    class_name = "".join(p.capitalize() for p in service.name.replace("_", "-").split("-"))
    return f'''"""Generated by `ml-sandbox load {service.name}` from its service.yaml samples."""

import random

from locust import FastHttpUser, task

BODIES = {json.dumps(bodies, indent=4, ensure_ascii=False)}
HEADERS = {{"Content-Type": "application/json", "Host": {json.dumps(service.host)}}}


class {class_name}Samples(FastHttpUser):
    @task
    def predict(self) -> None:
        self.client.post({json.dumps(service.predict_path)}, data=random.choice(BODIES).encode(),
                         headers=HEADERS)
'''
