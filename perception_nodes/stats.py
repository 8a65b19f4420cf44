"""Counters, skip records, input rates and per-stage latency (thread-safe, clock injected).

One object serves the frame assembler, the pipeline runners (``ovp replay`` / eval / pseudo-label) and the
nodes' diagnostics: every skipped message, frame or camera is counted under a reason and, for the first
:attr:`Stats.max_events` of them, recorded with where it happened, so a run's summary can name each one.
"""
from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from typing import Any, Callable

import numpy as np

# Reasons a whole frame (synchronized set) is skipped.
BAD_CLOUD = 'bad_cloud'
FRAME_FAILED = 'frame_failed'
# Reasons one camera is left out of a frame (the frame survives with the other cameras).
NO_IMAGE = 'camera/no_image'
NO_CAMERA_INFO = 'camera/no_camera_info'
BAD_CAMERA_INFO = 'camera/bad_camera_info'
NO_TRANSFORM = 'camera/no_transform'
BAD_IMAGE = 'camera/bad_image'
# Messages that could not be read (per topic, '<reason>/<topic>').
MALFORMED = 'malformed'
NONFINITE_POINTS = 'nonfinite_points'
BAD_GROUND_TRUTH = 'bad_ground_truth'
# Node-side counters.
SYNC_SETS = 'synchronized_sets'
FRAMES_PUBLISHED = 'frames_published'
BAD_QUERY = 'bad_query'
SYNC_RESETS = 'synchronizer_resets'

ERROR_COUNTERS = (BAD_CLOUD, FRAME_FAILED, NO_CAMERA_INFO, BAD_CAMERA_INFO, NO_TRANSFORM, BAD_IMAGE,
                  BAD_QUERY)


def percentiles(values: list[float] | np.ndarray) -> dict[str, float]:
    """p50 / p90 / p99 / mean / max of a list of milliseconds (empty -> {})."""
    if len(values) == 0:
        return {}
    v = np.asarray(values, dtype=np.float64)
    return {'p50': round(float(np.percentile(v, 50)), 3), 'p90': round(float(np.percentile(v, 90)), 3),
            'p99': round(float(np.percentile(v, 99)), 3), 'mean': round(float(v.mean()), 3),
            'max': round(float(v.max()), 3)}


class Stats:
    """Counts, the last problem and the first ``max_events`` records per run, rates and latencies."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, rate_window_s: float = 5.0,
                 latency_window: int | None = 50, max_events: int = 1000) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.rate_window_s = float(rate_window_s)
        self.max_events = int(max_events)
        self._counts: dict[str, int] = defaultdict(int)
        self._arrivals: dict[str, deque[float]] = defaultdict(deque)
        self._received: dict[str, int] = defaultdict(int)
        self._latency: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=latency_window))
        self.last_problem: dict[str, str] = {}
        self.events: list[dict[str, Any]] = []
        self.events_dropped = 0

    def count(self, name: str, n: int = 1, problem: str | None = None, where: str | None = None) -> None:
        """Add ``n`` to counter ``name``; ``problem`` (why) and ``where`` (frame / topic) are recorded."""
        with self._lock:
            self._counts[name] += n
            if problem:
                self.last_problem[name] = problem
                if len(self.events) < self.max_events:
                    self.events.append({'what': name, 'where': where or '', 'why': problem})
                else:
                    self.events_dropped += 1

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def arrived(self, topic: str) -> None:
        """Record that a message arrived on ``topic`` (for its rate and its total)."""
        now = self._clock()
        with self._lock:
            self._received[topic] += 1
            q = self._arrivals[topic]
            q.append(now)
            self._trim(q, now)

    def received(self, topic: str) -> int:
        with self._lock:
            return self._received.get(topic, 0)

    def rate(self, topic: str) -> float:
        """Messages per second on ``topic`` over the rate window (0 when fewer than two)."""
        now = self._clock()
        with self._lock:
            q = self._arrivals.get(topic)
            if not q:
                return 0.0
            self._trim(q, now)
            if len(q) < 2:
                return 0.0
            span = max(now - q[0], q[-1] - q[0])
            return (len(q) - 1) / span if span > 0 else 0.0

    def latency(self, stage: str, ms: float) -> None:
        with self._lock:
            self._latency[stage].append(float(ms))

    def latencies(self) -> dict[str, list[float]]:
        """Every kept latency sample per stage (ms)."""
        with self._lock:
            return {k: list(v) for k, v in self._latency.items()}

    def latency_summary(self) -> dict[str, tuple[float, float]]:
        """Map each stage to its (mean, max) in ms over the kept samples."""
        with self._lock:
            return {k: (sum(v) / len(v), max(v)) for k, v in self._latency.items() if v}

    def summary(self) -> dict[str, Any]:
        """JSON-ready: counts, latency percentiles, the recorded events."""
        with self._lock:
            counts = dict(sorted(self._counts.items()))
            events = list(self.events)
            dropped = self.events_dropped
            lat = {k: percentiles(list(v)) for k, v in self._latency.items()}
        out = {'counts': counts, 'latency_ms': lat, 'skipped': events}
        if dropped:
            out['skipped_not_listed'] = dropped
        return out

    def _trim(self, q: deque[float], now: float) -> None:
        while q and now - q[0] > self.rate_window_s:
            q.popleft()
