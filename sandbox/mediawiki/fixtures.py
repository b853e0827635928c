"""The replay server's wikis, loaded from `fixtures/*.yaml` (several files may fill one wiki).

A fixture file names a wiki and lists pages with their redirects and namespace-0 outlinks:

    wiki: en.wikipedia.org
    pages:
      - pageid: 43165
        title: Toni Morrison
        revid: 1234567890                 # optional: its current revision (action=parse&oldid)
        wikibase_item: Q72334
        redirects: [Chloe Wofford]
        links:
          - {title: Beloved (novel), wikibase_item: Q...}
          - {title: A page without an item}
          - {title: A red link, missing: true}
    missing: [A page that does not exist]  # titles the wiki answers as missing
    missing_pageids: [999999999]           # page ids it answers as missing
    missing_revids: [999999999]            # revision ids it answers with `nosuchrevid`

Every link target that is not a fixture page still exists on the wiki unless marked `missing`;
it gets the `pageid` given on the link or a stable synthetic one, and its own outlinks are
unknown. A redirect is a page of its own whose only link is its target, as on a real wiki.

What the fixtures do not say is not made up: a title, page id or revision they do not name, or
the outlinks of a page known only as a link target, are "not in the fixtures" (see api.py),
never "missing". `exists: false` (with no pages) declares a wiki that does not exist, which is
answered as Wikimedia answers such a host.
"""

from __future__ import annotations

import logging
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

log = logging.getLogger(__name__)

DEFAULT_FIXTURES_DIR = Path(__file__).resolve().parent / "fixtures"

_QID = re.compile(r"Q[1-9][0-9]*")
_WIKI = re.compile(r"[a-z][a-z0-9-]*\.[a-z0-9.-]+")
# Synthetic page ids (link targets and redirects without their own id) live above real ones.
_SYNTHETIC_BASE = 1_000_000_000


# libyaml's safe loader when PyYAML has it: ten times faster on the fixtures, and it refuses
# nesting deeper than 1000 levels itself (a YAMLError); the pure-Python one otherwise.
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def yaml_problem(e: Exception) -> str:
    """What is wrong with a YAML file, in words (libyaml's nesting limit named plainly)."""
    if "maximum nesting depth" in str(e):
        return "its YAML is nested too deeply (over 1000 levels)"
    return str(e)


class FixtureError(Exception):
    """A fixture file is unreadable or inconsistent; the message names the file and the problem."""


# What MediaWiki's title codec turns into one space (and trims): `_`, space and Unicode spaces.
# Other whitespace (a newline) is an invalid title character, not trimmed.
_TITLE_SPACES = re.compile(r"[ _\xa0\u1680\u180e\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+")


def normalize_title(raw: str) -> str:
    """Title normalization as MediaWiki does it on Wikipedias: `_` and spaces -> one space,
    trimmed, first letter upper-cased."""
    title = _TITLE_SPACES.sub(" ", raw).strip(" ")
    return title[:1].upper() + title[1:]


def db_key(title: str) -> str:
    """The form MediaWiki stores and sorts titles in (and puts into continuation tokens)."""
    return title.replace(" ", "_")


def synthetic_pageid(wiki: str, title: str) -> int:
    return _SYNTHETIC_BASE + zlib.crc32(f"{wiki}|{title}".encode()) % _SYNTHETIC_BASE


def _check_qid(v: str | None) -> str | None:
    if v is not None and not _QID.fullmatch(v):
        raise ValueError(f"{v!r} is not a Wikidata item id like Q42")
    return v


Qid = Annotated[str | None, AfterValidator(_check_qid)]


class LinkSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1)
    wikibase_item: Qid = None
    pageid: int | None = Field(default=None, gt=0)
    missing: bool = False


class CategorySpec(BaseModel):
    """A category of a page (namespace 14), as `generator=categories` lists it: its full title in
    the wiki's language (`Category:...`, `Catégorie:...`) and its Wikidata item, if it has one."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=3, pattern=r"^[^:]+:.+")
    wikibase_item: Qid = None
    pageid: int | None = Field(default=None, gt=0)
    missing: bool = False  # a red category (no category page)


class SummarySpec(BaseModel):
    """What the REST page summary says of a page (its lead paragraph and short description)."""

    model_config = ConfigDict(extra="forbid")

    extract: str
    description: str | None = None
    timestamp: str = "2026-01-01T00:00:00Z"


class PageSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pageid: int = Field(gt=0)
    title: str = Field(min_length=1)
    revid: int | None = Field(default=None, gt=0)
    wikibase_item: Qid = None
    redirects: list[str] = Field(default_factory=list)
    links: list[LinkSpec] = Field(default_factory=list)
    # Its categories (generator=categories); None: the fixtures do not say (not "none").
    categories: list[CategorySpec] | None = None
    # The <body> of the page's Parsoid HTML at `revid` (REST /v1/revision/{revid}/html and
    # /v1/page/{title}/html); the server writes the document around it.
    html: str | None = None
    summary: SummarySpec | None = None


_PID = re.compile(r"P[1-9][0-9]*")
_SITE = re.compile(r"[a-z][a-z0-9_]*wiki[a-z]*")


class EntitySpec(BaseModel):
    """A Wikidata item (or property, P...) as `wbgetentities` reports it (www.wikidata.org
    fixtures)."""

    model_config = ConfigDict(extra="forbid")

    id: str
    labels: dict[str, str] = Field(default_factory=dict)
    descriptions: dict[str, str] = Field(default_factory=dict)
    # property -> values: an item id (Q5), a time (+2019-08-05T00:00:00Z), a coordinate on Earth
    # (@35.3606/138.7274, QuickStatements' form) or a string
    claims: dict[str, list[str]] = Field(default_factory=dict)
    sitelinks: dict[str, str] = Field(default_factory=dict)  # site (enwiki) -> title

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if _PID.fullmatch(v):
            return v
        return _check_qid(v) or v

    @field_validator("claims")
    @classmethod
    def _claims(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        for prop in v:
            if not _PID.fullmatch(prop):
                raise ValueError(f"{prop!r} is not a Wikidata property id like P31")
        return v

    @field_validator("sitelinks")
    @classmethod
    def _sitelinks(cls, v: dict[str, str]) -> dict[str, str]:
        for site in v:
            if not _SITE.fullmatch(site):
                raise ValueError(f"{site!r} is not a site id like enwiki")
        return v


class RevisionSpec(BaseModel):
    """One revision of a page (history.py answers `prop=revisions` from these): who made it,
    when, its parent (0 for a page's first) and its content (a Wikibase entity's JSON)."""

    model_config = ConfigDict(extra="forbid")

    revid: int = Field(gt=0)
    parentid: int = Field(ge=0)
    pageid: int = Field(gt=0)
    ns: int = 0
    title: str = Field(min_length=1)
    user: str = Field(min_length=1)
    userid: int = Field(default=0, ge=0)
    anon: bool = False  # a logged-out edit: `user` is an IP address
    timestamp: str = Field(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$")
    comment: str = ""
    contentmodel: str = "wikibase-item"
    content: dict = Field(default_factory=dict)


class UserSpec(BaseModel):
    """A registered user as `list=users` reports it (groups beyond the implicit `*` and `user`)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    userid: int = Field(gt=0)
    groups: list[str] = Field(default_factory=list)
    registration: str | None = None
    editcount: int = 0


class FixtureFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    wiki: str
    exists: bool = True
    pages: list[PageSpec] = Field(default_factory=list)
    missing: list[str] = Field(default_factory=list)
    missing_pageids: list[Annotated[int, Field(gt=0)]] = Field(default_factory=list)
    missing_revids: list[Annotated[int, Field(gt=0)]] = Field(default_factory=list)
    entities: list[EntitySpec] = Field(default_factory=list)  # www.wikidata.org
    missing_entities: list[Annotated[str, AfterValidator(_check_qid)]] = Field(default_factory=list)
    revisions: list[RevisionSpec] = Field(default_factory=list)
    users: list[UserSpec] = Field(default_factory=list)

    @field_validator("wiki")
    @classmethod
    def _wiki(cls, v: str) -> str:
        if not _WIKI.fullmatch(v):
            raise ValueError(f"{v!r} is not a wiki host name like en.wikipedia.org")
        return v


@dataclass
class Page:
    """One existing page of a replayed wiki."""

    pageid: int
    title: str
    wikibase_item: str | None = None
    # Titles of the pages this page links to (namespace 0), sorted as MediaWiki sorts them.
    links: list[str] = field(default_factory=list)
    redirect_to: str | None = None  # set on redirect pages
    source: str = ""  # fixture file that defined it (for error messages)
    links_known: bool = True  # False for a page known only as a link target
    revid: int | None = None  # its current revision, if the fixture names it
    # The links in the order the fixture lists them (action=parse reports them in page order).
    links_in_page_order: list[str] = field(default_factory=list)
    html: str | None = None  # the <body> of its Parsoid HTML
    summary: SummarySpec | None = None
    categories: list[CategorySpec] | None = None  # None: not in the fixtures


@dataclass
class Wiki:
    """All pages of one wiki, by title and by page id. Titles in `missing` are red links."""

    host: str
    pages: dict[str, Page] = field(default_factory=dict)
    by_id: dict[int, Page] = field(default_factory=dict)
    missing: set[str] = field(default_factory=set)
    missing_pageids: set[int] = field(default_factory=set)
    missing_revids: set[int] = field(default_factory=set)
    by_revid: dict[int, Page] = field(default_factory=dict)
    exists: bool = True
    entities: dict[str, EntitySpec] = field(default_factory=dict)  # Wikidata items by id
    by_sitelink: dict[tuple[str, str], str] = field(default_factory=dict)  # (site, title) -> id
    missing_entities: set[str] = field(default_factory=set)
    revisions: dict[int, RevisionSpec] = field(default_factory=dict)  # history.py
    users: dict[str, UserSpec] = field(default_factory=dict)

    def page(self, title: str) -> Page | None:
        return self.pages.get(title)

    def resolve(self, page: Page) -> Page:
        """Follow a redirect page to its target (one hop, like the API)."""
        if page.redirect_to is not None:
            return self.pages.get(page.redirect_to, page)
        return page

    def _add(self, page: Page) -> None:
        other = self.by_id.get(page.pageid)
        if other is not None and other.title != page.title:
            raise FixtureError(
                f"{page.source}: page id {page.pageid} of {page.title!r} on {self.host} is "
                f"already used by {other.title!r} ({other.source})"
            )
        self.pages[page.title] = page
        self.by_id[page.pageid] = page
        if page.revid is not None:
            other_rev = self.by_revid.get(page.revid)
            if other_rev is not None and other_rev.title != page.title:
                raise FixtureError(
                    f"{page.source}: revision {page.revid} of {page.title!r} on {self.host} is "
                    f"already the revision of {other_rev.title!r} ({other_rev.source})"
                )
            self.by_revid[page.revid] = page


def _read(path: Path) -> FixtureFile:
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=SAFE_LOADER)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise FixtureError(f"{path}: cannot read fixture: {yaml_problem(e)}") from e
    except RecursionError:
        raise FixtureError(f"{path}: cannot read fixture: its YAML is nested too deeply") from None
    if not isinstance(data, dict):
        raise FixtureError(f"{path}: a fixture is a mapping with `wiki` and `pages`")
    try:
        return FixtureFile.model_validate(data)
    except RecursionError:
        raise FixtureError(f"{path}: invalid fixture: a value is nested too deeply") from None
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()
        )
        raise FixtureError(f"{path}: invalid fixture: {problems}") from e


def load_wikis(dirs: list[Path] | None = None) -> dict[str, Wiki]:
    """Read every `*.yaml` in `dirs` (default: the packaged fixtures) into wikis by host name."""
    files: list[Path] = []
    for d in dirs or [DEFAULT_FIXTURES_DIR]:
        if not d.is_dir():
            raise FixtureError(f"{d}: fixtures directory does not exist")
        files.extend(sorted(d.glob("*.yaml")))
    parsed = [(path, _read(path)) for path in files]

    wikis: dict[str, Wiki] = {}
    # Pass 1: the pages the fixtures define, so link targets can refer to them in any order.
    for path, fx in parsed:
        wiki = wikis.setdefault(fx.wiki, Wiki(host=fx.wiki))
        if not fx.exists:
            if (
                fx.pages
                or fx.missing
                or fx.missing_pageids
                or fx.missing_revids
                or fx.entities
                or fx.revisions
            ):
                raise FixtureError(f"{path}: a wiki with `exists: false` has no pages")
            if wiki.pages:
                raise FixtureError(f"{path}: {fx.wiki} has pages in another fixture file")
            wiki.exists = False
        elif not wiki.exists:
            raise FixtureError(f"{path}: {fx.wiki} is declared not to exist by another file")
        wiki.missing_pageids.update(fx.missing_pageids)
        wiki.missing_revids.update(fx.missing_revids)
        for spec in fx.pages:
            title = normalize_title(spec.title)
            if title in wiki.pages:
                raise FixtureError(
                    f"{path}: page {title!r} on {fx.wiki} is defined twice "
                    f"(also in {wiki.pages[title].source})"
                )
            links = [normalize_title(link.title) for link in spec.links]
            wiki._add(
                Page(
                    pageid=spec.pageid,
                    title=title,
                    wikibase_item=spec.wikibase_item,
                    links=sorted(dict.fromkeys(links), key=db_key),
                    links_in_page_order=list(dict.fromkeys(links)),
                    revid=spec.revid,
                    source=str(path),
                    html=spec.html,
                    summary=spec.summary,
                    categories=spec.categories,
                )
            )
        for entity in fx.entities:
            if entity.id in wiki.entities:
                raise FixtureError(f"{path}: entity {entity.id} on {fx.wiki} is defined twice")
            wiki.entities[entity.id] = entity
            for site, title in entity.sitelinks.items():
                other = wiki.by_sitelink.get((site, normalize_title(title)))
                if other is not None:
                    raise FixtureError(
                        f"{path}: sitelink {site}:{title} of {entity.id} is already {other}'s"
                    )
                wiki.by_sitelink[(site, normalize_title(title))] = entity.id
        wiki.missing_entities.update(fx.missing_entities)
        for rev in fx.revisions:
            if rev.revid in wiki.revisions:
                raise FixtureError(f"{path}: revision {rev.revid} on {fx.wiki} is defined twice")
            wiki.revisions[rev.revid] = rev
        for user in fx.users:
            if user.name in wiki.users:
                raise FixtureError(f"{path}: user {user.name!r} on {fx.wiki} is defined twice")
            wiki.users[user.name] = user
    # Pass 2: redirects (pages of their own).
    for path, fx in parsed:
        wiki = wikis[fx.wiki]
        for spec in fx.pages:
            target = normalize_title(spec.title)
            for raw in spec.redirects:
                title = normalize_title(raw)
                existing = wiki.pages.get(title)
                if existing is not None and existing.redirect_to != target:
                    raise FixtureError(
                        f"{path}: redirect {title!r} -> {target!r} on {fx.wiki} clashes with "
                        f"page {title!r} ({existing.source})"
                    )
                if existing is None:
                    wiki._add(
                        Page(
                            pageid=synthetic_pageid(fx.wiki, title),
                            title=title,
                            links=[target],
                            links_in_page_order=[target],
                            redirect_to=target,
                            source=str(path),
                        )
                    )
    # Pass 3: link targets that are neither fixture pages nor redirects.
    for path, fx in parsed:
        wiki = wikis[fx.wiki]
        for spec in fx.pages:
            for link in spec.links:
                title = normalize_title(link.title)
                if title in wiki.pages or title in wiki.missing:
                    continue
                if link.missing:
                    wiki.missing.add(title)
                    continue
                wiki._add(
                    Page(
                        pageid=link.pageid or synthetic_pageid(fx.wiki, title),
                        title=title,
                        wikibase_item=link.wikibase_item,
                        source=str(path),
                        links_known=False,
                    )
                )
    # Pass 4: titles declared missing.
    for path, fx in parsed:
        wiki = wikis[fx.wiki]
        for raw in fx.missing:
            title = normalize_title(raw)
            if title in wiki.pages:
                raise FixtureError(
                    f"{path}: {title!r} on {fx.wiki} is declared missing but is a page "
                    f"({wiki.pages[title].source})"
                )
            wiki.missing.add(title)
        for pageid in fx.missing_pageids:
            if pageid in wiki.by_id:
                raise FixtureError(
                    f"{path}: page id {pageid} on {fx.wiki} is declared missing but is "
                    f"{wiki.by_id[pageid].title!r}"
                )
    for wiki in wikis.values():
        log.debug("replay wiki %s: %d pages", wiki.host, len(wiki.pages))
    return wikis
