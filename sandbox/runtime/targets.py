"""Choosing a target by name; `auto` is minikube when its kube context answers, else local."""

from __future__ import annotations

import sys

from sandbox.runtime.base import RuntimeError_, Target

TARGETS = ("local", "docker", "minikube")


def get(name: str) -> Target:
    if name == "local":
        from sandbox.runtime.local import LocalTarget

        return LocalTarget()
    if name == "docker":
        from sandbox.runtime.docker import DockerTarget

        return DockerTarget()
    if name == "minikube":
        from sandbox.runtime.minikube import MinikubeTarget

        return MinikubeTarget()
    raise RuntimeError_(f"unknown target {name!r}; choose one of: auto, {', '.join(TARGETS)}")


def resolve(name: str) -> str:
    """`auto` -> a concrete target, saying which and why."""
    if name != "auto":
        return name
    try:
        from sandbox.runtime.minikube import context_answers

        answers = context_answers()
    except ImportError:
        answers = False
    chosen = "minikube" if answers else "local"
    why = "the ml-sandbox kube context answers" if answers else "no minikube sandbox answers"
    print(f"• target: {chosen} ({why}; choose with --target)", file=sys.stderr)
    return chosen
