"""A warm parent for an isvc's model servers: imports once, forks each new version of the code.

    <venv>/bin/python zygote.py --socket PATH [--bind 127.0.0.1] [--preload MODULE]...

Run by the isvc's own interpreter (its venv), so this file uses the standard library only, and
`launch.py` beside it. `ml-sandbox dev` starts one per venv. At start it moves every wildcard bind
to loopback (as `launch.py` does), imports kserve and the `--preload` modules (the isvc's
third-party packages), then serves requests on a Unix socket: one JSON line

    {"argv": [launch.py's arguments], "env": {...}, "cwd": "...", "log": "..."}

forks a child, which starts a session of its own, writes to `log`, and runs the entrypoint exactly
as `launch.py ARGV` would; the answer is `{"pid": N}`. The isvc's code is read by the child, so
each fork runs what is on disk at that moment, without paying for the imports again.

KServe reads its command line when `kserve.model_server` is imported: `args, _ =
parser.parse_known_args()` at module level, whose values become the default arguments of
`ModelServer.__init__` (http_port, grpc_port, workers, ...) and are read by it
(`args.configure_logging`), as in kserve 0.13.1, 0.14.1 (the reference isvcs' pins) and 0.17.0. The
zygote imports kserve with an empty command line, so a child, once its `sys.argv` is the
component's, parses it again with kserve's own parser and puts the values where the import put
them (`rebind_kserve_args`): the module's `args`, and the defaults of its functions and methods
that were bound from it. The isvc's own modules are never
imported by the zygote: each child reads the code on disk when it runs the entrypoint. A kserve
without that module-level parser is not kept: the zygote forgets kserve's own modules (and
prometheus_client, whose registry kserve fills at import), and each child imports them afresh.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import inspect
import json
import os
import signal
import socket
import sys
import time
import traceback
import types

if __package__:  # imported as sandbox.runtime.zygote (tests)
    from . import launch
else:  # run as a script by the isvc's interpreter, beside launch.py
    import launch  # type: ignore[no-redef]


def warm(preload: list[str]) -> list[str]:
    """Import kserve and `preload` (with an empty command line, see the module docstring); the
    modules that failed to import, with why."""
    argv, sys.argv = sys.argv, sys.argv[:1]
    failed = []
    try:
        for name in ["kserve", *preload]:
            try:
                importlib.import_module(name)
            except (Exception, SystemExit) as e:  # a preload is only an optimisation
                failed.append(f"{name} ({type(e).__name__}: {e})")
    finally:
        sys.argv = argv
    ms = sys.modules.get("kserve.model_server")
    if not isinstance(getattr(ms, "parser", None), argparse.ArgumentParser):
        for name in list(sys.modules):
            if name.split(".")[0] in ("kserve", "prometheus_client"):
                del sys.modules[name]
    return failed


def rebind_kserve_args() -> None:
    """Make kserve's import-time command line the current `sys.argv`'s (see the docstring)."""
    ms = sys.modules.get("kserve.model_server")
    parser, old = getattr(ms, "parser", None), getattr(ms, "args", None)
    if ms is None or not isinstance(parser, argparse.ArgumentParser) or old is None:
        return
    new, _ = parser.parse_known_args()
    ms.args = new
    changed = {k: (getattr(old, k, None), v) for k, v in vars(new).items()}
    changed = {k: ov for k, ov in changed.items() if ov[0] != ov[1]}
    if not changed:
        return
    for obj in list(vars(ms).values()):
        if isinstance(obj, type) and obj.__module__ == ms.__name__:
            functions = [f for f in vars(obj).values() if inspect.isfunction(f)]
        elif inspect.isfunction(obj) and obj.__module__ == ms.__name__:
            functions = [obj]
        else:
            continue
        for f in functions:
            _rebind_defaults(f, changed)


def _rebind_defaults(f: types.FunctionType, changed: dict[str, tuple[object, object]]) -> None:
    code = f.__code__
    if f.__defaults__:
        names = code.co_varnames[: code.co_argcount][-len(f.__defaults__) :]
        f.__defaults__ = tuple(
            changed[n][1] if n in changed and d == changed[n][0] else d
            for n, d in zip(names, f.__defaults__, strict=True)
        )
    if f.__kwdefaults__:
        for n, d in list(f.__kwdefaults__.items()):
            if n in changed and d == changed[n][0]:
                f.__kwdefaults__[n] = changed[n][1]


_OWN_FILES = frozenset(
    {
        __file__,
        launch.__file__,
        "<frozen runpy>",
        os.path.abspath(__file__),
        launch.run.__code__.co_filename,
    }
)


def _reap(_signum: int = 0, _frame: object = None) -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def child(request: dict, server: socket.socket) -> None:
    """In the forked child: become the model server. Never returns."""
    code = 1
    try:
        server.close()
        os.setsid()
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        fd = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        os.close(devnull)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        opts, entrypoint, args = launch.parse(request["argv"])
        sys.argv = [entrypoint, *args]
        rebind_kserve_args()
        launch.install_outside(opts)
        launch.run(entrypoint, args, opts.pythonpath, launch.carried(opts))
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if e.code is not None and not isinstance(e.code, int):
            print(e.code, file=sys.stderr)
    except BaseException as e:
        # As `python ENTRYPOINT.py` prints it: from the isvc's own frames on.
        tb = e.__traceback__
        while tb and tb.tb_frame.f_code.co_filename in _OWN_FILES and tb.tb_next:
            tb = tb.tb_next
        traceback.print_exception(type(e), e, tb)
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def serve(path: str) -> None:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    server.bind(path)
    os.chmod(path, 0o600)
    server.listen(8)
    signal.signal(signal.SIGCHLD, _reap)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"zygote {os.getpid()}: ready on {path}", flush=True)
    try:
        while True:
            try:
                conn, _ = server.accept()
            except InterruptedError:
                continue
            with conn:
                try:
                    request = json.loads(conn.makefile("rb").readline())
                except ValueError as e:
                    conn.sendall(json.dumps({"error": f"bad request: {e}"}).encode() + b"\n")
                    continue
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    conn.close()
                    child(request, server)
                conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="zygote.py", description=__doc__.split("\n")[0])
    parser.add_argument("--socket", required=True, help="the Unix socket to serve forks on")
    parser.add_argument("--bind", default="127.0.0.1", help="loopback address (127.0.0.1)")
    parser.add_argument("--preload", action="append", default=[], metavar="MODULE")
    opts = parser.parse_args(argv)
    try:
        launch.enforce_loopback(opts.bind)
    except ValueError as e:
        print(f"zygote.py: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    started = time.monotonic()
    failed = warm(opts.preload)
    print(f"zygote {os.getpid()}: warm in {time.monotonic() - started:.1f}s", flush=True)
    for what in failed:
        print(f"zygote: not preloaded: {what}", flush=True)
    serve(opts.socket)


if __name__ == "__main__":
    main()
