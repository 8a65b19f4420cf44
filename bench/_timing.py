"""What the bench scripts share: the one-busy-core load and the median timer.

Imported by the scripts as ``from _timing import ...`` (``python bench/x.py`` puts bench/ first on the
import path). "Loaded" everywhere means this: a pure-Python loop in a subprocess keeps one core busy, as
another process on a shared 2-core robot computer would, and ends by itself after ``seconds``.
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

BUSY = 'import time\nend = time.monotonic() + {seconds}\nx = 0\nwhile time.monotonic() < end:\n    x += 1\n'


def start_busy_core(seconds: float) -> subprocess.Popen:
    """Start the bounded busy loop (the caller kills and waits for it); 0.3 s for it to get going."""
    proc = subprocess.Popen([sys.executable, '-c', BUSY.format(seconds=float(seconds))])
    time.sleep(0.3)
    return proc


@contextmanager
def busy_core(seconds: float, enabled: bool = True) -> Iterator[None]:
    """Keep one core busy for the block (nothing when ``enabled`` is false)."""
    proc = start_busy_core(seconds) if enabled else None
    try:
        yield
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()


def median_ms(fn: Callable[[], Any], repeat: int) -> float:
    """Median wall time of ``fn()`` in milliseconds, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3
