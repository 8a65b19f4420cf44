"""Counters, input rates and per-stage latency of a running node (thread-safe, clock injected)."""
from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from typing import Callable

# Counter names used by the node cores (others may be added freely).
BAD_CLOUD = 'bad_cloud'
BAD_IMAGE = 'bad_image'
MISSING_CAMERA_INFO = 'missing_camera_info'
BAD_CAMERA_INFO = 'bad_camera_info'
TF_FAILURES = 'tf_failures'
SYNC_SETS = 'synchronized_sets'
FRAMES_SKIPPED = 'frames_skipped'
FRAMES_PUBLISHED = 'frames_published'
PIPELINE_ERRORS = 'pipeline_errors'
BAD_QUERY = 'bad_query'

ERROR_COUNTERS = (BAD_CLOUD, BAD_IMAGE, MISSING_CAMERA_INFO, BAD_CAMERA_INFO, TF_FAILURES, PIPELINE_ERRORS,
                  BAD_QUERY)


class RuntimeStats:
    """What diagnostics report: counts, message rates over a window, latency per stage."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, rate_window_s: float = 5.0,
                 latency_window: int = 50) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.rate_window_s = float(rate_window_s)
        self._counts: dict[str, int] = defaultdict(int)
        self._arrivals: dict[str, deque[float]] = defaultdict(deque)
        self._received: dict[str, int] = defaultdict(int)
        self._latency: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=latency_window))
        self.last_problem: dict[str, str] = {}

    def count(self, name: str, n: int = 1, problem: str | None = None) -> None:
        """Add to a counter; ``problem`` (e.g. the exception text) is kept for diagnostics."""
        with self._lock:
            self._counts[name] += n
            if problem:
                self.last_problem[name] = problem

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
        """Messages that arrived on ``topic`` since start."""
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

    def latency_summary(self) -> dict[str, tuple[float, float]]:
        """Map each stage to its (mean, max) in ms over the recent frames."""
        with self._lock:
            return {k: (sum(v) / len(v), max(v)) for k, v in self._latency.items() if v}

    def _trim(self, q: deque[float], now: float) -> None:
        while q and now - q[0] > self.rate_window_s:
            q.popleft()
