"""Plot a locust run over time: latency percentiles above, requests/s and failures/s below.

    <load venv>/bin/python plot.py HISTORY.csv OUT.png TITLE

Run by the load test's own venv (locust's pins plus matplotlib), so this file uses the standard
library and matplotlib only (the sandbox package is not importable there). It reads the
`Aggregated` rows of locust's `*_stats_history.csv`.
"""

from __future__ import annotations

import csv
import sys

PERCENTILES = ("50%", "95%", "99%")


def _number(value: str) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None  # "N/A" before the first response


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: plot.py HISTORY.csv OUT.png TITLE", file=sys.stderr)
        return 2
    history, out, title = argv
    with open(history, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("Name") == "Aggregated"]
    if not rows:
        print(f"plot.py: {history} has no Aggregated rows", file=sys.stderr)
        return 1

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    start = float(rows[0]["Timestamp"])
    t = [float(r["Timestamp"]) - start for r in rows]
    fig, (lat, thr) = plt.subplots(2, 1, sharex=True, figsize=(9, 6), constrained_layout=True)
    for p in PERCENTILES:
        lat.plot(t, [_number(r[p]) for r in rows], label=f"p{p.rstrip('%')}")
    lat.set_ylabel("latency (ms)")
    lat.set_ylim(bottom=0)
    lat.legend(loc="upper left")
    lat.grid(alpha=0.3)
    lat.set_title(title)
    thr.plot(t, [_number(r["Requests/s"]) or 0.0 for r in rows], label="requests/s")
    thr.plot(t, [_number(r["Failures/s"]) or 0.0 for r in rows], label="failures/s", color="red")
    thr.set_ylabel("per second")
    thr.set_xlabel("seconds since start")
    thr.set_ylim(bottom=0)
    thr.legend(loc="upper left")
    thr.grid(alpha=0.3)
    users = thr.twinx()
    users.plot(t, [_number(r["User Count"]) or 0.0 for r in rows], color="grey", ls=":")
    users.set_ylabel("users", color="grey")
    users.set_ylim(bottom=0)
    fig.savefig(out, dpi=100)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
