"""Bounded work under overload (ROS-free): a worker thread that only ever processes the newest item.

Subscription callbacks stay cheap (validate, pair, synchronise) and hand complete frames or frame
sets to ``LatestWorker.submit``. The worker runs inference on the newest one; an item that is
replaced before the worker takes it is *skipped* and returned to the caller, who counts it. So
inputs faster than inference never queue up (at most one item waits, one is in progress) and
latency stays bounded by about two processing times.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class LatestWorker:
    """Runs ``process(item)`` on one background thread for the newest submitted item only.

    ``on_error(exc, item)`` is called (on the worker thread) when ``process`` raises; the worker
    keeps serving. Counters: ``processed`` (calls that returned), ``errors``, ``skipped``, and
    ``outcomes`` (what each call returned, ``"error"`` for exceptions), all updated together with
    the busy flag under one lock, so ``snapshot()`` is consistent for frame accounting.
    """

    def __init__(
        self,
        process: Callable[[Any], None],
        on_error: Callable[[BaseException, Any], None],
        name: str = "bore_depth_worker",
    ):
        self._process = process
        self._on_error = on_error
        self._name = name
        self._cv = threading.Condition()
        self._item: Any = None
        self._has_item = False
        self._busy = False
        self._stop = False
        self._thread: threading.Thread | None = None
        self._stopped_thread: threading.Thread | None = None
        self.outcomes: dict = {}
        self.processed = 0
        self.errors = 0
        self.skipped = 0

    # ------------------------------------------------------------------ control
    def start(self) -> None:
        with self._cv:
            if self._thread is not None:
                return
            if not self.stopped():
                raise RuntimeError("the previous worker thread is still running")
            self._stop = False
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 60.0) -> Any:
        """Stop after the item in progress; return the waiting item (not processed), if any."""
        with self._cv:
            thread, self._thread = self._thread, None
            self._stop = True
            left = self._item if self._has_item else None
            self._item, self._has_item = None, False
            self._cv.notify_all()
        if thread is not None:
            thread.join(timeout)
            self._stopped_thread = thread
        return left

    def stopped(self) -> bool:
        """False while a stopped worker's thread is still finishing its item (stop timed out)."""
        return self._stopped_thread is None or not self._stopped_thread.is_alive()

    def discard(self) -> Any:
        """Remove and return the waiting item (None if nothing waits); not counted as skipped."""
        with self._cv:
            item = self._item if self._has_item else None
            self._item, self._has_item = None, False
            self._cv.notify_all()
        return item

    def snapshot(self) -> tuple[int, bool, dict]:
        """(items waiting, busy, outcome counts), read together."""
        with self._cv:
            return int(self._has_item), self._busy, dict(self.outcomes)

    @property
    def running(self) -> bool:
        return self._thread is not None

    # ------------------------------------------------------------------ work
    def submit(self, item: Any) -> Any:
        """Queue ``item`` as the newest; return the item it replaced (skipped), else None."""
        with self._cv:
            replaced = self._item if self._has_item else None
            if self._has_item:
                self.skipped += 1
            self._item, self._has_item = item, True
            self._cv.notify_all()
        return replaced

    def waiting(self) -> int:
        """Items waiting (0 or 1)."""
        return int(self._has_item)

    def busy(self) -> bool:
        return self._busy

    def wait_idle(self, timeout: float) -> bool:
        """Block until nothing waits and nothing is in progress (tests, in-process tools)."""
        with self._cv:
            return self._cv.wait_for(lambda: not self._has_item and not self._busy, timeout)

    def _run(self) -> None:
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._has_item or self._stop)
                if self._stop:
                    return
                item, self._item, self._has_item = self._item, None, False
                self._busy = True
            outcome = "error"
            try:
                result = self._process(item)
                outcome = "done" if result is None else result
            except Exception as e:  # noqa: BLE001 - a node must survive any bad frame
                try:
                    self._on_error(e, item)
                except Exception:  # noqa: BLE001
                    pass
            finally:
                with self._cv:
                    if outcome == "error":
                        self.errors += 1
                    else:
                        self.processed += 1
                    self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
                    self._busy = False
                    self._cv.notify_all()
