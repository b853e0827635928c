"""Production's mesh egress to MediaWiki, as the local target applies it to an isvc's process.

In production an isvc may call a wiki's own domain (`http://en.wikipedia.org/w/rest.php/...`, what
revise-tone and articlequality build with FORCE_HTTP=True): its Istio sidecar captures the
connection on port 80 or 4680 for the domains of the ServiceEntry `mediawiki-api-proxied-domains`
and the VirtualService `mediawiki-api-vs` routes it to the API proxy `mw-api-int-ro`
(operations-deployment-charts@66ce6e0: helmfile.d/admin_ng/values/ml-serve.yaml, net_istio.mesh).
The cluster tier applies those objects as production has them (the knative role); its defaults
hold production's list of domains and ports, read here so that there is one list.

On the local target the launcher (`launch.py --route`) resolves those names on those ports to the
MediaWiki replay server, which answers by the `Host` the isvc sends, as the proxy does. It is the
sidecar's interception, not the isvc's: no setting of the isvc changes where it connects.
Production's image also carries Wikimedia's CA bundle (apt `wmf-certificates`), which the isvcs'
EventGate client loads by path even for plain-HTTP EventGate URLs; `launch.py --cafile` gives the
host's trust store for it where the host lacks the file.

On the docker target the same list and ports apply, the way a container can take them: one
`docker run --add-host NAME:IP` (the replay container's address) per name (`container_hosts`),
since /etc/hosts has no wildcards, and the replay container listens on each port
(`--also-port`) beside its own.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import urllib.parse
from collections.abc import Iterable
from functools import cache

import yaml

from sandbox.paths import REPO_ROOT

ROLE_DEFAULTS = REPO_ROOT / "playbooks" / "roles" / "knative" / "defaults" / "main.yml"
SERVICE_ENTRY = "mediawiki-api-proxied-domains"
# The CA bundle the isvcs' EventGate client loads (inference-services@bce944c:
# python/events.py send_event, TLS_CERT_BUNDLE_PATH of the models), from apt `wmf-certificates`.
WMF_CA_BUNDLE = "/etc/ssl/certs/wmf-ca-certificates.crt"


@cache
def proxied_domains() -> tuple[tuple[str, ...], tuple[int, ...]]:
    """The domains and ports production's mesh routes to the API proxy (the knative role's
    defaults: `knative_mediawiki_api_domains` and the ServiceEntry's ports)."""
    defaults = yaml.safe_load(ROLE_DEFAULTS.read_text())
    domains = tuple(defaults["knative_mediawiki_api_domains"])
    entry = defaults["knative_mesh_service_entries"][SERVICE_ENTRY]["spec"]
    return domains, tuple(int(p["number"]) for p in entry["ports"])


def wiki_routes(replay_url: str) -> list[str]:
    """`launch.py --route` rules sending every proxied domain, on each of its ports, to the
    replay server at `replay_url`; none when its host is not an IP address (a name the launcher
    could only resolve through the DNS it is replacing)."""
    url = urllib.parse.urlsplit(replay_url)
    host = "127.0.0.1" if url.hostname == "localhost" else url.hostname or ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return []
    port = url.port or (443 if url.scheme == "https" else 80)
    address = f"[{host}]" if ":" in host else host
    domains, ports = proxied_domains()
    return [f"{d}:{p}={address}:{port}" for d in domains for p in ports]


def launcher_args(replay_url: str | None) -> list[str]:
    """The launcher's outside-world arguments when the replay server stands for MediaWiki and
    EventGate (`replay_url`), else none."""
    if replay_url is None:
        return []
    routes = wiki_routes(replay_url)
    if not routes:
        return []
    args = [f"--route={r}" for r in routes]
    return [*args, f"--cafile={WMF_CA_BUNDLE}"]


def container_hosts(known: Iterable[str]) -> list[str]:
    """The proxied names a resolver without wildcards (a container's /etc/hosts) can list: the
    domains that are names (`commons.wikimedia.org`), and each of `known` (the wikis the replay
    server answers) that a pattern (`*.wikipedia.org`) matches. A wiki it does not know is not
    resolved, where production's mesh would route it."""
    domains, _ = proxied_domains()
    names = {d for d in domains if "*" not in d}
    names |= {n.lower() for n in known if any(fnmatch.fnmatchcase(n.lower(), d) for d in domains)}
    return sorted(names)
