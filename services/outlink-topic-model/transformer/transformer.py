"""outlink-topic-model transformer: an article's outlinks from MediaWiki, then the predictor.

Request: {"lang": "en", "page_title": "Toni Morrison", "threshold": 0.3, "debug": false}
(or "page_id" instead of "page_title"). MediaWiki is `https://<lang>.wikipedia.org`, or WIKI_URL
with `Host: <lang>.wikipedia.org` when WIKI_URL is set (production's proxy, or the replay server).
"""

from __future__ import annotations

import argparse
import os
import re
from typing import Any
from urllib.parse import quote

import kserve
from kserve.errors import InvalidInput

from sandbox.serving import inputs, server
from sandbox.serving.mediawiki import MediaWikiClient
from sandbox.serving.predictor_client import PredictorClient

LANG = re.compile(r"^[a-z][a-z0-9-]{1,15}$")


class OutlinkTransformer(kserve.Model):
    def __init__(self, name: str, predictor_host: str, wiki_url: str | None, timeout_s: float):
        super().__init__(name)
        self.predictor = PredictorClient(predictor_host, name)
        self.mediawiki = MediaWikiClient(wiki_url=wiki_url or None, timeout_s=timeout_s)

    def load(self) -> bool:
        self.ready = True
        return self.ready

    async def preprocess(self, payload: Any, headers: dict[str, str] | None = None) -> dict:
        payload = inputs.require_object(payload)
        lang = inputs.text_field(payload, "lang")
        if not LANG.fullmatch(lang):
            raise InvalidInput(f"field 'lang' is not a Wikipedia language code: {lang!r}")
        title = inputs.text_field(payload, "page_title", required=False)
        page_id = inputs.int_field(payload, "page_id")
        if (title is None) == (page_id is None):
            raise InvalidInput("give exactly one of 'page_title' or 'page_id'")
        threshold = inputs.number_field(payload, "threshold", 0.5, 0.0, 1.0)
        debug = inputs.bool_field(payload, "debug")
        links = await self.mediawiki.outlinks(lang, title=title, page_id=page_id)
        article = f"https://{lang}.wikipedia.org/wiki/{quote(links.title.replace(' ', '_'))}"
        return {"qids": links.qids, "threshold": threshold, "article": article, "debug": debug}

    async def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        request_id = (headers or {}).get("x-request-id")
        return await self.predictor.predict(payload, request_id=request_id)


def make_model(args: argparse.Namespace) -> OutlinkTransformer:
    if not args.predictor_host:
        raise ValueError("--predictor_host is required (host:port of the predictor)")
    return OutlinkTransformer(
        args.model_name,
        args.predictor_host,
        wiki_url=os.environ.get("WIKI_URL"),
        timeout_s=float(os.environ.get("MEDIAWIKI_TIMEOUT_S", "5")),
    )


if __name__ == "__main__":
    server.run(make_model, description="outlink-topic-model transformer (KServe model server)")
