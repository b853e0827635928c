"""Record mode against a local HTTPS origin the test starts (its own CA, passed to the recorder),
then replay mode from the recorded files: byte for byte, parameter order and volatile parameters
do not matter, an unrecorded request is the clear error, faults work in every mode.

The origin stands in for a wiki: `/w/api.php` is answered by the emulator's API code, REST paths
by fixed bodies chosen to be hard to reproduce (raw UTF-8, multi-line HTML with trailing blanks,
bytes that are not UTF-8, a redirect, a 5xx). No test reaches the real wikis.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import signal
import ssl
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from sandbox.mediawiki import FixtureError, ReplayServer, api, load_wikis
from sandbox.mediawiki.recordings import RecordingStore, normalize
from sandbox.mediawiki.replay import main
from sandbox.pipeline_wiki import TlsFiles, issue
from tests.mediawiki_client import MediaWikiClient, OutlinkResult
from tests.mediawiki_queries import EN, MANY, TARGET, TITLE_LOOKUP
from tests.mediawiki_queries import LINKS as LINKS_QUERY

pytestmark = pytest.mark.component

REDIRECT_TITLE = "sandbox_edge_case_(redirect)"  # normalized, then a redirect to TARGET
LINKS = {**LINKS_QUERY, "pageids": "900000002"}
REST_BODIES: dict[str, tuple[int, str, bytes, dict[str, str]]] = {
    "/w/rest.php/v1/page/Café/bare": (
        200,
        "application/json",
        '{"id":1,"key":"Café","title":"Café — ☕","latest":{"id":7}}'.encode(),
        {},
    ),
    "/w/rest.php/v1/page/Lines/html": (
        200,
        "text/html; charset=utf-8",
        b"<!DOCTYPE html>\n<p>one</p>\n\n<p>two</p>\n",
        {},
    ),
    "/w/rest.php/v1/page/Blanks/html": (
        200,
        "text/html; charset=utf-8",
        b"  <p>one  </p>\n\n\t<p>two</p>\n  \n\n",
        {},
    ),
    "/w/rest.php/v1/page/Binary/raw": (200, "application/octet-stream", b"\xff\x00\xfe\n", {}),
    "/w/rest.php/v1/page/Moved/bare": (
        301,
        "text/html",
        b"moved",
        {"Location": "https://en.wikipedia.org/w/rest.php/v1/page/Target/bare"},
    ),
    "/w/rest.php/v1/page/Flaky/bare": (503, "text/html", b"<p>try later</p>", {}),
}


# -- a local HTTPS origin ----------------------------------------------------------------------


def make_tls(directory: Path) -> TlsFiles:
    """A CA and a server certificate for 127.0.0.1 signed by it (the pipeline's own issuer):
    `bundle` is the CA alone, for the client."""
    return issue(["127.0.0.1"], directory, None)


class Origin:
    """An HTTPS 'wiki' on 127.0.0.1 in a background thread; `seen` lists what reached it."""

    def __init__(self, tls: TlsFiles) -> None:
        self.tls = tls
        self.wikis = load_wikis()
        self.seen: list[dict[str, Any]] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    async def handle(self, request: web.Request) -> web.Response:
        params = dict(request.query)
        if request.method == "POST":
            params.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
        self.seen.append(
            {
                "host": request.headers.get("Host"),
                "path": request.path,
                "params": params,
                "user_agent": request.headers.get("User-Agent"),
                "cookie": request.headers.get("Cookie"),
            }
        )
        if request.path == "/w/api.php":
            wiki = self.wikis[request.headers["Host"]]
            try:
                text = api.encode(api.answer(wiki, params), params)
            except api.ApiError as e:
                doc = api.error_body(wiki.host, e.code, e.info, api.formatversion_of(params))
                return web.Response(
                    text=api.encode(doc, params),
                    content_type="application/json",
                    headers={"MediaWiki-API-Error": e.code},
                )
            return web.Response(text=text, content_type="application/json", charset="utf-8")
        status, ctype, body, headers = REST_BODIES[request.path]
        return web.Response(body=body, status=status, headers={"Content-Type": ctype, **headers})

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.tls.cert, self.tls.key)
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=ctx)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def start(self) -> Origin:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def origin(tls: TlsFiles) -> Iterator[Origin]:
    o = Origin(tls).start()
    yield o
    o.stop()


# -- HTTP helpers ------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def exact(self) -> tuple[int, str | None, str | None, bytes]:
        """What a replay must reproduce: status, content type, Location, body bytes."""
        return (
            self.status,
            self.headers.get("content-type"),
            self.headers.get("location"),
            self.body,
        )


def request(
    conn: http.client.HTTPConnection,
    path: str,
    params: dict[str, str] | list[tuple[str, str]] | None = None,
    *,
    method: str = "GET",
    host: str = EN,
    headers: dict[str, str] | None = None,
) -> Reply:
    try:
        query = urllib.parse.urlencode(params or {})
        hdrs = {"Host": host, "User-Agent": "test-isvc/1.0", **(headers or {})}
        body = None
        target = urllib.parse.quote(path) + (f"?{query}" if query else "")
        if method == "POST":
            body, target = query.encode(), urllib.parse.quote(path)
            hdrs["Content-Type"] = "application/x-www-form-urlencoded"
        conn.request(method, target, body=body, headers=hdrs)
        resp = conn.getresponse()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


def to_origin(origin: Origin, tls: TlsFiles, path: str, params: Any = None, **kw: Any) -> Reply:
    ctx = ssl.create_default_context(cafile=str(tls.bundle))
    conn = http.client.HTTPSConnection("127.0.0.1", origin.port, context=ctx, timeout=10)
    return request(conn, path, params, **kw)


def to_server(server: ReplayServer, path: str, params: Any = None, **kw: Any) -> Reply:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    return request(conn, path, params, **kw)


def recorder(origin: Origin, tls: TlsFiles, directory: Path) -> ReplayServer:
    return ReplayServer(port=0, record=directory, upstream=origin.url, upstream_ca=tls.bundle)


# (path, params, method) of every exchange the record/replay test makes.
EXCHANGES: list[tuple[str, dict[str, str] | None, str]] = [
    ("/w/api.php", TITLE_LOOKUP, "GET"),
    ("/w/api.php", {**TITLE_LOOKUP, "titles": "Sandbox red link"}, "GET"),
    ("/w/api.php", {**TITLE_LOOKUP, "formatversion": "2", "titles": "Bad <title>"}, "GET"),
    ("/w/api.php", {"action": "query", "format": "json", "pageids": "x"}, "GET"),
    ("/w/api.php", {**TITLE_LOOKUP, "prop": "pageprops"}, "POST"),
    ("/w/api.php", {"action": "parse", "oldid": "1900000004", "prop": "links", "format": "json"},
     "GET"),
    *((path, None, "GET") for path in REST_BODIES if "Flaky" not in path),
]  # fmt: skip


@pytest.fixture(scope="module")
def recorded(
    origin: Origin, tls: TlsFiles, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[int, Reply], list[Reply]]:
    """Record EXCHANGES and the whole continuation of production's outlink query; returns the
    directory, what the recorder answered per exchange, and the continuation pages."""
    directory = tmp_path_factory.mktemp("recordings")
    answers: dict[int, Reply] = {}
    with recorder(origin, tls, directory) as rec:
        for i, (path, params, method) in enumerate(EXCHANGES):
            answers[i] = to_server(rec, path, params, method=method)
        pages, params = [], dict(LINKS)
        while True:  # as mwapi continues: re-send every value of `continue`
            reply = to_server(rec, "/w/api.php", params)
            pages.append(reply)
            if "continue" not in reply.json():
                break
            params.update(reply.json()["continue"])
    return directory, answers, pages


# -- record ------------------------------------------------------------------------------------


def test_the_recorder_answers_what_the_origin_answers(
    origin: Origin, tls: TlsFiles, recorded: tuple[Path, dict[int, Reply], list[Reply]]
) -> None:
    _, answers, pages = recorded
    for i, (path, params, method) in enumerate(EXCHANGES):
        direct = to_origin(origin, tls, path, params, method=method)
        assert answers[i].exact == direct.exact, path
    assert len(pages) == 3  # 1100 links at gpllimit 500
    assert pages[0].json()["continue"]["continue"] == "gplcontinue||"


def test_the_origin_got_the_wiki_host_and_the_isvcs_user_agent(
    origin: Origin, tls: TlsFiles, tmp_path: Path
) -> None:
    origin.seen.clear()
    with recorder(origin, tls, tmp_path) as rec:
        to_server(rec, "/w/api.php", TITLE_LOOKUP, headers={"Cookie": "session=secret"})
    (seen,) = origin.seen
    assert seen["host"] == EN
    assert seen["user_agent"] == "test-isvc/1.0"
    assert seen["cookie"] is None  # never forwarded
    assert seen["params"] == TITLE_LOOKUP


def test_recordings_are_readable_files_per_wiki(
    recorded: tuple[Path, dict[int, Reply], list[Reply]],
) -> None:
    directory, answers, _ = recorded
    files = sorted(directory.rglob("*.yaml"))
    assert {f.parent.name for f in files} == {EN}
    assert len(files) == len(EXCHANGES) + 3
    lookup = next(f for f in files if f.name.startswith("query-titles-Sandbox_edge_case"))
    doc = yaml.safe_load(lookup.read_text(encoding="utf-8"))
    assert doc["request"] == {
        "method": "GET",
        "host": EN,
        "path": "/w/api.php",
        "params": dict(sorted(TITLE_LOOKUP.items())),
    }
    assert doc["response"]["status"] == 200
    assert doc["response"]["content_type"] == "application/json; charset=utf-8"
    assert doc["response"]["body"].encode() == answers[0].body
    html = next(f for f in files if "Lines" in f.name).read_text(encoding="utf-8")
    assert "body: |" in html  # a multi-line body stays readable
    binary = yaml.safe_load(next(f for f in files if "Binary" in f.name).read_text())
    assert "body_base64" in binary["response"]


def test_an_upstream_5xx_is_passed_on_but_not_recorded(
    origin: Origin, tls: TlsFiles, tmp_path: Path
) -> None:
    with recorder(origin, tls, tmp_path) as rec:
        reply = to_server(rec, "/w/rest.php/v1/page/Flaky/bare")
    assert (reply.status, reply.body) == (503, b"<p>try later</p>")
    assert list(tmp_path.rglob("*.yaml")) == []


def test_recording_again_replaces_the_file(origin: Origin, tls: TlsFiles, tmp_path: Path) -> None:
    with recorder(origin, tls, tmp_path) as rec:
        to_server(rec, "/w/api.php", TITLE_LOOKUP)
    first = list(tmp_path.rglob("*.yaml"))
    with recorder(origin, tls, tmp_path) as rec:
        to_server(rec, "/w/api.php", dict(reversed(TITLE_LOOKUP.items())))
    assert list(tmp_path.rglob("*.yaml")) == first
    assert list(tmp_path.rglob(".recording-*")) == []  # no temporary file left


def test_record_without_the_origins_ca_is_a_tls_error(origin: Origin, tmp_path: Path) -> None:
    with ReplayServer(port=0, record=tmp_path, upstream=origin.url) as rec:
        reply = to_server(rec, "/w/api.php", TITLE_LOOKUP)
    assert reply.status == 502
    assert reply.json()["error"]["code"] == "replay-upstream-tls"
    assert "--upstream-ca" in reply.json()["error"]["info"]
    assert list(tmp_path.rglob("*.yaml")) == []


def test_record_with_the_wiki_unreachable_is_502(tmp_path: Path) -> None:
    with ReplayServer(port=0, record=tmp_path, upstream="https://127.0.0.1:9") as rec:
        reply = to_server(rec, "/w/api.php", TITLE_LOOKUP)
    assert reply.status == 502
    assert reply.json()["error"]["code"] == "replay-upstream-unreachable"


def test_the_default_upstream_forwards_only_wikimedia_hosts(tmp_path: Path) -> None:
    # Refused before any connection: nothing here reaches the network.
    with ReplayServer(port=0, record=tmp_path) as rec:
        reply = to_server(rec, "/w/api.php", TITLE_LOOKUP, host="example.org")
    assert reply.status == 404
    assert reply.json()["error"]["code"] == "replay-not-a-wiki"


# -- replay ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def replayer(
    recorded: tuple[Path, dict[int, Reply], list[Reply]],
) -> Iterator[ReplayServer]:
    with ReplayServer(port=0, replay=[recorded[0]]) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _no_fault(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "replayer" in request.fixturenames:
        request.getfixturevalue("replayer").set_fault("none")


def test_replay_answers_byte_for_byte_without_the_origin(
    origin: Origin, recorded: tuple[Path, dict[int, Reply], list[Reply]], replayer: ReplayServer
) -> None:
    _, answers, pages = recorded
    origin.seen.clear()
    assert replayer.mode == "replay"
    for i, (path, params, method) in enumerate(EXCHANGES):
        assert to_server(replayer, path, params, method=method).exact == answers[i].exact, path
    params = dict(LINKS)
    for page in pages:
        reply = to_server(replayer, "/w/api.php", params)
        assert reply.exact == page.exact
        params.update(reply.json().get("continue", {}))
    assert origin.seen == []


@pytest.mark.parametrize(
    "variant",
    [
        pytest.param(list(reversed(TITLE_LOOKUP.items())), id="reordered"),
        pytest.param(
            [*TITLE_LOOKUP.items(), ("requestid", "r-123"), ("maxlag", "5"), ("smaxage", "60")],
            id="volatile",
        ),
        pytest.param([("titles", "Other"), *TITLE_LOOKUP.items()], id="repeated-last-wins"),
    ],
)
def test_parameter_order_and_volatile_parameters_do_not_matter(
    recorded: tuple[Path, dict[int, Reply], list[Reply]],
    replayer: ReplayServer,
    variant: list[tuple[str, str]],
) -> None:
    assert to_server(replayer, "/w/api.php", variant).exact == recorded[1][0].exact


def test_flag_values_do_not_matter(
    recorded: tuple[Path, dict[int, Reply], list[Reply]], replayer: ReplayServer
) -> None:
    # mwapi sends redirects= ; the sandbox's client sends redirects=1: the same request to MW.
    reply = to_server(replayer, "/w/api.php", {**LINKS, "redirects": "1"})
    assert reply.exact == recorded[2][0].exact


@pytest.mark.parametrize(
    "params",
    [
        {**TITLE_LOOKUP, "titles": "Douglas Adams"},
        {**TITLE_LOOKUP, "formatversion": "2"},
        {**TITLE_LOOKUP, "curtimestamp": "1"},
    ],
)
def test_an_unrecorded_request_is_the_clear_error(
    replayer: ReplayServer, recorded: tuple[Path, dict[int, Reply], list[Reply]], params: Any
) -> None:
    reply = to_server(replayer, "/w/api.php", params)
    assert reply.status == 501
    assert reply.headers["mediawiki-api-error"] == "replay-not-in-fixtures"
    error = reply.json()["error"]
    assert error["code"] == "replay-not-in-fixtures"
    assert "not in the fixtures" in error["info"]
    assert "--record DIR" in error["info"] and "--replay DIR" in error["record"]
    assert str(recorded[0]) in error["info"]
    expected = normalize("GET", EN, "/w/api.php", params.items())
    assert error["request"] == expected.to_json()
    assert expected.describe() in error["info"]
    assert "missing" not in json.dumps(reply.json()).replace("missing page", "")


def test_an_unrecorded_wiki_is_not_in_the_fixtures(replayer: ReplayServer) -> None:
    reply = to_server(replayer, "/w/api.php", TITLE_LOOKUP, host="de.wikipedia.org")
    assert reply.status == 501
    assert reply.json()["error"]["request"]["host"] == "de.wikipedia.org"


def test_replay_with_the_emulator_prefers_recordings(
    recorded: tuple[Path, dict[int, Reply], list[Reply]],
) -> None:
    directory, answers, _ = recorded
    with ReplayServer(port=0, replay=[directory], emulate=True) as both:
        assert both.mode == "replay+emulate"
        assert to_server(both, "/w/api.php", TITLE_LOOKUP).exact == answers[0].exact
        # Not recorded, but an emulator fixture page: the emulator answers.
        emulated = to_server(both, "/w/api.php", {**TITLE_LOOKUP, "titles": MANY})
        assert emulated.status == 200
        assert emulated.json()["query"]["pages"]["900000002"]["title"] == MANY
        missing = to_server(both, "/w/api.php", {**TITLE_LOOKUP, "titles": "Douglas Adams"})
        assert missing.status == 501


def test_health_reports_the_mode_and_recordings(
    recorded: tuple[Path, dict[int, Reply], list[Reply]], replayer: ReplayServer
) -> None:
    health = to_server(replayer, "/__replay__/health").json()
    assert health["mode"] == "replay"
    assert health["recordings"] == {EN: len(EXCHANGES) + 3}
    assert health["wikis"] == {}


# -- faults in every mode ----------------------------------------------------------------------


@pytest.fixture(params=["emulate", "replay", "record"])
def any_mode(
    request: pytest.FixtureRequest,
    origin: Origin,
    tls: TlsFiles,
    tmp_path: Path,
    recorded: tuple[Path, dict[int, Reply], list[Reply]],
) -> Iterator[ReplayServer]:
    if request.param == "emulate":
        srv = ReplayServer(port=0)
    elif request.param == "replay":
        srv = ReplayServer(port=0, replay=[recorded[0]])
    else:
        srv = recorder(origin, tls, tmp_path)
    with srv:
        yield srv


@pytest.mark.parametrize(
    ("mode", "check"),
    [
        ("error500", lambda r: r.status == 500 and b"Wikimedia Error" in r.body),
        ("malformed", lambda r: r.status == 200 and not _is_json(r.body)),
        (
            "apierror",
            lambda r: (
                r.status == 200
                and r.json()["error"]["code"] == "internal_api_error_DBConnectionError"
                and "*" in r.json()["error"]
            ),  # a formatversion-1 request gets fv1's envelope
        ),
    ],
)
def test_faults_in_every_mode(any_mode: ReplayServer, mode: str, check: Any) -> None:
    any_mode.set_fault(mode, times=1)
    assert check(to_server(any_mode, "/w/api.php", TITLE_LOOKUP))
    after = to_server(any_mode, "/w/api.php", TITLE_LOOKUP)
    assert after.status == 200 and after.json()["query"]["pages"]


def test_reset_and_slow_in_every_mode(any_mode: ReplayServer) -> None:
    any_mode.set_fault("reset", times=1)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        to_server(any_mode, "/w/api.php", TITLE_LOOKUP)
    any_mode.set_fault("slow", delay_s=5, times=1)
    conn = http.client.HTTPConnection("127.0.0.1", any_mode.port, timeout=0.5)
    with pytest.raises(TimeoutError):
        request(conn, "/w/api.php", TITLE_LOOKUP)
    assert to_server(any_mode, "/w/api.php", TITLE_LOOKUP).status == 200


def test_a_faulted_request_is_not_recorded(origin: Origin, tls: TlsFiles, tmp_path: Path) -> None:
    origin.seen.clear()
    with recorder(origin, tls, tmp_path) as rec:
        rec.set_fault("error500")
        assert to_server(rec, "/w/api.php", TITLE_LOOKUP).status == 500
    assert origin.seen == []
    assert list(tmp_path.rglob("*.yaml")) == []


def _is_json(body: bytes) -> bool:
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


# -- bad recordings and the command line -------------------------------------------------------


def test_duplicate_recordings_are_reported_by_file(
    recorded: tuple[Path, dict[int, Reply], list[Reply]], tmp_path: Path
) -> None:
    source = next(recorded[0].rglob("query-titles-Sandbox_edge_case*.yaml"))
    (tmp_path / "a.yaml").write_text(source.read_text())
    (tmp_path / "b.yaml").write_text(source.read_text())
    with pytest.raises(FixtureError, match=r"b\.yaml: records the same request as .*a\.yaml"):
        RecordingStore([tmp_path])


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("request: {method: GET}\n", "request.host"),
        ("- a list\n", "invalid recording"),
        (
            "request: {method: GET, host: h, path: /w/api.php}\n"
            "response: {status: 200, body: x, body_base64: eA==}\n",
            "exactly one of",
        ),
        ("request: [unclosed\n", "cannot read"),
    ],
)
def test_bad_recordings_are_reported_by_file(tmp_path: Path, text: str, problem: str) -> None:
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(FixtureError, match=r"bad\.yaml") as info:
        RecordingStore([tmp_path])
    assert problem in str(info.value)


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--record", "{tmp}", "--replay", "{tmp}"], "does not combine"),
        (["--record", "{tmp}", "--upstream", "ftp://example.org"], "--upstream"),
        (["--record", "{tmp}", "--upstream", "https://x.org/w/api.php"], "no path"),
        (["--record", "{tmp}", "--upstream-ca", "{tmp}/nope.pem"], "--upstream-ca"),
        (["--replay", "{tmp}/absent"], "does not exist"),
        (["--record", "{tmp}", "--upstream-timeout", "0"], "--upstream-timeout"),
    ],
)
def test_cli_rejects_bad_record_and_replay_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], problem: str
) -> None:
    argv = ["--port", "0", *(a.replace("{tmp}", str(tmp_path)) for a in args)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert problem in err
    assert "Traceback" not in err


def _serve_cli(args: list[str]) -> tuple[subprocess.Popen[str], int]:
    """`ml-sandbox mediawiki ARGS --port 0` in a process; its port from the banner."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "from sandbox.cli import main; raise SystemExit(main())",
         "mediawiki", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    banner = proc.stdout.readline()
    match = re.search(r"on http://127\.0\.0\.1:(\d+)", banner)
    if match is None:
        proc.kill()
        raise AssertionError(f"no banner: {banner!r} {proc.communicate()[1]}")
    return proc, int(match.group(1))


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    return err


def test_ml_sandbox_mediawiki_records_then_replays(
    origin: Origin, tls: TlsFiles, tmp_path: Path
) -> None:
    rec, port = _serve_cli(["--record", str(tmp_path), "--upstream", origin.url,
                            "--upstream-ca", str(tls.bundle)])  # fmt: skip
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        live = request(conn, "/w/api.php", TITLE_LOOKUP)
    finally:
        err = _stop(rec)
    assert live.status == 200
    assert "recorded GET en.wikipedia.org/w/api.php" in err
    rep, port = _serve_cli(["--replay", str(tmp_path)])
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        assert request(conn, "/w/api.php", TITLE_LOOKUP).exact == live.exact
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        assert request(conn, "/w/api.php", {**TITLE_LOOKUP, "titles": "X"}).status == 501
    finally:
        err = _stop(rep)
    assert "NOT IN THE FIXTURES" in err and "titles=X" in err


def test_an_isvc_client_gets_the_same_answer_from_the_replay(
    origin: Origin, tls: TlsFiles, tmp_path: Path
) -> None:
    """The user's flow: run the isvc's MediaWiki client once through the recorder, then offline
    against the replay (the outlink transformer's client, continuation included)."""

    def outlinks(url: str) -> OutlinkResult:
        async def run() -> OutlinkResult:
            client = MediaWikiClient(url, timeout_s=10)
            try:
                return await client.outlinks("en", title=REDIRECT_TITLE)
            finally:
                await client.close()

        return asyncio.run(run())

    with recorder(origin, tls, tmp_path) as rec:
        live = outlinks(rec.url)
    origin.seen.clear()
    with ReplayServer(port=0, replay=[tmp_path]) as rep:
        assert outlinks(rep.url) == live
    assert origin.seen == []
    assert live.title == TARGET and live.qids
