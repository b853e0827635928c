"""Recorded exchanges with the real wikis: one readable YAML file per request, replayed byte for
byte.

A recording directory holds `<host>/<slug>-<hash>.yaml` files (the name is only for people; the
request inside the file is what a request is matched against):

    # MediaWiki exchange recorded by `ml-sandbox mediawiki --record`; replayed byte for byte.
    recorded_at: '2026-11-27T00:40:00Z'
    upstream: https://en.wikipedia.org
    request:
      method: GET
      host: en.wikipedia.org
      path: /w/api.php
      params: {action: query, format: json, titles: Toni Morrison}
    response:
      status: 200
      content_type: application/json; charset=utf-8
      headers: {}                      # only Location, MediaWiki-API-Error, Retry-After
      body: '{"batchcomplete":"","query":{"pages":{"43165":{...}}}}'

A request matches a recording when its method, host, path and *normalized* parameters are equal
(`normalize`): credentials (`CREDENTIAL_PARAMS`) are redacted, parameter order does not
matter, a repeated parameter counts with its last value (as PHP reads it), the values of
MediaWiki's boolean flags do not matter (present means true), and the volatile parameters in
`VOLATILE_PARAMS` are ignored.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from sandbox.mediawiki.fixtures import SAFE_LOADER, FixtureError, yaml_problem

log = logging.getLogger(__name__)

# Parameters that never change what a wiki answers, so a replay ignores them:
# - requestid: a caller's per-request token that MediaWiki only echoes back (a replay returns the
#   recorded echo); a client sending a fresh one each time would otherwise never match.
# - maxlag: only makes a lagged wiki refuse (error `maxlag`); a successful answer is the same.
# - maxage, smaxage: only set the Cache-Control header of the answer.
# `curtimestamp`, `uselang`, `errorformat` are kept: they change the body.
VOLATILE_PARAMS = frozenset({"requestid", "maxlag", "maxage", "smaxage"})

# MediaWiki's boolean parameters are true when present, whatever their value (`redirects=`,
# `redirects=1` and `redirects=true` are the same request), of the main module, the JSON format
# and action=query / action=parse.
FLAG_PARAMS = frozenset(
    {
        "curtimestamp",
        "responselanginfo",
        "servedby",
        "utf8",
        "ascii",
        "redirects",
        "converttitles",
        "indexpageids",
        "export",
        "exportnowrap",
        "iwurl",
        "rawcontinue",
        "disablelimitreport",
        "disableeditsection",
        "disabletoc",
        "disablestylededuplication",
        "preview",
        "sectionpreview",
        "mobileformat",
        "noimages",
        "mainpage",
        "onlypst",
        "pst",
        "effectivelanglinks",
    }
)

# Credentials a client may send as parameters (query string or form body): never written into a
# recording, logged or shown; their value is REDACTED in the request key, so a replay matches a
# recorded login whatever password it sends. MediaWiki's names: action=login's `lgpassword` and
# `lgtoken`, the `token` of every write module, clientlogin/createaccount's `password`,
# `retype` and `*token`s (`logintoken`, `createtoken`), the `*token` family of meta=tokens
# (`csrftoken`, `watchtoken`, ...), and `api_key`, which some API proxies take.
CREDENTIAL_PARAMS = frozenset({"lgpassword", "lgtoken", "token", "password", "retype", "api_key"})
REDACTED = "[redacted]"


def is_credential(name: str) -> bool:
    """Whether a parameter carries a credential (see CREDENTIAL_PARAMS; any name ending in
    `token`)."""
    lower = name.lower()
    return lower in CREDENTIAL_PARAMS or lower.endswith("token")


def redacted(params: dict[str, str]) -> dict[str, str]:
    """`params` with the values of credentials replaced by REDACTED."""
    return {k: REDACTED if is_credential(k) else v for k, v in params.items()}


# Response headers a replay gives back: what clients act on (redirects, API errors, rate limits).
KEPT_HEADERS = ("location", "mediawiki-api-error", "retry-after")

_SLUG_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_HEADER = (
    "# MediaWiki exchange recorded by `ml-sandbox mediawiki --record`; replayed byte for byte.\n"
    "# A request matches when method, host, path and params are equal (params as normalized:\n"
    "# sorted, flags valueless, requestid/maxlag/maxage/smaxage dropped, credentials such as\n"
    "# lgpassword/token/*token/api_key written as [redacted] and matched whatever their value).\n"
)


@dataclass(frozen=True)
class RequestKey:
    """A request as a replay matches it: method, wiki host, path and normalized parameters."""

    method: str
    host: str
    path: str
    params: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "host": self.host,
            "path": self.path,
            "params": dict(self.params),
        }

    def digest(self) -> str:
        canonical = json.dumps(self.to_json(), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    def describe(self) -> str:
        """One line: `GET en.wikipedia.org/w/api.php?action=query&titles=X` (readable, unquoted)."""
        query = "&".join(f"{k}={v}" for k, v in self.params)
        return f"{self.method} {self.host}{self.path}" + (f"?{query}" if query else "")

    def slug(self) -> str:
        """A file name stem people can recognise: `query-links-pageids-43165`."""
        params = dict(self.params)
        if self.path.endswith("/api.php"):
            parts = [params.get("action", "api")]
            if "generator" in params:
                parts.append(params["generator"])
            for name in ("titles", "pageids", "revids", "oldid", "page", "pageid"):
                if name in params:
                    parts += [name, params[name]]
            parts += [k for k in params if k.endswith("continue") and k != "continue"]
        else:
            parts = [p for p in self.path.split("/") if p and p not in ("w", "rest.php", "api")]
        slug = _SLUG_UNSAFE.sub("_", "-".join(parts)).strip("_-.")
        return slug[:60] or "request"


def normalize(method: str, host: str, path: str, params: Iterable[tuple[str, str]]) -> RequestKey:
    """The key a request is recorded under and matched by (see the module docstring)."""
    values: dict[str, str] = {}
    for name, value in params:
        if name in VOLATILE_PARAMS:
            continue
        values.pop(name, None)  # the last occurrence wins, as in PHP
        if is_credential(name):
            value = REDACTED
        values[name] = "" if name in FLAG_PARAMS else value
    return RequestKey(
        method=method.upper(),
        host=host.lower().rstrip("."),
        path=path,
        params=tuple(sorted(values.items())),
    )


@dataclass
class Recording:
    """One recorded exchange: the request's key and the wiki's answer, exactly as received."""

    key: RequestKey
    status: int
    content_type: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    recorded_at: str = ""
    upstream: str = ""
    source: Path | None = None  # the file it was read from or written to

    def to_yaml(self) -> str:
        response: dict[str, Any] = {"status": self.status, "content_type": self.content_type}
        if self.headers:
            response["headers"] = dict(sorted(self.headers.items()))
        try:
            response["body"] = self.body.decode("utf-8")
        except UnicodeDecodeError:
            response["body_base64"] = base64.b64encode(self.body).decode("ascii")
        doc = {
            "recorded_at": self.recorded_at,
            "upstream": self.upstream,
            "request": self.key.to_json(),
            "response": response,
        }
        text = _HEADER + yaml.dump(
            doc, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=2**31
        )
        # The replay must give back these exact bytes: check that the YAML reads back as written.
        if yaml.safe_load(text) != doc:
            response.pop("body", None)
            response["body_base64"] = base64.b64encode(self.body).decode("ascii")
            text = _HEADER + yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=2**31)
        return text


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (HTML error pages) as literal blocks, so the files stay readable."""


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str_representer)


class _RequestSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: str = Field(pattern=r"^[A-Z]+$")
    host: str = Field(min_length=1)
    path: str = Field(pattern=r"^/")
    params: dict[str, str] = Field(default_factory=dict)


# A header value a replay may send: visible ASCII and spaces/tabs, nothing that could end the
# header (CR, LF) or that HTTP forbids (NUL, other controls).
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")


def _header_value(what: str, value: str) -> str:
    if not _HEADER_VALUE.fullmatch(value):
        raise ValueError(
            f"{what} holds a control character (CR, LF, NUL, ...), which would end or corrupt "
            "the answer's header"
        )
    return value


class _ResponseSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # 1xx are not answers; the recorder never stores one.
    status: int = Field(ge=200, le=599)
    content_type: str = ""
    # Only what the recorder keeps (KEPT_HEADERS): the server frames the answer itself, so a
    # recording never sets Content-Length, Transfer-Encoding, Set-Cookie or anything else.
    headers: dict[str, str] = Field(default_factory=dict)
    body: str | None = None
    body_base64: str | None = None

    @field_validator("content_type")
    @classmethod
    def _content_type(cls, v: str) -> str:
        return _header_value("content_type", v)

    @field_validator("headers")
    @classmethod
    def _headers(cls, v: dict[str, str]) -> dict[str, str]:
        for name, value in v.items():
            if name.lower() not in KEPT_HEADERS:
                raise ValueError(
                    f"header {name!r} is not one a replay sends (only "
                    f"{', '.join(KEPT_HEADERS)}; the server sets the framing headers itself)"
                )
            _header_value(f"header {name!r}", value)
        return v

    @model_validator(mode="after")
    def _one_body(self) -> _ResponseSpec:
        if (self.body is None) == (self.body_base64 is None):
            raise ValueError("a response has exactly one of `body` and `body_base64`")
        if self.status in (204, 304) and (self.body or self.body_base64):
            raise ValueError(f"a {self.status} answer has no body")
        return self


class _RecordingSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    recorded_at: str = ""
    upstream: str = ""
    request: _RequestSpec
    response: _ResponseSpec


def read_recording(path: Path) -> Recording:
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=SAFE_LOADER)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise FixtureError(f"{path}: cannot read recording: {yaml_problem(e)}") from e
    except RecursionError:
        raise FixtureError(
            f"{path}: cannot read recording: its YAML is nested too deeply"
        ) from None
    try:
        spec = _RecordingSpec.model_validate(data)
    except RecursionError:
        raise FixtureError(f"{path}: invalid recording: a value is nested too deeply") from None
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'file'}: {err['msg']}" for err in e.errors()
        )
        raise FixtureError(f"{path}: invalid recording: {problems}") from e
    req, resp = spec.request, spec.response
    if resp.body is not None:
        body = resp.body.encode("utf-8")
    else:
        try:
            body = base64.b64decode(resp.body_base64 or "", validate=True)
        except binascii.Error as e:
            raise FixtureError(f"{path}: response.body_base64 is not base64: {e}") from e
    return Recording(
        # Normalized again: a hand-edited file still matches as its request says.
        key=normalize(req.method, req.host, req.path, req.params.items()),
        status=resp.status,
        content_type=resp.content_type,
        body=body,
        headers={k.lower(): v for k, v in resp.headers.items()},
        recorded_at=spec.recorded_at,
        upstream=spec.upstream,
        source=path,
    )


class RecordingStore:
    """The recordings of some directories, by request key; `save` writes into `write_dir`."""

    def __init__(self, dirs: Iterable[Path] = (), write_dir: Path | None = None) -> None:
        self.dirs = list(dirs)
        self.write_dir = write_dir
        self._by_key: dict[RequestKey, Recording] = {}
        for d in self.dirs + ([write_dir] if write_dir is not None else []):
            if d in self.dirs and not d.is_dir():
                raise FixtureError(f"{d}: recordings directory does not exist")
            if d.is_dir():
                self._load(d)

    def _load(self, directory: Path) -> None:
        for path in sorted(directory.rglob("*.yaml")):
            rec = read_recording(path)
            other = self._by_key.get(rec.key)
            if other is not None and other.source != path:
                raise FixtureError(
                    f"{path}: records the same request as {other.source}: "
                    f"{rec.key.describe()} (delete one of them)"
                )
            self._by_key[rec.key] = rec

    def __len__(self) -> int:
        return len(self._by_key)

    def get(self, key: RequestKey) -> Recording | None:
        return self._by_key.get(key)

    def hosts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for key in self._by_key:
            counts[key.host] = counts.get(key.host, 0) + 1
        return dict(sorted(counts.items()))

    def save(self, rec: Recording) -> Path:
        """Write (or overwrite) the recording of `rec.key`, atomically; returns its file."""
        if self.write_dir is None:
            raise RuntimeError("this store has no directory to record into")
        existing = self._by_key.get(rec.key)
        if existing is not None and existing.source is not None:
            path = existing.source
        else:
            host = _SLUG_UNSAFE.sub("_", rec.key.host) or "wiki"
            path = self.write_dir / host / f"{rec.key.slug()}-{rec.key.digest()}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".recording-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(rec.to_yaml())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        rec.source = path
        self._by_key[rec.key] = rec
        return path
