"""A pass-through transformer, to measure the transformer->predictor hop alone (no MediaWiki).

    python scripts/bench/hop_transformer.py --model_name langid --http_port N --predictor_host H:P
    BENCH_STOCK_HOP=1 ...   the same with kserve's stock hop (httpx, via kserve.Model.predict)

It runs on the sandbox's model server; only the hop differs.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import kserve

from sandbox.serving import server
from sandbox.serving.predictor_client import PredictorClient


class Hop(kserve.Model):
    def __init__(self, name: str, predictor_host: str, stock: bool):
        super().__init__(name)
        self.stock = stock
        self.client = PredictorClient(predictor_host, name)

    def load(self) -> bool:
        self.ready = True
        return True

    async def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        if self.stock:
            return await super().predict(payload, headers)
        return await self.client.predict(payload)


def make_model(args: argparse.Namespace) -> Hop:
    return Hop(args.model_name, args.predictor_host, os.environ.get("BENCH_STOCK_HOP") == "1")


if __name__ == "__main__":
    server.run(make_model, description="pass-through transformer for the hop benchmark")
