"""The `ml-sandbox dev` loop: roll the isvc, send its samples, wait for a save, again.

Each roll is the target's own `up` (the new version beside the old, the route switched once it
is ready, the old one retired; a version that does not become ready is stopped and the old one
keeps serving), so `dev` rolls exactly as `up` does, on every target:

- local: each component forked from a warm zygote of its venv (`zygotes`);
- docker: the image rebuilt (its content-hash tag; cached layers), new containers beside the old;
- minikube: the image rebuilt in the node's daemon under a new content tag, and the
  InferenceService applied with it, which rolls a new Knative revision.

A requirements change makes `up` build the new venv (and the zygote of it); a service.yaml change
is re-read (an invalid one is reported and the running version kept); a change in the model's
build folder makes `up` build the model again. Ctrl-C (or SIGTERM, SIGHUP) stops what `dev`
started: the isvc on its target, the gateway and replay server when nothing else uses them, and
the zygotes.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox import catalog
from sandbox.catalog import Service
from sandbox.dev.watched import Watched, classify, watched
from sandbox.errors import SandboxError
from sandbox.runtime import smoke
from sandbox.runtime.lifecycle import signals_interrupt
from sandbox.runtime.options import UpOptions
from sandbox.runtime.targets import Target

# watchfiles yields a batch once no new change came for STEP_MS (an editor's save is a few
# events in a row).
STEP_MS = 30


@dataclass
class Roll:
    number: int
    kind: str
    ok: bool
    seconds: float
    failed_samples: int = 0


@dataclass
class DevLoop:
    service: Service
    target: Target
    opts: UpOptions
    out: Any = field(default_factory=lambda: sys.stdout)
    rolls: list[Roll] = field(default_factory=list)

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def roll(self, kind: str, paths: Iterable[Path] = ()) -> Roll:
        names = ", ".join(p.name for p in paths)
        self.say(f"\n⟳ roll {len(self.rolls) + 1} ({kind}{': ' + names if names else ''})")
        started = time.monotonic()
        try:
            self.target.up([self.service], self.opts)
        except SandboxError as e:
            roll = Roll(len(self.rolls) + 1, kind, False, time.monotonic() - started)
            self.say(f"✗ the new version did not take over; the previous one keeps serving.\n{e}")
        else:
            roll = Roll(len(self.rolls) + 1, kind, True, time.monotonic() - started)
            self.say(f"✓ serving the new version ({roll.seconds:.2f}s); samples:")
            try:
                roll.failed_samples = smoke.run_on(self.target, [self.service])
            except SandboxError as e:
                self.say(f"✗ samples: {e}")
                roll.failed_samples = len(self.service.samples)
        self.rolls.append(roll)
        return roll

    def reload(self) -> bool:
        """Re-read the service.yaml; False (and the error shown) when it is not valid."""
        try:
            fresh = catalog.load_file(self.service.dir / "service.yaml")
        except SandboxError as e:
            self.say(f"✗ {e}\n  (the running version keeps serving; save a fix)")
            return False
        self.service = fresh
        return True

    def run(
        self,
        changes: Callable[[Watched, threading.Event], Iterable[set[Path]]] | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        """Roll once, then on every batch of changes until Ctrl-C or `stop`."""
        stop = stop or threading.Event()
        changes = changes or watch_changes
        with signals_interrupt():
            self.roll("start")
            while not stop.is_set():
                w = watched(self.service)
                where = ", ".join(str(r) for r in w.roots())
                self.say(f"\n👀 watching {where} (Ctrl-C stops)")
                for batch in changes(w, stop):
                    kind, paths = classify(w, batch)
                    if kind is None:
                        continue
                    if kind == "service" and not self.reload():
                        continue
                    self.roll(kind, paths)
                    if kind in ("service", "requirements"):
                        break  # the files to watch may have changed: watch anew


def watch_changes(w: Watched, stop: threading.Event) -> Iterable[set[Path]]:
    import logging

    import watchfiles

    logging.getLogger("watchfiles").setLevel(logging.WARNING)  # not "1 change detected"

    for batch in watchfiles.watch(
        *w.roots(), step=STEP_MS, stop_event=stop, raise_interrupt=True, rust_timeout=500
    ):
        yield {Path(p) for _, p in batch}
