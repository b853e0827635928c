"""Start an isvc's model server as `python ENTRYPOINT.py ARGS...` would, but bound to loopback.

    <venv>/bin/python launch.py [--bind 127.0.0.1] [--pythonpath DIR]... -- ENTRYPOINT.py [ARGS...]

Run by the isvc's own interpreter, so this file uses the standard library only (the sandbox
package is not importable there). The isvc's code is not touched: the stock kserve server binds
its REST port on 0.0.0.0 (uvicorn) and its gRPC port on `[::]`; here

- `socket.socket.bind` turns a wildcard address into the loopback one (`--bind` for IPv4
  sockets, `::1` for IPv6 ones): uvicorn, asyncio, tornado and plain sockets all bind through it;
- gRPC binds in its C core, so an import hook rewrites the address given to
  `add_insecure_port`/`add_secure_port` of `grpc.Server` and `grpc.aio.Server` when gRPC loads.

The entrypoint then runs as `__main__` with `sys.argv = [ENTRYPOINT, *ARGS]`, and `sys.path` as
`PYTHONPATH=DIR... python ENTRYPOINT.py` sets it: the script's directory, then the `--pythonpath`
directories, then the interpreter's own entries (this launcher's directory is not on it).
`PYTHONPATH` is set to the `--pythonpath` directories for processes the isvc starts.

The outside world the pod reaches through its mesh (production's Istio sidecar) is given too:

- `--route 'PATTERN:PORT=ADDR:PORT'` (repeatable) resolves a name that matches PATTERN (as a
  ServiceEntry's hosts: `*.wikipedia.org` is any subdomain) on that port to ADDR:PORT, by
  wrapping `socket.getaddrinfo` (what asyncio, aiohttp's default resolver, requests and urllib
  resolve through). The client still sends its own `Host` (`en.wikipedia.org`); only where it
  connects changes, as the sidecar's interception does. Other names and ports resolve as always;
- `--cafile PATH` (repeatable): a CA bundle production's image has at PATH that this host lacks;
  `SSLContext.load_verify_locations(cafile=PATH)` loads the host's default trust store instead
  (a missing file is otherwise a FileNotFoundError before any connection is made).

These and the loopback binds also hold in the processes the isvc starts: KServe's REST workers
(`--workers N`, started with multiprocessing's `spawn` in kserve 0.17) are fresh interpreters, so
the options go to them in `ML_SANDBOX_LAUNCH` and `launch_site/` (a `sitecustomize` that applies
them) is put first on their `PYTHONPATH`; only when `--route` or `--cafile` is given.

KServe's model server reads its command line when `kserve.model_server` is imported
(`parser.parse_known_args()`, abbreviations allowed, so pass full option names): a local run gives
each isvc `--http_port P --grpc_port G` (both since kserve 0.8; gRPC is served since 0.10, and
`--enable_grpc false` turns it off). With `--workers N > 1` the parent binds the REST socket
itself and hands it to its workers (`socket.bind(("0.0.0.0", port))` in 0.11-0.13; uvicorn's
`Config.bind_socket` in the multi-process server of later releases): that bind goes through the
patched `socket.socket.bind` too.
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib.abc
import importlib.machinery
import ipaddress
import json
import os
import runpy
import socket
import ssl
import sys
from collections.abc import Callable
from types import ModuleType

WILDCARDS_V4 = frozenset({"", "0.0.0.0", "0", "INADDR_ANY"})
WILDCARDS_V6 = frozenset({"::", "::0", "0:0:0:0:0:0:0:0", "[::]"})
LOOPBACK_V6 = "::1"
# How a started process gets the options (see the docstring).
ENV_VAR = "ML_SANDBOX_LAUNCH"
SITE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "launch_site")


class Addresses:
    """Where wildcard binds go: `v4` for IPv4 sockets, `v6` for IPv6 ones."""

    def __init__(self, bind: str) -> None:
        ip = ipaddress.ip_address(bind)
        if not ip.is_loopback:
            raise ValueError(f"--bind must be a loopback address, not {bind}")
        self.v4 = bind if ip.version == 4 else "127.0.0.1"
        self.v6 = bind if ip.version == 6 else LOOPBACK_V6
        self.grpc = bind if ip.version == 4 else f"[{bind}]"

    def socket_address(self, family: int, address: object) -> object:
        if not isinstance(address, tuple) or not address or not isinstance(address[0], str):
            return address
        host = address[0]
        if family == socket.AF_INET and host in WILDCARDS_V4:
            return (self.v4, *address[1:])
        if family == socket.AF_INET6 and (host in WILDCARDS_V6 or host == ""):
            return (self.v6, *address[1:])
        return address

    def grpc_address(self, address: str) -> str:
        """`[::]:8081`, `0.0.0.0:8081`, `:8081`, `ipv6:[::]:8081` → `<bind>:8081`."""
        scheme = ""
        rest = address
        for prefix in ("ipv4:", "ipv6:", "dns:"):
            if rest.startswith(prefix):
                scheme, rest = prefix, rest[len(prefix) :]
        host, sep, port = rest.rpartition(":")
        if not sep or host not in WILDCARDS_V4 | WILDCARDS_V6 | {"[::0]"}:
            return address
        if scheme == "ipv6:":
            return f"ipv6:[{self.v6}]:{port}"
        return f"{self.grpc}:{port}"


def patch_socket_bind(addresses: Addresses) -> None:
    original = socket.socket.bind

    def bind(self: socket.socket, address: object, /) -> None:
        return original(self, addresses.socket_address(self.family, address))

    bind.__wrapped__ = original  # type: ignore[attr-defined]
    socket.socket.bind = bind  # type: ignore[method-assign]


def _wrap_port_methods(cls: type, addresses: Addresses) -> None:
    for name in ("add_insecure_port", "add_secure_port"):
        original = cls.__dict__.get(name)
        if original is None or getattr(original, "__sandbox_loopback__", False):
            continue

        def make(original: Callable[..., int]) -> Callable[..., int]:
            def add_port(self: object, address: str, *args: object, **kwargs: object) -> int:
                return original(self, addresses.grpc_address(address), *args, **kwargs)

            add_port.__sandbox_loopback__ = True  # type: ignore[attr-defined]
            add_port.__wrapped__ = original  # type: ignore[attr-defined]
            return add_port

        setattr(cls, name, make(original))


def grpc_patches(addresses: Addresses) -> dict[str, Callable[[ModuleType], None]]:
    """What to patch in which gRPC module once it is imported."""

    def sync(module: ModuleType) -> None:
        cls = getattr(module, "_Server", None)
        if isinstance(cls, type):
            _wrap_port_methods(cls, addresses)

    def aio(module: ModuleType) -> None:
        cls = getattr(module, "Server", None)
        if isinstance(cls, type):
            _wrap_port_methods(cls, addresses)

    return {"grpc._server": sync, "grpc.aio._server": aio}


class _PatchingLoader(importlib.abc.Loader):
    def __init__(self, inner: importlib.abc.Loader, after: Callable[[ModuleType], None]) -> None:
        self._inner = inner
        self._after = after

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._inner.exec_module(module)
        self._after(module)

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)


class PatchOnImport(importlib.abc.MetaPathFinder):
    """Runs `patches[name](module)` right after module `name` is first executed."""

    def __init__(self, patches: dict[str, Callable[[ModuleType], None]]) -> None:
        self._patches = patches

    def find_spec(
        self, name: str, path: object, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        after = self._patches.get(name)
        if after is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _PatchingLoader(spec.loader, after)
                return spec
        return None

    def install(self) -> None:
        for name, patch in self._patches.items():  # already imported: patch now
            if name in sys.modules:
                patch(sys.modules[name])
        sys.meta_path.insert(0, self)


def enforce_loopback(bind: str) -> Addresses:
    addresses = Addresses(bind)
    patch_socket_bind(addresses)
    PatchOnImport(grpc_patches(addresses)).install()
    return addresses


class Routes:
    """`PATTERN:PORT=ADDR:PORT` rules: where a name on a port connects instead."""

    def __init__(self, rules: list[str]) -> None:
        self.rules: list[tuple[str, int, str, int]] = [self.parse(r) for r in rules]

    @staticmethod
    def parse(rule: str) -> tuple[str, int, str, int]:
        match, sep, dest = rule.partition("=")
        pattern, _, port = match.rpartition(":")
        addr, _, dest_port = dest.rpartition(":")
        try:
            ipaddress.ip_address(addr.strip("[]"))
            ports = int(port), int(dest_port)
        except ValueError:
            ports = ()
        if not sep or not pattern or not ports or not all(0 < p < 65536 for p in ports):
            raise ValueError(
                f"--route {rule!r}: expected PATTERN:PORT=ADDR:PORT with an IP address "
                "(e.g. '*.wikipedia.org:80=127.0.0.1:8090')"
            )
        return pattern.lower(), ports[0], addr.strip("[]"), ports[1]

    def target(self, host: object, port: object) -> tuple[str, int] | None:
        """Where `host` on `port` connects, or None: as it resolves."""
        if isinstance(host, bytes):
            host = host.decode("ascii", "replace")
        if not isinstance(host, str):
            return None
        try:
            number = int(port)  # type: ignore[call-overload]
        except (TypeError, ValueError):
            try:
                number = socket.getservbyname(str(port), "tcp")
            except OSError:
                return None
        name = host.rstrip(".").lower()
        for pattern, rule_port, addr, dest_port in self.rules:
            if rule_port == number and fnmatch.fnmatchcase(name, pattern):
                return addr, dest_port
        return None


def patch_getaddrinfo(routes: Routes) -> None:
    original = getattr(socket.getaddrinfo, "__wrapped__", socket.getaddrinfo)

    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        dest = routes.target(host, port)
        if dest is None:
            return original(host, port, family, type, proto, flags)
        return original(dest[0], dest[1], family, type, proto, flags)

    getaddrinfo.__wrapped__ = original  # type: ignore[attr-defined]
    socket.getaddrinfo = getaddrinfo


def patch_cafiles(cafiles: list[str]) -> None:
    """`load_verify_locations(cafile=P)` for a P in `cafiles` this host lacks: the host's default
    trust store (production's image has P)."""
    stand_in = frozenset(os.path.abspath(p) for p in cafiles)
    original = getattr(
        ssl.SSLContext.load_verify_locations, "__wrapped__", ssl.SSLContext.load_verify_locations
    )

    def load_verify_locations(self, cafile=None, capath=None, cadata=None):
        if (
            isinstance(cafile, str)
            and os.path.abspath(cafile) in stand_in
            and not os.path.exists(cafile)
        ):
            self.load_default_certs(ssl.Purpose.SERVER_AUTH)
            if capath is None and cadata is None:
                return None
            cafile = None
        return original(self, cafile, capath, cadata)

    load_verify_locations.__wrapped__ = original  # type: ignore[attr-defined]
    ssl.SSLContext.load_verify_locations = load_verify_locations  # type: ignore[method-assign]


def install(bind: str, routes: list[str], cafiles: list[str]) -> None:
    """Everything this launcher does to the process before the isvc's code runs (a ValueError
    for a bad option)."""
    parsed = Routes(routes)
    enforce_loopback(bind)
    _outside(parsed, cafiles)


def install_outside(opts: argparse.Namespace) -> None:
    """The outside world of `parse`d options (`--route`, `--cafile`), in a process whose binds
    are already on loopback (a zygote's child)."""
    _outside(Routes(opts.route), opts.cafile)


def _outside(routes: Routes, cafiles: list[str]) -> None:
    if routes.rules:
        patch_getaddrinfo(routes)
    if cafiles:
        patch_cafiles(cafiles)


def install_from_env() -> None:
    """In a process the isvc started (launch_site/sitecustomize.py): the launcher's options."""
    raw = os.environ.get(ENV_VAR)
    if not raw:
        return
    opts = json.loads(raw)
    install(opts["bind"], opts.get("routes", []), opts.get("cafiles", []))


def run(
    entrypoint: str,
    args: list[str],
    pythonpath: list[str],
    carried: dict[str, object] | None = None,
) -> None:
    """Run `entrypoint` as `python entrypoint args...` with PYTHONPATH=pythonpath would;
    `carried` (the launcher's options) goes to the processes it starts."""
    script = os.path.abspath(entrypoint)
    extra = [os.path.abspath(p) for p in pythonpath]
    sys.argv = [entrypoint, *args]
    # sys.path[0] was this launcher's directory; Python puts the script's (symlinks resolved).
    sys.path[:1] = [os.path.dirname(os.path.realpath(script)), *extra]
    children = [SITE_DIR, *extra] if carried else extra
    if carried:
        os.environ[ENV_VAR] = json.dumps(carried)
    if children:
        os.environ["PYTHONPATH"] = os.pathsep.join(children)
    else:
        os.environ.pop("PYTHONPATH", None)
    runpy.run_path(script, run_name="__main__")


def parse(argv: list[str]) -> tuple[argparse.Namespace, str, list[str]]:
    parser = argparse.ArgumentParser(
        prog="launch.py",
        usage="%(prog)s [--bind ADDR] [--pythonpath DIR]... [--route RULE]... [--cafile PATH]..."
        " -- ENTRYPOINT.py [ARGS...]",
        description="Run a model server script with every wildcard bind moved to loopback.",
    )
    parser.add_argument("--bind", default="127.0.0.1", help="loopback address (127.0.0.1)")
    parser.add_argument(
        "--pythonpath", action="append", default=[], metavar="DIR", help="like PYTHONPATH"
    )
    parser.add_argument(
        "--route",
        action="append",
        default=[],
        metavar="PATTERN:PORT=ADDR:PORT",
        help="connect to ADDR:PORT for a name matching PATTERN on PORT (the mesh's egress)",
    )
    parser.add_argument(
        "--cafile",
        action="append",
        default=[],
        metavar="PATH",
        help="a CA bundle of production's image: the host's trust store where PATH is absent",
    )
    if "--" not in argv:
        parser.error("missing `-- ENTRYPOINT.py [ARGS...]`")
    split = argv.index("--")
    opts = parser.parse_args(argv[:split])
    rest = argv[split + 1 :]
    if not rest:
        parser.error("missing ENTRYPOINT.py after --")
    try:
        ipaddress.ip_address(opts.bind)
    except ValueError:
        parser.error(f"--bind: {opts.bind!r} is not an IP address")
    try:
        Routes(opts.route)
    except ValueError as e:
        parser.error(str(e))
    if not os.path.isfile(rest[0]):
        parser.error(f"entrypoint {rest[0]} does not exist")
    return opts, rest[0], rest[1:]


def main(argv: list[str] | None = None) -> None:
    opts, entrypoint, args = parse(sys.argv[1:] if argv is None else argv)
    try:
        install(opts.bind, opts.route, opts.cafile)
    except ValueError as e:
        print(f"launch.py: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    run(entrypoint, args, opts.pythonpath, carried(opts))


def carried(opts: argparse.Namespace) -> dict[str, object] | None:
    """What the processes the isvc starts get (None: nothing beyond the loopback binds, which
    only the launched process applies, as before routes existed)."""
    if not opts.route and not opts.cafile:
        return None
    return {"bind": opts.bind, "routes": opts.route, "cafiles": opts.cafile}


if __name__ == "__main__":
    main()
