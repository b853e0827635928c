#!/usr/bin/env python3
"""Check that every release asset the playbook downloads exists, before the playbook starts.

    scripts/check_release_urls.py                 # the playbook's URLs, from its vars files
    scripts/check_release_urls.py --list          # print them, check nothing
    scripts/check_release_urls.py URL...          # check these instead

One HEAD request per URL (redirects followed, still with HEAD, as GitHub's release downloads
redirect to their storage). Exit 0 when every one answers 2xx; 1 naming each URL that does not;
2 for bad usage. The URLs come from the same variables the roles use (group_vars/all and the
roles' defaults: tools, cert_manager, knative, kserve), so a pin in versions.yml that names a
release without that asset fails here in seconds instead of minutes into the run.
"""

from __future__ import annotations

import argparse
import platform
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PLAYBOOKS = ROOT / "playbooks"
ROLES = ("tools", "cert_manager", "knative", "kserve")
# The variables that name a downloaded asset, in the order the playbook downloads them.
URL_VARS = (
    "tools_kubectl_url",
    "tools_minikube_url",
    "tools_istioctl_url",
    "cert_manager_url",
    "knative_crds_url",
    "knative_core_url",
    "knative_net_istio_url",
    "kserve_url",
    "kserve_cluster_resources_url",
)
ARCHES = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64", "amd64": "amd64"}


def playbook_urls(arch: str) -> list[str]:
    """The assets the playbook downloads for `arch` (amd64 | arm64), with the published .sha256
    files the tools role verifies against where versions.yml pins no checksum."""
    import jinja2
    import yaml

    raw: dict[str, Any] = {}
    for f in sorted((PLAYBOOKS / "group_vars" / "all").glob("*.yml")):
        raw.update(yaml.safe_load(f.read_text()))
    for role in ROLES:
        text = (PLAYBOOKS / "roles" / role / "defaults" / "main.yml").read_text()
        raw.update(yaml.safe_load(text.replace("!unsafe ", "")))
    raw["tools_arch"] = arch
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)

    def render(value: str) -> str:
        for _ in range(5):
            if "{{" not in value:
                break
            value = env.from_string(value).render(**raw)
        return value.strip()

    urls = []
    for var in URL_VARS:
        url = render(raw[var])
        urls.append(url)
        if var.startswith("tools_"):
            tool = var.removeprefix("tools_").removesuffix("_url")
            if not raw["tool_checksums"][tool][arch]:
                urls.append(f"{url}.sha256")
    return urls


class _HeadRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects with HEAD (urllib's default handler turns them into GETs)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[override]
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None:
            new.method = "HEAD"
        return new


def check(url: str, timeout: float) -> str | None:
    """None when `url` answers a HEAD request with 2xx; else why not."""
    opener = urllib.request.build_opener(_HeadRedirects)
    request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "ml-sandbox"})
    try:
        with opener.open(request, timeout=timeout) as response:
            status = response.status
    except urllib.error.HTTPError as e:
        return f"HTTP {e.code}"
    except (urllib.error.URLError, OSError) as e:
        return f"unreachable: {getattr(e, 'reason', e)}"
    return None if 200 <= status < 300 else f"HTTP {status}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="HEAD every release asset the playbook downloads; fail naming a missing one."
    )
    parser.add_argument("urls", nargs="*", help="URLs to check (default: the playbook's)")
    parser.add_argument(
        "--arch",
        default=ARCHES.get(platform.machine(), "amd64"),
        choices=sorted(set(ARCHES.values())),
        help="architecture of the tool binaries (default: this machine's)",
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    parser.add_argument("--list", action="store_true", help="print the URLs and check nothing")
    args = parser.parse_args(argv)

    urls = args.urls or playbook_urls(args.arch)
    if args.list:
        print("\n".join(urls))
        return 0
    missing = []
    for url in urls:
        problem = check(url, args.timeout)
        print(
            f"{'ok' if problem is None else 'MISSING'}  {url}"
            + (f"  ({problem})" if problem else "")
        )
        if problem:
            missing.append((url, problem))
    for url, problem in missing:
        print(f"release asset missing: {url} ({problem})", file=sys.stderr)
    if missing:
        print(
            "fix the pin in playbooks/group_vars/all/versions.yml (or the role's URL) before "
            "running the playbook",
            file=sys.stderr,
        )
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
