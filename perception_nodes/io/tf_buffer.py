"""A ROS-free tf2 buffer: /tf and /tf_static transforms with time lookup.

Every frame has one parent (a tree, as in tf2). An edge ``parent -> child`` stores
``T_parent_child`` (maps child-frame points into the parent frame), the transform a
``geometry_msgs/TransformStamped`` with ``header.frame_id = parent`` carries. Static edges are
time-independent; dynamic edges keep ``cache_ns`` of history and are interpolated between the two
bracketing samples: translation linearly, rotation by slerp (transforms3d quaternions, w-x-y-z order;
ROS messages are x-y-z-w). Lookups outside an edge's history fail with :class:`TransformError` unless
within ``tolerance_ns`` of its first/last sample (then that sample is used).
"""
from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from transforms3d import quaternions as tq

from perception_nodes.io.messages import MessageTypes, default_message_types
from perception_nodes.io.stamps import header, stamp_to_ns

__all__ = ['TransformError', 'TransformBuffer', 'TfAddResult', 'transform_from_msg', 'slerp',
           'transform_stamped_msg', 'tf_message']

DEFAULT_CACHE_NS = 10_000_000_000


class TransformError(LookupError):
    """A transform is missing, too old, or would need extrapolation."""


def slerp(q0: np.ndarray, q1: np.ndarray, t: float) -> np.ndarray:
    """Spherical linear interpolation of unit quaternions (w, x, y, z), shortest arc: q0 (q0^-1 q1)^t."""
    q0 = np.asarray(q0, dtype=np.float64)
    q1 = np.asarray(q1, dtype=np.float64)
    if np.dot(q0, q1) < 0:
        q1 = -q1
    delta = tq.qmult(tq.qconjugate(q0), q1)
    if abs(delta[0]) >= 1.0 - 1e-15:      # (nearly) the same rotation
        return q0
    q = tq.qmult(q0, tq.qpow(delta, t))
    return q / np.linalg.norm(q)


def _matrix(translation: np.ndarray, quat_wxyz: np.ndarray) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = tq.quat2mat(quat_wxyz)
    out[:3, 3] = translation
    return out


def _normalized(quat_wxyz: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(quat_wxyz))
    if not np.isfinite(norm) or norm < 1e-6:
        raise ValueError(f'invalid rotation quaternion {quat_wxyz.tolist()} (w, x, y, z)')
    return quat_wxyz / norm


def _to_tq(value: Any) -> tuple[np.ndarray, np.ndarray]:
    """Convert a (4, 4) matrix, a (7,) [tx, ty, tz, qx, qy, qz, qw] or a (translation, quat_xyzw) pair."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        t = np.asarray(value[0], dtype=np.float64).reshape(3)
        x, y, z, w = np.asarray(value[1], dtype=np.float64).reshape(4)
        return t, _normalized(np.array([w, x, y, z]))
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape == (7,):
        x, y, z, w = arr[3:]
        return arr[:3].copy(), _normalized(np.array([w, x, y, z]))
    if arr.shape == (4, 4):
        rot = arr[:3, :3]
        if not np.allclose(rot @ rot.T, np.eye(3), atol=1e-5) or np.linalg.det(rot) < 0:
            raise ValueError('transform matrix rotation part is not a proper rotation')
        if not np.allclose(arr[3], [0, 0, 0, 1]):
            raise ValueError(f'transform matrix last row is {arr[3].tolist()}, expected [0, 0, 0, 1]')
        return arr[:3, 3].copy(), _normalized(tq.mat2quat(rot))
    raise ValueError(f'expected a (4, 4) matrix, [t, q_xyzw] (7,) or (t, q_xyzw), got shape {arr.shape}')


def transform_from_msg(transform_stamped: Any) -> tuple[str, str, int, np.ndarray, np.ndarray]:
    """(parent, child, stamp_ns, translation, quat_wxyz) of a geometry_msgs/TransformStamped."""
    try:
        parent = str(transform_stamped.header.frame_id).lstrip('/')
        child = str(transform_stamped.child_frame_id).lstrip('/')
        stamp = stamp_to_ns(transform_stamped.header.stamp)
        tr, rot = transform_stamped.transform.translation, transform_stamped.transform.rotation
        t = np.array([tr.x, tr.y, tr.z], dtype=np.float64)
        q = _normalized(np.array([rot.w, rot.x, rot.y, rot.z], dtype=np.float64))
    except (AttributeError, TypeError) as exc:
        raise ValueError(f'not a TransformStamped: {exc}') from None
    if not parent or not child:
        raise ValueError(f'transform with empty frame id: parent {parent!r}, child {child!r}')
    if parent == child:
        raise ValueError(f'transform from frame {parent!r} to itself')
    if not np.all(np.isfinite(t)):
        raise ValueError(f'transform {parent} -> {child} has a non-finite translation')
    return parent, child, stamp, t, q


@dataclass(frozen=True, eq=False)
class TfAddResult:
    """What :meth:`TransformBuffer.add_tf_message` did: ``accepted`` count, ``rejected`` (index, reason).

    Compares equal to an ``int`` as its accepted count (``buf.add_tf_message(m, True) == 2``).
    """

    accepted: int
    rejected: tuple[tuple[int, str], ...] = ()

    def __int__(self) -> int:
        return self.accepted

    def __index__(self) -> int:
        return self.accepted

    def __eq__(self, other: object) -> bool:
        if isinstance(other, TfAddResult):
            return (self.accepted, self.rejected) == (other.accepted, other.rejected)
        if isinstance(other, int) and not isinstance(other, bool):
            return self.accepted == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.accepted, self.rejected))


@dataclass
class _Edge:
    parent: str
    static: bool
    stamps: list[int] = field(default_factory=list)
    values: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)


class TransformBuffer:
    """Transforms between frames over time (the subset of tf2's ``Buffer`` offline tools need)."""

    def __init__(self, cache_ns: int = DEFAULT_CACHE_NS) -> None:
        self.cache_ns = int(cache_ns)
        self._edges: dict[str, _Edge] = {}

    # -- filling ----------------------------------------------------------------------------
    def add_tf_message(self, msg: Any, static: bool) -> TfAddResult:
        """Add every valid transform of a tf2_msgs/TFMessage, each on its own.

        A malformed transform (NaN or zero quaternion, non-finite translation, empty or equal frame
        ids, a loop in the tree, not a TransformStamped) is skipped with its reason and does not affect
        the others. Returns a :class:`TfAddResult` (accepted count, rejected ``(index, reason)``).
        Raises ValueError only when ``msg`` is not a TFMessage at all (no ``transforms`` sequence).
        """
        try:
            transforms = list(msg.transforms)
        except (AttributeError, TypeError) as exc:
            raise ValueError(f'not a TFMessage: {exc}') from None
        accepted = 0
        rejected: list[tuple[int, str]] = []
        for i, ts in enumerate(transforms):
            try:
                parent, child, stamp, t, q = transform_from_msg(ts)
                self._set(parent, child, t, q, stamp, static)
            except ValueError as exc:
                rejected.append((i, str(exc)))
            else:
                accepted += 1
        return TfAddResult(accepted, tuple(rejected))

    def set_transform(self, parent: str, child: str, matrix_or_quat: Any, stamp_ns: int = 0,
                      static: bool = False) -> None:
        """Set ``T_parent_child`` from a (4, 4) matrix, a (7,) [t, q_xyzw] or a (t, q_xyzw) pair."""
        parent, child = parent.lstrip('/'), child.lstrip('/')
        if not parent or not child or parent == child:
            raise ValueError(f'bad frame pair {parent!r} -> {child!r}')
        t, q = _to_tq(matrix_or_quat)
        self._set(parent, child, t, q, int(stamp_ns), static)

    def _set(self, parent: str, child: str, t: np.ndarray, q: np.ndarray, stamp: int, static: bool) -> None:
        edge = self._edges.get(child)
        if edge is None or edge.parent != parent or edge.static != static:
            if self._is_ancestor(child, parent):
                raise ValueError(f'transform {parent} -> {child} would create a loop in the tf tree')
            edge = self._edges[child] = _Edge(parent, static)
        if static:
            edge.stamps, edge.values = [stamp], [(t, q)]
            return
        i = bisect.bisect_left(edge.stamps, stamp)
        if i < len(edge.stamps) and edge.stamps[i] == stamp:
            edge.values[i] = (t, q)
        else:
            edge.stamps.insert(i, stamp)
            edge.values.insert(i, (t, q))
        oldest = edge.stamps[-1] - self.cache_ns
        cut = bisect.bisect_left(edge.stamps, oldest)
        if cut:
            del edge.stamps[:cut], edge.values[:cut]

    def _is_ancestor(self, frame: str, of: str) -> bool:
        node: str | None = of
        while node is not None:
            if node == frame:
                return True
            edge = self._edges.get(node)
            node = edge.parent if edge else None
        return False

    # -- queries ----------------------------------------------------------------------------
    @property
    def frames(self) -> list[str]:
        """Every frame known to the buffer."""
        return sorted(set(self._edges) | {e.parent for e in self._edges.values()})

    def _chain(self, frame: str) -> list[str]:
        chain = [frame]
        while frame in self._edges:
            frame = self._edges[frame].parent
            chain.append(frame)
        return chain

    def _edge_at(self, child: str, stamp_ns: int, tolerance_ns: int) -> np.ndarray:
        edge = self._edges[child]
        if edge.static:
            return _matrix(*edge.values[0])
        stamps = edge.stamps
        i = bisect.bisect_left(stamps, stamp_ns)
        if i < len(stamps) and stamps[i] == stamp_ns:
            return _matrix(*edge.values[i])
        if i == 0 or i == len(stamps):
            end = 0 if i == 0 else len(stamps) - 1
            if abs(stamps[end] - stamp_ns) <= tolerance_ns:
                return _matrix(*edge.values[end])
            when = 'before the oldest' if i == 0 else 'after the newest'
            raise TransformError(
                f'transform {edge.parent} -> {child} at {stamp_ns} ns is {when} sample '
                f'({stamps[end]} ns, {abs(stamps[end] - stamp_ns) / 1e9:.3f} s away; history '
                f'{stamps[0]}..{stamps[-1]} ns): extrapolation is not allowed'
                + (' (too old: beyond the buffer cache)' if i == 0 else ''))
        s0, s1 = stamps[i - 1], stamps[i]
        w = (stamp_ns - s0) / (s1 - s0)
        (t0, q0), (t1, q1) = edge.values[i - 1], edge.values[i]
        return _matrix(t0 + w * (t1 - t0), slerp(q0, q1, w))

    def latest_common_stamp(self, target_frame: str, source_frame: str) -> int:
        """Return the newest time at which every dynamic edge between the two frames has data.

        0 if all edges are static.
        """
        path = self._path(target_frame, source_frame)
        latest = [self._edges[c].stamps[-1] for c in path if not self._edges[c].static]
        return min(latest) if latest else 0

    def _path(self, target_frame: str, source_frame: str) -> list[str]:
        """Child frames of every edge on the path between the two frames."""
        for frame in (target_frame, source_frame):
            if frame not in self._edges and frame not in {e.parent for e in self._edges.values()}:
                raise TransformError(f'frame {frame!r} does not exist; known frames: {self.frames}')
        up_source, up_target = self._chain(source_frame), self._chain(target_frame)
        common = next((f for f in up_source if f in set(up_target)), None)
        if common is None:
            raise TransformError(f'frames {source_frame!r} and {target_frame!r} are not connected '
                                 f'(roots {up_source[-1]!r} and {up_target[-1]!r})')
        return up_source[:up_source.index(common)] + up_target[:up_target.index(common)]

    def lookup(self, target_frame: str, source_frame: str, stamp_ns: int | None = None,
               tolerance_ns: int = 0) -> np.ndarray:
        """(4, 4) ``T_target_source``: maps points in ``source_frame`` into ``target_frame`` at ``stamp_ns``.

        ``stamp_ns=None`` means the latest time all edges on the path share (tf2's time 0).
        """
        target_frame, source_frame = target_frame.lstrip('/'), source_frame.lstrip('/')
        if target_frame == source_frame:
            return np.eye(4)
        if stamp_ns is None:
            stamp_ns = self.latest_common_stamp(target_frame, source_frame)
        self._path(target_frame, source_frame)
        up_source, up_target = self._chain(source_frame), self._chain(target_frame)
        common = next(f for f in up_source if f in set(up_target))
        T_common_source = np.eye(4)
        for child in up_source[:up_source.index(common)]:
            T_common_source = self._edge_at(child, stamp_ns, tolerance_ns) @ T_common_source
        T_common_target = np.eye(4)
        for child in up_target[:up_target.index(common)]:
            T_common_target = self._edge_at(child, stamp_ns, tolerance_ns) @ T_common_target
        return np.linalg.inv(T_common_target) @ T_common_source

    def can_transform(self, target_frame: str, source_frame: str, stamp_ns: int | None = None,
                      tolerance_ns: int = 0) -> bool:
        try:
            self.lookup(target_frame, source_frame, stamp_ns, tolerance_ns)
        except TransformError:
            return False
        return True

    def add_transforms(self, items: Iterable[tuple[str, str, Any, int, bool]]) -> None:
        """Bulk :meth:`set_transform` from (parent, child, transform, stamp_ns, static) tuples."""
        for parent, child, transform, stamp, static in items:
            self.set_transform(parent, child, transform, stamp, static)


def transform_stamped_msg(parent: str, child: str, transform: Any, stamp_ns: int,
                          msgs: MessageTypes | None = None) -> Any:
    """Build a geometry_msgs/TransformStamped carrying ``T_parent_child`` (matrix, (7,) or (t, q_xyzw))."""
    msgs = msgs or default_message_types()
    t, (w, x, y, z) = _to_tq(transform)
    return msgs.new('geometry_msgs/msg/TransformStamped', header=header(parent, stamp_ns, msgs),
                    child_frame_id=child,
                    transform=msgs.new('geometry_msgs/msg/Transform',
                                       translation=msgs.new('geometry_msgs/msg/Vector3',
                                                            x=float(t[0]), y=float(t[1]), z=float(t[2])),
                                       rotation=msgs.new('geometry_msgs/msg/Quaternion', x=float(x),
                                                         y=float(y), z=float(z), w=float(w))))


def tf_message(transforms: Iterable[Any], msgs: MessageTypes | None = None) -> Any:
    """Build a tf2_msgs/TFMessage holding ``transforms`` (TransformStamped messages)."""
    return (msgs or default_message_types()).new('tf2_msgs/msg/TFMessage', transforms=list(transforms))
