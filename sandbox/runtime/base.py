"""What every target offers the CLI: up, down, status, logs, smoke."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from sandbox.catalog import Service


@dataclass
class UpOptions:
    gateway_port: int = 8080
    # Where isvcs send MediaWiki requests (WIKI_URL): "live" (the real wikis), "replay" (the
    # replay server's fixture wikis), "replay:DIR" (recordings in DIR, then the fixtures),
    # "record:DIR" (the real wikis, through the recorder, into DIR), or any base URL.
    mediawiki: str = "live"
    timeout_s: float = 60.0
    # Where the model comes from: "sandbox" (built from the training script), "production"
    # (Wikimedia's public mirror), or a URI fetched with kserve-storage (s3://, gs://, https://,
    # a local path).
    model_source: str = "sandbox"
    # Extra env for every component (after service.yaml's).
    env: dict[str, str] = field(default_factory=dict)
    # The gateway's request body limit (None: its default, 1 MiB).
    max_body_bytes: int | None = None


@dataclass(frozen=True)
class MediaWikiMode:
    """The replay server's mode, parsed from `UpOptions.mediawiki` (None: no replay server)."""

    kind: str  # emulate | replay | record
    directory: str | None = None  # absolute

    @classmethod
    def of(cls, value: str) -> MediaWikiMode | None:
        if value == "replay":
            return cls("emulate")
        kind, sep, directory = value.partition(":")
        if kind in ("replay", "record") and sep and not directory.startswith("//"):
            return cls(kind, directory)
        return None


@dataclass
class ComponentStatus:
    target: str
    isvc: str
    component: str  # predictor | transformer | gateway | mediawiki | orphan
    state: str  # running | starting | exited | missing | orphan | ready
    address: str  # host:port or container name
    pid: int | None = None
    detail: str = ""


class Target(Protocol):
    name: str

    def up(self, services: list[Service], opts: UpOptions) -> None: ...

    def down(self, names: list[str] | None = None) -> bool | None:
        """Stop isvcs (all when none is named); False when there was nothing to stop."""

    def status(self) -> list[ComponentStatus]: ...

    def logs(
        self, isvc: str, component: str | None, follow: bool, lines: int | None = None
    ) -> int: ...

    def smoke(self, services: list[Service]) -> int:
        """Send every sample through the target's ingress; the number that failed its checks."""
        ...
