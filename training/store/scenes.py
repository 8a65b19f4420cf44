"""Scenes: K consecutive sweeps accumulated into one cloud with their tf poses (indoor methods run on them).

Sweep k's points are moved into the first sweep's sensor frame with the poses of the bag's tf through a
fixed frame (``inputs.fixed_frame``, e.g. ``odom`` or ``map``; ``BagSource.lookup``)::

    T_ref_k = T(fixed <- ref at t_ref)^-1 · T(fixed <- sweep k at t_k)

then voxel-downsampled: the first point of every occupied voxel of edge ``voxel_size`` (sweeps in order,
points in cloud order: deterministic) is kept and remembers its sweep. The scene's cameras are every
sweep's cameras, each moved to the reference frame (``T_cam_ref = T_cam_k · T_k_ref``), so the perception
pipeline projects the scene into all of them (one visibility test over the denser cloud) and the teacher
sees each image once. Per-point synthetic truth (``truth['visible']``) is per sweep and is dropped.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from perception_nodes.frame import CameraView, Frame


@dataclass
class Scene:
    """An accumulated scene: the frame (points in the first sweep's frame) and each point's origin."""

    frame: Frame
    sweep: np.ndarray           # (N,) int64: index (0..K-1) of the sweep the point comes from
    source_index: np.ndarray    # (N,) int64: the point's index in its sweep


def first_in_voxel(points: np.ndarray, voxel_size: float) -> np.ndarray:
    """Sorted indices of the first point of every occupied voxel (all points when ``voxel_size`` is 0)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if not voxel_size or len(pts) == 0:
        return np.arange(len(pts))
    cells = np.floor(pts / float(voxel_size)).astype(np.int64)
    cells -= cells.min(axis=0)
    dims = cells.max(axis=0) + 1
    key = (cells[:, 0] * dims[1] + cells[:, 1]) * dims[2] + cells[:, 2]
    _, first = np.unique(key, return_index=True)
    return np.sort(first)


def accumulate(frames: Sequence[Frame], poses: Sequence[np.ndarray], voxel_size: float) -> Scene:
    """Accumulate ``frames`` (with ``poses`` = T_fixed_sweep, one (4, 4) each) into a :class:`Scene`."""
    if not frames or len(frames) != len(poses):
        raise ValueError(f'{len(frames)} sweeps with {len(poses)} poses: need one pose per sweep, and a '
                         f'sweep')
    T_fixed_ref = np.asarray(poses[0], dtype=np.float64)
    T_ref_fixed = np.linalg.inv(T_fixed_ref)
    pts, inten, labels, inst, sweep, index, views = [], [], [], [], [], [], []
    has_labels = all(f.labels is not None for f in frames)
    has_inst = all(f.instances is not None for f in frames)
    for k, (frame, T_fixed_k) in enumerate(zip(frames, poses)):
        T_ref_k = T_ref_fixed @ np.asarray(T_fixed_k, dtype=np.float64)
        p = frame.points.astype(np.float64) @ T_ref_k[:3, :3].T + T_ref_k[:3, 3]
        pts.append(p.astype(np.float32))
        inten.append(frame.intensity if frame.intensity is not None
                     else np.zeros(frame.num_points, np.float32))
        if has_labels:
            labels.append(np.asarray(frame.labels))
        if has_inst:
            inst.append(np.asarray(frame.instances))
        sweep.append(np.full(frame.num_points, k, dtype=np.int64))
        index.append(np.arange(frame.num_points, dtype=np.int64))
        T_k_ref = np.linalg.inv(T_ref_k)
        for v in frame.cameras:
            truth = {name: value for name, value in v.truth.items() if name != 'visible'}
            views.append(CameraView(name=v.name, image=v.image, model=v.model,
                                    T_cam_lidar=v.T_cam_lidar @ T_k_ref, stamp_ns=v.stamp_ns, truth=truth))
    points = np.concatenate(pts)
    keep = first_in_voxel(points, voxel_size)
    first = frames[0]
    frame = Frame(stamp_ns=first.stamp_ns, frame_id=first.frame_id, points=points[keep],
                  intensity=np.concatenate(inten).astype(np.float32)[keep], cameras=views,
                  labels=np.concatenate(labels)[keep] if has_labels else None,
                  instances=np.concatenate(inst)[keep] if has_inst else None, index=first.index,
                  missing_cameras=sorted({c for f in frames for c in f.missing_cameras}))
    return Scene(frame, np.concatenate(sweep)[keep], np.concatenate(index)[keep])
