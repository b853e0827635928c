"""Locust's CSV files, read back: the progress of a run, and a run compared with a baseline.

The comparison is production's (inference-services test/locust/locustfile.py, `on_test_end`):
rows are matched by request name (the `Aggregated` row left out), and for each the % change of the
average response time, the median response time and the requests per second is
`round((new - old) * 100 / old, 1)`; a row is flagged when any change is at or above the threshold
(10 there). `regressions()` adds what a gate needs: a latency up, or a throughput down, by more
than a given percentage.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from sandbox.errors import RunError

AGGREGATED = "Aggregated"
THRESHOLD_PCT = 10.0  # production's print_rows_above_threshold(threshold_value=10)


@dataclass(frozen=True)
class Row:
    name: str
    requests: int
    failures: int
    median_ms: float
    average_ms: float
    rps: float


@dataclass(frozen=True)
class Change:
    name: str
    old: Row
    new: Row
    average_pct: float | None
    median_pct: float | None
    rps_pct: float | None

    def flagged(self, threshold: float) -> bool:
        """Production's rule: flagged unless every change is below the threshold."""
        return any(p is not None and p >= threshold for p in self.pcts())

    def pcts(self) -> tuple[float | None, float | None, float | None]:
        return (self.average_pct, self.median_pct, self.rps_pct)


def _number(value: str) -> float:
    try:
        return float(value) if value not in ("", "N/A") else 0.0
    except ValueError:
        return 0.0


def read_stats(path: Path) -> dict[str, Row]:
    """A locust `*_stats.csv`: request name -> its row (the Aggregated row included)."""
    try:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            needed = {"Name", "Request Count", "Failure Count", "Median Response Time"}
            needed |= {"Average Response Time", "Requests/s"}
            if not reader.fieldnames or not needed <= set(reader.fieldnames):
                raise RunError(f"{path} is not a locust stats CSV (columns: {sorted(needed)})")
            rows = {}
            for r in reader:
                rows[r["Name"]] = Row(
                    name=r["Name"],
                    requests=int(_number(r["Request Count"])),
                    failures=int(_number(r["Failure Count"])),
                    median_ms=_number(r["Median Response Time"]),
                    average_ms=_number(r["Average Response Time"]),
                    rps=_number(r["Requests/s"]),
                )
            return rows
    except OSError as e:
        raise RunError(f"cannot read {path}: {e.strerror}") from None


def percent_change(old: float, new: float) -> float | None:
    if old == 0 or math.isnan(old):
        return None
    return round((new - old) * 100 / old, 1)


def compare(baseline: dict[str, Row], run: dict[str, Row]) -> list[Change]:
    """The requests present in both, in the run's order, with production's % changes."""
    changes = []
    for name, new in run.items():
        old = baseline.get(name)
        if name == AGGREGATED or old is None:
            continue
        changes.append(
            Change(
                name=name,
                old=old,
                new=new,
                average_pct=percent_change(old.average_ms, new.average_ms),
                median_pct=percent_change(old.median_ms, new.median_ms),
                rps_pct=percent_change(old.rps, new.rps),
            )
        )
    return changes


def regressions(changes: list[Change], fail_over: float) -> list[str]:
    """Why the run regressed by more than `fail_over` %: latency up, or requests/s down."""
    found = []
    for c in changes:
        for label, pct, worse in (
            ("average latency", c.average_pct, 1),
            ("median latency", c.median_pct, 1),
            ("requests/s", c.rps_pct, -1),
        ):
            if pct is not None and pct * worse > fail_over:
                found.append(f"{c.name}: {label} {pct:+.1f}% (beyond --fail-over {fail_over:g}%)")
    return found


def _pct(p: float | None) -> str:
    return "n/a" if p is None else f"{p:+.1f}%"


def table(changes: list[Change], threshold: float, baseline_label: str) -> str:
    """The comparison as text: baseline → this run (% change) per measure, flagged rows marked."""
    head = ["request", "average ms", "median ms", "requests/s", ""]
    rows = [head]
    for c in changes:
        rows.append(
            [
                c.name,
                f"{c.old.average_ms:.1f} → {c.new.average_ms:.1f} ({_pct(c.average_pct)})",
                f"{c.old.median_ms:.0f} → {c.new.median_ms:.0f} ({_pct(c.median_pct)})",
                f"{c.old.rps:.2f} → {c.new.rps:.2f} ({_pct(c.rps_pct)})",
                f"⚠ ≥ {threshold:g}%" if c.flagged(threshold) else "✓",
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [f"compared with {baseline_label} (baseline → this run):"]
    for r in rows:
        lines.append("  " + "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)))
    flagged = [c.name for c in changes if c.flagged(threshold)]
    if flagged:
        lines.append(f"  {len(flagged)} request(s) changed by {threshold:g}% or more")
    else:
        lines.append(f"  every change is below {threshold:g}%")
    return "\n".join(lines).rstrip()


@dataclass(frozen=True)
class Progress:
    seconds: float
    users: int
    rps: float
    p50_ms: float
    p95_ms: float
    requests: int
    failures: int

    def line(self) -> str:
        return (
            f"  {self.seconds:5.0f}s  users {self.users}  {self.rps:7.1f} req/s  "
            f"p50 {self.p50_ms:.0f} ms  p95 {self.p95_ms:.0f} ms  "
            f"requests {self.requests}  failures {self.failures}"
        )


def read_history(path: Path) -> list[dict[str, str]]:
    """The Aggregated rows of a locust `*_stats_history.csv` (empty while it does not exist)."""
    try:
        with path.open(newline="") as f:
            return [r for r in csv.DictReader(f) if r.get("Name") == AGGREGATED]
    except OSError:
        return []


def latest_progress(path: Path) -> Progress | None:
    rows = read_history(path)
    if not rows or _number(rows[-1]["Total Request Count"]) == 0:
        return None
    first, last = rows[0], rows[-1]
    return Progress(
        seconds=_number(last["Timestamp"]) - _number(first["Timestamp"]),
        users=int(_number(last["User Count"])),
        rps=_number(last["Requests/s"]),
        p50_ms=_number(last["50%"]),
        p95_ms=_number(last["95%"]),
        requests=int(_number(last["Total Request Count"])),
        failures=int(_number(last["Total Failure Count"])),
    )
