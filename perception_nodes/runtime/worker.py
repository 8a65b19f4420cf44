"""Keep-latest processing off the subscription callbacks.

The subscription side calls ``submit``; one worker thread processes the newest item only. An item
that is replaced before the worker gets to it is dropped and counted (``replaced``); one that waited
longer than ``max_age_s`` is dropped and counted (``too_old``). At most one item waits and one is
processed, so latency never grows without bound whatever the input rate.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Generic, TypeVar

T = TypeVar('T')


@dataclass
class WorkerCounts:
    """What happened to submitted items (submitted = processed + errors + dropped + pending)."""

    submitted: int = 0
    processed: int = 0
    errors: int = 0
    replaced: int = 0        # a newer item arrived before this one was started
    too_old: int = 0         # waited longer than max_age_s

    @property
    def dropped(self) -> int:
        return self.replaced + self.too_old


class KeepLatestWorker(Generic[T]):
    """A one-slot mailbox and a worker thread (or ``run_once`` calls when driven by hand)."""

    def __init__(self, process: Callable[[T], None], *, max_age_s: float = 0.0,
                 clock: Callable[[], float] = time.monotonic,
                 on_error: Callable[[BaseException, T], None] | None = None,
                 name: str = 'keep-latest-worker') -> None:
        self._process = process
        self.max_age_s = float(max_age_s)
        self._clock = clock
        self._on_error = on_error
        self._name = name
        self._cond = threading.Condition()
        self._pending: tuple[T, float] | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._busy = False
        self.counts = WorkerCounts()

    @property
    def pending(self) -> bool:
        with self._cond:
            return self._pending is not None

    @property
    def busy(self) -> bool:
        with self._cond:
            return self._busy

    def submit(self, item: T) -> None:
        """Offer an item; a not-yet-started older item is dropped (counted as replaced)."""
        with self._cond:
            self.counts.submitted += 1
            if self._pending is not None:
                self.counts.replaced += 1
            self._pending = (item, self._clock())
            self._cond.notify_all()

    def clear_pending(self) -> bool:
        """Drop the item waiting (counted as replaced); True if there was one."""
        with self._cond:
            if self._pending is None:
                return False
            self._pending = None
            self.counts.replaced += 1
            self._cond.notify_all()
            return True

    def run_once(self, timeout: float | None = 0.0) -> bool:
        """Process the pending item if any (waiting up to ``timeout`` s; None = forever).

        Returns True when an item was taken (processed, failed or dropped as too old).
        """
        with self._cond:
            if self._pending is None and timeout != 0.0:
                self._cond.wait_for(lambda: self._pending is not None or self._stopping, timeout)
            if self._pending is None:
                return False
            item, received = self._pending
            self._pending = None
            if self.max_age_s > 0 and self._clock() - received > self.max_age_s:
                self.counts.too_old += 1
                return True
            self._busy = True
        try:
            self._process(item)
        except Exception as exc:  # the worker must survive anything one frame does
            with self._cond:
                self.counts.errors += 1
            if self._on_error is not None:
                self._on_error(exc, item)
        else:
            with self._cond:
                self.counts.processed += 1
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()
        return True

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until nothing is pending or running (for tests and shutdown)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._pending is None and not self._busy, timeout)

    def start(self) -> None:
        """Run ``run_once`` in a daemon thread until ``stop``."""
        if self._thread is not None:
            return
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 5.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        while True:
            with self._cond:
                if self._stopping:
                    return
            self.run_once(timeout=0.5)
