"""Why an isvc's request failed on the MediaWiki replay server, for `predict` and the console.

The server keeps every request it answered `replay-not-in-fixtures` (GET /__replay__/misses).
An isvc that meets one answers with production's error (often `500 ... 501 ... url=...`), which
does not say what is missing; these functions do:

    forget_misses(url)                 # before sending a sample
    ...                                # the request through the gateway
    for line in explain_misses(url):   # after it failed
        print(line, file=sys.stderr)

Each line reads `MediaWiki answer missing: GET en.wikipedia.org/w/api.php?...; record it with
...`. A server that cannot be reached gives no line (predict's own answer stands).
"""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.request
from typing import Any

RECORD_HINT = (
    "record it with `ml-sandbox up <isvc> --mediawiki record:DIR` (or `ml-sandbox mediawiki "
    "--record DIR`) where the wikis are reachable, then serve DIR with --mediawiki replay:DIR; "
    "or add the page to a fixture (sandbox/mediawiki/README.md)"
)


def _call(method: str, url: str, timeout_s: float) -> Any:
    req = urllib.request.Request(url, method=method)
    with urllib.request.urlopen(req, timeout=timeout_s) as r:
        return json.loads(r.read())


def misses(replay_url: str, timeout_s: float = 2.0) -> list[dict[str, Any]]:
    """The requests the replay server at `replay_url` could not answer from its fixtures, oldest
    first (empty if it cannot be reached)."""
    try:
        return list(_call("GET", f"{replay_url}/__replay__/misses", timeout_s)["misses"])
    except (urllib.error.URLError, OSError, ValueError, KeyError, TypeError):
        return []


def forget_misses(replay_url: str, timeout_s: float = 2.0) -> None:
    """Clear the server's list of misses (so the next `explain_misses` names only new ones)."""
    with contextlib.suppress(urllib.error.URLError, OSError, ValueError):
        _call("DELETE", f"{replay_url}/__replay__/misses", timeout_s)


def explain_misses(replay_url: str, timeout_s: float = 2.0) -> list[str]:
    """One line per distinct missing answer: the normalized request and how to record it."""
    seen = dict.fromkeys(str(m.get("request", "")) for m in misses(replay_url, timeout_s))
    return [f"MediaWiki answer missing: {request}; {RECORD_HINT}" for request in seen if request]
