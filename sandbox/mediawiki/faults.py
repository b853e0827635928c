"""Faults the replay server can inject into its API answers, server-wide or for one wiki.

Modes: `none`; `slow` (wait `delay_s`, then answer normally); `error500` (HTTP 500 with an HTML
error page, as Wikimedia's edge returns); `malformed` (HTTP 200 whose body is not JSON);
`apierror` (HTTP 200 with an API `error` object, as on a database failure); `reset` (close the
connection without answering). `after` lets that many requests through first (e.g. to fail
in the middle of a continuation); `times` reverts to no fault after that many faulted requests.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any


class FaultMode(StrEnum):
    NONE = "none"
    SLOW = "slow"
    ERROR500 = "error500"
    MALFORMED = "malformed"
    APIERROR = "apierror"
    RESET = "reset"


DEFAULT_DELAY_S = 30.0


class FaultSpecError(ValueError):
    """A fault request is invalid; the message says which field and why."""


@dataclass(frozen=True)
class Fault:
    mode: FaultMode = FaultMode.NONE
    delay_s: float = DEFAULT_DELAY_S  # for `slow`
    wiki: str | None = None  # None: every wiki
    after: int = 0  # requests let through before the fault applies
    times: int | None = None  # faulted requests before it reverts to `none`; None: until changed

    @classmethod
    def parse(cls, data: Any) -> Fault:
        """A fault from the JSON of `POST /__replay__/fault` (or from CLI options)."""
        if not isinstance(data, dict):
            raise FaultSpecError('a fault is a JSON object like {"mode": "slow", "delay_s": 10}')
        unknown = sorted(set(data) - {"mode", "delay_s", "wiki", "after", "times"})
        if unknown:
            raise FaultSpecError(f"unknown fault field(s): {', '.join(unknown)}")
        modes = ", ".join(m.value for m in FaultMode)
        try:
            mode = FaultMode(data.get("mode"))
        except ValueError:
            raise FaultSpecError(
                f"fault mode {data.get('mode')!r} is not one of: {modes}"
            ) from None
        delay = data.get("delay_s", DEFAULT_DELAY_S)
        if isinstance(delay, bool) or not isinstance(delay, int | float) or not 0 <= delay <= 3600:
            raise FaultSpecError("delay_s must be a number of seconds between 0 and 3600")
        wiki = data.get("wiki")
        if wiki is not None and (not isinstance(wiki, str) or not wiki):
            raise FaultSpecError("wiki must be a host name like en.wikipedia.org")
        after, times = data.get("after", 0), data.get("times")
        if isinstance(after, bool) or not isinstance(after, int) or after < 0:
            raise FaultSpecError("after must be a whole number >= 0")
        if times is not None and (
            isinstance(times, bool) or not isinstance(times, int) or times < 1
        ):
            raise FaultSpecError("times must be a whole number >= 1 (or null: until changed)")
        return cls(mode=mode, delay_s=float(delay), wiki=wiki, after=after, times=times)

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"mode": self.mode.value}


class FaultState:
    """The faults in force: one server-wide and one per wiki (a wiki's own wins). Thread-safe:
    tests set faults from their thread while the server's loop reads them."""

    def __init__(self, initial: Fault | None = None) -> None:
        self._lock = threading.Lock()
        self._global = initial or Fault()
        self._per_wiki: dict[str, Fault] = {}
        self._seen: dict[str | None, int] = {}
        self._fired: dict[str | None, int] = {}

    def set(self, fault: Fault) -> None:
        with self._lock:
            if fault.wiki is None:
                self._global = fault
                self._per_wiki.clear()
            elif fault.mode is FaultMode.NONE:
                self._per_wiki.pop(fault.wiki, None)
            else:
                self._per_wiki[fault.wiki] = fault
            self._seen[fault.wiki] = 0
            self._fired[fault.wiki] = 0

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "fault": self._global.to_json(),
                "wiki_faults": {w: f.to_json() for w, f in self._per_wiki.items()},
            }

    def take(self, wiki: str) -> Fault:
        """The fault for one request to `wiki` (counting it against `after` and `times`)."""
        with self._lock:
            key: str | None = wiki if wiki in self._per_wiki else None
            fault = self._per_wiki[wiki] if key is not None else self._global
            if fault.mode is FaultMode.NONE:
                return fault
            self._seen[key] = self._seen.get(key, 0) + 1
            if self._seen[key] <= fault.after:
                return Fault()
            self._fired[key] = self._fired.get(key, 0) + 1
            if fault.times is not None and self._fired[key] >= fault.times:
                if key is None:
                    self._global = Fault()
                else:
                    del self._per_wiki[key]
            return fault
