"""The real wikis, for record mode: forward a request over HTTPS and hand back the exact answer.

By default a request for `Host: en.wikipedia.org` goes to `https://en.wikipedia.org` with the
request's own path and query string, byte for byte. `origin` overrides where it goes: a template
with `{host}` (`https://{host}:8443`) or a fixed origin (`https://127.0.0.1:8443`, an internal API
endpoint) that gets every wiki's requests with the wiki in the `Host` header, as Lift Wing reaches
MediaWiki through its API proxy. `ca_file` adds a CA to trust (a test's self-signed origin).

Only Wikimedia wiki hosts are forwarded with the default origin, so the recorder is no open proxy.
Only the request headers that shape the answer are forwarded (User-Agent, Accept,
Accept-Language, Content-Type), never cookies or credentials; redirects are not followed (the
client gets them as the wiki sent them).
"""

from __future__ import annotations

import asyncio
import re
import ssl
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from yarl import URL

from sandbox.mediawiki.recordings import KEPT_HEADERS

DEFAULT_ORIGIN = "https://{host}"
DEFAULT_TIMEOUT_S = 30.0
USER_AGENT = (
    "ml-sandbox-mediawiki-recorder/0.1 "
    "(https://wikitech.wikimedia.org/wiki/Machine_Learning/LiftWing; records fixtures for tests)"
)
FORWARDED_HEADERS = ("User-Agent", "Accept", "Accept-Language", "Content-Type")
# Wikimedia's projects: what the default origin may reach.
WIKIMEDIA_HOST = re.compile(
    r"([a-z0-9-]+\.)*(wikipedia|wiktionary|wikibooks|wikinews|wikiquote|wikisource|wikiversity"
    r"|wikivoyage|wikidata|wikimedia|mediawiki|wikifunctions)\.org"
)


class UpstreamFailure(Exception):
    """The wiki could not be reached or did not answer; `status` is what the client gets."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass
class Answer:
    status: int
    content_type: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def check_origin(origin: str) -> str:
    """`origin` if it is an https:// (or, for local origins, http://) URL without a path."""
    url = URL(origin.replace("{host}", "wiki.invalid"))
    if url.scheme not in ("https", "http") or not url.host or url.path not in ("", "/"):
        raise ValueError(
            f"--upstream {origin!r} must be an origin like https://{{host}} or "
            "https://127.0.0.1:8443 (scheme, host, optional port; no path)"
        )
    return origin.rstrip("/")


class Upstream:
    """Forwards requests to the real wikis (one pooled session, made in the server's loop)."""

    def __init__(
        self,
        origin: str = DEFAULT_ORIGIN,
        ca_file: Path | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.origin = check_origin(origin)
        self.ca_file = ca_file
        self.timeout_s = timeout_s
        self._ssl: ssl.SSLContext | bool = True
        if ca_file is not None:
            try:
                context = ssl.create_default_context()  # the system's CAs, and this one
                context.load_verify_locations(cafile=str(ca_file))
                self._ssl = context
            except (OSError, ssl.SSLError) as e:
                raise ValueError(f"--upstream-ca {ca_file}: cannot load a CA from it: {e}") from e
        self._session: aiohttp.ClientSession | None = None

    def describe(self, host: str) -> str:
        return self.origin.replace("{host}", host)

    def allows(self, host: str) -> bool:
        """Whether a request for `host` may be forwarded."""
        if "{host}" in self.origin:
            return WIKIMEDIA_HOST.fullmatch(host) is not None
        return bool(host)

    async def forward(
        self, method: str, host: str, raw_path_qs: str, headers: dict[str, str], body: bytes
    ) -> Answer:
        """Send the request on (path and query string as received); the wiki's exact answer."""
        url = URL(self.describe(host) + raw_path_qs, encoded=True)
        out = {name: headers[name] for name in FORWARDED_HEADERS if name in headers}
        out.setdefault("User-Agent", USER_AGENT)
        if "{host}" not in self.origin:
            out["Host"] = host
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                auto_decompress=True,
                skip_auto_headers=("User-Agent",),
            )
        try:
            async with self._session.request(
                method,
                url,
                headers=out,
                data=body if body else None,
                allow_redirects=False,
                ssl=self._ssl,
            ) as resp:
                data = await resp.read()
                kept = {h: resp.headers[h] for h in KEPT_HEADERS if h in resp.headers}
                return Answer(resp.status, resp.headers.get("Content-Type", ""), data, kept)
        except TimeoutError:
            raise UpstreamFailure(
                504,
                "replay-upstream-timeout",
                f"{self.describe(host)} did not answer within {self.timeout_s:g}s",
            ) from None
        except aiohttp.ClientSSLError as e:
            raise UpstreamFailure(
                502,
                "replay-upstream-tls",
                f"TLS with {self.describe(host)} failed ({e}); for a local origin give its CA "
                "with --upstream-ca",
            ) from None
        except (aiohttp.ClientError, OSError, asyncio.IncompleteReadError) as e:
            raise UpstreamFailure(
                502,
                "replay-upstream-unreachable",
                f"cannot reach {self.describe(host)}: {e} (record needs internet access to "
                "the wikis)",
            ) from None

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None
