"""The service catalog: each isvc's `service.yaml`, the single source of truth for that isvc.

The CLI, the runtimes, the manifests and the tests read an isvc's facts from here and nowhere else.
The catalog is `services/*/service.yaml` plus the folders in `SANDBOX_SERVICES_PATH` (colon
separated; `ml-sandbox up --service-dir PATH` adds to it): each a folder with a `service.yaml`,
or a folder of such folders. An isvc's code may live anywhere (`source:`, e.g. an
inference-services checkout). A typo in a service.yaml is a `CatalogError` naming the file and
the key; it blocks only commands about that isvc (or about every isvc, like `--all`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from sandbox.errors import CatalogError
from sandbox.paths import SERVICES_DIR

INGRESS_DOMAIN = "wikimedia.org"
SERVICES_PATH_ENV = "SANDBOX_SERVICES_PATH"
# The user's inference-services checkout: production's isvcs (services/production/) serve its code.
INFERENCE_SERVICES_ENV = "SANDBOX_INFERENCE_SERVICES"
PRODUCTION_DIR = SERVICES_DIR / "production"
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# An environment variable's name, as a shell and Kubernetes' env[].name both take it.
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
# Bounds on a service.yaml: its bytes, its values once YAML aliases are expanded (an anchor bomb
# is a few lines that expand to billions of values), and its nesting.
MAX_FILE_BYTES = 1 << 20
MAX_VALUES = 200_000
MAX_DEPTH = 64


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# A Kubernetes quantity (k8s.io/apimachinery pkg/api/resource/quantity.go): a non-negative
# number, then a binary-SI, decimal-SI or decimal-exponent suffix.
QUANTITY = r"^(\d+(\.\d*)?|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E|[eE][-+]?\d+)?$"
# CPU as Lift Wing's charts write it, and as the sandbox computes with it: millicores or cores.
CPU = r"^(\d+m|\d+(\.\d+)?)$"


class ResourceList(_Strict):
    cpu: str = Field(description="cores (`1`, `0.5`) or millicores (`250m`)")
    memory: str = Field(description="a Kubernetes quantity (`512Mi`, `2Gi`)")

    @field_validator("cpu", mode="before")
    @classmethod
    def _cpu(cls, v: Any) -> Any:
        if isinstance(v, int | float) and not isinstance(v, bool):
            v = str(v)
        if isinstance(v, str) and not re.fullmatch(CPU, v):
            raise ValueError(f"{v!r} is not a CPU quantity: cores (1, 0.5) or millicores (250m)")
        return v

    @field_validator("memory", mode="before")
    @classmethod
    def _memory(cls, v: Any) -> Any:
        if isinstance(v, int) and not isinstance(v, bool):
            v = str(v)
        if isinstance(v, str) and not re.fullmatch(QUANTITY, v):
            raise ValueError(f"{v!r} is not a Kubernetes quantity (e.g. 512Mi, 2Gi, 1G)")
        return v


class Resources(_Strict):
    requests: ResourceList
    limits: ResourceList


class Image(_Strict):
    """The component's production image recipe: a Blubber file and the variant to build."""

    blubber: str = Field(description="Blubber file (v4), relative to the source root")
    variant: str = Field(default="production", pattern=r"^[A-Za-z0-9][-A-Za-z0-9_.]*$")


class Component(_Strict):
    """One KServe component (a container in production, a process locally)."""

    entrypoint: str = Field(description="Python file, relative to the source root")
    args: list[str] = Field(default_factory=list, description="extra args after KServe's own")
    env: dict[str, str] = Field(default_factory=dict)
    resources: Resources
    requirements: list[str] = Field(
        default_factory=list,
        description="the component's own requirement files, relative to the source root "
        "(default: the requirements.txt beside the entrypoint): it runs on the stock kserve "
        "server in a venv of exactly these pins",
    )
    pythonpath: list[str] = Field(
        default_factory=list, description="folders put on PYTHONPATH, relative to the source root"
    )
    image: Image | None = Field(default=None, description="build the image from a Blubber file")
    python: str | None = Field(
        default=None,
        pattern=r"^3\.\d+$",
        description="the Python version production's image runs (default: the sandbox's); found "
        "on PATH or among uv's managed interpreters",
    )
    image_requirements: list[str] = Field(
        default_factory=list,
        description="requirement files of this repo (relative to the service.yaml's folder) for "
        "what production's image gives the isvc beside its own requirement files: the base "
        "image's torch, a Debian python3-* package of the Blubber file's apt list",
    )

    @field_validator("env")
    @classmethod
    def _env_names(cls, env: dict[str, str]) -> dict[str, str]:
        bad = [k for k in env if not re.fullmatch(ENV_NAME, k)]
        if bad:
            raise ValueError(
                f"invalid environment variable name(s) {', '.join(map(repr, bad))}: letters, "
                "digits and _, not starting with a digit"
            )
        return env


class Components(_Strict):
    predictor: Component
    transformer: Component | None = None


class ModelArtifact(_Strict):
    file: str = Field(
        pattern=r"^[^/.][^/]*(/[^/.][^/]*)*$",
        description="file name under /mnt/models (a tree's model: a relative path in it)",
    )
    storage_uri: str = Field(
        pattern=r"^s3://wmf-ml-models/.+/$", description="production folder of the model"
    )
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of the sandbox-built model")
    build: str | None = Field(
        default=None, description="training script, relative to the service folder"
    )
    data: str | None = Field(
        default=None,
        description="a data file of the service folder that is the model as it is (no build)",
    )
    build_args: list[str] = Field(
        default_factory=list, description="arguments for the build script, before the output"
    )
    build_in: Literal["sandbox", "isvc"] = Field(
        default="sandbox",
        description="the Python the build script runs in: the sandbox's, or the predictor's own "
        "venv (so it can use the isvc's libraries: keras, transformers, catboost...)",
    )
    layout: Literal["file", "tree"] = Field(
        default="file",
        description="file: the build writes model.file; tree: the build fills a folder that is "
        "staged as the whole of /mnt/models (model.file names the file that must be in it), and "
        "sha256 is that of its manifest (sandbox.models.tree_sha256)",
    )
    production_url: str | None = Field(default=None, description="public mirror of the model")
    production_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")

    @model_validator(mode="after")
    def _one_recipe(self) -> ModelArtifact:
        if (self.build is None) == (self.data is None):
            raise ValueError("give exactly one of 'build' (a script) or 'data' (a file)")
        if self.layout == "file" and "/" in self.file:
            raise ValueError("file: a file name under /mnt/models (a path only with layout: tree)")
        if self.data is not None and self.layout == "tree":
            raise ValueError("a 'data' model is one file: layout must be 'file'")
        return self

    @property
    def recipe(self) -> str:
        """The build script or the data file, relative to the service folder."""
        return self.build if self.build is not None else str(self.data)


class Autoscaling(_Strict):
    min_replicas: int = Field(ge=0)
    max_replicas: int = Field(ge=1)
    metric: Literal["concurrency", "rps", "cpu", "memory"] = "concurrency"
    target: int = Field(ge=1)

    @model_validator(mode="after")
    def _bounds(self) -> Autoscaling:
        if self.max_replicas < self.min_replicas:
            raise ValueError("max_replicas must be >= min_replicas")
        return self


class Check(_Strict):
    """One assertion on a JSON response, at a dotted path (`prediction.results.0.topic`)."""

    path: str
    equals: Any = None
    one_of: list[Any] | None = None
    contains: str | None = None
    type: Literal["string", "number", "integer", "list", "object", "boolean"] | None = None
    min_items: int | None = None
    gte: float | None = None
    lte: float | None = None
    sorted_desc_by: str | None = Field(default=None, description="list sorted by this key, desc")

    @model_validator(mode="after")
    def _one_assertion(self) -> Check:
        asserted = [k for k in self.model_fields_set if k != "path"]
        if not asserted:
            raise ValueError(f"check on {self.path!r} asserts nothing")
        return self


class Expect(_Strict):
    status: int = Field(default=200, ge=100, le=599)
    checks: list[Check] = Field(default_factory=list)


class Sample(_Strict):
    """A request with the checks its response must pass, on every target."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    description: str = ""
    data: Any = Field(default=None, description="JSON body")
    raw: str | None = Field(default=None, description="raw body, for malformed-input cases")
    expect: Expect = Field(default_factory=Expect)

    @model_validator(mode="after")
    def _one_body(self) -> Sample:
        if (self.data is None) == (self.raw is None):
            raise ValueError("give exactly one of 'data' or 'raw'")
        return self

    def body(self) -> bytes:
        if self.raw is not None:
            return self.raw.encode()
        import json

        return json.dumps(self.data).encode()


class Service(_Strict):
    name: str = Field(pattern=DNS_LABEL, max_length=45)
    namespace: str = Field(pattern=DNS_LABEL, max_length=63)
    description: str
    source: str | None = Field(
        default=None,
        description="the code's root folder (absolute, ~, or relative to this file's folder); "
        "default: this folder",
    )
    components: Components
    model: ModelArtifact
    autoscaling: Autoscaling
    samples: list[Sample] = Field(min_length=1)
    load_test: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="production's locust test of this isvc: its folder under inference-services' "
        "test/locust/models (run as MODEL=<name>; `ml-sandbox load`)",
    )
    model_name: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][-A-Za-z0-9_.]*$",
        description="the name the isvc's code serves its model under (/v1/models/<model_name>), "
        "where it is not the isvc's name (production's outlink-topic-model-grpc, embeddings)",
    )
    production: Any = Field(
        default=None,
        description="facts about production's isvc (services/production/: pattern, protocol, "
        "outside calls, where production's values and code disagree); checked by "
        "sandbox.production",
    )

    # Set by load(); not part of the file.
    dir: Path = Field(default=Path("."), exclude=True)

    @model_validator(mode="after")
    def _unique_samples(self) -> Service:
        names = [s.name for s in self.samples]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate sample names: {', '.join(dupes)}")
        return self

    @property
    def source_dir(self) -> Path:
        """Where entrypoints, requirement files, pythonpath and Blubber files are found.
        `$SANDBOX_INFERENCE_SERVICES` in `source` is the user's checkout."""
        if self.source is None:
            return self.dir
        return (self.dir / Path(os.path.expandvars(self.source)).expanduser()).resolve()

    @property
    def host(self) -> str:
        """The Host header clients send to Lift Wing: `<isvc>.<namespace>.wikimedia.org`."""
        return f"{self.name}.{self.namespace}.{INGRESS_DOMAIN}"

    @property
    def served_name(self) -> str:
        """The model name in the isvc's URL paths: `model_name`, else the isvc's name."""
        return self.model_name or self.name

    @property
    def predict_path(self) -> str:
        return f"/v1/models/{self.served_name}:predict"

    @property
    def uses_mediawiki(self) -> bool:
        """True when a component calls MediaWiki or EventGate, which service.yaml says by naming
        `WIKI_URL` or `EVENTGATE_URL` in its env (the settings `--mediawiki replay` points at the
        replay server, which also answers the wikis' own domains on the local target)."""
        return any(
            "WIKI_URL" in c.env or "EVENTGATE_URL" in c.env for _, c in self.component_items()
        )

    @property
    def entry_component(self) -> str:
        """The component the ingress sends traffic to: the transformer when there is one."""
        return "transformer" if self.components.transformer else "predictor"

    def component_items(self) -> list[tuple[str, Component]]:
        """Components in start order: the predictor first, then its transformer."""
        items = [("predictor", self.components.predictor)]
        if self.components.transformer:
            items.append(("transformer", self.components.transformer))
        return items

    def sample(self, name: str) -> Sample:
        for s in self.samples:
            if s.name == name:
                return s
        known = ", ".join(s.name for s in self.samples)
        raise CatalogError(f"{self.name} has no sample {name!r}; known: {known}")


def _format_error(path: Path, err: ValidationError) -> str:
    lines = [f"{path}: invalid service definition"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (typo?)"
        lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)


def _bounded(path: Path, doc: Any) -> None:
    """Refuse a document that expands to too many values or nests too deeply (aliases are
    followed, so a shared subtree counts each time it is used; the walk stops at the bound)."""
    count = 0
    stack: list[tuple[Any, int]] = [(doc, 0)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_VALUES:
            raise CatalogError(
                f"{path}: too large once YAML aliases are expanded (more than {MAX_VALUES} "
                "values): a service.yaml is a short description, not data"
            )
        if depth > MAX_DEPTH:
            raise CatalogError(f"{path}: nested more than {MAX_DEPTH} levels deep")
        if isinstance(node, dict):
            stack += [(k, depth + 1) for k in node] + [(v, depth + 1) for v in node.values()]
        elif isinstance(node, list):
            stack += [(v, depth + 1) for v in node]


def _read(path: Path) -> Any:
    """The parsed file, or a CatalogError saying what is wrong with it (never another error)."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise CatalogError(f"{path}: not found") from None
    except OSError as e:
        raise CatalogError(f"{path}: cannot be read: {e.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        raise CatalogError(f"{path}: too large (over {MAX_FILE_BYTES} bytes)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CatalogError(f"{path}: not UTF-8 text (byte {e.start}); save it as UTF-8") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise CatalogError(f"{path}: not valid YAML: {e}") from None
    except RecursionError:
        raise CatalogError(f"{path}: nested too deeply to read") from None
    _bounded(path, raw)
    return raw


def _under(root: Path, relative: str, base: Path | None = None) -> Path | None:
    """`base/relative` (default `root/relative`) when it stays inside `root` (symlinks resolved),
    else None."""
    if Path(relative).is_absolute():
        return None
    full = ((base or root) / relative).resolve()
    return full if full.is_relative_to(root.resolve()) else None


def load_file(path: Path) -> Service:
    raw = _read(path)
    if not isinstance(raw, dict):
        raise CatalogError(f"{path}: expected a mapping at the top level")
    try:
        svc = Service.model_validate({**raw, "dir": path.parent.resolve()})
    except ValidationError as e:
        raise CatalogError(_format_error(path, e)) from None
    except RecursionError:
        raise CatalogError(f"{path}: nested too deeply to read") from None
    if svc.name != path.parent.name:
        raise CatalogError(f"{path}: name {svc.name!r} must match its folder {path.parent.name!r}")
    if svc.source and "$" in os.path.expandvars(svc.source):
        raise CatalogError(
            f"{path}: source: {svc.source} names an unset variable: point it at your "
            f"inference-services checkout (--inference-services PATH or {INFERENCE_SERVICES_ENV})"
        )
    src = svc.source_dir
    if not src.is_dir():
        raise CatalogError(f"{path}: source: {src} is not a folder")
    # (key, root it must stay under, path relative to it, file or folder). The sandbox's own files
    # (the model's recipe, image_requirements) are relative to the service.yaml's folder and stay
    # in the catalog folder that holds it, where entries share them (services/ for this repo's own,
    # whose production/ entries share builders/ and the reference isvcs' training scripts).
    catalog_root = SERVICES_DIR if svc.dir.is_relative_to(SERVICES_DIR) else svc.dir.parent
    recipe = "model.build" if svc.model.build is not None else "model.data"
    checks = [(recipe, catalog_root, svc.model.recipe, "file")]
    for n, c in svc.component_items():
        where = f"components.{n}"
        checks.append((f"{where}.entrypoint", src, c.entrypoint, "file"))
        checks += [(f"{where}.requirements", src, r, "file") for r in c.requirements]
        checks += [(f"{where}.pythonpath", src, d, "folder") for d in c.pythonpath]
        if c.image:
            checks.append((f"{where}.image.blubber", src, c.image.blubber, "file"))
        extra = c.image_requirements  # this repo's files, beside the service.yaml
        checks += [(f"{where}.image_requirements", catalog_root, r, "file") for r in extra]
    for label, root, relative, kind in checks:
        file = _under(root, relative, svc.dir if root == catalog_root else None)
        if file is None:
            what = f"the catalog folder {root}" if root == catalog_root else f"source ({root})"
            raise CatalogError(
                f"{path}: {label}: {relative!r} is outside {what}; give a path relative to it "
                "that stays inside it"
            )
        if not (file.is_file() if kind == "file" else file.is_dir()):
            raise CatalogError(f"{path}: {label}: {file} is not a {kind}")
    return _with_default_requirements(svc, path)


def _with_default_requirements(svc: Service, path: Path) -> Service:
    """A component without `requirements` runs on the requirements.txt beside its entrypoint;
    without one either, it is an error naming both ways to fix it."""
    defaults = {}
    for n, c in svc.component_items():
        if c.requirements:
            continue
        default = (Path(c.entrypoint).parent / "requirements.txt").as_posix()
        if not (svc.source_dir / default).is_file():
            raise CatalogError(
                f"{path}: components.{n}.requirements: not given, and there is no "
                f"{svc.source_dir / default} beside the entrypoint; list the component's own "
                "requirement files (its pins, kserve among them), e.g. `requirements: "
                "[requirements.txt]`"
            )
        defaults[n] = c.model_copy(update={"requirements": [default]})
    if not defaults:
        return svc
    return svc.model_copy(update={"components": svc.components.model_copy(update=defaults)})


def search_path() -> list[Path]:
    """Where service.yaml files are looked for, in precedence order: the folders of
    SANDBOX_SERVICES_PATH (and --service-dir), then services/. An isvc found in an earlier
    folder shadows one of the same name in a later folder (your checkout's langid over the
    sandbox's reference langid)."""
    extra = [Path(p).expanduser() for p in os.environ.get(SERVICES_PATH_ENV, "").split(":") if p]
    production = [PRODUCTION_DIR] if os.environ.get(INFERENCE_SERVICES_ENV) else []
    return [*extra, *production, SERVICES_DIR]


def set_inference_services(path: str | None) -> None:
    """Serve production's isvcs (services/production/) from this inference-services checkout, for
    this process and every process it starts. They then shadow the reference isvcs of the same
    name (langid, outlink-topic-model)."""
    if not path:
        return
    root = Path(path).expanduser().resolve()
    if not (root / "src" / "models").is_dir() or not (root / ".pipeline").is_dir():
        raise CatalogError(
            f"--inference-services {path}: {root} is not an inference-services checkout "
            "(no src/models/ and .pipeline/)"
        )
    os.environ[INFERENCE_SERVICES_ENV] = str(root)


def add_service_dirs(dirs: list[str]) -> None:
    """Add folders to the catalog for this process and every process it starts."""
    for d in dirs:
        if not Path(d).expanduser().is_dir():
            raise CatalogError(f"--service-dir {d}: not a folder")
    current = [p for p in os.environ.get(SERVICES_PATH_ENV, "").split(":") if p]
    resolved = [str(Path(d).expanduser().resolve()) for d in dirs]
    os.environ[SERVICES_PATH_ENV] = ":".join(current + resolved)


def service_files(dirs: list[Path] | None = None) -> list[Path]:
    """Every service.yaml in the search path: a folder's own, or its subfolders'."""
    files: list[Path] = []
    for d in search_path() if dirs is None else dirs:
        own = d / "service.yaml"
        files += [own] if own.is_file() else sorted(d.glob("*/service.yaml"))
    return files


class Catalog:
    """The isvcs that load, and the files that do not (by the isvc name their folder gives)."""

    def __init__(self, dirs: list[Path] | None = None):
        self.services: dict[str, Service] = {}
        self.broken: dict[str, CatalogError] = {}
        self.shadowed: dict[str, Path] = {}  # isvc -> the file a earlier folder's isvc hides
        seen: set[str] = set()
        # Folder names are unique within a folder, so a name seen again is in a later folder.
        for root in dict.fromkeys(search_path() if dirs is None else dirs):
            for path in service_files([root]):
                name = path.parent.name
                if name in seen:
                    self.shadowed[name] = path
                    continue
                seen.add(name)
                try:
                    self.services[name] = load_file(path)
                except CatalogError as e:
                    self.broken[name] = e

    def known(self) -> str:
        return ", ".join(self.services) or "(none)"

    def select(self, names: list[str]) -> list[Service]:
        """The named isvcs, in order: a broken file's own error, or one error naming every
        unknown isvc and the known ones. Other isvcs' broken files do not matter here."""
        for name in names:
            if name in self.broken:
                raise self.broken[name]
        unknown = [n for n in names if n not in self.services]
        if unknown:
            raise CatalogError(
                f"unknown isvc {', '.join(map(repr, unknown))}; known: {self.known()}"
            )
        return [self.services[n] for n in names]

    def all(self) -> dict[str, Service]:
        """Every isvc; any broken file is an error (a command about every isvc needs them all)."""
        if self.broken:
            raise CatalogError("\n".join(str(e) for e in self.broken.values()))
        return dict(self.services)


def load_all(services_dir: Path | None = None) -> dict[str, Service]:
    """Every isvc in the catalog, by name (a CatalogError if any service.yaml is broken)."""
    return Catalog(None if services_dir is None else [services_dir]).all()


def select(names: list[str], services_dir: Path | None = None) -> list[Service]:
    """The named isvcs, in order; a CatalogError naming every unknown one and the known ones."""
    return Catalog(None if services_dir is None else [services_dir]).select(names)


def get(name: str, services_dir: Path | None = None) -> Service:
    return select([name], services_dir)[0]


def resolve_path(doc: Any, dotted: str) -> Any:
    """`prediction.results.0.topic` -> doc["prediction"]["results"][0]["topic"]; else KeyError."""
    cur = doc
    for part in dotted.split(".") if dotted else []:
        if isinstance(cur, list) and re.fullmatch(r"-?\d+", part):
            cur = cur[int(part)]
        elif isinstance(cur, dict) and part in cur:
            cur = cur[part]
        else:
            raise KeyError(dotted)
    return cur
