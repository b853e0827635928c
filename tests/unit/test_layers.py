"""Import boundaries: each layer imports only what is below it, so a change stays in its layer.

errors, paths, hints, progress, fsutil  <- catalog, checks  <- models, images, manifests,
schemas  <- runtime  <- commands, console, cli. The MediaWiki replay server (sandbox.mediawiki, in
an image of its own) and the launcher (run by an isvc's own interpreter) stand alone. No module
imports kserve: the isvcs bring their own, in their own venvs and images.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from sandbox.paths import REPO_ROOT

pytestmark = pytest.mark.unit

PACKAGE = REPO_ROOT / "sandbox"

# module prefix -> sandbox modules it must not import
FORBIDDEN = {
    "sandbox.errors": ["sandbox."],
    "sandbox.paths": ["sandbox."],
    "sandbox.hints": ["sandbox."],
    "sandbox.progress": ["sandbox."],
    "sandbox.fsutil": ["sandbox."],
    "sandbox.docker_cli": ["sandbox.runtime", "sandbox.commands", "sandbox.images"],
    "sandbox.catalog": ["sandbox.runtime", "sandbox.commands", "sandbox.models", "sandbox.images"],
    "sandbox.models": ["sandbox.runtime", "sandbox.commands", "sandbox.images"],
    "sandbox.images": ["sandbox.runtime", "sandbox.commands"],
    "sandbox.manifests": ["sandbox.runtime", "sandbox.commands"],
    "sandbox.schemas": ["sandbox.runtime", "sandbox.commands"],
    "sandbox.runtime": ["sandbox.commands", "sandbox.console", "sandbox.cli"],
    "sandbox.console": ["sandbox.cli"],  # a front-end over commands and runtime
    "sandbox.runtime.logpipe": ["sandbox."],  # runs next to any isvc: stdlib only
    "sandbox.venvs": ["sandbox.runtime", "sandbox.commands", "sandbox.images"],
    "sandbox.runtime.launch": ["sandbox."],  # run by the isvc's own interpreter: stdlib only
    # Blubber's translation knows nothing of the builder or the targets.
    "sandbox.images.blubber": ["sandbox.runtime", "sandbox.commands", "sandbox.docker_cli"],
    "sandbox.pipeline": ["sandbox.runtime", "sandbox.commands"],
    "sandbox.pipeline_wiki": ["sandbox.runtime", "sandbox.commands"],
    "sandbox.mediawiki": ["sandbox.runtime", "sandbox.commands", "sandbox.images"],
    "sandbox.runtime.zygote": ["sandbox."],  # the same (it imports launch.py beside it)
    "sandbox.load": ["sandbox.commands", "sandbox.cli"],
    "sandbox.load.plot": ["sandbox."],  # run by the load test's venv: stdlib and matplotlib
    "sandbox.dev": ["sandbox.commands", "sandbox.cli"],
}


def _module(path: Path) -> str:
    rel = path.relative_to(REPO_ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def _rules(module: str) -> list[str]:
    """The rules of the most specific layer the module belongs to."""
    owners = [p for p in FORBIDDEN if module == p or module.startswith(p + ".")]
    return FORBIDDEN[max(owners, key=len)] if owners else []


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: _module(p))
def test_layer_imports_only_what_is_below_it(path: Path) -> None:
    module = _module(path)
    bad = sorted(imp for imp in _imports(path) for rule in _rules(module) if imp.startswith(rule))
    assert bad == [], f"{module} imports {bad}"


def test_the_rules_can_fail() -> None:
    assert _rules("sandbox.runtime.local") == FORBIDDEN["sandbox.runtime"]
    assert "sandbox.commands" in _imports(PACKAGE / "cli.py")


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: _module(p))
def test_no_module_imports_kserve(path: Path) -> None:
    bad = sorted(i for i in _imports(path) if i.split(".")[0] in ("kserve", "kserve_storage"))
    assert bad == [], f"{_module(path)} imports {bad}"


def test_the_docker_target_lists_containers_without_the_build_module() -> None:
    """`status`, `logs` and `down` on the docker target need the docker CLI, not the builder."""
    tree = ast.parse((PACKAGE / "runtime" / "docker.py").read_text())
    top = {a.name for n in tree.body if isinstance(n, ast.Import) for a in n.names}
    top |= {
        f"{n.module}.{a.name}" for n in tree.body if isinstance(n, ast.ImportFrom) for a in n.names
    }
    assert not [m for m in top if m.startswith("sandbox.images")], top
    assert "sandbox.docker_cli" in top
