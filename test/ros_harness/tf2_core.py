"""Stand-in for ``tf2_py`` (the compiled Python binding of tf2's ``BufferCore``).

Mirrors tf2's BufferCore as the Python layer (tf2_ros ``Buffer``) uses it: ``set_transform`` /
``set_transform_static`` (per child frame a time-sorted cache of parent + transform, kept for
``cache_time``; static transforms valid at every time), ``lookup_transform_core`` /
``lookup_transform_full_core`` / ``can_transform_core`` / ``can_transform_full_core`` (walk both frames up
to their common ancestor; time 0 means the latest time common to every dynamic link of the chain;
translation interpolated linearly, rotation by slerp; outside a link's cache: ExtrapolationException),
``clear``, ``all_frames_as_yaml`` / ``all_frames_as_string``, and tf2's exception classes and messages.
"""
from __future__ import annotations

import bisect
import threading
import types
from typing import Any

import numpy as np
from transforms3d.quaternions import qinverse, qmult, rotate_vector

DEFAULT_CACHE_NS = 10 * 10 ** 9


class TransformException(Exception):
    """Base of tf2's exceptions."""


class LookupException(TransformException):
    """A frame does not exist."""


class ConnectivityException(TransformException):
    """The frames are not part of the same tree."""


class ExtrapolationException(TransformException):
    """The requested time is outside the cached data."""


class InvalidArgumentException(TransformException):
    """A frame id or time argument is invalid."""


class TimeoutException(TransformException):
    """A wait for a transform timed out."""


def _time_ns(value: Any) -> int:
    """Accept rclpy Time/Duration (``nanoseconds``) or builtin_interfaces Time/Duration (sec, nanosec)."""
    if hasattr(value, 'nanoseconds'):
        return int(value.nanoseconds)
    return int(value.sec) * 10 ** 9 + int(value.nanosec)


def _slerp(q0: np.ndarray, q1: np.ndarray, t: float) -> np.ndarray:
    dot = float(np.dot(q0, q1))
    if dot < 0.0:
        q1, dot = -q1, -dot
    if dot > 0.9995:
        q = q0 + t * (q1 - q0)
        return q / np.linalg.norm(q)
    theta = np.arccos(dot)
    return (np.sin((1 - t) * theta) * q0 + np.sin(t * theta) * q1) / np.sin(theta)


class _Link:
    """The transforms of one child frame to its parent (wxyz quaternions)."""

    def __init__(self, static: bool) -> None:
        self.static = static
        self.stamps: list[int] = []
        self.samples: list[tuple[str, np.ndarray, np.ndarray, str]] = []   # parent, t, q, authority

    def insert(self, stamp: int, sample: tuple, cache_ns: int) -> None:
        if self.static:
            self.stamps, self.samples = [stamp], [sample]
            return
        i = bisect.bisect_left(self.stamps, stamp)
        if i < len(self.stamps) and self.stamps[i] == stamp:
            self.samples[i] = sample
        else:
            self.stamps.insert(i, stamp)
            self.samples.insert(i, sample)
        while self.stamps and self.stamps[0] < self.stamps[-1] - cache_ns:
            self.stamps.pop(0)
            self.samples.pop(0)

    def parent(self, stamp: int) -> str:
        if self.static or stamp == 0:
            return self.samples[-1][0]
        i = max(bisect.bisect_right(self.stamps, stamp) - 1, 0)
        return self.samples[i][0]

    def at(self, stamp: int, child: str) -> tuple[np.ndarray, np.ndarray]:
        if self.static:
            return self.samples[-1][1], self.samples[-1][2]
        if stamp == 0:
            return self.samples[-1][1], self.samples[-1][2]
        first, last = self.stamps[0], self.stamps[-1]
        if stamp < first or stamp > last:
            if len(self.stamps) == 1:
                raise ExtrapolationException(
                    f'Lookup would require extrapolation at time {stamp / 1e9:.9f}, but only time '
                    f'{first / 1e9:.9f} is in the buffer, when looking up transform from frame [{child}] to '
                    f'frame [{self.samples[-1][0]}]')
            direction, edge = ('past', first) if stamp < first else ('future', last)
            which = 'earliest' if direction == 'past' else 'latest'
            raise ExtrapolationException(
                f'Lookup would require extrapolation into the {direction}.  Requested time {stamp / 1e9:.9f} '
                f'but the {which} data is at time {edge / 1e9:.9f}, when looking up transform from frame '
                f'[{child}] to frame [{self.samples[-1][0]}]')
        i = bisect.bisect_left(self.stamps, stamp)
        if self.stamps[i] == stamp:
            return self.samples[i][1], self.samples[i][2]
        t0, t1 = self.stamps[i - 1], self.stamps[i]
        a, b = self.samples[i - 1], self.samples[i]
        r = (stamp - t0) / (t1 - t0)
        return a[1] + r * (b[1] - a[1]), _slerp(a[2], b[2], r)


class BufferCore:
    """tf2's ``BufferCore`` (the base class of tf2_ros ``Buffer``)."""

    def __init__(self, cache_time: Any = None) -> None:
        self._cache_ns = DEFAULT_CACHE_NS if cache_time is None else _time_ns(cache_time)
        self._links: dict[str, _Link] = {}
        self._lock = threading.RLock()

    # -- insertion ------------------------------------------------------------------------------------
    def set_transform(self, transform: Any, authority: str) -> bool:
        return self._set(transform, authority, static=False)

    def set_transform_static(self, transform: Any, authority: str) -> bool:
        return self._set(transform, authority, static=True)

    def _set(self, transform: Any, authority: str, static: bool) -> bool:
        parent = transform.header.frame_id.lstrip('/')
        child = transform.child_frame_id.lstrip('/')
        if not child or not parent:
            raise InvalidArgumentException('TF_NO_FRAME_ID: Ignoring transform from authority '
                                           f'"{authority}" because frame_id or child_frame_id is empty')
        if child == parent:
            raise InvalidArgumentException(
                f'TF_SELF_TRANSFORM: Ignoring transform from authority "{authority}" with frame_id and '
                f'child_frame_id "{child}" because they are the same')
        t = transform.transform.translation
        q = transform.transform.rotation
        values = np.array([t.x, t.y, t.z, q.w, q.x, q.y, q.z], dtype=float)
        if not np.all(np.isfinite(values)):
            raise InvalidArgumentException(
                f'TF_NAN_INPUT: Ignoring transform for child_frame_id "{child}" from authority '
                f'"{authority}" because of a nan value in the transform')
        quat = values[3:]
        if abs(np.linalg.norm(quat) - 1.0) > 10e-3:
            raise InvalidArgumentException(
                f'TF_DENORMALIZED_QUATERNION: Ignoring transform for child_frame_id "{child}" from '
                f'authority "{authority}" because of an invalid quaternion')
        with self._lock:
            link = self._links.get(child)
            if link is None or link.static != static:
                link = self._links[child] = _Link(static)
            link.insert(_time_ns(transform.header.stamp), (parent, values[:3], quat / np.linalg.norm(quat),
                                                           authority), self._cache_ns)
        return True

    def clear(self) -> None:
        with self._lock:
            self._links = {k: v for k, v in self._links.items() if v.static}
            for link in self._links.values():
                link.samples = link.samples[-1:]

    # -- queries ----------------------------------------------------------------------------------------
    def _frames(self) -> set[str]:
        return set(self._links) | {link.samples[-1][0] for link in self._links.values() if link.samples}

    def _check(self, frame: str, arg: str, call: str) -> None:
        if not frame:
            raise InvalidArgumentException(f'Invalid argument passed to {call} argument {arg} - frame_id '
                                           'cannot be empty')
        if frame.startswith('/'):
            raise InvalidArgumentException(f'Invalid argument "{frame}" passed to {call} argument {arg} - '
                                           "in tf2 frame_ids cannot start with a '/' like: ")
        if frame not in self._frames():
            raise LookupException(f'"{frame}" passed to {call} argument {arg} does not exist. ')

    def _chain(self, frame: str, stamp: int) -> list[str]:
        chain = [frame]
        while chain[-1] in self._links and self._links[chain[-1]].samples:
            parent = self._links[chain[-1]].parent(stamp)
            if parent in chain:
                raise LookupException(f'The tf tree is invalid because it contains a loop at {parent}')
            chain.append(parent)
        return chain

    def _common_time(self, frames: list[str]) -> int:
        stamps = [self._links[f].stamps[-1] for f in frames if f in self._links and not self._links[f].static]
        return min(stamps) if stamps else 0

    def _to_root(self, chain: list[str], stamp: int) -> tuple[np.ndarray, np.ndarray]:
        """Transform (t, q) taking points in chain[0] to chain[-1]."""
        t, q = np.zeros(3), np.array([1.0, 0.0, 0.0, 0.0])
        for child in chain[:-1]:
            lt, lq = self._links[child].at(stamp, child)
            t, q = lt + rotate_vector(t, lq), qmult(lq, q)
        return t, q

    def _lookup(self, target: str, source: str, stamp: int) -> tuple[np.ndarray, np.ndarray, int]:
        if target == source:
            return np.zeros(3), np.array([1.0, 0.0, 0.0, 0.0]), stamp
        source_chain, target_chain = self._chain(source, stamp), self._chain(target, stamp)
        common = next((f for f in source_chain if f in target_chain), None)
        if common is None:
            raise ConnectivityException(
                f"Could not find a connection between '{target}' and '{source}' because they are not part "
                'of the same tree.Tf has two or more unconnected trees.')
        source_chain = source_chain[:source_chain.index(common) + 1]
        target_chain = target_chain[:target_chain.index(common) + 1]
        if stamp == 0:
            stamp = self._common_time(source_chain[:-1] + target_chain[:-1])
        ts, qs = self._to_root(source_chain, stamp)
        tt, qt = self._to_root(target_chain, stamp)
        qi = qinverse(qt)
        return rotate_vector(ts - tt, qi), qmult(qi, qs), stamp

    def _message(self, target: str, source: str, t: np.ndarray, q: np.ndarray, stamp: int) -> Any:
        from geometry_msgs.msg import TransformStamped
        out = TransformStamped()
        out.header.frame_id = target
        out.header.stamp.sec, out.header.stamp.nanosec = divmod(int(stamp), 10 ** 9)
        out.child_frame_id = source
        tr, rot = out.transform.translation, out.transform.rotation
        tr.x, tr.y, tr.z = (float(v) for v in t)
        rot.w, rot.x, rot.y, rot.z = (float(v) for v in q)
        return out

    def lookup_transform_core(self, target_frame: str, source_frame: str, time: Any) -> Any:
        with self._lock:
            self._check(target_frame, 'target_frame', 'lookupTransform')
            self._check(source_frame, 'source_frame', 'lookupTransform')
            t, q, stamp = self._lookup(target_frame, source_frame, _time_ns(time))
            return self._message(target_frame, source_frame, t, q, stamp)

    def lookup_transform_full_core(self, target_frame: str, target_time: Any, source_frame: str,
                                   source_time: Any, fixed_frame: str) -> Any:
        with self._lock:
            for frame, arg in ((target_frame, 'target_frame'), (source_frame, 'source_frame'),
                               (fixed_frame, 'fixed_frame')):
                self._check(frame, arg, 'lookupTransform')
            t1, q1, _ = self._lookup(fixed_frame, source_frame, _time_ns(source_time))
            t2, q2, stamp = self._lookup(target_frame, fixed_frame, _time_ns(target_time))
            return self._message(target_frame, source_frame, t2 + rotate_vector(t1, q2), qmult(q2, q1), stamp)

    def can_transform_core(self, target_frame: str, source_frame: str, time: Any) -> tuple[bool, str]:
        try:
            self.lookup_transform_core(target_frame, source_frame, time)
        except TransformException as exc:
            return False, str(exc)
        return True, ''

    def can_transform_full_core(self, target_frame: str, target_time: Any, source_frame: str,
                                source_time: Any, fixed_frame: str) -> tuple[bool, str]:
        try:
            self.lookup_transform_full_core(target_frame, target_time, source_frame, source_time, fixed_frame)
        except TransformException as exc:
            return False, str(exc)
        return True, ''

    def all_frames_as_yaml(self) -> str:
        with self._lock:
            lines = []
            for child, link in sorted(self._links.items()):
                first, last = (link.stamps[0], link.stamps[-1]) if link.stamps else (0, 0)
                lines += [f'{child}: ', f"  parent: '{link.samples[-1][0]}'",
                          f'  broadcaster: \'{link.samples[-1][3]}\'',
                          f'  rate: {"10000.000" if link.static else "0.000"}',
                          f'  most_recent_transform: {last / 1e9:.6f}',
                          f'  oldest_transform: {first / 1e9:.6f}',
                          f'  buffer_length: {(last - first) / 1e9:.3f}']
            return '\n'.join(lines) + ('\n' if lines else '')

    def all_frames_as_string(self) -> str:
        with self._lock:
            return ''.join(f'Frame {c} exists with parent {link.samples[-1][0]}.\n'
                           for c, link in sorted(self._links.items()))


def build_module() -> types.ModuleType:
    """Return a ``tf2_py`` module object."""
    m = types.ModuleType('tf2_py', __doc__)
    for cls in (BufferCore, TransformException, LookupException, ConnectivityException,
                ExtrapolationException, InvalidArgumentException, TimeoutException):
        setattr(m, cls.__name__, cls)
    m.__all__ = [n for n in vars(m) if not n.startswith('_')]
    return m
