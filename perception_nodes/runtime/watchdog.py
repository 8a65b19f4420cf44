"""Silent-topic watchdog: say which inputs are silent when no synchronized set arrives.

message_filters drops messages without a word when publisher and subscriber QoS do not match or
stamps never fall within the slop; this turns that silence into a warning naming the topics.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Iterable


class SilentTopicWatchdog:
    """Tracks the last message per topic and the last synchronized set (clock injected, seconds)."""

    def __init__(self, topics: Iterable[str], timeout_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if timeout_s <= 0:
            raise ValueError(f'timeout_s must be > 0, got {timeout_s}')
        self.topics = list(topics)
        self.timeout_s = float(timeout_s)
        self._clock = clock
        self._lock = threading.Lock()
        self._started = clock()
        self._last_message: dict[str, float | None] = {t: None for t in self.topics}
        self._last_set: float | None = None
        self._last_warning: float | None = None

    def message(self, topic: str) -> None:
        """Record that a message arrived on ``topic``."""
        with self._lock:
            self._last_message[topic] = self._clock()

    def synchronized(self) -> None:
        """Record that a complete synchronized set arrived."""
        with self._lock:
            self._last_set = self._clock()

    def silent_topics(self) -> list[str]:
        """Topics with no message within the timeout."""
        now = self._clock()
        with self._lock:
            return [t for t, last in self._last_message.items()
                    if (now - (self._started if last is None else last)) >= self.timeout_s]

    def problem(self) -> str | None:
        """Return the current problem, if no synchronized set arrived within the timeout.

        Not rate-limited.
        """
        now = self._clock()
        with self._lock:
            since = now - (self._started if self._last_set is None else self._last_set)
        if since < self.timeout_s:
            return None
        silent = self.silent_topics()
        what = 'since start' if self._last_set is None else f'for {since:.1f} s'
        if silent:
            return (f'no synchronized set {what}; silent topics: {", ".join(silent)} '
                    '(check that they are published and that the input QoS matches: '
                    "input_qos 'reliable' for bag playback, 'sensor_data' for drivers)")
        return (f'no synchronized set {what} although all inputs receive messages: '
                'stamps never fall within the slop (check slop, camera_time_offsets and use_sim_time)')

    def check(self) -> str | None:
        """``problem()``, but at most once per timeout period (for logging)."""
        problem = self.problem()
        if problem is None:
            return None
        now = self._clock()
        with self._lock:
            if self._last_warning is not None and now - self._last_warning < self.timeout_s:
                return None
            self._last_warning = now
        return problem
