"""The emulator: the part of the MediaWiki Action API that Lift Wing's isvcs use, answered from
the fixture wikis (`fixtures.py`).

Query forms (production's outlink-topic-model and the sandbox's client send these):
- `action=query` with `titles` or `pageids`, `redirects`, `prop=pageprops` (`ppprop`),
  `generator=links` (`gplnamespace`, `gpllimit` up to `max_limit`, `gplcontinue`,
  `continue`) and `generator=categories` (`gcllimit`; the page's categories as namespace-14
  pages, from the fixture page's `categories:`);
- `action=parse&oldid=N&prop=links`;
- `format=json` with `formatversion` 1 (the default) or 2 (`latest`).

Responses follow the real API's shapes. Formatversion 2: `pages` is a list, flags are `true`.
Formatversion 1: `pages` is an object keyed by page id (missing and invalid titles by -1, -2,
...), a true flag is `""` and a false one is left out, text content is under `*`
(warnings, parse links, the error's docref), and non-ASCII is escaped unless `utf8` is given.
Pages are listed as ApiQuery lists them: missing titles, invalid titles, missing page ids, then
the pages found (in title order; in page id order for `pageids`). A generator over a missing page
returns no `query`; page ids <= 0 are missing page ids without asking the fixtures.

What the fixtures do not say is `NotInFixtures`, never a made-up answer: a title or page id they
do not name, the outlinks of a page known only as a link target, a revision they do not name.
Parameters or values the emulator does not implement are an API error `replay-unsupported`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from sandbox.mediawiki.fixtures import Page, Wiki, db_key, normalize_title, synthetic_pageid

API_MAX_LIMIT = 500  # gpllimit=max for ordinary users on Wikimedia wikis
MAX_TITLES = 50  # titles/pageids values per request for ordinary users
MAX_TITLE_BYTES = 255

MAIN_PARAMS = {"action", "format", "formatversion", "utf8", "ascii", "maxlag", "requestid"}
QUERY_PARAMS = frozenset(
    MAIN_PARAMS
    | {
        "titles",
        "pageids",
        "redirects",
        "prop",
        "ppprop",
        "generator",
        "gplnamespace",
        "gpllimit",
        "gplcontinue",
        "gcllimit",
        "continue",
    }
)
PARSE_PARAMS = frozenset(MAIN_PARAMS | {"oldid", "prop"})
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


class NotInFixtures(Exception):
    """The fixtures do not say what the wiki would answer; the message says what is lacking."""


def error_body(host: str, code: str, info: str, formatversion: int = 2) -> dict[str, Any]:
    """MediaWiki's error envelope: `docref` in formatversion 2, `*` in formatversion 1."""
    ref = "docref" if formatversion == 2 else "*"
    return {"error": {"code": code, "info": info, ref: docref(host)}, "servedby": "replay"}


def formatversion_of(params: dict[str, str]) -> int:
    """1 or 2 as the request asks (1 when it does not say, or says something invalid)."""
    return 2 if params.get("formatversion") in ("2", "latest") else 1


def encode(body: dict[str, Any], params: dict[str, str]) -> str:
    """The JSON text as MediaWiki writes it: compact; non-ASCII escaped in formatversion 1 unless
    `utf8`, and in formatversion 2 only with `ascii`."""
    if formatversion_of(params) == 2:
        escape = "ascii" in params
    else:
        escape = "utf8" not in params
        body = _bc(body)
    return json.dumps(body, ensure_ascii=escape, separators=(",", ":"))


def _bc(value: Any) -> Any:
    """Formatversion 1's flags: true is "", false is left out."""
    if isinstance(value, dict):
        return {k: "" if v is True else _bc(v) for k, v in value.items() if v is not False}
    if isinstance(value, list):
        return [_bc(v) for v in value]
    return value


def _unsupported(what: str) -> ApiError:
    return ApiError(
        "replay-unsupported",
        f"The MediaWiki replay emulator does not support {what}. It answers action=query "
        "(format=json, formatversion 1 or 2) with titles or pageids, redirects, "
        "prop=pageprops, generator=links and generator=categories, and action=parse with oldid "
        "and prop=links; "
        "record other requests from the real wiki (ml-sandbox mediawiki --record DIR).",
    )


def _split(value: str) -> list[str]:
    """A multi-value parameter: `a|b|c`, or `\\x1f`-separated when it starts with U+001F."""
    if value == "":
        return []
    if value.startswith("\x1f"):
        return value[1:].split("\x1f")
    return value.split("|")


_PHP_INT = re.compile(r"0|-?[1-9][0-9]{0,18}")
_PHP_INT_MAX = 2**63 - 1


def _php_int(text: str) -> bool:
    """Whether PHP's `(string)(int)$text === $text`: a canonical decimal in PHP's int range."""
    return _PHP_INT.fullmatch(text) is not None and -_PHP_INT_MAX - 1 <= int(text) <= _PHP_INT_MAX


# ASCII digits only, as IntegerDef's `/^[+-]?\d+$/D` (Python's int() also takes "١٢"); bounded,
# as int() refuses 4300 digits.
_INTEGER = re.compile(r"[+-]?[0-9]{1,100}")


def _integer(name: str, value: str) -> int:
    text = value.strip()
    if _INTEGER.fullmatch(text) is None:
        raise ApiError("badinteger", f'Invalid value "{value}" for integer parameter "{name}".')
    return int(text)


@dataclass
class _PageSet:
    """What the API reports about a set of requested or generated pages."""

    normalized: list[dict[str, Any]] = field(default_factory=list)
    redirects: list[dict[str, Any]] = field(default_factory=list)
    missing: list[dict[str, Any]] = field(default_factory=list)  # titles
    invalid: list[dict[str, Any]] = field(default_factory=list)
    missing_ids: list[dict[str, Any]] = field(default_factory=list)
    existing: list[Page] = field(default_factory=list)

    def add_missing(self, title: str) -> None:
        entry = {"ns": 0, "title": title, "missing": True}
        if entry not in self.missing:
            self.missing.append(entry)


class _Query:
    def __init__(self, wiki: Wiki, params: dict[str, str], max_limit: int) -> None:
        self.wiki = wiki
        self.params = params
        self.max_limit = max_limit
        self.formatversion = formatversion_of(params)
        self.redirects = "redirects" in params
        self.warnings: dict[str, list[str]] = {}
        props = _split(params.get("prop", ""))
        for prop in props:
            if prop != "pageprops":
                raise _unsupported(f'prop "{prop}" with action=query')
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

    def invalid(self, raw: str) -> str | None:
        """Why `raw` is no valid title, or None."""
        title = normalize_title(raw)
        if not title:
            return "The requested page title is empty or contains only the name of a namespace."
        bad = _INVALID_TITLE_CHARS.search(title)
        if bad:
            return f'The requested page title contains invalid characters: "{bad.group()}".'
        if len(title.encode()) > MAX_TITLE_BYTES:
            return (
                "The requested page title is too long. It must be no longer than "
                f"{MAX_TITLE_BYTES} bytes in UTF-8 encoding."
            )
        return None

    def add_title(self, raw: str, result: _PageSet, generated: bool = False) -> None:
        reason = self.invalid(raw)
        if reason is not None:
            result.invalid.append({"title": raw, "invalidreason": reason, "invalid": True})
            return
        title = normalize_title(raw)
        if title != raw and not generated:
            result.normalized.append({"fromencoded": False, "from": raw, "to": title})
        page = self.wiki.page(title)
        if page is not None:
            self.add_existing(page, result)
        elif title in self.wiki.missing:
            result.add_missing(title)
        else:
            raise NotInFixtures(f"the fixtures have no page {title!r} on {self.wiki.host}")

    def input_pages(self) -> _PageSet:
        titles, pageids = self.params.get("titles"), self.params.get("pageids")
        if titles is not None and pageids is not None:
            raise ApiError(
                "invalidparammix", 'The parameters "titles" and "pageids" can not be used together.'
            )
        result = _PageSet()
        name = "titles" if titles is not None else "pageids"
        values = _split(titles if titles is not None else pageids or "")
        if len(values) > MAX_TITLES:
            raise ApiError(
                "toomanyvalues",
                f'Too many values supplied for parameter "{name}". The limit is {MAX_TITLES}.',
            )
        if titles is not None:
            for raw in values:
                self.add_title(raw, result)
            return result
        ids = list(dict.fromkeys(_integer("pageids", raw) for raw in values))  # request order
        for pageid in ids:
            page = self.wiki.by_id.get(pageid)
            if page is not None:
                self.add_existing(page, result)
            elif pageid <= 0 or pageid in self.wiki.missing_pageids:  # ids <= 0 never exist
                result.missing_ids.append({"pageid": pageid, "missing": True})
            else:
                raise NotInFixtures(f"the fixtures have no page id {pageid} on {self.wiki.host}")
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

    def start_after(self) -> tuple[int, int, str] | None:
        """Where a `gplcontinue` token resumes: (page id, namespace, db key). MediaWiki parses it
        as `int|int|string` and answers `badcontinue` unless each int part reads back as the
        same text (ApiBase::parseContinueParamOrDie: `$value !== (string)(int)$value`)."""
        token = self.params.get("gplcontinue")
        if token is None:
            return None
        parts = token.split("|")
        if len(parts) != 3 or not all(_php_int(p) for p in parts[:2]):
            raise ApiError(
                "badcontinue",
                "Invalid continue param. You should pass the original value returned by the "
                "previous query.",
            )
        return int(parts[0]), int(parts[1]), parts[2]

    def generate_links(self, sources: list[Page]) -> tuple[list[str], str | None]:
        namespaces = _split(self.params.get("gplnamespace", "0"))
        for ns in namespaces:
            _integer("gplnamespace", ns)
        if "0" not in [ns.strip() for ns in namespaces]:
            return [], None  # fixtures only hold namespace-0 links
        for page in sources:
            if not page.links_known:
                raise NotInFixtures(
                    f"the fixtures do not list the outlinks of {page.title!r} on "
                    f"{self.wiki.host} (it is only a link target of another fixture page)"
                )
        limit, start = self.limit(), self.start_after()
        rows = [
            (page.pageid, title)
            for page in sorted(sources, key=lambda p: p.pageid)
            for title in page.links
        ]
        if start is not None:
            rows = [(pid, t) for pid, t in rows if (pid, 0, db_key(t)) >= start]
        batch, rest = rows[:limit], rows[limit:]
        token = f"{rest[0][0]}|0|{db_key(rest[0][1])}" if rest else None
        return [title for _, title in batch], token

    # -- generator=categories ------------------------------------------------------------------

    def generate_categories(self, sources: list[Page]) -> list[dict[str, Any]]:
        """The categories of `sources` as namespace-14 pages (ApiQueryCategories as a generator:
        every category, hidden ones too; `gcllimit` up to `max_limit`)."""
        raw = self.params.get("gcllimit", "10")
        limit = self.max_limit if raw == "max" else max(1, min(_integer("gcllimit", raw), 500))
        found: dict[str, dict[str, Any]] = {}
        for page in sources:
            if page.categories is None:
                raise NotInFixtures(
                    f"the fixtures do not list the categories of {page.title!r} on "
                    f"{self.wiki.host} (add `categories:` to its page)"
                )
            for cat in page.categories:
                title = normalize_title(cat.title)
                if cat.missing:
                    found[title] = {"ns": 14, "title": title, "missing": True}
                    continue
                entry: dict[str, Any] = {
                    "pageid": cat.pageid or synthetic_pageid(self.wiki.host, title),
                    "ns": 14,
                    "title": title,
                }
                if (
                    self.pageprops
                    and cat.wikibase_item
                    and (self.ppprop is None or "wikibase_item" in self.ppprop)
                ):
                    entry["pageprops"] = {"wikibase_item": cat.wikibase_item}
                found[title] = entry
        if len(found) > limit:
            raise _unsupported(f"gclcontinue (more than gcllimit={limit} categories)")
        # Missing (red) categories first, then the pages found by title, as ApiPageSet lists them.
        ordered = sorted(found.values(), key=lambda e: ("pageid" in e, db_key(e["title"])))
        return ordered

    # -- the answer ----------------------------------------------------------------------------

    def pages_json(self, shown: _PageSet, by_id: bool) -> list[dict[str, Any]]:
        found = sorted(shown.existing, key=lambda p: p.pageid if by_id else db_key(p.title))
        return [
            *shown.missing,
            *shown.invalid,
            *shown.missing_ids,
            *(self.page_json(p) for p in found),
        ]

    def answer(self) -> dict[str, Any]:
        generator = self.params.get("generator")
        if generator is not None and generator not in ("links", "categories"):
            raise _unsupported(f'generator "{generator}"')
        for prefix, module in (("gpl", "links"), ("gcl", "categories")):
            if generator != module and any(p.startswith(prefix) for p in self.params):
                name = next(p for p in self.params if p.startswith(prefix))
                raise _unsupported(f'parameter "{name}" without generator={module}')
        inputs = self.input_pages()
        body: dict[str, Any] = {"batchcomplete": True}
        query: dict[str, Any] = {}
        if generator == "categories":
            if inputs.normalized:
                query["normalized"] = inputs.normalized
            if inputs.redirects:
                query["redirects"] = inputs.redirects
            pages = self.generate_categories(inputs.existing)
            if pages:
                query["pages"] = pages if self.formatversion == 2 else _keyed(pages)
            if query:
                body["query"] = query
            return body
        if generator is None:
            shown, by_id = inputs, "pageids" in self.params
        else:
            titles, token = self.generate_links(inputs.existing)
            if token is not None:
                body["continue"] = {"gplcontinue": token, "continue": "gplcontinue||"}
            shown = _PageSet(normalized=inputs.normalized, redirects=list(inputs.redirects))
            by_id = False
            for title in titles:
                self.add_title(title, shown, generated=True)
        if shown.normalized:
            query["normalized"] = shown.normalized
        if shown.redirects:
            query["redirects"] = shown.redirects
        pages = self.pages_json(shown, by_id)
        if pages:
            query["pages"] = pages if self.formatversion == 2 else _keyed(pages)
        if self.warnings:
            key = "warnings" if self.formatversion == 2 else "*"
            body["warnings"] = {
                module: {key: "\n".join(texts)} for module, texts in self.warnings.items()
            }
        if query:
            body["query"] = query
        return body


def _keyed(pages: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Formatversion 1's `pages`: by page id; pages without one by -1, -2, ... in order."""
    out: dict[str, dict[str, Any]] = {}
    fake = 0
    for page in pages:
        if "pageid" in page:
            out[str(page["pageid"])] = page
        else:
            fake -= 1
            out[str(fake)] = page
    return out


def _parse(wiki: Wiki, params: dict[str, str]) -> dict[str, Any]:
    if "oldid" not in params:
        raise _unsupported("action=parse without oldid")
    props = _split(params.get("prop", "text|langlinks|categories|links|templates"))
    if props != ["links"]:
        raise _unsupported(f'action=parse with prop "{params.get("prop", "")}" (use prop=links)')
    oldid = _integer("oldid", params["oldid"])
    if oldid in wiki.missing_revids or oldid <= 0:
        raise ApiError("nosuchrevid", f"There is no revision with ID {oldid}.")
    page = wiki.by_revid.get(oldid)
    if page is None:
        raise NotInFixtures(f"the fixtures have no revision {oldid} on {wiki.host}")
    links: list[dict[str, Any]] = []
    for title in page.links_in_page_order:
        entry: dict[str, Any] = {"ns": 0, "title": title, "exists": title in wiki.pages}
        if formatversion_of(params) == 1:
            entry = {"ns": 0, "exists": entry["exists"], "*": title}
        links.append(entry)
    return {"parse": {"title": page.title, "pageid": page.pageid, "revid": oldid, "links": links}}


def answer(wiki: Wiki, params: dict[str, str], max_limit: int = API_MAX_LIMIT) -> dict[str, Any]:
    """The JSON body (before formatversion 1's flag conversion, see `encode`) for one API
    request to `wiki`. Raises ApiError for an error response and NotInFixtures when the
    fixtures cannot tell."""
    from sandbox.mediawiki import history, wikibase  # they build on this module

    action = params.get("action")
    if history.handles(wiki, params):
        body = history.answer(wiki, params)
        if "requestid" in params:
            body = {"requestid": params["requestid"], **body}
        return body
    if action == "wbgetentities" and wiki.entities:
        supported = wikibase.PARAMS
    elif action in ("query", "parse"):
        supported = QUERY_PARAMS if action == "query" else PARSE_PARAMS
    else:
        raise _unsupported(f'action "{action}"' if action else "requests without action")
    unknown = sorted(set(params) - supported)
    if unknown:
        raise _unsupported(
            f"with action={action} the parameter"
            + ("s " if len(unknown) > 1 else " ")
            + ", ".join(f'"{name}"' for name in unknown)
        )
    if params.get("format") != "json":
        raise _unsupported(f'format "{params.get("format", "jsonfm")}" (use format=json)')
    fv = params.get("formatversion", "1")
    if fv not in ("1", "2", "latest"):
        raise ApiError("badvalue", f'Unrecognized value for parameter "formatversion": {fv}.')
    if action == "wbgetentities":
        body = wikibase.answer(wiki, params)
    elif action == "parse":
        body = _parse(wiki, params)
    else:
        body = _Query(wiki, params, max_limit).answer()
    if "requestid" in params:  # echoed first, as ApiMain does
        body = {"requestid": params["requestid"], **body}
    return body
