"""Errors shared by the sandbox's modules."""

from __future__ import annotations


class SandboxError(Exception):
    """An error whose message is for the user."""
