"""LiDAR -> camera extrinsics from a transform lookup, with a cache for rigid (static) mounts."""
from __future__ import annotations

import threading
from typing import Any, Callable

import numpy as np
from transforms3d.quaternions import quat2mat

# (target_frame, source_frame, stamp_ns) -> (4, 4) matrix mapping source-frame points to target frame.
Lookup = Callable[[str, str, int], np.ndarray]


class TransformUnavailable(Exception):
    """No transform between two frames at the requested stamp."""


def transform_to_matrix(transform: Any) -> np.ndarray:
    """(4, 4) float64 of a geometry_msgs Transform or TransformStamped (duck-typed)."""
    t = getattr(transform, 'transform', transform)
    q = t.rotation
    norm = float(np.sqrt(q.w * q.w + q.x * q.x + q.y * q.y + q.z * q.z))
    if not np.isfinite(norm) or norm < 1e-9:
        raise ValueError(f'transform rotation is not a valid quaternion: {(q.x, q.y, q.z, q.w)}')
    m = np.eye(4)
    m[:3, :3] = quat2mat([q.w / norm, q.x / norm, q.y / norm, q.z / norm])
    m[:3, 3] = [t.translation.x, t.translation.y, t.translation.z]
    if not np.all(np.isfinite(m)):
        raise ValueError('transform translation is not finite')
    return m


class ExtrinsicsCache:
    """``get(target, source, stamp_ns)`` through ``lookup``; with ``static`` the first answer is kept."""

    def __init__(self, lookup: Lookup, static: bool = True) -> None:
        self._lookup = lookup
        self.static = static
        self._cache: dict[tuple[str, str], np.ndarray] = {}
        self._lock = threading.Lock()
        self.lookups = 0

    def get(self, target: str, source: str, stamp_ns: int) -> np.ndarray:
        """Return the (4, 4) transform taking ``source`` points into ``target``.

        Raises TransformUnavailable if there is none.
        """
        if target == source:
            return np.eye(4)
        key = (target, source)
        if self.static:
            with self._lock:
                cached = self._cache.get(key)
            if cached is not None:
                return cached.copy()
        self.lookups += 1
        try:
            matrix = np.asarray(self._lookup(target, source, stamp_ns), dtype=np.float64)
        except TransformUnavailable:
            raise
        except Exception as exc:  # tf2 raises LookupException, ExtrapolationException, ...
            raise TransformUnavailable(f'no transform {source!r} -> {target!r} at {stamp_ns} ns: '
                                       f'{type(exc).__name__}: {exc}') from exc
        if matrix.shape != (4, 4) or not np.all(np.isfinite(matrix)):
            raise TransformUnavailable(f'transform {source!r} -> {target!r} is not a finite 4x4 matrix')
        if self.static:
            with self._lock:
                self._cache[key] = matrix.copy()
        return matrix

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()
