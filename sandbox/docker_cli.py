"""The docker CLI, as every part of the sandbox runs it: the docker target's containers, the
minikube node's daemon (through `minikube docker-env`'s environment), and the image builds."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path

from sandbox.errors import RunError


def docker_binary() -> str:
    """The docker CLI: $SANDBOX_DOCKER, else `docker` on PATH."""
    explicit = os.environ.get("SANDBOX_DOCKER")
    if explicit:
        return explicit
    found = shutil.which("docker")
    if not found:
        raise RunError("the docker CLI is not installed (apt-get install docker.io)")
    return found


def docker(
    *args: str, env: dict[str, str] | None = None, check: bool = True, binary: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the docker CLI, capturing its output; a failure is a RunError with its stderr."""
    cmd = [binary or docker_binary(), *args]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env={**os.environ, **(env or {})}, check=False
        )
    except OSError as e:
        raise RunError(f"cannot run {cmd[0]}: {e}") from None
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()
        raise RunError(f"`docker {' '.join(args[:3])}` failed: {detail}")
    return proc


def daemon_answers(env: dict[str, str] | None = None) -> bool:
    try:
        proc = docker("info", "--format", "{{.ServerVersion}}", env=env, check=False)
    except RunError:
        return False
    return proc.returncode == 0


def image_exists(ref: str, env: dict[str, str] | None = None) -> bool:
    return docker("image", "inspect", ref, env=env, check=False).returncode == 0


def _client_major(binary: str, env: dict[str, str] | None) -> int | None:
    proc = docker("version", "--format", "{{.Client.Version}}", env=env, check=False, binary=binary)
    try:
        return int(proc.stdout.strip().split(".")[0])
    except ValueError:
        return None


def buildkit_binary(env: dict[str, str] | None = None) -> str:
    """A docker CLI that builds with BuildKit: one with the buildx plugin, or a 18.09-22.x client
    (BuildKit built in). Docker >= 23 without buildx only has the legacy builder, so fall back to
    Debian's client (/usr/bin/docker of docker.io) when PATH's docker is such a one."""
    candidates = [docker_binary()]
    if not os.environ.get("SANDBOX_DOCKER") and Path("/usr/bin/docker").is_file():
        candidates.append("/usr/bin/docker")
    for binary in dict.fromkeys(candidates):
        if docker("buildx", "version", env=env, check=False, binary=binary).returncode == 0:
            return binary
        major = _client_major(binary, env)
        if major is not None and major < 23:
            return binary
    raise RunError(
        f"no docker CLI here builds with BuildKit ({', '.join(candidates)}): install the buildx "
        "plugin (docker-buildx-plugin, or docker-buildx on Debian trixie), or point SANDBOX_DOCKER "
        "at a client with BuildKit built in (docker.io 20.10's /usr/bin/docker)"
    )


def daemon_arch(env: dict[str, str] | None = None) -> str:
    proc = docker("info", "--format", "{{.Architecture}}", env=env, check=False)
    arch = proc.stdout.strip() if proc.returncode == 0 else ""
    arch = arch or platform.machine()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(arch, arch)
