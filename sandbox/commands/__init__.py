"""CLI command groups: each module has `register(subparsers)`; handlers return exit codes."""
