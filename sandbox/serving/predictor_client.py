"""The transformer -> predictor hop over one pooled aiohttp session.

Stock kserve's httpx hop reaches a fraction of the throughput of the predictor itself and turns a
predictor 4xx into a 500. This one keeps connections alive, passes a predictor 4xx through with
its status and message, and answers 502/504 when the predictor fails or is slow.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson

from sandbox.serving.errors import UpstreamHTTPError, UpstreamTimeout


class PredictorClient:
    def __init__(self, predictor_host: str, model_name: str, timeout_s: float = 30.0):
        host = predictor_host if "://" in predictor_host else f"http://{predictor_host}"
        self.url = f"{host.rstrip('/')}/v1/models/{model_name}:predict"
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self.timeout,
                connector=aiohttp.TCPConnector(limit=100, keepalive_timeout=60),
                json_serialize=lambda o: orjson.dumps(o).decode(),
            )
        return self._session

    async def predict(self, payload: dict[str, Any], request_id: str | None = None) -> Any:
        headers = {"content-type": "application/json"}
        if request_id:
            headers["x-request-id"] = request_id
        try:
            async with self._get_session().post(
                self.url, data=orjson.dumps(payload), headers=headers
            ) as resp:
                body = await resp.read()
                status = resp.status
        except TimeoutError:
            msg = f"the predictor did not answer within {self.timeout.total}s"
            raise UpstreamTimeout(msg) from None
        except aiohttp.ClientError as e:
            raise UpstreamHTTPError(f"cannot reach the predictor: {e}") from None
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            doc = None
        if 200 <= status < 300 and doc is not None:
            return doc
        message = doc.get("error") if isinstance(doc, dict) else None
        if 400 <= status < 500:
            msg = message or f"the predictor rejected the request ({status})"
            raise UpstreamHTTPError(msg, status)
        raise UpstreamHTTPError(f"the predictor failed ({status}): {message or body[:200]!r}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
