"""The emulator's REST answers, from the fixture wikis: Parsoid HTML and the page summary.

Routes (Host names the wiki, except in the REST gateway form, where the path does):
- `GET /w/rest.php/v1/revision/{id}/html` and `GET /w/rest.php/v1/page/{title}/html`: the
  page's Parsoid HTML document (MediaWiki core's REST API, as articlequality and revise-tone
  fetch it), `text/html; charset=utf-8; profile="https://www.mediawiki.org/wiki/Specs/HTML/2.8.0"`;
- `GET /api/rest_v1/page/summary/{title}` (Wikimedia's REST API on the wiki's domain) and
  `GET /{domain}/v1/page/summary/{title}` (the same through the REST gateway, as
  article-descriptions reaches it with REST_GATEWAY_ENDPOINT): the page summary JSON.

The fixture page holds the facts (`revid`, `html` = the document's `<body>`, `summary`); what
it does not hold is `NotInFixtures`. A revision or title the fixtures declare missing is the
REST API's 404.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from sandbox.mediawiki.api import NotInFixtures
from sandbox.mediawiki.fixtures import Page, Wiki, db_key, normalize_title

HTML_VERSION = "2.8.0"
HTML_CONTENT_TYPE = (
    f'text/html; charset=utf-8; profile="https://www.mediawiki.org/wiki/Specs/HTML/{HTML_VERSION}"'
)
SUMMARY_CONTENT_TYPE = (
    'application/json; charset=utf-8; profile="https://www.mediawiki.org/wiki/Specs/Summary/1.4.2"'
)
_REVISION_HTML = re.compile(r"/w/rest\.php/v1/revision/([^/]+)/html")
_PAGE_HTML = re.compile(r"/w/rest\.php/v1/page/(.+)/html")
_SUMMARY = re.compile(r"(?:/api/rest_v1|/[a-z0-9.-]+\.org/v1)/page/summary/(.+)")


@dataclass
class RestAnswer:
    status: int
    content_type: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def handles(path: str) -> bool:
    """Whether `path` is one of the REST routes the emulator answers."""
    return any(p.fullmatch(path) for p in (_REVISION_HTML, _PAGE_HTML, _SUMMARY))


def _lang(wiki: Wiki) -> str:
    return wiki.host.split(".", 1)[0]


def _rest_error(status: int, key: str, message: str) -> RestAnswer:
    """MediaWiki core REST's error body (LocalizedHttpException)."""
    reason = {400: "Bad Request", 404: "Not Found"}.get(status, "Error")
    body = {
        "messageTranslations": {"en": message},
        "errorKey": key,
        "httpCode": status,
        "httpReason": reason,
    }
    return RestAnswer(status, "application/json", json.dumps(body).encode())


def parsoid_document(wiki: Wiki, page: Page) -> str:
    """The Parsoid HTML document of `page` at its `revid`, around the fixture's `<body>`."""
    host, title = wiki.host, page.title
    sha1 = hashlib.sha1((page.html or "").encode()).hexdigest()
    timestamp = page.summary.timestamp if page.summary else "2026-01-01T00:00:00Z"
    lang = _lang(wiki)
    return (
        "<!DOCTYPE html>\n"
        '<html prefix="dc: http://purl.org/dc/terms/ mw: http://mediawiki.org/rdf/" '
        f'about="https://{host}/wiki/Special:Redirect/revision/{page.revid}">'
        f'<head prefix="mwr: https://{host}/wiki/Special:Redirect/"><meta charset="utf-8"/>'
        f'<meta property="mw:pageId" content="{page.pageid}"/>'
        '<meta property="mw:pageNamespace" content="0"/>'
        f'<meta property="mw:revisionSHA1" content="{sha1}"/>'
        f'<meta property="dc:modified" content="{timestamp.replace("Z", ".000Z")}"/>'
        f'<meta property="mw:htmlVersion" content="{HTML_VERSION}"/>'
        f'<meta property="mw:html:version" content="{HTML_VERSION}"/>'
        f'<link rel="dc:isVersionOf" href="//{host}/wiki/{urllib.parse.quote(db_key(title))}"/>'
        f'<base href="//{host}/wiki/"/><title>{html.escape(title)}</title></head>'
        f'<body id="mw-content-text" lang="{lang}" class="mw-content-ltr sitedir-ltr ltr '
        'mw-body-content parsoid-body mediawiki mw-parser-output" dir="ltr" '
        f'data-mw-html-version="{HTML_VERSION}">{page.html}</body></html>'
    )


def _html(wiki: Wiki, page: Page) -> RestAnswer:
    if page.html is None or page.revid is None:
        raise NotInFixtures(
            f"the fixtures have no Parsoid HTML (`html` and `revid`) of {page.title!r} on "
            f"{wiki.host}"
        )
    headers = {
        "Content-Language": _lang(wiki),
        "ETag": f'W/"{page.revid}/{hashlib.sha1((page.html or "").encode()).hexdigest()[:32]}"',
    }
    return RestAnswer(200, HTML_CONTENT_TYPE, parsoid_document(wiki, page).encode(), headers)


def summary_json(wiki: Wiki, page: Page) -> dict[str, Any]:
    """The page summary (Wikimedia's REST API `page/summary`) of `page`."""
    assert page.summary is not None
    host, key = wiki.host, db_key(page.title)
    quoted = urllib.parse.quote(key)
    display = f'<span class="mw-page-title-main">{html.escape(page.title)}</span>'
    out: dict[str, Any] = {
        "type": "standard",
        "title": key,
        "displaytitle": display,
        "namespace": {"id": 0, "text": ""},
    }
    if page.wikibase_item:
        out["wikibase_item"] = page.wikibase_item
    out |= {
        "titles": {"canonical": key, "normalized": page.title, "display": display},
        "pageid": page.pageid,
        "lang": _lang(wiki),
        "dir": "ltr",
        "revision": str(page.revid or 0),
        "tid": "00000000-0000-0000-0000-000000000000",
        "timestamp": page.summary.timestamp,
    }
    if page.summary.description is not None:
        out["description"] = page.summary.description
        out["description_source"] = "central"
    base = f"https://{host}/wiki/{quoted}"
    mobile = f"https://{host.replace('.wikipedia.', '.m.wikipedia.')}/wiki/{quoted}"
    out["content_urls"] = {
        "desktop": {
            "page": base,
            "revisions": f"{base}?action=history",
            "edit": f"{base}?action=edit",
            "talk": f"https://{host}/wiki/Talk:{quoted}",
        },
        "mobile": {
            "page": mobile,
            "revisions": f"https://{host}/wiki/Special:History/{quoted}",
            "edit": f"{mobile}?action=edit",
            "talk": f"https://{host}/wiki/Talk:{quoted}",
        },
    }
    out["extract"] = page.summary.extract
    out["extract_html"] = f"<p>{html.escape(page.summary.extract)}</p>"
    return out


def _page(wiki: Wiki, raw_title: str) -> Page | None:
    """The fixture page of a title in a REST path (None: declared missing)."""
    title = normalize_title(raw_title)
    page = wiki.page(title)
    if page is not None:
        return page
    if title in wiki.missing:
        return None
    raise NotInFixtures(f"the fixtures have no page {title!r} on {wiki.host}")


def answer(wiki: Wiki, path: str) -> RestAnswer:
    """The REST answer for `path` (already percent-decoded) on `wiki`."""
    if m := _REVISION_HTML.fullmatch(path):
        raw = m.group(1)
        if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
            return _rest_error(400, "paramvalidator-badinteger", f'Invalid integer "{raw}".')
        revid = int(raw)
        page = wiki.by_revid.get(revid)
        if page is None:
            if revid in wiki.missing_revids or revid == 0:
                return _rest_error(
                    404,
                    "rest-nonexistent-revision",
                    f"The specified revision ({revid}) does not exist.",
                )
            raise NotInFixtures(f"the fixtures have no revision {revid} on {wiki.host}")
        return _html(wiki, page)
    if m := _PAGE_HTML.fullmatch(path):
        page = _page(wiki, m.group(1))
        if page is None:
            title = normalize_title(m.group(1))
            return _rest_error(
                404, "rest-nonexistent-title", f'The specified page ("{title}") does not exist.'
            )
        return _html(wiki, wiki.resolve(page))
    if m := _SUMMARY.fullmatch(path):
        page = _page(wiki, m.group(1))
        if page is None:
            body = {
                "type": "https://mediawiki.org/wiki/HyperSwitch/errors/not_found",
                "title": "Not found.",
                "method": "get",
                "detail": "Page or revision not found.",
                "uri": path,
            }
            return RestAnswer(404, "application/problem+json", json.dumps(body).encode())
        if page.redirect_to is not None:
            target = wiki.resolve(page)
            location = urllib.parse.quote(db_key(target.title))
            return RestAnswer(302, "application/json", b"", {"Location": location})
        if page.summary is None:
            raise NotInFixtures(f"the fixtures have no summary of {page.title!r} on {wiki.host}")
        body = json.dumps(summary_json(wiki, page), ensure_ascii=False).encode()
        return RestAnswer(200, SUMMARY_CONTENT_TYPE, body)
    raise NotInFixtures(f"the emulator does not answer the REST path {path}")
