"""`ml-sandbox pipeline --mediawiki replay`'s wikis without docker: the per-run CA and server
certificate (sandbox.pipeline_wiki.issue) served by the real replay server over TLS and
verified by a client that trusts only the run's bundle, under the wiki host names; the fixtures
for inference-services' outlink unit tests answer those tests' queries with what the tests
expect; a request no fixture has is reported from the server's real log line."""

from __future__ import annotations

import json
import logging
import re
import socket
import ssl
import stat
import urllib.parse
from pathlib import Path

import pytest

from sandbox import pipeline_wiki
from sandbox.mediawiki.replay import ReplayServer, tls_context
from sandbox.paths import REPO_ROOT
from tests.mediawiki_queries import LINKS

pytestmark = pytest.mark.component

CHECKOUT = REPO_ROOT.parent / "shared" / "inference-services"
OUTLINK_TEST = CHECKOUT / "test/unit/outlink_topic_model/test_outlink_model.py"
# What production's get_outlinks sends (tests/mediawiki_queries.py).
OUTLINKS_QUERY = LINKS


@pytest.fixture(scope="module")
def tls(tmp_path_factory) -> pipeline_wiki.TlsFiles:
    directory = tmp_path_factory.mktemp("tls")
    return pipeline_wiki.issue(pipeline_wiki.wiki_hosts(), directory, None)


@pytest.fixture(scope="module")
def server(tls):
    with ReplayServer(port=0, tls=tls_context(tls.cert, tls.key)) as srv:
        yield srv


def _get(server: ReplayServer, bundle: Path, host: str, params: dict[str, str]):
    """GET /w/api.php over TLS as a client of https://<host> would: SNI and the certificate's
    name are `host`, trusting only `bundle`. (status, headers, body)."""
    context = ssl.create_default_context(cafile=str(bundle))
    target = "/w/api.php?" + urllib.parse.urlencode(params)
    request = f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=host) as sock,
    ):
        sock.sendall(request.encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, head.decode("latin-1"), body


def _expected_qids() -> set[str]:
    """The items test_get_outlinks expects for fi page 9457, read from production's test."""
    source = OUTLINK_TEST.read_text()
    start = source.index('"9457"')
    return set(re.findall(r'"(Q\d+)"', source[start : source.index("},", start)]))


def test_the_files_are_private_and_the_ca_key_is_never_written(tls) -> None:
    names = sorted(p.name for p in tls.cert.parent.iterdir())
    assert names == ["server.key", "server.pem", "trust.pem"]
    assert stat.S_IMODE(tls.key.stat().st_mode) == 0o600
    assert stat.S_IMODE(tls.cert.stat().st_mode) == 0o600
    assert stat.S_IMODE(tls.bundle.stat().st_mode) == 0o644  # public certificates only
    assert b"PRIVATE KEY" not in tls.bundle.read_bytes()
    assert tls.cert.read_bytes().count(b"BEGIN CERTIFICATE") == 2  # the server's, then the CA's


def test_the_bundle_keeps_the_machines_cas_before_the_runs(tmp_path: Path, tls) -> None:
    base = tmp_path / "base.pem"
    base.write_bytes(b"-----BEGIN CERTIFICATE-----\nbase\n-----END CERTIFICATE-----")
    ca = b"-----BEGIN CERTIFICATE-----\nrun\n-----END CERTIFICATE-----\n"
    bundle = pipeline_wiki.trust_bundle(ca, base)
    assert bundle == base.read_bytes() + b"\n" + ca
    assert pipeline_wiki.trust_bundle(ca, None) == ca


def test_each_run_gets_its_own_ca(tmp_path: Path, tls, server) -> None:
    other = pipeline_wiki.issue(["fi.wikipedia.org"], tmp_path, None)
    with pytest.raises(ssl.SSLCertVerificationError):
        _get(server, other.bundle, "fi.wikipedia.org", {"action": "query", "format": "json"})


@pytest.mark.parametrize("host", ["fi.wikipedia.org", "en.wikipedia.org", "www.wikidata.org"])
def test_the_server_answers_https_under_each_fixture_wikis_name(server, tls, host) -> None:
    status, _, body = _get(server, tls.bundle, host, {"action": "query", "format": "json"})
    assert status == 200, body
    assert json.loads(body) == {"batchcomplete": ""}


def test_a_name_outside_the_certificate_is_refused(server, tls) -> None:
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
        _get(server, tls.bundle, "example.org", {"action": "query", "format": "json"})


def test_fi_page_9457_gives_the_items_production_s_test_expects(server, tls) -> None:
    params = {**OUTLINKS_QUERY, "pageids": "9457"}
    status, _, body = _get(server, tls.bundle, "fi.wikipedia.org", params)
    assert status == 200, body
    answer = json.loads(body)
    assert "continue" not in answer  # one batch, as gpllimit=500 gets it from the wiki
    qids = {p["pageprops"]["wikibase_item"] for p in answer["query"]["pages"]}
    assert qids == _expected_qids()
    assert len(qids) == 206


def test_en_page_5355_has_outlinks(server, tls) -> None:
    params = {**OUTLINKS_QUERY, "pageids": "5355"}
    status, _, body = _get(server, tls.bundle, "en.wikipedia.org", params)
    assert status == 200, body
    pages = json.loads(body)["query"]["pages"]
    assert {"Nobel Prize", "New York City"} <= {p["title"] for p in pages}


def test_a_request_without_fixture_is_501_and_named_from_the_log(server, tls, caplog) -> None:
    params = {**OUTLINKS_QUERY, "pageids": "424242"}
    with caplog.at_level(logging.WARNING):
        status, head, _ = _get(server, tls.bundle, "fi.wikipedia.org", params)
    assert status == 501
    assert "MediaWiki-API-Error: replay-not-in-fixtures" in head
    log = "\n".join(r.getMessage() for r in caplog.records)
    missed = pipeline_wiki.misses(log)
    assert len(missed) == 1
    assert "fi.wikipedia.org/w/api.php" in missed[0]
    assert "pageids=424242" in missed[0]
    assert "record it" not in missed[0]


def test_misses_are_listed_once_in_order() -> None:
    log = (
        "x NOT IN THE FIXTURES (no page id 1 on fi.wikipedia.org): GET fi.wikipedia.org/w/api.php"
        "?pageids=1 -- record it with --record DIR\n"
        "unrelated line\n"
        "x NOT IN THE FIXTURES (no page id 2): GET en.wikipedia.org/w/api.php?pageids=2\n"
        "x NOT IN THE FIXTURES (no page id 1 on fi.wikipedia.org): GET fi.wikipedia.org/w/api.php"
        "?pageids=1 -- record it with --record DIR\n"
    )
    assert pipeline_wiki.misses(log) == [
        "GET fi.wikipedia.org/w/api.php?pageids=1 (no page id 1 on fi.wikipedia.org)",
        "GET en.wikipedia.org/w/api.php?pageids=2 (no page id 2)",
    ]
    assert pipeline_wiki.misses("nothing here\n") == []


def test_the_run_container_joins_the_network_and_trusts_the_bundle(tmp_path: Path) -> None:
    args = pipeline_wiki.run_args("net1", tmp_path / "trust.pem")
    assert args[:2] == ["--network", "net1"]
    assert f"{tmp_path / 'trust.pem'}:{pipeline_wiki.CA_IN_CONTAINER}:ro" in args
    assert f"SSL_CERT_FILE={pipeline_wiki.CA_IN_CONTAINER}" in args
    assert f"REQUESTS_CA_BUNDLE={pipeline_wiki.CA_IN_CONTAINER}" in args
    server = pipeline_wiki.server_args(["en.wikipedia.org", "fi.wikipedia.org"], "net1")
    assert server == [
        "--network",
        "net1",
        "--network-alias",
        "en.wikipedia.org",
        "--network-alias",
        "fi.wikipedia.org",
    ]
    assert {"en.wikipedia.org", "fi.wikipedia.org"} <= set(pipeline_wiki.wiki_hosts())


def test_tls_context_names_a_bad_file(tmp_path: Path, tls) -> None:
    with pytest.raises(ValueError, match="no such file"):
        tls_context(tmp_path / "nope.pem", tls.key)
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    with pytest.raises(ValueError, match="not a PEM certificate"):
        tls_context(bad, tls.key)


def test_the_requests_answered_are_counted_per_wiki_from_the_access_log(tls, caplog) -> None:
    with (
        ReplayServer(port=0, tls=tls_context(tls.cert, tls.key), access_log=True) as srv,
        caplog.at_level(logging.INFO, logger="sandbox.mediawiki.access"),
    ):
        for host in ("fi.wikipedia.org", "en.wikipedia.org", "en.wikipedia.org"):
            _get(srv, tls.bundle, host, {"action": "query", "format": "json"})
        _get(srv, tls.bundle, "fi.wikipedia.org", {**OUTLINKS_QUERY, "pageids": "424242"})
    log = "\n".join(r.getMessage() for r in caplog.records)
    assert pipeline_wiki.served(log) == {"en.wikipedia.org": 2, "fi.wikipedia.org": 2}
    assert (
        pipeline_wiki.served('1.2.3.4 "GET /__replay__/health HTTP/1.1" 200 10 Host=x "ua"') == {}
    )  # the server's own endpoints are not wiki requests
