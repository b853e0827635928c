"""Where the tests find an inference-services checkout: SANDBOX_INFERENCE_SERVICES, else
../shared/inference-services beside the repository (the snapshot CI has). None: no checkout."""

from __future__ import annotations

import os
from pathlib import Path

from sandbox.paths import REPO_ROOT


def checkout() -> Path | None:
    given = os.environ.get("SANDBOX_INFERENCE_SERVICES")
    path = Path(given) if given else REPO_ROOT.parent / "shared" / "inference-services"
    return path.resolve() if (path / "src" / "models").is_dir() else None
