"""`up --console`: the console as a detached process beside the gateway, recorded in the state.

Like the gateway, it runs under `logpipe` (`.sandbox/logs/console.log`) and carries the sandbox's
mark; `down` with no isvc named (the whole sandbox) stops it. A `down` of one isvc leaves it
running, so that the console can stop the last isvc and still show the sandbox.
"""

from __future__ import annotations

import sys

from sandbox.console import HEALTH_PATH
from sandbox.errors import RunError
from sandbox.hints import prog
from sandbox.runtime import processes, state
from sandbox.runtime.state import ServerRecord
from sandbox.runtime.targets import ComponentStatus


def check(port: int) -> None:
    """Refuse a console port that is not free (unless our console already serves there), before
    `up` starts anything."""
    if not 0 < port < 65536:
        raise RunError(f"--console must be a TCP port, got {port}")
    current = state.read().console
    if current and current.port == port and processes.alive(current.process):
        return
    if processes.port_in_use(port):
        raise RunError(
            f"port {port} is already in use; give the console another one: --console PORT"
        )


def ensure(port: int, target: str | None = None) -> str:
    """Start the console on `port` unless it already runs there; its URL."""
    url = f"http://127.0.0.1:{port}/"
    with state.locked() as st:
        current = st.console
        if current and current.port == port and processes.alive(current.process):
            print(f"• console already on {url}", file=sys.stderr)
            return url
        if current:
            processes.stop(current.process)
            st.console = None
            st.save()
        if processes.port_in_use(port):
            raise RunError(
                f"port {port} is already in use; give the console another one: --console PORT"
            )
        cmd = [sys.executable, "-m", "sandbox", "console", "--port", str(port)]
        if target == "minikube":
            cmd += ["--target", target]
        rec = processes.spawn_ready(
            cmd,
            state.logs_dir() / "console.log",
            f"http://127.0.0.1:{port}{HEALTH_PATH}",
            f"the console on port {port}",
        )
        st.console = ServerRecord(port, rec)
        st.save()
    print(f"• console on {url} (stopped by `{prog()} down`)", file=sys.stderr)
    return url


def stop() -> bool:
    """Stop the console `up --console` started; True if it was running."""
    with state.locked() as st:
        if not st.console:
            return False
        processes.stop(st.console.process)
        st.console = None
        st.save()
    print("• stopped the console", file=sys.stderr)
    return True


def status(st: state.State) -> list[ComponentStatus]:
    c = st.console
    if not c:
        return []
    return [ComponentStatus.of_server("console", c, f"http://127.0.0.1:{c.port}/")]
