"""What `ml-sandbox dev` watches for an isvc, and what a changed file means.

Per component: the entrypoint's folder and the `pythonpath` folders (code), the requirement files
with every file they include (requirements); then the service.yaml (service) and the folder of the
model's build script (model). A change is classified by the most far-reaching kind it touches:
requirements rebuild the venv, service re-plans, model rebuilds the model, code restarts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sandbox import venvs
from sandbox.catalog import Service
from sandbox.errors import SandboxError

SKIP_PARTS = frozenset({"__pycache__", ".git", ".venv", ".pytest_cache", ".mypy_cache"})
SKIP_SUFFIXES = (".pyc", ".pyo", ".swp", ".swx", ".tmp", "~", ".log")
# In order of how far a change reaches.
KINDS = ("service", "requirements", "model", "code")


@dataclass(frozen=True)
class Watched:
    service_file: Path
    requirements: frozenset[Path]
    model_dir: Path
    code_dirs: tuple[Path, ...]

    def roots(self) -> list[Path]:
        """The folders to watch (recursively): every path above is in one of them."""
        folders = {self.service_file.parent, self.model_dir, *self.code_dirs}
        folders |= {r.parent for r in self.requirements}
        # Watch a folder once: not also one inside it.
        ordered = sorted(folders, key=lambda p: len(p.parts))
        roots: list[Path] = []
        for f in ordered:
            if not any(f == r or r in f.parents for r in roots):
                roots.append(f)
        return roots

    def kind(self, path: Path) -> str | None:
        """What a change to `path` means, or None when it is not something the isvc uses."""
        if SKIP_PARTS & set(path.parts) or path.name.endswith(SKIP_SUFFIXES):
            return None
        if path.name.startswith(".#"):  # an editor's lock file
            return None
        if path == self.service_file:
            return "service"
        if path in self.requirements:
            return "requirements"
        if path == self.model_dir or self.model_dir in path.parents:
            return "model"
        for d in self.code_dirs:
            if path == d or d in path.parents:
                return "code"
        return None


def watched(service: Service) -> Watched:
    src = service.source_dir
    reqs: set[Path] = set()
    code: set[Path] = set()
    for _, comp in service.component_items():
        code.add((src / comp.entrypoint).parent.resolve())
        code |= {(src / d).resolve() for d in comp.pythonpath}
        try:
            reqs |= set(venvs.requirement_files([src / r for r in comp.requirements]))
        except SandboxError:
            reqs |= {(src / r).resolve() for r in comp.requirements}
    return Watched(
        service_file=(service.dir / "service.yaml").resolve(),
        requirements=frozenset(reqs),
        model_dir=(service.dir / service.model.build).parent.resolve(),
        code_dirs=tuple(sorted(code)),
    )


def classify(w: Watched, paths: set[Path]) -> tuple[str | None, list[Path]]:
    """The most far-reaching kind among the changed paths, and the paths that matter."""
    kinds = {p: w.kind(p) for p in paths}
    relevant = sorted(p for p, k in kinds.items() if k)
    for k in KINDS:
        if k in kinds.values():
            return k, relevant
    return None, relevant
