"""The part of the MediaWiki Action API the outlink transformer uses, answered from fixtures.

`action=query` with `format=json&formatversion=2`: `titles` or `pageids`, `redirects`,
`prop=pageprops` (`ppprop`), and `generator=links` (`gplnamespace`, `gpllimit`, `gplcontinue`).
Responses follow the real API's shapes: `normalized`/`redirects`/`pages` under `query`,
`{"ns": 0, "title": ..., "missing": true}` for missing pages, `invalid`/`invalidreason` for bad
titles, `continue` with `gplcontinue` (`<pageid>|<ns>|<dbkey>`), and errors as
`{"error": {"code": ..., "info": ..., "docref": ...}}` with the `MediaWiki-API-Error` header.
As on a real wiki, generated links come in title order and a generator over a missing page
returns no `query` at all. Anything else gets an error (code `replay-unsupported`) rather than
a silently wrong answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sandbox.mediawiki.fixtures import Page, Wiki, db_key, normalize_title

API_MAX_LIMIT = 500  # gpllimit=max for ordinary users on Wikimedia wikis
MAX_TITLES = 50  # titles/pageids values per request for ordinary users
MAX_TITLE_BYTES = 255

SUPPORTED_PARAMS = frozenset(
    {
        "action",
        "format",
        "formatversion",
        "utf8",
        "maxlag",
        "titles",
        "pageids",
        "redirects",
        "prop",
        "ppprop",
        "generator",
        "gplnamespace",
        "gpllimit",
        "gplcontinue",
        "continue",
    }
)
_INVALID_TITLE_CHARS = re.compile(r"[<>\[\]{}|\x00-\x1f\x7f]")


def docref(host: str) -> str:
    return (
        f"See https://{host}/w/api.php for API usage. Subscribe to the mediawiki-api-announce "
        "mailing list at <https://lists.wikimedia.org/postorius/lists/"
        "mediawiki-api-announce.lists.wikimedia.org/> for notice of API deprecations and "
        "breaking changes."
    )


class ApiError(Exception):
    """An API error: answered with HTTP 200, an `error` object and `MediaWiki-API-Error`."""

    def __init__(self, code: str, info: str) -> None:
        super().__init__(info)
        self.code = code
        self.info = info


@dataclass
class _PageSet:
    """What the API reports about a set of requested or generated pages."""

    normalized: list[dict[str, Any]] = field(default_factory=list)
    redirects: list[dict[str, Any]] = field(default_factory=list)
    pages: list[dict[str, Any]] = field(default_factory=list)
    existing: list[Page] = field(default_factory=list)


def error_body(host: str, code: str, info: str) -> dict[str, Any]:
    return {"error": {"code": code, "info": info, "docref": docref(host)}, "servedby": "replay"}


def _unsupported(what: str) -> ApiError:
    return ApiError(
        "replay-unsupported",
        f"The MediaWiki replay server does not support {what}. It answers action=query "
        "(format=json, formatversion=2) with titles or pageids, redirects, prop=pageprops "
        "and generator=links.",
    )


def _split(value: str) -> list[str]:
    """A multi-value parameter: `a|b|c`, or `\\x1f`-separated when it starts with U+001F."""
    if value.startswith("\x1f"):
        return value[1:].split("\x1f")
    return value.split("|")


def _integer(name: str, value: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise ApiError(
            "badinteger", f'Invalid value "{value}" for integer parameter "{name}".'
        ) from None


class _Query:
    def __init__(self, wiki: Wiki, params: dict[str, str], max_limit: int) -> None:
        self.wiki = wiki
        self.params = params
        self.max_limit = max_limit
        self.redirects = "redirects" in params
        self.warnings: dict[str, list[str]] = {}
        props = _split(params["prop"]) if params.get("prop") else []
        for prop in props:
            if prop != "pageprops":
                raise _unsupported(f'prop "{prop}"')
        self.pageprops = bool(props)
        self.ppprop = set(_split(params["ppprop"])) if params.get("ppprop") else None

    def warn(self, module: str, text: str) -> None:
        self.warnings.setdefault(module, []).append(text)

    # -- pages ---------------------------------------------------------------------------------

    def page_json(self, page: Page) -> dict[str, Any]:
        out: dict[str, Any] = {"pageid": page.pageid, "ns": 0, "title": page.title}
        if (
            self.pageprops
            and page.wikibase_item
            and (self.ppprop is None or "wikibase_item" in self.ppprop)
        ):
            out["pageprops"] = {"wikibase_item": page.wikibase_item}
        return out

    def follow(self, page: Page, result: _PageSet) -> Page:
        if self.redirects and page.redirect_to is not None:
            target = self.wiki.resolve(page)
            entry = {"from": page.title, "to": target.title}
            if entry not in result.redirects:
                result.redirects.append(entry)
            return target
        return page

    def add_existing(self, page: Page, result: _PageSet) -> None:
        page = self.follow(page, result)
        if all(p.pageid != page.pageid for p in result.existing):
            result.existing.append(page)
            result.pages.append(self.page_json(page))

    def add_title(self, raw: str, result: _PageSet) -> None:
        title = normalize_title(raw)
        if not title:
            result.pages.append(
                {
                    "title": raw,
                    "invalidreason": "The requested page title is empty or contains only the "
                    "name of a namespace.",
                    "invalid": True,
                }
            )
            return
        bad = _INVALID_TITLE_CHARS.search(title)
        if bad:
            result.pages.append(
                {
                    "title": raw,
                    "invalidreason": "The requested page title contains invalid characters: "
                    f'"{bad.group()}".',
                    "invalid": True,
                }
            )
            return
        if len(title.encode()) > MAX_TITLE_BYTES:
            result.pages.append(
                {
                    "title": raw,
                    "invalidreason": "The requested page title is too long. It must be no "
                    f"longer than {MAX_TITLE_BYTES} bytes in UTF-8 encoding.",
                    "invalid": True,
                }
            )
            return
        if title != raw:
            result.normalized.append({"fromencoded": False, "from": raw, "to": title})
        page = self.wiki.page(title)
        if page is None:
            missing = {"ns": 0, "title": title, "missing": True}
            if missing not in result.pages:
                result.pages.append(missing)
        else:
            self.add_existing(page, result)

    def input_pages(self) -> _PageSet:
        titles, pageids = self.params.get("titles"), self.params.get("pageids")
        if titles is not None and pageids is not None:
            raise ApiError(
                "invalidparammix", 'The parameters "titles" and "pageids" can not be used together.'
            )
        result = _PageSet()
        values = _split(titles if titles is not None else pageids or "")
        if len(values) > MAX_TITLES:
            name = "titles" if titles is not None else "pageids"
            raise ApiError(
                "toomanyvalues",
                f'Too many values supplied for parameter "{name}". The limit is {MAX_TITLES}.',
            )
        if titles is not None:
            for raw in values:
                self.add_title(raw, result)
        elif pageids:
            for raw in values:
                pageid = _integer("pageids", raw)
                page = self.wiki.by_id.get(pageid)
                if page is None:
                    result.pages.append({"pageid": pageid, "missing": True})
                else:
                    self.add_existing(page, result)
        return result

    # -- generator=links -----------------------------------------------------------------------

    def limit(self) -> int:
        raw = self.params.get("gpllimit", "10")
        if raw == "max":
            return self.max_limit
        limit = _integer("gpllimit", raw)
        if limit > self.max_limit:
            self.warn(
                "links",
                f"gpllimit may not be over {self.max_limit} (set to {self.max_limit}) for users.",
            )
            return self.max_limit
        if limit < 1:
            self.warn("links", "gpllimit may not be less than 1 (set to 1).")
            return 1
        return limit

    def start_after(self) -> tuple[int, str] | None:
        token = self.params.get("gplcontinue")
        if token is None:
            return None
        parts = token.split("|")
        if len(parts) != 3 or not parts[0].isdigit() or parts[1] != "0" or not parts[2]:
            raise ApiError(
                "badcontinue",
                "Invalid continue param. You should pass the original value returned by the "
                "previous query.",
            )
        return int(parts[0]), parts[2]

    def generate_links(self, sources: list[Page]) -> tuple[list[str], str | None]:
        namespaces = _split(self.params.get("gplnamespace", "0"))
        for ns in namespaces:
            _integer("gplnamespace", ns)
        if "0" not in [ns.strip() for ns in namespaces]:
            return [], None  # fixtures only hold namespace-0 links
        limit, start = self.limit(), self.start_after()
        rows = [
            (page.pageid, title)
            for page in sorted(sources, key=lambda p: p.pageid)
            for title in page.links
        ]
        if start is not None:
            rows = [(pid, t) for pid, t in rows if (pid, db_key(t)) >= start]
        batch, rest = rows[:limit], rows[limit:]
        token = f"{rest[0][0]}|0|{db_key(rest[0][1])}" if rest else None
        return [title for _, title in batch], token

    def answer(self) -> dict[str, Any]:
        generator = self.params.get("generator")
        if generator is not None and generator != "links":
            raise _unsupported(f'generator "{generator}"')
        if generator is None and any(p.startswith("gpl") for p in self.params):
            name = next(p for p in self.params if p.startswith("gpl"))
            raise _unsupported(f'parameter "{name}" without generator=links')
        inputs = self.input_pages()
        body: dict[str, Any] = {"batchcomplete": True}
        query: dict[str, Any] = {}
        if generator is None:
            shown = inputs
        else:
            titles, token = self.generate_links(inputs.existing)
            if token is not None:
                body["continue"] = {"gplcontinue": token, "continue": "gplcontinue||"}
            shown = _PageSet(normalized=inputs.normalized, redirects=list(inputs.redirects))
            for title in titles:
                page = self.wiki.page(title)
                if page is None:
                    missing = {"ns": 0, "title": title, "missing": True}
                    if missing not in shown.pages:
                        shown.pages.append(missing)
                else:
                    self.add_existing(page, shown)
        if shown.normalized:
            query["normalized"] = shown.normalized
        if shown.redirects:
            query["redirects"] = shown.redirects
        if shown.pages:
            query["pages"] = shown.pages
        if self.warnings:
            body["warnings"] = {
                module: {"warnings": "\n".join(texts)} for module, texts in self.warnings.items()
            }
        if query:
            body["query"] = query
        return body


def answer(wiki: Wiki, params: dict[str, str], max_limit: int = API_MAX_LIMIT) -> dict[str, Any]:
    """The JSON body for one API request to `wiki`; raises ApiError for an error response."""
    unknown = sorted(set(params) - SUPPORTED_PARAMS)
    if unknown:
        raise _unsupported(
            "parameter"
            + ("s " if len(unknown) > 1 else " ")
            + ", ".join(f'"{name}"' for name in unknown)
        )
    action = params.get("action")
    if action != "query":
        raise _unsupported(f'action "{action}"' if action else "requests without action=query")
    if params.get("format") != "json":
        raise _unsupported(f'format "{params.get("format", "jsonfm")}" (use format=json)')
    if params.get("formatversion") not in ("2", "latest"):
        raise _unsupported(
            f'formatversion "{params.get("formatversion", "1")}" (use formatversion=2)'
        )
    return _Query(wiki, params, max_limit).answer()
