"""Hostile and broken input to the MediaWiki replay server (issue 16): every answer of the
server's own is JSON, nothing it is sent leaves it broken, MediaWiki's own API errors where the
real API answers with one, no credential in a recording, and a bad recording named on load.

Over real HTTP to a real server on a free port. The badcontinue rule is MediaWiki's
(wikimedia/mediawiki includes/api/ApiBase.php `parseContinueParamOrDie`, since 1.40: each `int`
part must equal `(string)(int)$part`, else `dieContinueUsageIf` -> `apierror-badcontinue`;
ApiQueryLinks parses `gplcontinue` as `int|int|string`).
"""

from __future__ import annotations

import json
import logging
import socket
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from sandbox.mediawiki import FixtureError, ReplayServer, load_wikis
from sandbox.mediawiki.recordings import REDACTED, RecordingStore, is_credential
from sandbox.mediawiki.replay import main

pytestmark = pytest.mark.component

EN = "en.wikipedia.org"
MANY = "Sandbox edge case (many outlinks)"
TARGET = "Sandbox edge case (redirect target)"
LINKS = {
    "action": "query",
    "format": "json",
    "formatversion": "2",
    "generator": "links",
    "titles": MANY,
    "prop": "pageprops",
    "gpllimit": "2",
}


@pytest.fixture(scope="module")
def server() -> Iterator[ReplayServer]:
    with ReplayServer(port=0, max_limit=3) as srv:
        yield srv


def raw(
    server: ReplayServer, request: bytes, timeout: float = 10
) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are; (status, headers, body) of the answer."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split(" ")[1]), headers, body


def get(server: ReplayServer, query: str, host: str = EN, extra: bytes = b"") -> tuple[int, Any]:
    status, headers, body = raw(
        server,
        f"GET /w/api.php?{query} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n".encode()
        + extra
        + b"\r\n",
    )
    assert headers["content-type"].startswith("application/json"), body[:200]
    return status, json.loads(body)


def q(params: dict[str, str]) -> str:
    return urllib.parse.urlencode(params)


# -- badcontinue, as MediaWiki answers it --------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    [
        "%C2%B2|0|X",  # "²": str.isdigit() is true, int() fails
        "1" * 5000 + "|0|X",  # past Python's int digit limit
        "99999999999999999999|0|X",  # past PHP's int range: (string)(int) differs
        "007|0|X",  # (string)(int)"007" is "7"
        "-0|0|X",
        "%201|0|X",  # a leading space
        "1|x|X",
        "1|0",
        "",
    ],
)
def test_a_continuation_it_did_not_issue_is_badcontinue(server: ReplayServer, token: str) -> None:
    status, doc = get(server, q(LINKS) + "&gplcontinue=" + token.replace("|", "%7C"))
    assert status == 200
    assert doc["error"]["code"] == "badcontinue", doc
    assert doc["error"]["info"].startswith("Invalid continue param.")


def test_a_continuation_it_issued_still_continues(server: ReplayServer) -> None:
    _, first = get(server, q(LINKS))
    token = first["continue"]["gplcontinue"]
    _, second = get(server, q({**LINKS, "gplcontinue": token, "continue": "gplcontinue||"}))
    assert "error" not in second
    assert second["query"]["pages"]


def test_huge_integers_are_badinteger_not_a_crash(server: ReplayServer) -> None:
    status, doc = get(server, q({**LINKS, "gpllimit": "9" * 5000}))
    assert status == 200
    assert doc["error"]["code"] == "badinteger"


# -- the control endpoints -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b'{"mode": "slow", "delay_s": 1' + b"0" * 5000 + b"}",
        b'{"mode": "slow", "delay_s": 1e999}',
        b'{"mode": "slow", "delay_s": NaN}',
        b'{"mode": "slow", "delay_s": -Infinity}',
        b'{"mode": "slow", "after": 1' + b"0" * 5000 + b"}",
        b"[" * 100000 + b"]" * 100000,
        b"\xff\xfe",
    ],
)
def test_a_bad_fault_is_400_json(server: ReplayServer, body: bytes) -> None:
    status, headers, answer = raw(
        server,
        b"POST /__replay__/fault HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body,
    )
    assert status == 400, answer[:200]
    assert headers["content-type"].startswith("application/json")
    assert json.loads(answer)["error"]
    assert server.faults.snapshot()["fault"]["mode"] == "none"


def test_a_user_agent_that_is_not_utf8_never_breaks_the_request_log(
    server: ReplayServer,
) -> None:
    status, _ = get(server, q({"action": "query", "format": "json", "titles": TARGET}),
                    extra=b"User-Agent: \xff\xfe bot\r\n")  # fmt: skip
    assert status == 200
    status, _, body = raw(
        server, b"GET /__replay__/requests HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert status == 200, body[:300]
    entries = json.loads(body)["requests"]
    assert entries and "bot" in entries[-1]["user_agent"]


# -- sizes and methods: JSON, and no traceback in the log ----------------------------------------


def test_a_1mb_title_is_a_json_4xx_without_a_traceback(
    server: ReplayServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    title = "A" * (1024 * 1024)
    status, headers, body = raw(
        server,
        f"GET /w/api.php?action=query&format=json&titles={title} HTTP/1.1\r\n"
        f"Host: {EN}\r\nConnection: close\r\n\r\n".encode(),
    )
    assert 400 <= status < 500
    assert headers["content-type"].startswith("application/json"), body[:200]
    assert json.loads(body)["error"]
    assert "Traceback" not in caplog.text
    assert all(r.exc_info is None for r in caplog.records)
    assert get(server, q({"action": "query", "format": "json", "titles": TARGET}))[0] == 200


def test_a_huge_header_is_json_4xx(server: ReplayServer) -> None:
    status, headers, body = raw(
        server,
        b"GET /__replay__/health HTTP/1.1\r\nHost: x\r\nX-Big: "
        + b"a" * 100_000
        + b"\r\nConnection: close\r\n\r\n",
    )
    assert 400 <= status < 500
    assert headers["content-type"].startswith("application/json"), body[:200]


def test_a_body_over_the_limit_is_413_json(server: ReplayServer) -> None:
    size = 3 * 1024 * 1024
    head = (
        f"POST /w/api.php HTTP/1.1\r\nHost: {EN}\r\nConnection: close\r\n"
        f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {size}\r\n\r\n"
    )
    status, headers, body = raw(server, head.encode() + b"a=" + b"b" * (size - 2))
    assert status == 413
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body)["error"]


@pytest.mark.parametrize(
    ("method", "path"),
    [("PUT", "/w/api.php"), ("DELETE", "/__replay__/fault"), ("PATCH", "/__replay__/health")],
)
def test_a_wrong_method_is_405_json(server: ReplayServer, method: str, path: str) -> None:
    status, headers, body = raw(
        server, f"{method} {path} HTTP/1.1\r\nHost: {EN}\r\nConnection: close\r\n\r\n".encode()
    )
    assert status == 405
    assert headers["content-type"].startswith("application/json")
    assert "allow" in headers
    assert json.loads(body)["error"]


def test_an_unknown_path_is_404_json(server: ReplayServer) -> None:
    status, headers, body = raw(
        server, b"GET /nothing/here HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert status == 404
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body)["error"]


def test_malformed_http_is_400_json(server: ReplayServer) -> None:
    status, headers, _ = raw(server, b"GET / HTTP/1.1\r\nHost x\r\n\r\n")
    assert status == 400
    assert headers["content-type"].startswith("application/json")


# -- credentials never end up in recordings ------------------------------------------------------

SECRETS = {
    "lgpassword": "hunter2-PASSWORD",
    "lgtoken": "0123abcd+\\",
    "token": "csrf-SECRET+\\",
    "csrftoken": "csrf2-SECRET",
    "logintoken": "login-SECRET",
    "password": "pw-SECRET",
    "api_key": "key-SECRET",
}


@pytest.fixture(scope="module")
def origin() -> Iterator[ReplayServer]:
    """A stand-in wiki for the recorder: the emulator over plain HTTP on a free port."""
    with ReplayServer(port=0) as srv:
        yield srv


def send(server: ReplayServer, method: str, params: dict[str, str], form: bool) -> tuple[int, Any]:
    query = urllib.parse.urlencode(params)
    if form:
        head = (
            f"{method} /w/api.php HTTP/1.1\r\nHost: {EN}\r\nConnection: close\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(query)}\r\n\r\n"
        )
        status, _, body = raw(server, head.encode() + query.encode())
    else:
        line = f"{method} /w/api.php?{query} HTTP/1.1\r\nHost: {EN}\r\nConnection: close\r\n"
        status, _, body = raw(server, line.encode() + b"\r\n")
    return status, json.loads(body)


@pytest.mark.parametrize("form", [True, False], ids=["form-body", "query-string"])
def test_credentials_are_redacted_in_recordings_and_match_redacted(
    origin: ReplayServer, tmp_path: Path, form: bool
) -> None:
    login = {"action": "login", "format": "json", "lgname": "Bot@sandbox", **SECRETS}
    with ReplayServer(port=0, record=tmp_path, upstream=origin.url) as recorder:
        status, recorded_answer = send(recorder, "POST", login, form)
        logged = json.dumps(recorder.requests.list())
    assert status == 200
    files = list(tmp_path.rglob("*.yaml"))
    assert len(files) == 1
    text = files[0].read_text(encoding="utf-8")
    for name, secret in SECRETS.items():
        assert secret not in text, name
        assert secret.split("+")[0] not in logged, name
    request = yaml.safe_load(text)["request"]["params"]
    assert {request[name] for name in SECRETS} == {REDACTED}
    assert request["lgname"] == "Bot@sandbox"  # only credentials are redacted
    # Replayed whatever the credentials are this time.
    other = {**login, **{name: "another-value" for name in SECRETS}}
    with ReplayServer(port=0, replay=[tmp_path]) as replayer:
        status, answer = send(replayer, "POST", other, form)
        assert (status, answer) == (200, recorded_answer)
        assert replayer.requests.list()[-1]["answered_by"] == "recording"
        # ...but not a request that differs in something else.
        status, answer = send(replayer, "POST", {**other, "lgname": "Other"}, form)
        assert status == 501
        assert "another-value" not in json.dumps(answer)


def test_every_name_of_the_token_family_is_a_credential() -> None:
    for name in ("token", "lgtoken", "csrftoken", "watchtoken", "createtoken", "LGTOKEN"):
        assert is_credential(name)
    for name in ("titles", "continue", "gplcontinue", "lgname", "tokens", "type"):
        assert not is_credential(name)


# -- recordings are validated on load ------------------------------------------------------------

RECORDING = """\
request: {method: GET, host: en.wikipedia.org, path: /w/api.php, params: {action: query}}
response:
  status: 200
  content_type: application/json; charset=utf-8
  body: '{}'
"""


def with_headers(headers: str) -> str:
    return RECORDING.replace("  body:", f"  headers: {headers}\n  body:")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (with_headers("{content-length: '99'}"), "content-length"),
        (with_headers("{transfer-encoding: chunked, content-length: '2'}"), "transfer-encoding"),
        (with_headers("{set-cookie: 'session=abc'}"), "set-cookie"),
        (with_headers("{'x bad name': v}"), "x bad name"),
        (with_headers('{location: "https://a.example/\\r\\nSet-Cookie: x=1"}'), "location"),
        (with_headers('{retry-after: "5\\n"}'), "retry-after"),
        (RECORDING.replace("application/json; charset=utf-8", '"text/html\\r\\nX-Evil: 1"'),
         "content_type"),
        (RECORDING.replace("status: 200", "status: 101"), "status"),
        (RECORDING.replace("status: 200", "status: 204"), "204"),
        ("request: " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
        ("request: {method: GET, host: h, path: /w/api.php, params: {a: " + "[" * 3000
         + "]" * 3000 + "}}\nresponse: {status: 200, body: x}\n", "nested too deeply"),
        ("request: {method: GET, host: h, path: /w/api.php}\nresponse: {status: 200, body: "
         "x}\nextra: &a [*a]\n", "recording"),
    ],
)  # fmt: skip
def test_a_bad_recording_is_refused_naming_the_file_and_problem(
    tmp_path: Path, text: str, problem: str
) -> None:
    (tmp_path / "en.wikipedia.org").mkdir()
    bad = tmp_path / "en.wikipedia.org" / "bad-one.yaml"
    bad.write_text(text, encoding="utf-8")
    with pytest.raises(FixtureError) as info:
        RecordingStore([tmp_path])
    message = str(info.value)
    assert str(bad) in message
    assert problem in message
    assert "Traceback" not in message


def test_the_cli_names_a_bad_recording_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "deep.yaml").write_text("request: " + "[" * 5000 + "]" * 5000 + "\n")
    assert main(["--port", "0", "--replay", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "deep.yaml" in err
    assert "Traceback" not in err


def test_a_valid_recording_with_the_kept_headers_still_replays(tmp_path: Path) -> None:
    text = with_headers("{location: 'https://en.wikipedia.org/wiki/X', retry-after: '5'}")
    (tmp_path / "ok.yaml").write_text(text.replace("status: 200", "status: 302"))
    with ReplayServer(port=0, replay=[tmp_path]) as replayer:
        line = f"GET /w/api.php?action=query HTTP/1.1\r\nHost: {EN}\r\nConnection: close\r\n"
        status, headers, body = raw(replayer, line.encode() + b"\r\n")
    assert (status, headers["location"], headers["retry-after"], body) == (
        302, "https://en.wikipedia.org/wiki/X", "5", b"{}"
    )  # fmt: skip


@pytest.mark.parametrize(
    "text",
    [
        "wiki: en.wikipedia.org\npages: " + "[" * 5000 + "]" * 5000 + "\n",
        "wiki: en.wikipedia.org\nmissing: [" + "[" * 3000 + "]" * 3000 + "]\n",
        "wiki: en.wikipedia.org\n\xff: x\n",
    ],
)
def test_a_bad_emulator_fixture_is_refused_naming_the_file(tmp_path: Path, text: str) -> None:
    (tmp_path / "deep.yaml").write_bytes(text.encode("latin-1"))
    with pytest.raises(FixtureError, match=r"deep\.yaml: (cannot read|invalid) fixture"):
        load_wikis([tmp_path])


# -- the REST, Wikidata and EventGate surfaces ---------------------------------------------------


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /w/rest.php/v1/revision/" + b"9" * 5000 + b"/html HTTP/1.1\r\nHost: " + EN.encode()
         + b"\r\n", 400),
        (b"GET /w/rest.php/v1/revision/%C2%B2/html HTTP/1.1\r\nHost: " + EN.encode() + b"\r\n",
         400),
        (b"GET /w/rest.php/v1/page/%FF%FE/html HTTP/1.1\r\nHost: " + EN.encode() + b"\r\n", 501),
        (b"GET /api/rest_v1/page/summary/" + b"A" * 7000 + b" HTTP/1.1\r\nHost: " + EN.encode()
         + b"\r\n", 501),
        (b"GET /w/api.php?action=wbgetentities&format=json&ids=Q" + b"1" * 5000
         + b" HTTP/1.1\r\nHost: www.wikidata.org\r\n", 200),
        (b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n\r\n" + b"[" * 100000
         + b"]" * 100000, 400),
        (b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n\xff\xfe\xfd\xfc", 400),
    ],
)  # fmt: skip
def test_the_new_surfaces_answer_hostile_input_in_json_or_as_upstream(
    server: ReplayServer, request_bytes: bytes, status: int
) -> None:
    head, sep, body = request_bytes.partition(b"\r\n\r\n")
    if not sep:
        head, body = request_bytes.rstrip(b"\r\n"), b""
    got, _, answer = raw(server, head + b"\r\nConnection: close\r\n\r\n" + body)
    assert got == status, answer[:300]
    if answer:
        json.loads(answer)  # every body is JSON
    assert (
        raw(server, b"GET /__replay__/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")[0]
        == 200
    )


def test_an_entity_id_past_wikibases_pattern_is_no_such_entity(server: ReplayServer) -> None:
    status, doc = get(server, "action=wbgetentities&format=json&ids=Q" + "1" * 11,
                      host="www.wikidata.org")  # fmt: skip
    assert status == 200
    assert doc["error"]["code"] == "no-such-entity"
