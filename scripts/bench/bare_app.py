"""The baseline: a bare FastAPI + uvicorn endpoint answering a fixed JSON body (no model).

python scripts/bench/bare_app.py --port N --body '{"language": ...}'
"""

from __future__ import annotations

import argparse

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--body", required=True, help="the JSON to answer with")
    args = parser.parse_args()
    body = args.body.encode()
    app = FastAPI()

    @app.post("/v1/models/{name}:predict")
    async def predict(name: str, request: Request) -> Response:
        await request.body()
        return Response(content=body, media_type="application/json")

    @app.get("/v1/models/{name}")
    async def ready(name: str) -> dict:
        return {"name": name, "ready": True}

    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
