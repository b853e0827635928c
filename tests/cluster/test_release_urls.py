"""scripts/check_release_urls.py, which the nightly workflow runs before the playbook: one HEAD
request per release asset, failing with the URL that is missing. Fed a local HTTP server on
127.0.0.1 (a free port), never the internet."""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
import yaml

from .conftest import REPO

pytestmark = pytest.mark.cluster

SCRIPT = REPO / "scripts" / "check_release_urls.py"


class _Assets(http.server.BaseHTTPRequestHandler):
    """/ok and /ok.sha256 exist, /moved redirects to /ok (as GitHub's downloads do), the rest
    is 404. Every request's method is recorded."""

    seen: list[tuple[str, str]] = []

    def _answer(self) -> None:
        self.seen.append((self.command, self.path))
        if self.path in ("/ok", "/ok.sha256"):
            self.send_response(200)
            self.send_header("Content-Length", "1000000")
        elif self.path == "/moved":
            self.send_response(302)
            self.send_header("Location", "/ok")
        else:
            self.send_response(404)
        self.end_headers()

    do_HEAD = _answer
    do_GET = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    _Assets.seen = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Assets)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--timeout", "10", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_present_assets_pass_with_one_head_request_each(server: str) -> None:
    proc = _check(f"{server}/ok", f"{server}/moved")
    assert proc.returncode == 0, proc.stderr
    # One HEAD per URL; the redirect is followed with HEAD too, and nothing is downloaded.
    assert _Assets.seen == [("HEAD", "/ok"), ("HEAD", "/moved"), ("HEAD", "/ok")]


def test_a_missing_asset_fails_naming_its_url(server: str) -> None:
    missing = f"{server}/kserve/releases/download/v0.17.0/kserve.yaml"
    proc = _check(f"{server}/ok", missing, f"{server}/ok.sha256")
    assert proc.returncode == 1
    assert f"release asset missing: {missing} (HTTP 404)" in proc.stderr
    assert f"{server}/ok" not in proc.stderr.replace(missing, "")
    # Every URL is still checked, so one run names every missing asset.
    assert [p for _, p in _Assets.seen] == [
        "/ok",
        "/kserve/releases/download/v0.17.0/kserve.yaml",
        "/ok.sha256",
    ]


def test_an_unreachable_host_fails_naming_its_url(server: str) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/asset"
    proc = _check(url)
    assert proc.returncode == 1
    assert f"release asset missing: {url} (unreachable" in proc.stderr


def test_bad_usage_exits_2() -> None:
    assert _check("--arch", "sparc").returncode == 2


def test_the_default_list_is_what_the_playbook_downloads() -> None:
    proc = _check("--list", "--arch", "amd64")
    assert proc.returncode == 0, proc.stderr
    urls = proc.stdout.split()
    versions = yaml.safe_load((REPO / "playbooks/group_vars/all/versions.yml").read_text())
    ks = versions["kserve_version"]
    assert f"https://github.com/kserve/kserve/releases/download/v{ks}/kserve.yaml" in urls
    assert (
        f"https://github.com/kserve/kserve/releases/download/v{ks}/kserve-cluster-resources.yaml"
        in urls
    )
    mk = versions["minikube_version"]
    minikube = (
        f"https://github.com/kubernetes/minikube/releases/download/v{mk}/minikube-linux-amd64"
    )
    # minikube has no pinned checksum: the tools role verifies against the published .sha256.
    assert minikube in urls and f"{minikube}.sha256" in urls
    assert not any(u.startswith("https://dl.k8s.io") and u.endswith(".sha256") for u in urls)
    assert all(u.startswith("https://") and "{{" not in u for u in urls)
    assert len(urls) == len(set(urls)) == 11
