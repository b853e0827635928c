"""The service catalog: `services/<isvc>/service.yaml`, the single source of truth for each isvc.

The CLI, the runtimes, the manifests and the tests read an isvc's facts from here and nowhere else.
A typo in a service.yaml is a `CatalogError` naming the file and the key.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sandbox.errors import CatalogError
from sandbox.paths import SERVICES_DIR

INGRESS_DOMAIN = "wikimedia.org"
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ResourceList(_Strict):
    cpu: str
    memory: str


class Resources(_Strict):
    requests: ResourceList
    limits: ResourceList


class Component(_Strict):
    """One KServe component (a container in production, a process locally)."""

    entrypoint: str = Field(description="Python file, relative to the service folder")
    args: list[str] = Field(default_factory=list, description="extra args after KServe's own")
    env: dict[str, str] = Field(default_factory=dict)
    resources: Resources


class Components(_Strict):
    predictor: Component
    transformer: Component | None = None


class ModelArtifact(_Strict):
    file: str = Field(pattern=r"^[^/]+$", description="file name under /mnt/models")
    storage_uri: str = Field(
        pattern=r"^s3://wmf-ml-models/.+/$", description="production folder of the model"
    )
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of the sandbox-built model")
    build: str = Field(description="training script, relative to the service folder")
    production_url: str | None = Field(default=None, description="public mirror of the model")
    production_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")


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
    components: Components
    model: ModelArtifact
    autoscaling: Autoscaling
    samples: list[Sample] = Field(min_length=1)

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
    def host(self) -> str:
        """The Host header clients send to Lift Wing: `<isvc>.<namespace>.wikimedia.org`."""
        return f"{self.name}.{self.namespace}.{INGRESS_DOMAIN}"

    @property
    def predict_path(self) -> str:
        return f"/v1/models/{self.name}:predict"

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


def load_file(path: Path) -> Service:
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise CatalogError(f"{path}: not found") from None
    except yaml.YAMLError as e:
        raise CatalogError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise CatalogError(f"{path}: expected a mapping at the top level")
    try:
        svc = Service.model_validate({**raw, "dir": path.parent})
    except ValidationError as e:
        raise CatalogError(_format_error(path, e)) from None
    if svc.name != path.parent.name:
        raise CatalogError(f"{path}: name {svc.name!r} must match its folder {path.parent.name!r}")
    for label, rel in [("model.build", svc.model.build)] + [
        (f"components.{n}.entrypoint", c.entrypoint) for n, c in svc.component_items()
    ]:
        if not (path.parent / rel).is_file():
            raise CatalogError(f"{path}: {label}: {rel} does not exist in {path.parent}")
    return svc


def load_all(services_dir: Path = SERVICES_DIR) -> dict[str, Service]:
    """Every isvc in the catalog, by name."""
    services = {}
    for path in sorted(services_dir.glob("*/service.yaml")):
        svc = load_file(path)
        services[svc.name] = svc
    return services


def select(names: list[str], services_dir: Path = SERVICES_DIR) -> list[Service]:
    """The named isvcs, in order; a CatalogError naming every unknown one and the known ones."""
    services = load_all(services_dir)
    unknown = [n for n in names if n not in services]
    if unknown:
        known = ", ".join(services) or "(none)"
        raise CatalogError(f"unknown isvc {', '.join(map(repr, unknown))}; known: {known}")
    return [services[n] for n in names]


def get(name: str, services_dir: Path = SERVICES_DIR) -> Service:
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
