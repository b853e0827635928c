"""Shared test set-up: an isolated run directory, and the e2e target selection."""

from __future__ import annotations

import os
import tempfile

import pytest

# Tests never touch a sandbox the developer has running: their own run directory, always (an
# exported SANDBOX_RUN_DIR is the user's sandbox, not the tests').
os.environ["SANDBOX_RUN_DIR"] = tempfile.mkdtemp(prefix="ml-sandbox-test-")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--target",
        action="append",
        choices=["local", "docker", "minikube"],
        default=None,
        help="e2e target(s) to run (repeatable). Default: local, plus docker when a Docker daemon "
        "answers; env SANDBOX_E2E_TARGET=local,docker,minikube does the same.",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The heavy tier (multi-GB venvs: torch, TensorFlow, vLLM) is opt-in: it runs only when the
    marker expression names it (`-m heavy`), so the default suite and CI leave it out."""
    if "heavy" in (config.getoption("-m") or ""):
        return
    heavy = [item for item in items if item.get_closest_marker("heavy")]
    if heavy:
        config.hook.pytest_deselected(items=heavy)
        items[:] = [item for item in items if not item.get_closest_marker("heavy")]
