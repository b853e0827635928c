"""Write emulator fixtures for the pages production's load tests and samples use.

Production's outlink load test (inference-services `test/locust/models/articletopic_outlink`)
posts random rows of `test/locust/data/articles_lang_title_id.csv` (`language,page_title,
page_id`); its articlequality, readability and revertrisk load tests post rows of
`test/locust/data/revisions_lang_and_id.tsv` (`lang<TAB>rev_id`). Every revision gets a stand-in
page at that revision with article-like Parsoid HTML (articlequality fetches
`/w/rest.php/v1/revision/{id}/html`). Every page row gets a fixture page with what production's
isvcs ask of it:

- the Action API: the title lookup (`action=query&titles=`), and `generator=links` with
  `prop=pageprops&ppprop=wikibase_item` over its page id (outlinks that carry Wikidata items);
- the REST API: the Parsoid HTML of its revision (`/w/rest.php/v1/revision/{id}/html`,
  `/w/rest.php/v1/page/{title}/html`) and its page summary;
- Wikidata (`www.wikidata.org`): `wbgetentities` for its item, by id or by sitelink.

The titles and page ids are the CSV's (Wikipedia's), read from the user's checkout when this
runs; everything else is a deterministic stand-in: revision ids and items in ranges no real
page uses, outlinks drawn from the sandbox outlink model's topic vocabulary
(services/outlink-topic-model/training/topic_qids.tsv) so that predictions are meaningful, and
HTML and summaries that say they are stand-ins. The structure is MediaWiki's (see `rest.py`,
`wikibase.py`). A row whose title a hand-written fixture already defines is left to it.

    python -m sandbox.mediawiki.generate --inference-services ../shared/inference-services

writes `sandbox/mediawiki/fixtures/<wiki>.locust.yaml` (regenerate; never edit by hand).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import html
import sys
import zlib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sandbox.mediawiki.fixtures import (
    DEFAULT_FIXTURES_DIR,
    FixtureError,
    load_wikis,
    normalize_title,
)

LOCUST_CSV = Path("test/locust/data/articles_lang_title_id.csv")
# `lang<TAB>rev_id`, no header: the articlequality, readability and revertrisk load tests.
LOCUST_REVISIONS = Path("test/locust/data/revisions_lang_and_id.tsv")
# revertrisk-wikidata's load test: Wikidata revision ids, one a line.
LOCUST_WIKIDATA_REVISIONS = Path("test/locust/data/wikidata_revids.tsv")
SOURCE = (
    "inference-services test/locust/data/articles_lang_title_id.csv and revisions_lang_and_id.tsv"
)
TOPIC_QIDS = (
    Path(__file__).resolve().parents[2] / "services/outlink-topic-model/training/topic_qids.tsv"
)
SUFFIX = ".locust.yaml"
WIKIDATA = "www.wikidata.org"
LINKS_PER_PAGE = 24
# Stand-in ids: far above the pages' real revision ids and items, so none is mistaken for one.
_REVID_BASE = 3_000_000_000
_PAGEID_BASE = 2_100_000_000
_QID_BASE = 970_000_000


@dataclass(frozen=True)
class Row:
    lang: str
    title: str  # as in the CSV (underscores)
    page_id: int


def read_rows(checkout: Path) -> list[Row]:
    """The rows of production's load-test data file in `checkout`."""
    path = checkout / LOCUST_CSV
    try:
        with path.open(encoding="utf-8", newline="") as f:
            return [
                Row(r["language"], r["page_title"], int(r["page_id"])) for r in csv.DictReader(f)
            ]
    except (OSError, KeyError, ValueError) as e:
        raise FixtureError(f"{path}: cannot read production's load-test pages: {e}") from e


def read_revisions(checkout: Path) -> list[tuple[str, int]]:
    """(lang, revision id) of production's revision load tests, without repeats, in file order."""
    path = checkout / LOCUST_REVISIONS
    try:
        rows = [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()]
        return list(dict.fromkeys((lang, int(rev)) for lang, rev in rows if lang))
    except (OSError, ValueError) as e:
        raise FixtureError(f"{path}: cannot read production's load-test revisions: {e}") from e


def _vocabulary() -> list[tuple[str, str]]:
    """(title, qid) of the outlink model's topic vocabulary, one per item, in file order."""
    seen: dict[str, str] = {}
    for line in TOPIC_QIDS.read_text(encoding="utf-8").splitlines():
        if line.startswith("#") or line.startswith("topic\t") or not line.strip():
            continue
        _topic, qid, title = line.split("\t")
        seen.setdefault(qid, title)
    return [(title, qid) for qid, title in seen.items()]


def _stable(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def stand_in_qid(wiki: str, title: str) -> str:
    return f"Q{_QID_BASE + zlib.crc32(f'{wiki}|{title}'.encode()) % 10_000_000}"


def _links(key: str, vocabulary: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """LINKS_PER_PAGE outlinks (title, qid): a run of the vocabulary picked by `key`, so a page
    links to items of a few neighbouring topics, as an article does."""
    start = _stable(key) % len(vocabulary)
    picked = [vocabulary[(start + i) % len(vocabulary)] for i in range(LINKS_PER_PAGE)]
    return sorted(picked, key=lambda link: link[0].replace(" ", "_"))


def _body(title: str, extract: str, links: list[tuple[str, str]]) -> str:
    """A Parsoid `<body>`: a lead section with a paragraph of wikilinks, then a section."""
    anchors = ", ".join(
        f'<a rel="mw:WikiLink" href="./{html.escape(t.replace(" ", "_"))}" '
        f'title="{html.escape(t)}" id="mwA{i + 3}">{html.escape(t)}</a>'
        for i, (t, _) in enumerate(links)
    )
    return (
        f'<section data-mw-section-id="0" id="mwAQ"><p id="mwAg"><b>{html.escape(title)}</b>: '
        f"{html.escape(extract)}</p><p>Links: {anchors}.</p></section>"
        '<section data-mw-section-id="1" id="mwBA"><h2 id="See_also">See also</h2>'
        "<p>The sandbox's stand-in article text.</p></section>"
    )


def _article_body(title: str, links: list[tuple[str, str]]) -> str:
    """A Parsoid `<body>` shaped like an article: a lead, two sections with headings, wikilinks,
    a reference and its list, a category (what articlequality's features count)."""

    def anchor(i: int, t: str) -> str:
        return (
            f'<a rel="mw:WikiLink" href="./{html.escape(t.replace(" ", "_"))}" '
            f'title="{html.escape(t)}" id="mwB{i}">{html.escape(t)}</a>'
        )

    half = len(links) // 2
    first = ", ".join(anchor(i, t) for i, (t, _) in enumerate(links[:half]))
    second = ", ".join(anchor(i + half, t) for i, (t, _) in enumerate(links[half:]))
    return (
        f'<section data-mw-section-id="0" id="mwAQ"><p id="mwAg"><b>{html.escape(title)}</b> is '
        "the sandbox's stand-in for a revision that production's load tests ask for. It links "
        f"to {first}."
        '<sup about="#mwt1" class="mw-ref reference" id="cite_ref-1" rel="dc:references" '
        'typeof="mw:Extension/ref"><a href="./#cite_note-1"><span class="mw-reflink-text">'
        "[1]</span></a></sup></p></section>"
        '<section data-mw-section-id="1" id="mwBQ"><h2 id="History">History</h2>'
        f"<p>Its history touches on {second}.</p></section>"
        '<section data-mw-section-id="2" id="mwBg"><h2 id="References">References</h2>'
        '<div class="mw-references-wrap" typeof="mw:Extension/references"><ol '
        'class="mw-references references"><li about="#cite_note-1" id="cite_note-1"><span '
        'class="mw-cite-backlink"><a href="./#cite_ref-1" rel="mw:referencedBy"><span '
        'class="mw-linkback-text">↑ </span></a></span> <span id="mw-reference-text-cite_note-1" '
        'class="mw-reference-text">A stand-in source.</span></li></ol></div>'
        '<link rel="mw:PageProp/Category" href="./Category:Sandbox_stand-ins"/></section>'
    )


def build_revisions(
    revisions: list[tuple[str, int]], existing_revids: set[tuple[str, int]]
) -> dict[str, list[dict[str, Any]]]:
    """Fixture pages, by wiki, for the revisions production's revision load tests post: one
    stand-in page per revision, at that revision, with article-like Parsoid HTML."""
    vocabulary = _vocabulary()
    pages: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for lang, revid in revisions:
        wiki = f"{lang}.wikipedia.org"
        if (wiki, revid) in existing_revids:
            continue
        title = f"Sandbox stand-in of revision {revid}"
        links = _links(f"{wiki}|{revid}", vocabulary)
        pages[wiki].append(
            {
                "pageid": _PAGEID_BASE + revid % 100_000_000,
                "title": title,
                "revid": revid,
                "wikibase_item": stand_in_qid(wiki, title),
                "summary": {
                    "extract": f"{title} is the sandbox's stand-in page for that revision."
                },
                "html": _article_body(title, links),
                "links": [{"title": t, "wikibase_item": q} for t, q in links],
            }
        )
    return pages


def read_wikidata_revisions(checkout: Path) -> list[int]:
    """The revision ids of revertrisk-wikidata's load test (none when the file is absent)."""
    path = checkout / LOCUST_WIKIDATA_REVISIONS
    if not path.is_file():
        return []
    return [int(line.split("\t")[0]) for line in path.read_text().splitlines() if line.strip()]


# Stand-in items and parent revisions of the load test's Wikidata revisions: ranges no real item
# or revision uses. Their statement (P31 = Q5) and its labels are the hand-written
# www.wikidata.org.revertrisk.yaml's.
_WD_ITEM_BASE = 99_100_000
_WD_PARENT_BASE = 3_900_000_000
WD_EDITOR = "Sandbox load-test editor"


def _item(qid: str, label: str, with_claim: bool) -> dict[str, Any]:
    claims: dict[str, Any] = {}
    if with_claim:
        snak = {"entity-type": "item", "numeric-id": 5, "id": "Q5"}
        claims["P31"] = [
            {
                "mainsnak": {
                    "snaktype": "value",
                    "property": "P31",
                    "hash": "ad7d38a03cdd40cdc373de0dc4e7b7fcbccb31d9",
                    "datavalue": {"value": snak, "type": "wikibase-entityid"},
                    "datatype": "wikibase-item",
                },
                "type": "statement",
                "id": f"{qid}$00000000-0000-4000-8000-{int(qid[1:]):012d}",
                "rank": "normal",
            }
        ]
    return {
        "type": "item",
        "id": qid,
        "labels": {"en": {"language": "en", "value": label}},
        "descriptions": {},
        "aliases": {},
        "claims": claims,
        "sitelinks": {},
    }


def build_wikidata_history(revids: list[int], existing: set[int]) -> dict[str, Any]:
    """Each revision (not in `existing`) edits a stand-in item of its own: its parent (the item's
    first revision) has a label, the revision adds a statement, both by one registered editor."""
    revisions: list[dict[str, Any]] = []
    entities: list[dict[str, Any]] = []
    for n, revid in enumerate(sorted(set(revids) - existing), start=1):
        pageid = _WD_ITEM_BASE + n
        qid, label = f"Q{pageid}", f"Sandbox load-test item {n}"
        common = {"pageid": pageid, "title": qid, "user": WD_EDITOR, "userid": 99_000_002}
        revisions.append(
            {
                "revid": _WD_PARENT_BASE + n,
                "parentid": 0,
                **common,
                "timestamp": "2024-01-01T00:00:00Z",
                "content": _item(qid, label, with_claim=False),
            }
        )
        revisions.append(
            {
                "revid": revid,
                "parentid": _WD_PARENT_BASE + n,
                **common,
                "timestamp": "2024-02-01T00:00:00Z",
                "content": _item(qid, label, with_claim=True),
            }
        )
        entities.append({"id": qid, "labels": {"en": label}})
    if not revisions:
        return {}
    user = {"name": WD_EDITOR, "userid": 99_000_002, "groups": ["autoconfirmed"]}
    user["registration"] = "2021-06-01T00:00:00Z"
    return {"revisions": revisions, "users": [user], "entities": entities}


def build(
    rows: list[Row],
    existing: set[tuple[str, str]],
    revisions: list[tuple[str, int]] | None = None,
    existing_revids: set[tuple[str, int]] | None = None,
    wikidata_revisions: list[int] | None = None,
    existing_wikidata_revids: set[int] | None = None,
) -> dict[str, dict[str, Any]]:
    """The fixture documents by wiki host (`existing`: (wiki, title) defined by hand; likewise
    `existing_revids`: (wiki, revid))."""
    vocabulary = _vocabulary()
    pages: dict[str, list[dict[str, Any]]] = defaultdict(list)
    entities: list[dict[str, Any]] = []
    for row in rows:
        wiki = f"{row.lang}.wikipedia.org"
        title = normalize_title(row.title)
        if (wiki, title) in existing:
            continue
        qid = stand_in_qid(wiki, title)
        links = _links(f"{wiki}|{title}", vocabulary)
        extract = (
            f"{title} is a page of {wiki} that production's load test uses; this text, its "
            "links and its item are the sandbox's stand-ins."
        )
        pages[wiki].append(
            {
                "pageid": row.page_id,
                "title": title,
                "revid": _REVID_BASE + row.page_id % 1_000_000_000,
                "wikibase_item": qid,
                "summary": {"extract": extract, "description": f"stand-in item for {title}"},
                "html": _body(title, extract, links),
                "links": [{"title": t, "wikibase_item": q} for t, q in links],
            }
        )
        entities.append(
            {
                "id": qid,
                "labels": {row.lang: title},
                "descriptions": {row.lang: f"stand-in item for {title}"},
                "claims": {"P31": ["Q35120"]},
                "sitelinks": {f"{row.lang.replace('-', '_')}wiki": title},
            }
        )
    for wiki, more in build_revisions(revisions or [], existing_revids or set()).items():
        pages[wiki].extend(more)
    docs: dict[str, dict[str, Any]] = {
        wiki: {"wiki": wiki, "pages": sorted(p, key=lambda x: x["pageid"])}
        for wiki, p in sorted(pages.items())
    }
    if entities:
        docs[WIKIDATA] = {"wiki": WIKIDATA, "entities": sorted(entities, key=lambda e: e["id"])}
    history = build_wikidata_history(wikidata_revisions or [], existing_wikidata_revids or set())
    if history:
        doc = docs.setdefault(WIKIDATA, {"wiki": WIKIDATA})
        doc["revisions"] = history["revisions"]
        doc["users"] = history["users"]
        doc["entities"] = sorted(
            [*doc.get("entities", []), *history["entities"]], key=lambda e: e["id"]
        )
    return docs


def render(doc: dict[str, Any]) -> str:
    header = (
        "# GENERATED by `python -m sandbox.mediawiki.generate` from\n"
        f"# {SOURCE}: regenerate, never edit.\n"
        "# Titles and page ids are that file's (Wikipedia's); revision ids, items, outlinks\n"
        "# (from services/outlink-topic-model/training/topic_qids.tsv), HTML and summaries are\n"
        "# stand-ins with MediaWiki's structure (sandbox/mediawiki/rest.py, wikibase.py).\n"
    )
    return header + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=100)


def write(checkout: Path, out: Path = DEFAULT_FIXTURES_DIR) -> list[Path]:
    """Write the fixtures for production's load-test pages into `out`; the files written."""
    for old in out.glob(f"*{SUFFIX}"):
        old.unlink()
    wikis = load_wikis([out])
    existing = {(host, title) for host, wiki in wikis.items() for title in wiki.pages}
    existing_revids = {(host, rev) for host, wiki in wikis.items() for rev in wiki.by_revid}
    wd_revids = set(wikis[WIKIDATA].revisions) if WIKIDATA in wikis else set()
    docs = build(
        read_rows(checkout),
        existing,
        read_revisions(checkout),
        existing_revids,
        read_wikidata_revisions(checkout),
        wd_revids,
    )
    written = []
    for wiki, doc in docs.items():
        path = out / f"{wiki}{SUFFIX}"
        path.write_text(render(doc), encoding="utf-8")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.mediawiki.generate",
        description="Write emulator fixtures (MediaWiki Action API, REST HTML and summary, "
        "Wikidata) for every page production's load tests post, from an inference-services "
        "checkout.",
    )
    parser.add_argument("--inference-services", type=Path, required=True, metavar="PATH")
    parser.add_argument("--out", type=Path, default=DEFAULT_FIXTURES_DIR, metavar="DIR")
    args = parser.parse_args(argv)
    try:
        for path in write(args.inference_services, args.out):
            print(f"wrote {path}")
    except FixtureError as e:
        print(f"generate: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
