"""Test helpers for running an isvc process: which addresses it listens on (from /proc)."""

from __future__ import annotations

import ipaddress
import os
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

TCP_LISTEN = "0A"


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    try:
        fds = list(fd_dir.iterdir())
    except OSError:
        return inodes
    for fd in fds:
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def _decode(hex_addr: str) -> tuple[str, int]:
    host_hex, port_hex = hex_addr.split(":")
    raw = bytes.fromhex(host_hex)
    # The kernel prints the address as 32-bit words in host (little-endian) order.
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    family = socket.AF_INET if len(raw) == 4 else socket.AF_INET6
    return socket.inet_ntop(family, words), int(port_hex, 16)


def listening_addresses(pid: int) -> set[tuple[str, int]]:
    """(host, port) of every TCP socket in LISTEN state held by `pid` or its descendants, read
    from /proc/<pid>/net/tcp{,6} (the process's network namespace)."""
    pids = _descendants(pid)
    inodes = set().union(*(_socket_inodes(p) for p in pids))
    found = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == TCP_LISTEN and fields[9] in inodes:
                found.add(_decode(fields[1]))
    return found


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1, or an IPv4 loopback mapped into IPv6 (gRPC's dual-stack sockets)."""
    ip = ipaddress.ip_address(host)
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


def non_loopback(addresses: set[tuple[str, int]]) -> set[tuple[str, int]]:
    return {(h, p) for h, p in addresses if not is_loopback(h)}


def wait_http(url: str, timeout: float = 60.0, proc: object = None) -> None:
    """Wait until `url` answers 200 (or fail with what the process printed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:  # type: ignore[attr-defined]
            raise AssertionError(f"the server exited with {proc.returncode}")  # type: ignore[attr-defined]
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {timeout}s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
