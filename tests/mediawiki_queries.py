"""The MediaWiki Action API queries the tests send, written once: production's outlink-topic-model
queries (mwapi 0.6.1 adds format=json and, with continuation, continue=), and the fixture pages
they ask about (sandbox/mediawiki/fixtures)."""

from __future__ import annotations

EN = "en.wikipedia.org"
TARGET = "Sandbox edge case (redirect target)"
MANY = "Sandbox edge case (many outlinks)"
MIXED = "Sandbox edge case (mixed outlinks)"

# Production's title lookup: formatversion 1 (mwapi's default), no redirects.
TITLE_LOOKUP = {"action": "query", "titles": TARGET, "format": "json"}
# Production's outlinks query, first request (a generator over the page, by title or page id).
LINKS = {
    "action": "query",
    "generator": "links",
    "redirects": "",
    "prop": "pageprops",
    "ppprop": "wikibase_item",
    "gplnamespace": "0",
    "gpllimit": "500",
    "format": "json",
    "formatversion": "2",
    "continue": "",
}
