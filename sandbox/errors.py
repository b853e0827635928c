"""The sandbox's own errors, importable from every layer (catalog, models, images, runtimes, CLI).

A `SandboxError`'s message is for the user: the CLI prints it without a traceback and exits
non-zero. Each layer raises a subclass that names what went wrong and what to do about it.
"""

from __future__ import annotations


class SandboxError(Exception):
    """An error whose message is for the user (printed without a traceback; exit code 1)."""

    exit_code = 1


class CatalogError(SandboxError):
    """A service.yaml is missing, unreadable or invalid; the message names the file and key."""

    exit_code = 2


class UsageError(SandboxError):
    """A command-line value is wrong (an option's form, a path that does not exist): exit 2,
    like argparse's own usage errors."""

    exit_code = 2


class RunError(SandboxError):
    """A target could not do what was asked (start, stop, build, reach a cluster)."""
