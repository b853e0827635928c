"""Which blubber version's rules a Blubber file is read with: the one its `# syntax=` line names.

Production builds each file with the BuildKit frontend on its first line
(`# syntax=docker-registry.wikimedia.org/repos/releng/blubber/buildkit:vX.Y.Z`), and the python
builder changed under it. The boundaries, checked at the tags:

- v0.21.0 .. v0.22.x: `pip wheel` into /opt/lib/python, then `pip install --target
  /opt/lib/python/site-packages`; PYTHONPATH/PATH point at it; active whenever `python.version`
  is set; key `python.use-system-flag` (wikimedia/blubber@v0.21.1:config/python.go).
  v0.21.1 also merges `python.tox-version` across includes (wikimedia/blubber@v0.21.0..v0.21.1:
  config/python.go). v0.22.0 adds a JSON-schema check before the strict decode
  (wikimedia/blubber@v0.22.0:config/reader.go) and keeps the python builder.
- v0.23.0 and later: `python3 -m venv /opt/lib/venv [--system-site-packages]`, VIRTUAL_ENV and
  PATH=/opt/lib/venv/bin:$PATH, pip tooling and requirements installed inside it; active only
  when `version` and `requirements` are both set; key `python.use-system-site-packages`, and
  `use-system-flag` is gone (wikimedia/blubber@v0.23.0:config/python.go, "Python builder: Always
  use a virtualenv").
- v0.24.0: no `pip install` when `requirements` is an empty list
  (wikimedia/blubber@v0.24.0:config/python.go); the Dockerfile compiler gives way to LLB
  (wikimedia/blubber@v0.24.0:build/target.go), with the same phases.
- v1.5.0: `runs.in`, `arguments`, builder `script`/`mounts`/`caches`, a string `command`,
  copies' `exclude` (wikimedia/blubber@v1.5.0:config/runs.go, config/builder.go,
  config/artifacts.go).

Every version decodes strictly (`DisallowUnknownFields`, wikimedia/blubber@v0.21.1:config/reader.go
and @v1.5.1), so a key of one version is an error under another's rules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from sandbox.errors import SandboxError

# The frontends PipelineLib accepts on a syntax line
# (wikimedia/integration-pipelinelib@b23da56:src/org/wikimedia/integration/PipelineRunner.groovy).
FRONTENDS = (
    "docker-registry.wikimedia.org/repos/releng/blubber/buildkit",
    "docker-registry.wikimedia.org/wikimedia/blubber-buildkit",
)
OLDEST = (0, 21, 0)
# The newest tag whose rules were checked; later tags are read with its rules.
NEWEST_CHECKED = (1, 5, 1)
# A file with no syntax line: the version the sandbox's scaffold writes.
DEFAULT = (0, 21, 1)

_TAG = re.compile(r"v(\d{1,4})\.(\d{1,4})\.(\d{1,4})")


class BlubberVersionError(SandboxError):
    """A `# syntax=` line the sandbox cannot read a file by."""


@dataclass(frozen=True)
class Rules:
    """The semantics of one blubber version, as far as the translation needs them."""

    version: tuple[int, int, int]
    # From the syntax line (False: the default applied).
    named: bool = True

    @property
    def tag(self) -> str:
        return "v" + ".".join(str(n) for n in self.version)

    @property
    def venv(self) -> bool:
        """The python builder installs into a virtualenv at /opt/lib/venv (v0.23.0+)."""
        return self.version >= (0, 23, 0)

    @property
    def skip_empty_install(self) -> bool:
        """No `pip install` for `requirements: []` (v0.24.0+)."""
        return self.version >= (0, 24, 0)

    @property
    def merges_tox_version(self) -> bool:
        return self.version >= (0, 21, 1)

    @property
    def v1_5(self) -> bool:
        """`runs.in`, `arguments`, builder script/mounts/caches, copies' exclude (v1.5.0+)."""
        return self.version >= (1, 5, 0)

    # -- the keys blubber decodes at this version (config/*.go `json:` tags) --
    def python_keys(self) -> frozenset[str]:
        system = "use-system-site-packages" if self.venv else "use-system-flag"
        return frozenset({"version", "requirements", system, "no-deps", "poetry", "tox-version"})

    def builder_keys(self) -> frozenset[str]:
        base = {"command", "requirements"}
        return frozenset(base | {"script", "mounts", "caches"} if self.v1_5 else base)

    def runs_keys(self) -> frozenset[str]:
        base = {"as", "uid", "gid", "environment", "insecurely"}
        return frozenset(base | {"in"} if self.v1_5 else base)

    def artifact_keys(self) -> frozenset[str]:
        base = {"from", "source", "destination"}
        return frozenset(base | {"exclude"} if self.v1_5 else base)

    def common_keys(self) -> frozenset[str]:
        base = {
            "base",
            "apt",
            "builders",
            "node",
            "php",
            "python",
            "builder",
            "lives",
            "runs",
            "entrypoint",
        }
        return frozenset(base | {"arguments"} if self.v1_5 else base)

    def apt_keys(self) -> frozenset[str]:
        return frozenset({"packages", "proxies", "sources"})


# Keys blubber knows that the sandbox's translation does not implement (no production file uses
# them); each is an error that says so, distinct from an unknown key.
UNSUPPORTED = frozenset(
    {
        "node",
        "php",
        "poetry",
        "proxies",
        "sources",
        "arguments",
        "script",
        "mounts",
        "caches",
        "exclude",
    }
)


def syntax_line(text: str) -> str | None:
    """The frontend image on a `# syntax=` line among the file's leading comment lines."""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith("#"):
            return None
        key, sep, value = stripped.lstrip("#").strip().partition("=")
        if sep and key.strip() == "syntax" and value.strip():
            return value.strip()
    return None


def rules_for_text(text: str, where: Path | str) -> Rules:
    """The rules named by the file's syntax line; DEFAULT when it has none."""
    frontend = syntax_line(text)
    if frontend is None:
        return Rules(DEFAULT, named=False)
    image, _, tag = frontend.rpartition(":")
    if image not in FRONTENDS:
        raise BlubberVersionError(
            f"{where}: the `# syntax=` line names {frontend!r}, which is not the Blubber frontend "
            f"({FRONTENDS[0]}:vX.Y.Z); the sandbox translates Blubber files only"
        )
    m = _TAG.fullmatch(tag)
    if m is None:
        raise BlubberVersionError(
            f"{where}: the `# syntax=` line's tag {tag!r} is not a blubber release (vX.Y.Z)"
        )
    version = (int(m[1]), int(m[2]), int(m[3]))
    if version < OLDEST:
        raise BlubberVersionError(
            f"{where}: blubber {tag} is older than v0.21.0, the oldest version the sandbox "
            "translates; update the `# syntax=` line"
        )
    return Rules(version)


def rules_for(path: Path) -> Rules:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as e:
        raise BlubberVersionError(f"cannot read the Blubber file {path}: {e.strerror}") from None
    return rules_for_text(text, path)
