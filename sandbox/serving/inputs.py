"""Request fields: each problem is a kserve `InvalidInput` (HTTP 400) naming the field."""

from __future__ import annotations

from typing import Any

import orjson
from kserve.errors import InvalidInput

_MISSING = object()


def require_object(payload: Any) -> dict[str, Any]:
    """The request as a JSON object. kserve leaves bodies sent without a JSON content type (e.g.
    `curl -d`) as bytes: parse those too."""
    if isinstance(payload, bytes | str):
        try:
            payload = orjson.loads(payload)
        except orjson.JSONDecodeError as e:
            raise InvalidInput(f"request body is not valid JSON: {e}") from None
    if not isinstance(payload, dict):
        raise InvalidInput(f"expected a JSON object, got {type(payload).__name__}")
    return payload


def text_field(payload: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    value = payload.get(name, _MISSING)
    if value is _MISSING or value is None:
        if required:
            raise InvalidInput(f"missing required field '{name}'")
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"field '{name}' must be a string, got {type(value).__name__}")
    if not value.strip():
        raise InvalidInput(f"field '{name}' must not be empty")
    return value


def number_field(payload: dict[str, Any], name: str, default: float, lo: float, hi: float) -> float:
    value = payload.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"field '{name}' must be a number, got {value!r}")
    if not lo <= value <= hi:
        raise InvalidInput(f"field '{name}' must be between {lo} and {hi}, got {value!r}")
    return float(value)


def int_field(payload: dict[str, Any], name: str) -> int | None:
    value = payload.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidInput(f"field '{name}' must be a positive integer, got {value!r}")
    return value


def bool_field(payload: dict[str, Any], name: str, default: bool = False) -> bool:
    value = payload.get(name, default)
    if not isinstance(value, bool):
        raise InvalidInput(f"field '{name}' must be true or false, got {value!r}")
    return value
