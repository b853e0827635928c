"""The docker tier: real images built from the local bookworm base, real containers.

Tests that need a daemon skip with a reason when `docker info` fails or the base image is missing
(build it with `scripts/build-base-image.sh`, or let `.ci/prepare-docker.sh` do it). Builds
are cached by content-hash tag, so a warm run builds nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from sandbox import catalog, images
from sandbox.catalog import Service


def docker_unavailable_reason() -> str | None:
    try:
        if not images.daemon_answers():
            return "no Docker daemon answers (`docker info` fails)"
        if not images.image_exists(images.base_image()):
            return (
                f"the base image {images.base_image()} is missing "
                "(build it: scripts/build-base-image.sh)"
            )
        images.buildkit_binary()
    except images.RunError as e:
        return str(e)
    return None


@pytest.fixture(scope="session")
def docker_ready() -> None:
    reason = docker_unavailable_reason()
    if reason:
        pytest.skip(f"docker tier: {reason}")


@pytest.fixture(scope="session")
def services() -> dict[str, Service]:
    return catalog.load_all()


@pytest.fixture(scope="session")
def built(docker_ready, services) -> dict[str, dict[str, str]]:
    """{isvc: {component: tag}} for every isvc, plus the replay image under "mediawiki"."""
    tags = {name: images.build_images(svc) for name, svc in services.items()}
    tags["mediawiki"] = {"replay": images.build_replay_image()}
    return tags


def inspect(ref: str) -> dict:
    return json.loads(images.docker("inspect", ref).stdout)[0]


@pytest.fixture
def run_container() -> Iterator:
    """Start containers with `docker run -d ARGS...`; every one is removed after the test."""
    started: list[str] = []

    def run(*args: str) -> str:
        cid = images.docker("run", "--detach", *args).stdout.strip()
        started.append(cid)
        return cid

    yield run
    if started:
        images.docker("rm", "--force", *started, check=False)
