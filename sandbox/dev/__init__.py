"""`ml-sandbox dev`: watch an isvc's files and roll it on every save. The CLI command is
`sandbox.commands.dev`; the loop is `loop`, what to watch `watched`, the local target's warm
start `zygotes` (with `sandbox/runtime/zygote.py`, which runs in the isvc's venv)."""
