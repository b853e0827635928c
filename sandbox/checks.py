"""Check a response against a sample's expectations from service.yaml, on every target."""

from __future__ import annotations

import json
from typing import Any

from sandbox.catalog import Check, Sample, resolve_path

_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "number": (int, float),
    "integer": (int,),
    "list": (list,),
    "object": (dict,),
    "boolean": (bool,),
}


def _check(check: Check, doc: Any) -> str | None:
    try:
        value = resolve_path(doc, check.path)
    except (KeyError, IndexError):
        return f"{check.path}: missing"
    fields = check.model_fields_set
    if "equals" in fields and value != check.equals:
        return f"{check.path}: expected {check.equals!r}, got {value!r}"
    if check.one_of is not None and value not in check.one_of:
        return f"{check.path}: {value!r} is not one of {check.one_of!r}"
    if check.contains is not None and check.contains not in str(value):
        return f"{check.path}: {value!r} does not contain {check.contains!r}"
    if check.type is not None:
        ok = isinstance(value, _TYPES[check.type]) and not (
            check.type in ("number", "integer") and isinstance(value, bool)
        )
        if not ok:
            return f"{check.path}: expected a {check.type}, got {type(value).__name__}"
    if check.min_items is not None and (
        not isinstance(value, list | dict) or len(value) < check.min_items
    ):
        return f"{check.path}: expected at least {check.min_items} items, got {value!r}"
    for bound, cmp, word in ((check.gte, float.__ge__, ">="), (check.lte, float.__le__, "<=")):
        if bound is not None and (
            not isinstance(value, int | float) or not cmp(float(value), bound)
        ):
            return f"{check.path}: expected {word} {bound}, got {value!r}"
    if check.sorted_desc_by is not None:
        key = check.sorted_desc_by
        if not isinstance(value, list) or not all(isinstance(i, dict) and key in i for i in value):
            return f"{check.path}: expected a list of objects with {key!r}"
        keys = [i[key] for i in value]
        if keys != sorted(keys, reverse=True):
            return f"{check.path}: not sorted by {key} (descending): {keys}"
    return None


def evaluate(sample: Sample, status: int, body: bytes | str) -> list[str]:
    """Every way the response falls short of the sample's expectations; empty when it passes."""
    text = body.decode(errors="replace") if isinstance(body, bytes) else body
    failures = []
    if status != sample.expect.status:
        failures.append(f"status: expected {sample.expect.status}, got {status}: {text[:300]}")
    try:
        doc = json.loads(text)
    except ValueError:
        return [*failures, f"body is not JSON: {text[:300]!r}"]
    failures += [f for c in sample.expect.checks if (f := _check(c, doc))]
    return failures
