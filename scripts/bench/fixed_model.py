"""A kserve model that answers a fixed JSON (no inference), to measure model-server overhead alone.

python scripts/bench/fixed_model.py --model_name langid --http_port N --body JSON

On stock `kserve.ModelServer` (its defaults: latency logging on, asyncio loop, binds 0.0.0.0 --
bench only). BENCH_STOCK_SERVER is accepted and ignored (stock is the only server).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import kserve


class Fixed(kserve.Model):
    def __init__(self, name: str, answer: dict):
        super().__init__(name)
        self.answer = answer

    def load(self) -> bool:
        self.ready = True
        return True

    async def predict(self, payload: Any, headers: dict[str, str] | None = None) -> dict:
        return self.answer


def main() -> None:
    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--body", required=True)
    ours, rest = extra.parse_known_args()
    answer = json.loads(ours.body)
    sys.argv = [sys.argv[0], *rest]
    args, _ = kserve.model_server.parser.parse_known_args(rest)
    model = Fixed(args.model_name, answer)
    model.load()
    kserve.ModelServer(http_port=args.http_port, enable_grpc=False).start([model])


if __name__ == "__main__":
    main()
