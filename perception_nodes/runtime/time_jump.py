"""Detect time going backwards (``ros2 bag play --loop``): from input stamps and from clock jumps (ROS-free).

message_filters' ApproximateTimeSynchronizer keeps, per topic, the newest ``queue_size`` stamps and evicts
the lowest first; after a bag loops, the stale high stamps of the previous pass stay queued and every new
(lower) message is evicted at once, so no set forms again. tf2's buffer clears itself when the ROS clock
jumps back by more than 1 s; the node does the same for its synchronizer and its keep-latest worker, and
also when only the stamps go back (a bag played without ``--clock``).

Per topic, a stamp more than ``threshold_ns`` behind that topic's previous stamp is a jump. A reset forgets
every topic's history, so the other topics' first messages of the new pass do not count as a second jump
(their previous stamps belong to the old pass). A backward clock jump resets only when stamps of the old
pass are still known (a stamp-triggered reset already happened otherwise).
"""
from __future__ import annotations

import threading

DEFAULT_THRESHOLD_NS = 1_000_000_000       # tf2_ros.Buffer: min_backward = -1 s


class TimeJumpDetector:
    """``stamp(topic, ns)`` / ``clock(now_ns)`` return a reason string when a reset is due, else None."""

    def __init__(self, threshold_ns: int = DEFAULT_THRESHOLD_NS) -> None:
        if threshold_ns <= 0:
            raise ValueError(f'threshold_ns must be > 0, got {threshold_ns}')
        self.threshold_ns = int(threshold_ns)
        self._last: dict[str, int] = {}
        self._lock = threading.Lock()

    def stamp(self, topic: str, ns: int) -> str | None:
        """Record the stamp of a message (minus any camera time offset); return a reason if it went back."""
        with self._lock:
            last = self._last.get(topic)
            if last is not None and ns < last - self.threshold_ns:
                self._last = {topic: ns}
                return f'{topic}: stamp went back {(last - ns) / 1e9:.3f} s'
            self._last[topic] = ns if last is None else max(last, ns)
            return None

    def clock(self, now_ns: int) -> str | None:
        """Handle a clock jump back to ``now_ns``: a reason if stamps of the old pass are still known."""
        with self._lock:
            newest = max(self._last.values(), default=None)
            if newest is None or newest <= now_ns + self.threshold_ns:
                return None
            self._last = {}
            return f'clock jumped back to {now_ns / 1e9:.3f} s, {(newest - now_ns) / 1e9:.3f} s before the ' \
                'newest input'

    def forget(self) -> None:
        with self._lock:
            self._last = {}
