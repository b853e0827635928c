"""Stand-in for article-country's data files (no weights): what its `load()` reads from DATA_PATH
(/mnt/models/), in the formats and under the names of inference-services@bce944c
src/models/article_country/model_server/utils.py:

- `ne_10m_admin_0_map_units.geojson`: a FeatureCollection whose features carry Natural Earth's
  `WIKIDATAID` and `NAME` properties (`load_geometries`); here two countries as coarse boxes;
- `category-countries.tsv.gz`: gzip TSV with the header `category_qid<TAB>country_name`
  (`load_categories` asserts it);
- `region-groundtruth-2025-01-01-qids.sqlite`: a sqlitedict (table `unnamed`, pickled values)
  mapping an outlink's QID to `Country:weight;...` (`init_groundtruth_db`, `get_groundtruth`).
  Production's predict reads `wikilinks`, which only this file makes, so it cannot be left out.

The QIDs are those of the sandbox's MediaWiki fixtures (sandbox/mediawiki/fixtures): countries and
places as on Wikidata, category items stand-ins in the Q9900001xx range. Runs in the isvc's own
venv (its sqlitedict). Deterministic: fixed order, gzip mtime 0, sqlitedict's pickles.

    python article_country.py OUTPUT_DIR
"""

import gzip
import json
import os
import sys

import sqlitedict

GEOJSON = "ne_10m_admin_0_map_units.geojson"
CATEGORIES = "category-countries.tsv.gz"
GROUNDTRUTH = "region-groundtruth-2025-01-01-qids.sqlite"


def _box(west: float, south: float, east: float, north: float) -> dict:
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    return {"type": "Polygon", "coordinates": [ring]}


# (WIKIDATAID, NAME, box): Japan's main islands and the contiguous United States, coarsely.
COUNTRIES = [
    ("Q17", "Japan", _box(129.0, 31.0, 146.0, 45.6)),
    ("Q30", "United States", _box(-125.0, 24.5, -66.9, 49.4)),
]
# category item -> country name (a name of the isvc's data/countries.tsv).
CATEGORY_COUNTRIES = [
    ("Q990000101", "United States"),  # Category:American women novelists
    ("Q990000102", "United States"),  # Category:Writers from Ohio
    ("Q990000104", "Japan"),  # Category:Mountains of Japan
]
# outlink item -> countries with weights, `;`-separated (as production's file stores them).
GROUNDTRUTH_ROWS = [
    ("Q1490", "Japan:1"),  # Tokyo
    ("Q13989", "Japan:1"),  # Honshu
    ("Q131320", "Japan:1"),  # Shizuoka Prefecture
    ("Q132720", "Japan:1"),  # Yamanashi Prefecture
    ("Q76", "United States:1"),  # Barack Obama
    ("Q16", "Canada:1"),  # Canada
]


def main(out: str) -> None:
    features = [
        {
            "type": "Feature",
            "properties": {"WIKIDATAID": qid, "NAME": name},
            "geometry": geometry,
        }
        for qid, name, geometry in COUNTRIES
    ]
    with open(os.path.join(out, GEOJSON), "w") as f:
        json.dump({"type": "FeatureCollection", "features": features}, f, separators=(",", ":"))
    rows = "category_qid\tcountry_name\n" + "".join(f"{q}\t{c}\n" for q, c in CATEGORY_COUNTRIES)
    path = os.path.join(out, CATEGORIES)
    with (
        open(path, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz,
    ):
        gz.write(rows.encode())
    with sqlitedict.SqliteDict(os.path.join(out, GROUNDTRUTH), autocommit=False) as db:
        for qid, countries in GROUNDTRUTH_ROWS:
            db[qid] = countries
        db.commit()


if __name__ == "__main__":
    main(sys.argv[-1])
