"""launch.py's outside world (`--route`, `--cafile`) and mesh.py's rules: production's mesh egress
to the wikis' own domains, as the local target gives it to an isvc's process."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sandbox.runtime import launch, mesh

pytestmark = pytest.mark.unit

LAUNCH = Path(launch.__file__)


def test_a_route_matches_the_name_and_port_as_the_mesh_does() -> None:
    routes = launch.Routes(["*.wikipedia.org:80=127.0.0.1:8090", "wikipedia.org:80=127.0.0.1:8090"])
    assert routes.target("en.wikipedia.org", 80) == ("127.0.0.1", 8090)
    assert routes.target("EN.Wikipedia.org.", "80") == ("127.0.0.1", 8090)
    assert routes.target(b"fr.wikipedia.org", 80) == ("127.0.0.1", 8090)
    assert routes.target("wikipedia.org", "http") == ("127.0.0.1", 8090)
    # Other ports (https on 443 is not intercepted in production) and names resolve as always.
    assert routes.target("en.wikipedia.org", 443) is None
    assert routes.target("en.wikipedia.org.example.com", 80) is None
    assert routes.target("wikidata.org", 80) is None


@pytest.mark.parametrize(
    "rule", ["*.wikipedia.org=127.0.0.1:1", "*.wikipedia.org:80=localhost:1", ":80=127.0.0.1:1",
             "*.wikipedia.org:80=127.0.0.1:0", "*.wikipedia.org:x=127.0.0.1:1"],
)  # fmt: skip
def test_a_bad_route_is_refused(rule: str) -> None:
    with pytest.raises(ValueError, match="PATTERN:PORT=ADDR:PORT"):
        launch.Routes([rule])


def test_the_launcher_refuses_a_bad_route_with_usage_exit_2(tmp_path: Path) -> None:
    script = tmp_path / "s.py"
    script.write_text("print('ran')\n")
    proc = subprocess.run(
        [sys.executable, str(LAUNCH), "--route", "nonsense", "--", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "PATTERN:PORT=ADDR:PORT" in proc.stderr
    assert "ran" not in proc.stdout


def test_mesh_rules_cover_productions_domains_and_ports() -> None:
    domains, ports = mesh.proxied_domains()
    assert "*.wikipedia.org" in domains and "wikipedia.org" in domains
    assert set(ports) == {80, 4680}
    rules = mesh.wiki_routes("http://127.0.0.1:8090")
    assert "*.wikipedia.org:80=127.0.0.1:8090" in rules
    assert len(rules) == len(domains) * len(ports)
    # A replay server known only by name is not routed (the launcher connects to addresses).
    assert mesh.wiki_routes("http://mediawiki-replay:8080") == []
    assert mesh.launcher_args(None) == []
    assert mesh.launcher_args("http://127.0.0.1:8090")[-1] == f"--cafile={mesh.WMF_CA_BUNDLE}"


CHILD = textwrap.dedent(
    """
    import multiprocessing, socket, ssl, sys

    def resolve(queue):
        queue.put(socket.getaddrinfo("en.wikipedia.org", 80, type=socket.SOCK_STREAM)[0][4])

    if __name__ == "__main__":
        print("here", socket.getaddrinfo("en.wikipedia.org", 80, type=socket.SOCK_STREAM)[0][4])
        ctx = multiprocessing.get_context("spawn")
        queue = ctx.Queue()
        p = ctx.Process(target=resolve, args=(queue,))
        p.start()
        print("worker", queue.get(timeout=60))
        p.join()
        ssl.create_default_context(cafile=sys.argv[1])
        print("cafile ok")
    """
)


def test_routes_and_cafile_hold_in_the_isvc_and_its_spawned_workers(tmp_path: Path) -> None:
    """As in KServe's REST workers (multiprocessing `spawn`): a fresh interpreter gets them too."""
    script = tmp_path / "server.py"
    script.write_text(CHILD)
    absent = tmp_path / "wmf-ca-certificates.crt"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", launch.ENV_VAR)}
    proc = subprocess.run(
        [sys.executable, str(LAUNCH), "--route", "*.wikipedia.org:80=127.0.0.1:4321",
         "--cafile", str(absent), "--", str(script), str(absent)],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "here ('127.0.0.1', 4321)" in proc.stdout
    assert "worker ('127.0.0.1', 4321)" in proc.stdout
    assert "cafile ok" in proc.stdout


def test_a_cafile_not_named_still_fails_as_without_the_launcher(tmp_path: Path) -> None:
    saved = ssl.SSLContext.load_verify_locations
    try:
        launch.patch_cafiles([str(tmp_path / "named.crt")])
        ssl.create_default_context(cafile=str(tmp_path / "named.crt"))  # the host's store
        with pytest.raises(FileNotFoundError):
            ssl.create_default_context(cafile=str(tmp_path / "other.crt"))
    finally:
        ssl.SSLContext.load_verify_locations = saved  # type: ignore[method-assign]


def test_getaddrinfo_is_untouched_for_other_names() -> None:
    saved = socket.getaddrinfo
    try:
        launch.patch_getaddrinfo(launch.Routes(["*.wikipedia.org:80=127.0.0.1:4321"]))
        assert socket.getaddrinfo("127.0.0.2", 81)[0][4][:2] == ("127.0.0.2", 81)
        assert socket.getaddrinfo("de.wikipedia.org", 80)[0][4][:2] == ("127.0.0.1", 4321)
    finally:
        socket.getaddrinfo = saved
