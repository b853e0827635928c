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
