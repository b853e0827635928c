"""A pass-through transformer, to measure the transformer->predictor hop alone (no MediaWiki).

    python scripts/bench/hop_transformer.py --model_name langid --http_port N --predictor_host H:P

kserve's stock hop (httpx, via kserve.Model.predict) on the stock model server.
BENCH_STOCK_HOP is accepted and ignored (stock is the only hop).
"""

from __future__ import annotations

import sys

import kserve


class Hop(kserve.Model):
    """kserve.Model.predict forwards to --predictor_host (ModelServer reads it from argv)."""

    def load(self) -> bool:
        self.ready = True
        return True


def main() -> None:
    args, _ = kserve.model_server.parser.parse_known_args(sys.argv[1:])
    model = Hop(args.model_name)
    model.load()
    kserve.ModelServer(http_port=args.http_port, enable_grpc=False).start([model])


if __name__ == "__main__":
    main()
