"""How an Istio 1.24.2 sidecar routes one outbound HTTP request, computed from Kubernetes documents.

No cluster runs here, and no pip or Debian package ships `istioctl`, so the cluster tier asks the
question Istio's control plane answers for a sidecar: given the Services, ServiceEntries,
VirtualServices and DestinationRules of the mesh, where does a request to `<ip>:<port>` with a
`Host` header go? The steps follow istiod's route building at istio/istio@1.24.2 (each function
names its source) and Envoy's virtual-host selection; only what the sandbox's objects use is
modelled (no Sidecar resources, subsets, delegates, sniffed ports, gateways other than `mesh`).
Anything this model does not understand raises, rather than guessing a route.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

# Envoy's catch-all virtual host under REGISTRY_ONLY: a direct 502
# (pilot/pkg/networking/core/httproute.go, buildCatchAllVirtualHost, util.BlackHole).
BLACK_HOLE = "BlackHoleCluster"


@dataclass(frozen=True)
class Port:
    number: int
    protocol: str  # HTTP, HTTPS, TCP, ...
    target: int | str | None = None


@dataclass
class Service:
    """One host of Istio's service registry (a Kubernetes Service or a ServiceEntry host)."""

    hostname: str
    namespace: str
    ports: list[Port]
    kind: str  # Service | ServiceEntry
    resolution: str = "STATIC"
    endpoints: list[dict[str, Any]] = field(default_factory=list)
    selector: dict[str, str] = field(default_factory=dict)

    def port(self, number: int) -> Port | None:
        return next((p for p in self.ports if p.number == number), None)


@dataclass(frozen=True)
class Route:
    """Where the sidecar sends the request."""

    virtual_host: str
    cluster: str  # outbound|<port>||<host>, or BLACK_HOLE
    virtual_service: str | None = None
    request_headers_set: dict[str, str] = field(default_factory=dict)


def _k8s_protocol(port: dict[str, Any]) -> str:
    """A Kubernetes Service port's protocol for Istio: appProtocol, else the name's prefix
    (pkg/config/kube/conversion.go, ConvertProtocol; pkg/config/protocol/instance.go, Parse)."""
    name = (port.get("appProtocol") or port.get("name") or "").lower()
    prefix = name.split("-", 1)[0]
    known = {"http": "HTTP", "http2": "HTTP2", "grpc": "GRPC", "https": "HTTPS", "tcp": "TCP"}
    if port.get("protocol", "TCP") == "UDP":
        return "UDP"
    return known.get(prefix, "UNSUPPORTED")  # unsupported: sniffed


def is_http(protocol: str) -> bool:
    """protocol.Instance.IsHTTP (HTTP, HTTP2, GRPC, GRPC-Web)."""
    return protocol in {"HTTP", "HTTP2", "GRPC", "GRPC-WEB", "HTTP_PROXY"}


def registry(docs: Iterable[dict[str, Any]], domain: str = "cluster.local") -> list[Service]:
    """The hosts Istio's registry holds for these documents, every one exported to all
    namespaces (the sandbox sets no exportTo; Istio's default is "*")."""
    out: list[Service] = []
    for d in docs:
        meta = d.get("metadata") or {}
        spec = d.get("spec") or {}
        if d.get("kind") == "Service" and d.get("apiVersion") == "v1":
            if spec.get("type") == "ExternalName":
                raise NotImplementedError("ExternalName Services are not modelled")
            out.append(
                Service(
                    hostname=f"{meta['name']}.{meta['namespace']}.svc.{domain}",
                    namespace=meta["namespace"],
                    ports=[
                        Port(p["port"], _k8s_protocol(p), p.get("targetPort", p["port"]))
                        for p in spec.get("ports") or []
                    ],
                    kind="Service",
                    selector=dict(spec.get("selector") or {}),
                )
            )
        elif d.get("kind") == "ServiceEntry":
            if spec.get("exportTo") not in (None, ["*"]):
                raise NotImplementedError("exportTo other than '*' is not modelled")
            ports = [
                Port(p["number"], p.get("protocol", "UNSUPPORTED").upper(), p.get("targetPort"))
                for p in spec.get("ports") or []
            ]
            for h in spec.get("hosts") or []:
                out.append(
                    Service(
                        hostname=h,
                        namespace=meta.get("namespace", "default"),
                        ports=ports,
                        kind="ServiceEntry",
                        resolution=spec.get("resolution", "NONE"),
                        endpoints=list(spec.get("endpoints") or []),
                    )
                )
    return out


def _wild(h: str) -> bool:
    return h.startswith("*")


def host_matches(a: str, b: str) -> bool:
    """host.Name.Matches (pkg/config/host/name.go): do the two (possibly wildcard) hosts
    overlap?"""
    if a == b or a == "*" or b == "*":
        return True
    if _wild(a) and _wild(b):
        return a[1:].endswith(b[1:]) or b[1:].endswith(a[1:])
    if _wild(a):
        return b.endswith(a[1:])
    if _wild(b):
        return a.endswith(b[1:])
    return False


def _most_specific_vs(svc_host: str, vss: list[dict[str, Any]]) -> str | None:
    """computeWildcardHostVirtualServiceIndex + MostSpecificHostMatch
    (pilot/pkg/model/sidecar.go, pkg/config/host/names.go): an exact VS host first, else the
    longest wildcard VS host that matches; the first VirtualService wins a tie."""
    exact: dict[str, str] = {}
    wildcard: dict[str, str] = {}
    for vs in vss:
        for h in vs["spec"].get("hosts") or []:
            (wildcard if _wild(h) else exact).setdefault(h, vs["metadata"]["name"])
    if svc_host in exact:
        return exact[svc_host]
    best = [h for h in wildcard if host_matches(h, svc_host)]
    if not best:
        return None
    return wildcard[max(best, key=len)]


def _mesh_virtual_services(docs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for d in docs:
        if d.get("kind") != "VirtualService":
            continue
        spec = d.get("spec") or {}
        if spec.get("exportTo") not in (None, ["*"]):
            raise NotImplementedError("exportTo other than '*' is not modelled")
        if "mesh" in (spec.get("gateways") or ["mesh"]):
            out.append(d)
    return out


def _string_match(rule: dict[str, str], value: str) -> bool:
    """A StringMatch (networking/v1 virtual_service.proto): exact, prefix or (RE2) regex,
    the whole value for regex as Envoy's safe_regex does."""
    if "exact" in rule:
        return value == rule["exact"]
    if "prefix" in rule:
        return value.startswith(rule["prefix"])
    if "regex" in rule:
        return re.fullmatch(rule["regex"], value) is not None
    raise NotImplementedError(f"string match {rule} is not modelled")


def _route_matches(match: dict[str, Any], host: str, path: str) -> bool:
    for key in match:
        if key not in {"port", "authority", "uri", "name"}:
            raise NotImplementedError(f"HTTPMatchRequest.{key} is not modelled")
    if "authority" in match and not _string_match(match["authority"], host):
        return False
    return "uri" not in match or _string_match(match["uri"], path)


@dataclass(frozen=True)
class _VirtualHost:
    name: str
    domains: tuple[str, ...]
    vs: dict[str, Any] | None  # None: the default route of a service without a VirtualService
    default_cluster: str | None = None


def route_config(docs: list[dict[str, Any]], port: int) -> list[_VirtualHost]:
    """RDS route configuration `<port>` of a sidecar: BuildSidecarOutboundVirtualHosts
    (pilot/pkg/networking/core/httproute.go) over BuildSidecarVirtualHostWrapper and
    separateVSHostsAndServices (pilot/pkg/networking/core/route/route.go), then the catch-all
    (buildCatchAllVirtualHost; REGISTRY_ONLY: 502)."""
    services = {s.hostname: s for s in registry(docs) if s.port(port)}
    vss = _mesh_virtual_services(docs)
    if port != 80:  # selectVirtualServices: only VirtualServices whose host matches a service
        vss = [
            vs
            for vs in vss
            if any(host_matches(h, s) for h in vs["spec"].get("hosts") or [] for s in services)
        ]
    vhosts: list[_VirtualHost] = []
    covered: set[str] = set()
    for vs in vss:
        name = vs["metadata"]["name"]
        hosts = []
        for h in vs["spec"].get("hosts") or []:
            if not _wild(h):
                if h in services or port == 80:  # non-registry hosts only on 80 (the hack)
                    hosts.append(h)
                    covered.add(h)
                continue
            matched = [
                s for s in services if host_matches(s, h) and _most_specific_vs(s, vss) == name
            ]
            for s in matched:
                hosts.append(s)
                covered.add(s)
            if not any(host_matches(s, h) for s in services) and port == 80:
                hosts.append(h)
        for h in dict.fromkeys(hosts):
            vhosts.append(_VirtualHost(f"{h}:{port}", (h, f"{h}:{port}"), vs))
    for h, svc in services.items():
        if h in covered or not is_http(svc.port(port).protocol):
            continue
        # buildSidecarVirtualHostForService: one default route to outbound|<port>||<host>.
        vhosts.append(
            _VirtualHost(f"{h}:{port}", (h, f"{h}:{port}"), None, f"outbound|{port}||{h}")
        )
    return vhosts


def _select_vhost(vhosts: list[_VirtualHost], host: str) -> _VirtualHost | None:
    """Envoy's virtual-host selection (envoyproxy/envoy api/envoy/config/route/v3/
    route_components.proto, VirtualHost.domains): exact names, then the longest suffix wildcard,
    then the longest prefix wildcard. Istio sets ignore_port_in_host_matching."""
    host = host.rsplit(":", 1)[0] if ":" in host else host
    exact = [v for v in vhosts if host in v.domains]
    if exact:
        return exact[0]
    best: tuple[int, _VirtualHost] | None = None
    for v in vhosts:
        for d in v.domains:
            suffix = d.startswith("*") and d != "*" and host.endswith(d[1:])
            if suffix and len(host) > len(d) - 1 and (best is None or len(d) > best[0]):
                best = (len(d), v)
    return best[1] if best else None


def outbound_listener_is_http(docs: list[dict[str, Any]], dest_service: str, port: int) -> bool:
    """Which outbound listener takes a connection to `dest_service`'s ClusterIP on `port`
    (buildSidecarOutboundListener, pilot/pkg/networking/core/listener.go): a TCP or sniffed
    port gets a listener on the service's own VIP, which wins over 0.0.0.0; an HTTP port shares
    the wildcard 0.0.0.0:<port> HTTP listener (route configuration `<port>`)."""
    svc = next((s for s in registry(docs) if s.hostname == dest_service), None)
    if svc is None:
        raise LookupError(f"no Service {dest_service} in the registry")
    p = svc.port(port)
    if p is None:
        raise LookupError(f"{dest_service} has no port {port}")
    if not is_http(p.protocol):
        return False
    return any(is_http(q.protocol) for s in registry(docs) for q in s.ports if q.number == port)


def route(docs: list[dict[str, Any]], port: int, host: str, path: str = "/") -> Route:
    """The route a sidecar's outbound HTTP listener on `port` picks for `Host: host`."""
    vhost = _select_vhost(route_config(docs, port), host)
    if vhost is None:
        return Route(virtual_host="block_all", cluster=BLACK_HOLE)
    if vhost.vs is None:
        return Route(virtual_host=vhost.name, cluster=vhost.default_cluster or BLACK_HOLE)
    for http in vhost.vs["spec"].get("http") or []:
        matches = http.get("match") or [{}]
        # translateRoute (route/route.go): a match on another port is dropped at build time.
        live = [m for m in matches if not m.get("port") or m["port"] == port]
        if not any(_route_matches(m, host, path) for m in live):
            continue
        (dest,) = http["route"]  # one destination: no weights in the sandbox's objects
        d = dest["destination"]
        # GetDestinationCluster: the destination's port, else the listener's.
        dport = (d.get("port") or {}).get("number", port)
        headers = ((http.get("headers") or {}).get("request") or {}).get("set") or {}
        return Route(
            virtual_host=vhost.name,
            cluster=f"outbound|{dport}||{d['host']}",
            virtual_service=vhost.vs["metadata"]["name"],
            request_headers_set=dict(headers),
        )
    # No route of the VirtualService matches: Envoy answers 404 (no route), not the catch-all.
    return Route(virtual_host=vhost.name, cluster="")


@dataclass(frozen=True)
class Upstream:
    address: str  # a DNS name (STRICT_DNS cluster) or a pod
    port: int
    tls: str  # DISABLE | SIMPLE | ...


def cluster_upstream(docs: list[dict[str, Any]], cluster: str) -> Upstream:
    """Where cluster `outbound|<port>||<host>` connects: a ServiceEntry with resolution DNS and
    endpoints resolves the endpoint address on the port's targetPort (convertEndpoint,
    pilot/pkg/serviceregistry/serviceentry/conversion.go: endpoint ports > targetPort > number),
    with the DestinationRule's port-level TLS."""
    m = re.fullmatch(r"outbound\|(\d+)\|\|(.+)", cluster)
    if not m:
        raise LookupError(f"not an outbound cluster: {cluster!r}")
    port, host = int(m.group(1)), m.group(2)
    svc = next((s for s in registry(docs) if s.hostname == host and s.port(port)), None)
    if svc is None:
        raise LookupError(f"no service {host} with port {port}: the cluster does not exist")
    if svc.kind != "ServiceEntry" or svc.resolution != "DNS" or len(svc.endpoints) != 1:
        raise NotImplementedError("only a DNS ServiceEntry with one endpoint is modelled")
    sp = svc.port(port)
    ep = svc.endpoints[0]
    target = (ep.get("ports") or {}).get(_port_name(docs, host, port)) or sp.target or port
    tls = "DISABLE"
    for d in docs:
        if d.get("kind") == "DestinationRule" and d["spec"].get("host") == host:
            for pls in d["spec"].get("trafficPolicy", {}).get("portLevelSettings") or []:
                if pls["port"]["number"] == port:
                    tls = (pls.get("tls") or {}).get("mode", "DISABLE")
    return Upstream(address=ep["address"], port=int(target), tls=tls)


def _port_name(docs: list[dict[str, Any]], host: str, port: int) -> str:
    for d in docs:
        if d.get("kind") == "ServiceEntry" and host in d["spec"].get("hosts", []):
            for p in d["spec"].get("ports") or []:
                if p["number"] == port:
                    return p.get("name", "")
    return ""


def service_backend(docs: list[dict[str, Any]], fqdn: str, port: int) -> tuple[str, int]:
    """The pod (Deployment name) and container port behind Kubernetes Service `fqdn`:`port`:
    the Service's selector against a Deployment's pod labels, its targetPort (a number or a
    container port's name)."""
    svc = next((s for s in registry(docs) if s.kind == "Service" and s.hostname == fqdn), None)
    if svc is None or svc.port(port) is None:
        raise LookupError(f"no Service {fqdn} with port {port}")
    target = svc.port(port).target
    for d in docs:
        if d.get("kind") != "Deployment":
            continue
        pod = d["spec"]["template"]
        labels = pod["metadata"].get("labels") or {}
        if d["metadata"].get("namespace") != svc.namespace or not svc.selector:
            continue
        if all(labels.get(k) == v for k, v in svc.selector.items()):
            for c in pod["spec"]["containers"]:
                for cp in c.get("ports") or []:
                    if target in (cp["containerPort"], cp.get("name")):
                        return d["metadata"]["name"], cp["containerPort"]
    raise LookupError(f"no pod behind {fqdn}:{port} (target {target})")
