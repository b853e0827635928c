"""Import boundaries: each layer imports only what is below it, so a change stays in its layer.

errors, paths, hints, progress  <- catalog, checks  <- models, images, manifests, schemas
<- runtime  <- commands, cli.   serving (what isvcs import) and mediawiki stand alone.
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
    "sandbox.catalog": ["sandbox.runtime", "sandbox.commands", "sandbox.models", "sandbox.images"],
    "sandbox.models": ["sandbox.runtime", "sandbox.commands", "sandbox.images"],
    "sandbox.images": ["sandbox.runtime", "sandbox.commands"],
    "sandbox.manifests": ["sandbox.runtime", "sandbox.commands"],
    "sandbox.schemas": ["sandbox.runtime", "sandbox.commands"],
    "sandbox.runtime": ["sandbox.commands", "sandbox.cli"],
    "sandbox.runtime.logpipe": ["sandbox."],  # runs next to any isvc: stdlib only
    "sandbox.isvc": ["sandbox.runtime", "sandbox.commands", "sandbox.images"],
    "sandbox.isvc.launch": ["sandbox."],  # run by the isvc's own interpreter: stdlib only
    "sandbox.blubber": ["sandbox.runtime", "sandbox.commands", "sandbox.images"],
    "sandbox.pipeline": ["sandbox.runtime", "sandbox.commands"],
    "sandbox.serving": ["sandbox.runtime", "sandbox.commands", "sandbox.models", "sandbox.images"],
    "sandbox.mediawiki": ["sandbox.runtime", "sandbox.commands", "sandbox.serving"],
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
