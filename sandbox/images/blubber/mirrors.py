"""Custom builder commands that fetch from the internet, and the local copies that stand in.

Production's builders clone repositories during the build (article_descriptions:
`git clone --branch 1.0.1 --depth 1 https://github.com/wikimedia/descartes.git ...`;
articlequality and huggingface: Wikimedia's kserve fork). Where the network allows, they run as
written. Offline, `SANDBOX_GIT_MIRRORS` maps a URL to a local clone:

    SANDBOX_GIT_MIRRORS="https://github.com/wikimedia/descartes.git=$HOME/src/descartes"

(entries separated by commas or whitespace). The clone is bind-mounted into that one build step
and the command clones from it (`file://`), so `--branch`/`--depth` work as against the remote.
A fetching command with neither network nor mirror stops the build with an error naming it.

The same setting serves `ml-sandbox pipeline`'s run steps, whose pre-commit clones its hook
repositories (`repo:` URLs of `.pre-commit-config.yaml`): the run container gets each clone
read-only and a system gitconfig (`run_gitconfig`) whose `url.<clone>.insteadOf <URL>` sends git
there. A system gitconfig, because tox hands its test envs only the variables of its pass_env
(tox 4.67.16: `tox/tox_env/api.py` `_default_pass_env` has no `GIT_*`), so `GIT_CONFIG_COUNT` and
friends would never reach pre-commit's git. It is mounted only when the setting is given, and
stands in for the image's own `/etc/gitconfig` (Debian's git package ships none, nor do the
Blubber images the sandbox builds).
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from sandbox.errors import SandboxError

MIRRORS_ENV = "SANDBOX_GIT_MIRRORS"
CONTEXT_DIR = ".ml-sandbox-git"
MOUNT_DIR = "/ml-sandbox-git"
SYSTEM_GITCONFIG = "/etc/gitconfig"  # git's system config (no GIT_CONFIG_NOSYSTEM in the image)
UPLOAD_PACK = "git -c safe.directory=* upload-pack"
_URL = re.compile(r"(?:https?|git|ssh)://[^\s'\"]+|git@[\w.-]+:[^\s'\"]+")


class MirrorError(SandboxError):
    """A bad SANDBOX_GIT_MIRRORS entry, or a fetch that can neither run nor be mirrored."""


@dataclass(frozen=True)
class Mirror:
    url: str
    path: Path

    @property
    def key(self) -> str:
        return hashlib.sha256(f"{self.url}\0{self.path}".encode()).hexdigest()[:16]

    @property
    def context_path(self) -> str:
        """Where the build context holds the clone."""
        return f"{CONTEXT_DIR}/{self.key}"

    @property
    def mount_path(self) -> str:
        return f"{MOUNT_DIR}/{self.key}"


def configured(environ: dict[str, str] | None = None) -> dict[str, Path]:
    """URL → local clone, from SANDBOX_GIT_MIRRORS."""
    raw = (environ if environ is not None else os.environ).get(MIRRORS_ENV, "")
    out: dict[str, Path] = {}
    for entry in re.split(r"[\s,]+", raw.strip()):
        if not entry:
            continue
        url, sep, path = entry.partition("=")
        if not sep or not url or not path:
            raise MirrorError(f"{MIRRORS_ENV}: {entry!r} is not URL=PATH")
        local = Path(path).expanduser()
        if not (local / ".git").exists() and not (local / "HEAD").is_file():
            raise MirrorError(
                f"{MIRRORS_ENV}: {local} (for {url}) is not a git clone; "
                f"make one with `git clone {url} {local}` where the network allows"
            )
        out[url] = local.resolve()
    return out


def urls(command: list[str]) -> list[str]:
    """The remote URLs a custom builder command names."""
    return [m.group() for word in command for m in _URL.finditer(word)]


def rewrite(command: list[str], mirrors: dict[str, Path]) -> tuple[list[str], list[Mirror]]:
    """`git clone ... URL ...` with URL mirrored → the same clone from the mounted copy."""
    if not command or Path(command[0]).name != "git" or "clone" not in command[1:]:
        return command, []
    out, used = [], []
    for word in command:
        if word in mirrors:
            m = Mirror(word, mirrors[word])
            used.append(m)
            out.append(f"file://{m.mount_path}")
        else:
            out.append(word)
    if used:
        # The mounted clone belongs to another user: git's upload-pack refuses it ("dubious
        # ownership") unless told otherwise, and a local clone drops GIT_CONFIG_* from its
        # environment, so the exception rides on the upload-pack command itself.
        at = out.index("clone") + 1
        out[at:at] = ["--upload-pack", UPLOAD_PACK]
    return out, used


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def run_gitconfig(mirrors: dict[str, Path]) -> tuple[str, list[Mirror]]:
    """A run container's system gitconfig sending each mirrored URL (a prefix, as git's
    `insteadOf` matches) to its clone, mounted at `Mirror.mount_path`, and the mirrors. The
    clones belong to another user than the container's, which git refuses ("dubious ownership")
    unless `safe.directory` names them."""
    used = [Mirror(url, path) for url, path in sorted(mirrors.items())]
    lines = ["# ml-sandbox pipeline: SANDBOX_GIT_MIRRORS for this run step", "[safe]"]
    # git checks the repository's own folder: the clone's `.git`, or a bare clone itself.
    lines += [
        f"\tdirectory = {_quoted(d)}" for m in used for d in (m.mount_path, f"{m.mount_path}/.git")
    ]
    for m in used:
        lines += [f'[url "file://{m.mount_path}"]', f"\tinsteadOf = {_quoted(m.url)}"]
    return "\n".join(lines) + "\n", used


def reachable(url: str, timeout: float = 3.0) -> bool:
    """Whether the URL's host accepts a TCP connection within `timeout` seconds, name lookup
    included (an offline resolver can take half a minute to give up; the lookup then goes on in a
    daemon thread that nothing waits for). The build's network is the host's."""
    if url.startswith("git@"):
        host, port = url[4:].split(":", 1)[0], 22
    else:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or {"http": 80, "git": 9418, "ssh": 22}.get(parts.scheme, 443)
    if not host:
        return False
    answered, done = threading.Event(), threading.Event()

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                answered.set()
        except OSError:
            pass
        finally:
            done.set()

    threading.Thread(target=probe, daemon=True, name=f"probe {host}").start()
    done.wait(timeout)
    return answered.is_set()
