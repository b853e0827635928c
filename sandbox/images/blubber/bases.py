"""Stand-ins for production's base images, which cannot be pulled here.

- `docker-registry.wikimedia.org/bookworm:<any date>`: the local base (ml-sandbox/bookworm);
- `docker-registry.wikimedia.org/amd-pytorch23:*` and `amd-pytorch25:*` (ROCm PyTorch): the local
  base, Debian's python3/pip/venv, and a CPU torch (`torch==2.13.0`) in the system Python;
- `docker-registry.wikimedia.org/httpd:*`: the local base with Debian's apache2;
- `docker-registry.wikimedia.org/ml/amd-vllm*` (vLLM on ROCm), Docker Hub images, anything else:
  no stand-in, an error naming the base and what to do.

The ROCm PyTorch bases ship torch 2.3.0 (ROCm 6.0) and 2.5.1 (ROCm 6.1) in the system Python
(their tags say so); a file with `use-system-site-packages: true` takes torch from there. No CPU
build of those releases is on the package index this machine reaches (PyPI's Linux wheels of
torch 2.3/2.5 are CUDA builds of several GB); torch 2.13.0's CPU wheel is the one pip takes
here (from the wheel this machine keeps on disk), so the stand-in is torch 2.13.0 on the CPU:
newer than production's, no GPU. `SANDBOX_TORCH_STAND_IN` names another pin.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from sandbox.errors import SandboxError

WIKIMEDIA_REGISTRY = "docker-registry.wikimedia.org"
DEFAULT_TORCH = "torch==2.13.0"


class BaseImageError(SandboxError):
    """A production base the sandbox has no stand-in for."""


@dataclass(frozen=True)
class StandIn:
    """What the sandbox builds FROM instead of `production`, and what it adds first (as root)."""

    production: str
    kind: str  # bookworm | rocm-pytorch | httpd
    apt: tuple[str, ...] = ()
    pip: tuple[str, ...] = ()
    # production's torch in that base, for the README's table and the messages
    production_torch: str = ""

    @property
    def note(self) -> str:
        if self.kind == "rocm-pytorch":
            return (
                f"ROCm PyTorch base (torch {self.production_torch} on ROCm): the local base with "
                f"{', '.join(self.pip)} on the CPU in the system Python"
            )
        if self.kind == "httpd":
            return "Wikimedia's httpd base: the local base with Debian's apache2"
        return "plain Debian bookworm: the local base"


_ROCM_TORCH = {"amd-pytorch23": "2.3.0", "amd-pytorch25": "2.5.1"}
_BOOKWORM = re.compile(r"bookworm(?::[\w][\w.-]*)?")


def torch_stand_in() -> str:
    return os.environ.get("SANDBOX_TORCH_STAND_IN", DEFAULT_TORCH)


def stand_in(base: str) -> StandIn:
    """The stand-in for production base `base`, or BaseImageError saying what to do."""
    registry, _, path = base.partition("/")
    name = path.split("@")[0].rsplit(":", 1)[0] if ":" in path.rsplit("/", 1)[-1] else path
    if registry == WIKIMEDIA_REGISTRY:
        if _BOOKWORM.fullmatch(path.split("@")[0]):
            return StandIn(base, "bookworm")
        if name in _ROCM_TORCH:
            return StandIn(
                base,
                "rocm-pytorch",
                apt=("python3", "python3-pip", "python3-venv"),
                pip=(torch_stand_in(),),
                production_torch=_ROCM_TORCH[name],
            )
        if name == "httpd":
            return StandIn(base, "httpd", apt=("apache2",))
        if name.startswith("ml/amd-vllm"):
            raise BaseImageError(
                f"base {base} (vLLM on ROCm) has no stand-in: "
                "vLLM needs its GPU build and the base cannot be pulled here. Build this file with "
                "the real Blubber frontend on a machine that can pull "
                f"{WIKIMEDIA_REGISTRY} (SANDBOX_BLUBBER_BUILD=frontend)"
            )
        raise BaseImageError(
            f"base {base} has no stand-in in the sandbox (known: bookworm, amd-pytorch23, "
            "amd-pytorch25, httpd). Build this file with the real Blubber frontend on a machine "
            f"that can pull {WIKIMEDIA_REGISTRY} (SANDBOX_BLUBBER_BUILD=frontend)"
        )
    raise BaseImageError(
        f"base {base} is not a {WIKIMEDIA_REGISTRY} image (a Docker Hub image?) and has no "
        "stand-in: this machine cannot pull it. Build this file with the real Blubber frontend "
        "on a machine that can pull it (SANDBOX_BLUBBER_BUILD=frontend)"
    )
