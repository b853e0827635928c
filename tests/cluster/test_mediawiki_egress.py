"""MediaWiki egress as production routes it, proved on the rendered objects without a cluster.

An isvc's transformer connects to its WIKI_URL (production's API proxy,
`http://mw-api-int-ro.discovery.wmnet:4680`) and sends `Host: <lang>.wikipedia.org`. The test
follows that request from the rendered InferenceService through CoreDNS (the playbook's rewrite
applied to kubeadm's Corefile), the sidecar's outbound listener and route table
(tests/cluster/istio_routes.py: istiod's route building at istio/istio@1.24.2), the cluster the
route names and the ServiceEntry endpoint behind it, to the replay pod's port.
"""

from __future__ import annotations

import re
import sys
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from sandbox import catalog
from sandbox import manifests as m

from . import istio_routes as ir
from .conftest import PLAYBOOKS

sys.path.insert(0, str(PLAYBOOKS / "filter_plugins"))
import stack_manifests as F

pytestmark = pytest.mark.cluster

# The Corefile of a minikube node: kubeadm's CoreDNS ConfigMap (kubernetes/kubernetes@008b3652959c:
# cmd/kubeadm/app/phases/addons/dns/manifests.go, CoreDNSConfigMap, DNSDomain cluster.local) with
# the hosts block minikube inserts before `forward` (kubernetes/minikube@v1.37.0:
# pkg/minikube/node/start.go, addCoreDNSEntry).
KUBEADM_COREFILE = """\
.:53 {
    errors
    health {
       lameduck 5s
    }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    prometheus :9153
    hosts {
       192.168.49.1 host.minikube.internal
       fallthrough
    }
    forward . /etc/resolv.conf {
       max_concurrent 1000
    }
    cache 30 {
       disable success cluster.local
       disable denial cluster.local
    }
    loop
    reload
    loadbalance
}
"""


def coredns_resolve(corefile: str, name: str) -> tuple[str, str]:
    """(the name CoreDNS looks up, the answer name the client sees) for a query of `name`, under
    the `rewrite stop { name regex ...; answer name ... }` rules of the `.:53` block (CoreDNS
    plugin/rewrite, "Response Rewrites"); no rule: the name itself."""
    q = name.rstrip(".") + "."
    rules = re.findall(
        r"rewrite stop \{\s*name regex (\S+) (\S+)\s*answer name (\S+) (\S+)\s*\}", corefile
    )
    for qre, qto, are, ato in rules:
        if re.fullmatch(qre, q):
            looked_up = qto if qto.endswith(".") else qto + "."
            answer = ato if re.fullmatch(are, looked_up) else looked_up
            return looked_up, answer
    return q, q


@pytest.fixture(scope="module")
def outlink_env() -> dict[str, str]:
    doc = m.render_isvc(catalog.get("outlink-topic-model"))
    (c,) = doc["spec"]["transformer"]["containers"]
    return {e["name"]: e["value"] for e in c["env"]}


def _knative_defaults() -> dict[str, Any]:
    return yaml.safe_load((PLAYBOOKS / "roles/knative/defaults/main.yml").read_text())


def _mesh(rendered_docs: dict, mode: str = "replay") -> list[dict[str, Any]]:
    """Every object that routes the request: the playbook's mesh objects, the replay manifest
    and deploy's proxy objects for `mode`, as they are committed."""
    return [
        *rendered_docs["knative/net-istio-mesh.yaml"],
        *m.load_documents(m.REPLAY_MANIFEST),
        *m.load_documents(m.mediawiki_proxy_manifest(mode)),
    ]


def test_isvcs_get_productions_wiki_url(outlink_env: dict[str, str]) -> None:
    # operations-deployment-charts@66ce6e0: helmfile.d/ml-services/articletopic-outlink/values.yaml
    assert outlink_env["WIKI_URL"] == "http://mw-api-int-ro.discovery.wmnet:4680"
    assert outlink_env["WIKI_URL"] == m.MEDIAWIKI_API_URL


def test_objects_are_named_and_shaped_as_productions(rendered_docs: dict) -> None:
    docs = rendered_docs["knative/net-istio-mesh.yaml"]
    by = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    se = by[("ServiceEntry", "mediawiki-api-proxied-domains")]["spec"]
    assert se["resolution"] == "NONE"
    assert {(p["number"], p["protocol"]) for p in se["ports"]} == {(4680, "HTTP"), (80, "HTTP")}
    assert {"*.wikipedia.org", "wikipedia.org", "*.wikidata.org", "commons.wikimedia.org"} <= set(
        se["hosts"]
    )
    vs = by[("VirtualService", "mediawiki-api-vs")]["spec"]
    assert vs["hosts"] == se["hosts"] and vs["gateways"] == ["mesh"]
    for d in docs:
        assert d["metadata"]["namespace"] == m.MESH_NAMESPACE  # the knative-serving chart's
    defaults = _knative_defaults()
    assert defaults["knative_mediawiki_api_host"] == m.MEDIAWIKI_API_HOST
    for mode in m.MEDIAWIKI_MODES:
        proxy = {(d["kind"], d["metadata"]["name"]) for d in m.render_mediawiki_proxy(mode)}
        assert proxy == {("ServiceEntry", "mw-api-int-ro"), ("DestinationRule", m.MEDIAWIKI_API_DR)}


@pytest.mark.parametrize("lang", ["en", "de"])
def test_a_wiki_request_from_an_isvc_sidecar_reaches_the_replay(
    rendered_docs: dict, outlink_env: dict[str, str], lang: str
) -> None:
    docs = _mesh(rendered_docs, "replay")
    url = urlsplit(outlink_env["WIKI_URL"])
    assert url.scheme == "http" and url.port == 4680
    # 1. The isvc resolves the proxy's name: CoreDNS (with the playbook's rewrite) answers with
    #    the address of the stand-in Service, under the name the client asked for.
    defaults = _knative_defaults()
    address = f"{defaults['knative_mediawiki_api_address']}.{m.MESH_NAMESPACE}.svc.cluster.local"
    corefile = F.stack_corefile_rewrite(KUBEADM_COREFILE, url.hostname, address)
    looked_up, answer = coredns_resolve(corefile, url.hostname)
    assert (looked_up, answer) == (address + ".", url.hostname + ".")
    assert coredns_resolve(KUBEADM_COREFILE, url.hostname)[0] != address + "."
    # 2. The connection to that address on 4680 lands on the sidecar's HTTP listener.
    assert ir.outbound_listener_is_http(docs, address, url.port)
    # 3. The route table for 4680 sends the wiki's Host to the proxy's ServiceEntry.
    r = ir.route(docs, url.port, f"{lang}.wikipedia.org", "/w/api.php")
    assert r.virtual_service == "mediawiki-api-vs"
    assert r.cluster == f"outbound|4680||{m.MEDIAWIKI_API_HOST}"
    assert r.request_headers_set == {"x-forwarded-proto": "https"}
    # 4. That cluster's endpoint is the replay Service, in plain HTTP, on the replay's port...
    up = ir.cluster_upstream(docs, r.cluster)
    assert up == ir.Upstream(m.REPLAY_HOST, m.REPLAY_PORT, "DISABLE")
    # 5. ...which selects the replay pod's serving port.
    assert ir.service_backend(docs, up.address, up.port) == (m.REPLAY_NAME, m.REPLAY_PORT)


def test_live_goes_out_through_the_same_objects(
    rendered_docs: dict, outlink_env: dict[str, str]
) -> None:
    docs = _mesh(rendered_docs, "live")
    r = ir.route(docs, 4680, "en.wikipedia.org")
    assert (r.virtual_service, r.cluster) == (
        "mediawiki-api-vs",
        f"outbound|4680||{m.MEDIAWIKI_API_HOST}",
    )
    up = ir.cluster_upstream(docs, r.cluster)
    # TLS originated by the sidecar, as production's DestinationRule does to the proxy.
    assert up == ir.Upstream(m.MEDIAWIKI_LIVE_ENDPOINT, 443, "SIMPLE")


def test_the_route_model_fails_where_istio_fails(rendered_docs: dict) -> None:
    """The model answers 502 where Istio does, so the passing route above could have failed."""
    docs = _mesh(rendered_docs, "replay")
    # The defect: Host en.wikipedia.org sent to the replay Service's own port 8080.
    r = ir.route(docs, m.REPLAY_PORT, "en.wikipedia.org")
    assert r.cluster == ir.BLACK_HOLE
    # Without the VirtualService, 4680 still knows the wiki hosts (the ServiceEntry) but they
    # go to the ServiceEntry's own (resolution NONE) cluster, not the replay.
    no_vs = [d for d in docs if d["kind"] != "VirtualService"]
    assert ir.route(no_vs, 4680, "en.wikipedia.org").cluster == "outbound|4680||*.wikipedia.org"
    # A host no ServiceEntry lists is blocked (REGISTRY_ONLY).
    assert ir.route(docs, 4680, "example.org").cluster == ir.BLACK_HOLE
    # A stand-in Service port named tcp-* would get its own TCP listener and bypass the routes.
    tcp = [
        {**d, "spec": {**d["spec"], "ports": [{"name": "tcp", "port": 4680}]}}
        if d["kind"] == "Service" and d["metadata"]["name"] == "mw-api-int-ro"
        else d
        for d in docs
    ]
    address = f"mw-api-int-ro.{m.MESH_NAMESPACE}.svc.cluster.local"
    assert not ir.outbound_listener_is_http(tcp, address, 4680)


def test_corefile_rewrite_is_idempotent_and_replaces_its_own_rule() -> None:
    name = m.MEDIAWIKI_API_HOST
    once = F.stack_corefile_rewrite(KUBEADM_COREFILE, name, "a.ns.svc.cluster.local")
    assert F.stack_corefile_rewrite(once, name, "a.ns.svc.cluster.local") == once
    moved = F.stack_corefile_rewrite(once, name, "b.ns.svc.cluster.local")
    assert moved.count("rewrite stop") == 1 and "b.ns.svc.cluster.local." in moved
    assert moved.replace(" ", "").count("loadbalance") == 1
    with pytest.raises(ValueError, match=r"\.:53"):
        F.stack_corefile_rewrite("example.org {\n}\n", name, "a.ns.svc.cluster.local")
