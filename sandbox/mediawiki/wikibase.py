"""The emulator's `action=wbgetentities` on www.wikidata.org, from `entities:` fixtures.

Shapes follow Wikibase's GetEntities/ResultBuilder (wikimedia/mediawiki-extensions-Wikibase
repo/includes/Api/GetEntities.php): `{"entities": {<id>: {"type": "item", "id", "labels",
"descriptions", "aliases", "claims", "sitelinks"}}, "success": 1}`; the props asked for only;
`languages` filters the terms, `sitefilter` the sitelinks; `sites` with `titles` look items up by
sitelink; an item that does not exist is `{"id": <id>, "missing": ""}`, a sitelink with no item
`{"site", "title", "missing": ""}` keyed -1, -2, ... (a title matches its sitelink with `_`
read as a space, as Wikibase's SiteLinkTable::getItemIdForLink does); neither `ids` nor
`sites`+`titles` is the error `param-missing`, an id that is no entity id `no-such-entity`.

What the fixtures do not say (an item they do not name) is `NotInFixtures`.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from typing import Any

from sandbox.mediawiki.api import MAIN_PARAMS, ApiError, NotInFixtures, _split, _unsupported
from sandbox.mediawiki.fixtures import EntitySpec, Wiki, normalize_title

PARAMS = frozenset(
    MAIN_PARAMS
    | {
        "ids",
        "sites",
        "titles",
        "redirects",
        "props",
        "languages",
        "languagefallback",
        "normalize",
        "sitefilter",
    }
)
PROPS = ("info", "labels", "descriptions", "aliases", "claims", "sitelinks", "datatype")
DEFAULT_PROPS = "info|sitelinks|aliases|labels|descriptions|claims|datatype"
# Wikibase's ItemId::PATTERN (wikibase-data-model: `/^Q[1-9]\d{0,9}\z/i`), and the same for
# properties and lexemes; a longer number is no entity id.
_ENTITY_ID = re.compile(r"[QPL][1-9][0-9]{0,9}", re.IGNORECASE)
_TIME = re.compile(r"[+-][0-9]{1,16}-[0-9]{2}-[0-9]{2}T00:00:00Z")
GREGORIAN = "http://www.wikidata.org/entity/Q1985727"
# A coordinate as QuickStatements writes one (`@LAT/LON`), on Earth (Q2), as Wikibase's
# GlobeCoordinateValue serializes it (wikimedia/mediawiki-extensions-Wikibase, data-values/geo).
_COORDINATE = re.compile(r"@([+-]?[0-9]{1,2}(?:\.[0-9]+)?)/([+-]?[0-9]{1,3}(?:\.[0-9]+)?)")
EARTH = "http://www.wikidata.org/entity/Q2"


def _snak_value(prop: str, value: str) -> dict[str, Any]:
    """The `mainsnak` of a statement with `value`: an item id, a time, a coordinate (`@LAT/LON`)
    or a string."""
    coordinate = _COORDINATE.fullmatch(value)
    if coordinate:
        datavalue: dict[str, Any] = {
            "value": {
                "latitude": float(coordinate[1]),
                "longitude": float(coordinate[2]),
                "altitude": None,
                "precision": 0.0001,
                "globe": EARTH,
            },
            "type": "globecoordinate",
        }
        datatype = "globe-coordinate"
    elif re.fullmatch(r"Q[1-9][0-9]*", value):
        datavalue = {
            "value": {"entity-type": "item", "numeric-id": int(value[1:]), "id": value},
            "type": "wikibase-entityid",
        }
        datatype = "wikibase-item"
    elif _TIME.fullmatch(value):
        datavalue = {
            "value": {
                "time": value,
                "timezone": 0,
                "before": 0,
                "after": 0,
                "precision": 11,
                "calendarmodel": GREGORIAN,
            },
            "type": "time",
        }
        datatype = "time"
    else:
        datavalue, datatype = {"value": value, "type": "string"}, "string"
    digest = hashlib.sha1(f"{prop}|{value}".encode()).hexdigest()
    return {
        "snaktype": "value",
        "property": prop,
        "hash": digest,
        "datavalue": datavalue,
        "datatype": datatype,
    }


def entity_json(
    entity: EntitySpec, props: list[str], languages: set[str] | None, sites: set[str] | None
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "info" in props:  # stand-in page facts: the fixtures hold no item pages
        number = int(entity.id[1:])
        prop = entity.id.startswith("P")
        out |= {
            "pageid": number,
            "ns": 120 if prop else 0,
            "title": f"Property:{entity.id}" if prop else entity.id,
            "lastrevid": 2_000_000_000 + number % 1_000_000_000,
            "modified": "2026-01-01T00:00:00Z",
        }
    out |= {"type": "property" if entity.id.startswith("P") else "item", "id": entity.id}
    # `datatype` only concerns properties; an item has none.
    for name, terms in (("labels", entity.labels), ("descriptions", entity.descriptions)):
        if name in props:
            out[name] = {
                lang: {"language": lang, "value": text}
                for lang, text in terms.items()
                if languages is None or lang in languages
            }
    if "aliases" in props:
        out["aliases"] = {}
    if "claims" in props:
        out["claims"] = {
            prop: [
                {
                    "mainsnak": _snak_value(prop, value),
                    "type": "statement",
                    "id": f"{entity.id}$"
                    + str(uuid.uuid5(uuid.NAMESPACE_URL, f"{entity.id}|{prop}|{i}")).upper(),
                    "rank": "normal",
                }
                for i, value in enumerate(values)
            ]
            for prop, values in entity.claims.items()
        }
    if "sitelinks" in props:
        out["sitelinks"] = {
            site: {"site": site, "title": title, "badges": []}
            for site, title in entity.sitelinks.items()
            if sites is None or site in sites
        }
    return out


def answer(wiki: Wiki, params: dict[str, str]) -> dict[str, Any]:
    """The body of `action=wbgetentities` on the fixture Wikidata `wiki`."""
    unknown = sorted(set(params) - PARAMS)
    if unknown:
        raise _unsupported(
            "with action=wbgetentities the parameter(s) " + ", ".join(f'"{u}"' for u in unknown)
        )
    ids = _split(params.get("ids", ""))
    sites, titles = _split(params.get("sites", "")), _split(params.get("titles", ""))
    if not ids and not (sites and titles):
        raise ApiError(
            "param-missing",
            'Either provide the item "ids" or pairs of "sites" and "titles" for corresponding '
            "pages.",
        )
    props = _split(params.get("props", DEFAULT_PROPS))
    for prop in props:
        if prop not in PROPS:
            raise _unsupported(f'props "{prop}" with action=wbgetentities (use {"|".join(PROPS)})')
    languages = set(_split(params["languages"])) if params.get("languages") else None
    sitefilter = set(_split(params["sitefilter"])) if params.get("sitefilter") else None
    entities: dict[str, Any] = {}
    wanted: list[str] = []
    for raw in ids:
        if not _ENTITY_ID.fullmatch(raw):
            raise ApiError("no-such-entity", f'Could not find an entity with the ID "{raw}".')
        wanted.append(raw.upper())
    if sites and titles:
        if len(sites) > 1 and len(titles) > 1:
            raise ApiError(
                "params-illegal",
                "Must request one site, one title, or an equal number of sites and titles.",
            )
        pairs = [(s, t) for s in sites for t in titles]
        missing = 0
        normalize = "normalize" in params
        for site, title in pairs:
            # Sitelinks are stored with spaces, not underscores (Wikibase's SiteLinkTable::
            # getItemIdForLink); the rest of the title is normalized only with `normalize`.
            name = title.strip().replace("_", " ")
            key = (site, normalize_title(name) if normalize else name)
            found = wiki.by_sitelink.get(key)
            if found is None and key[1] != normalize_title(key[1]):
                # A title MediaWiki would not store (a lower-case first letter, doubled
                # spaces) names no sitelink: missing, as Wikibase answers it.
                missing -= 1
                entities[str(missing)] = {"site": site, "title": title, "missing": ""}
                continue
            if found is None:
                raise NotInFixtures(
                    f"the fixtures have no Wikidata item with the sitelink {site}:{title!r} on "
                    f"{wiki.host}"
                )
            wanted.append(found)
    for entity_id in dict.fromkeys(wanted):
        entity = wiki.entities.get(entity_id)
        if entity is not None:
            entities[entity_id] = entity_json(entity, props, languages, sitefilter)
        elif entity_id in wiki.missing_entities:
            entities[entity_id] = {"id": entity_id, "missing": ""}
        else:
            raise NotInFixtures(f"the fixtures have no Wikidata item {entity_id} on {wiki.host}")
    return {"entities": entities, "success": 1}
