"""What `up` is asked for, parsed once at the CLI boundary: `UpOptions` and its `MediaWiki`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from sandbox.errors import UsageError

if TYPE_CHECKING:
    from sandbox.catalog import Service

RECORDINGS_DIR = "mediawiki-recordings"
MediaWikiKind = Literal["live", "url", "emulate", "replay", "record"]


@dataclass(frozen=True)
class MediaWiki:
    """Where isvcs send MediaWiki requests (WIKI_URL), from `--mediawiki`:

    - `live`: the real wikis (service.yaml's WIKI_URL, as production);
    - `url`: any base URL (`url`);
    - `emulate` (`--mediawiki replay`): the replay server's fixture wikis;
    - `replay` (`replay:DIR`): recordings in `directory`, then the fixtures;
    - `record` (`record[:DIR]`): the real wikis, through the recorder, into `directory`.
    """

    kind: MediaWikiKind = "live"
    url: str | None = None
    directory: str | None = None  # absolute

    @property
    def replay_server(self) -> bool:
        """Whether this mode runs the sandbox's MediaWiki replay server."""
        return self.kind in ("emulate", "replay", "record")

    def replay_server_for(self, services: Iterable[Service]) -> bool:
        """Whether `up` of these isvcs starts the replay server: the mode runs one and an isvc
        calls MediaWiki or EventGate (`Service.uses_mediawiki`)."""
        return self.replay_server and any(s.uses_mediawiki for s in services)

    def __str__(self) -> str:
        if self.kind == "url":
            return str(self.url)
        if self.kind == "emulate":
            return "replay"
        return f"{self.kind}:{self.directory}" if self.directory else self.kind

    @classmethod
    def parse(cls, value: str) -> MediaWiki:
        """`--mediawiki`'s value; a UsageError for anything else. Folders become absolute (the
        servers run elsewhere); a replay folder must exist."""
        if value == "live":
            return cls()
        if value == "replay":
            return cls("emulate")
        if value.startswith(("http://", "https://")):
            return cls("url", url=value)
        if value == "record":
            value = f"record:{RECORDINGS_DIR}"
        kind, sep, directory = value.partition(":")
        if kind not in ("replay", "record") or not sep or not directory:
            raise UsageError(
                "--mediawiki must be live, replay, replay:DIR, record[:DIR] or an http(s) URL, "
                f"got {value!r}"
            )
        path = Path(directory).expanduser().resolve()
        if kind == "replay" and not path.is_dir():
            raise UsageError(f"--mediawiki {value}: {path} is not a folder of recordings")
        return cls("replay" if kind == "replay" else "record", directory=str(path))


@dataclass
class UpOptions:
    gateway_port: int = 8080
    mediawiki: MediaWiki = field(default_factory=MediaWiki)
    timeout_s: float = 60.0
    # Where the model comes from: "sandbox" (built from the training script), "production"
    # (Wikimedia's public mirror), or a storage URI fetched as KServe's storage-initializer does
    # (sandbox.models: s3://, gs://, https://, a local path).
    model_source: str = "sandbox"
    # Extra env for every component (after service.yaml's).
    env: dict[str, str] = field(default_factory=dict)
    # The gateway's request body limit (None: its default, 1 MiB).
    max_body_bytes: int | None = None
