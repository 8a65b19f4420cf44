"""POP-3D occupancy metrics on ray-cast voxel labels (POP-3D Sec. 4.1 "New evaluation protocol", Fig. 3).

Ground truth is the grid :func:`perception_nodes.geometry.occupancy.ray_cast_labels` produces: ``FREE``
(a LiDAR ray crossed the voxel), ``IGNORE`` (never observed), and for voxels holding returns either the
majority semantic label (>= 0) or ``OCCUPIED`` (class-agnostic casting, no labels). Ignored voxels are
never evaluated.

- **Class-agnostic occupancy IoU**: over observed voxels, ``TP / (TP + FP + FN)`` of the class "occupied"
  (free vs occupied; POP-3D Fig. 4b "IoU"). Precision and recall of "occupied" are reported too.
- **(classes + empty) mIoU**: a K+1-class confusion (the K semantic classes plus "empty" = index K) over
  observed voxels with a semantic ground truth: free voxels are "empty"; a voxel predicted unoccupied is
  predicted "empty"; a voxel predicted occupied carries its predicted class (or ``UNKNOWN_LABEL``, a miss,
  as in :mod:`perception_nodes.metrics.semantic`). The mean follows the semantic module's class-set rule
  (classes present in the ground truth), and ``miou_all`` the all-classes convention. Voxels labelled
  ``OCCUPIED`` (no class) count for the class-agnostic IoU only.
- **LiDAR mIoU** (POP-3D Sec. 4.2, Fig. 4a): point-wise semantic mIoU at the LiDAR points that project
  into a camera: :class:`LidarSemanticAccumulator`, a semantic accumulator whose ``update`` requires that
  mask.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from perception_nodes.geometry.occupancy import FREE, IGNORE, OCCUPIED
from perception_nodes.metrics._common import as_int_labels, as_mask, check_state, json_float
from perception_nodes.metrics.semantic import SemanticAccumulator, SemanticResult

EMPTY_NAME = 'empty'


@dataclass
class OccupancyResult:
    """Class-agnostic occupancy IoU and, when labels were given, the (classes + empty) semantic result."""

    iou: float                 # occupied-class IoU over observed voxels
    precision: float
    recall: float
    observed_voxels: int
    occupied_voxels: int       # observed voxels whose ground truth is occupied
    confusion: np.ndarray      # (2, 2): rows ground truth (free, occupied), columns prediction
    semantic: SemanticResult | None

    @property
    def miou(self) -> float:
        """(K+1)-class mIoU (classes + empty), NaN without semantic predictions."""
        return self.semantic.miou if self.semantic is not None else float('nan')

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        out: dict[str, Any] = {'iou': json_float(self.iou), 'precision': json_float(self.precision),
                               'recall': json_float(self.recall), 'observed_voxels': self.observed_voxels,
                               'occupied_voxels': self.occupied_voxels, 'confusion': self.confusion.tolist(),
                               'miou': json_float(self.miou)}
        if self.semantic is not None:
            out['semantic'] = self.semantic.to_dict()
        return out


class OccupancyAccumulator:
    """Streams ray-cast ground-truth grids and predicted occupancy (+ labels) per frame.

    ``class_names`` are the K semantic classes (index k = label k); the semantic part adds "empty" as
    class K. Without class names only the class-agnostic IoU is computed.
    """

    kind = 'occupancy'
    version = 1

    def __init__(self, class_names: Sequence[str] | None = None) -> None:
        self.class_names = [str(c) for c in class_names] if class_names is not None else None
        if self.class_names is not None and EMPTY_NAME in self.class_names:
            raise ValueError(f'a semantic class may not be called {EMPTY_NAME!r} (reserved for free space)')
        self.confusion = np.zeros((2, 2), dtype=np.int64)
        self.semantic = (SemanticAccumulator(class_names=self.class_names + [EMPTY_NAME])
                         if self.class_names is not None else None)

    @property
    def num_classes(self) -> int | None:
        """K (without "empty"), None when class-agnostic."""
        return len(self.class_names) if self.class_names is not None else None

    def update(self, gt: Any, occupied: Any, labels: Any | None = None) -> int:
        """Add one grid; returns the number of observed (evaluated) voxels.

        ``gt``: ray-cast labels (any shape); ``occupied``: predicted occupancy, bool, same size;
        ``labels``: predicted class per voxel (read where ``occupied``; ``UNKNOWN_LABEL`` allowed).
        """
        g = as_int_labels(gt, 'gt')
        occ = as_mask(occupied, g.size, 'occupied')
        k = self.num_classes
        in_range = (g >= 0) & (g < k) if k is not None else g >= 0
        valid = (g == FREE) | (g == IGNORE) | (g == OCCUPIED) | in_range
        if not valid.all():
            raise ValueError(f'gt values must be FREE ({FREE}), IGNORE ({IGNORE}), OCCUPIED ({OCCUPIED}) '
                             f'or a class in [0, {k}); got e.g. {int(g[~valid][0])}')
        observed = g != IGNORE
        gt_occ = (g >= 0) | (g == OCCUPIED)
        cells = gt_occ[observed].astype(np.int64) * 2 + occ[observed].astype(np.int64)
        self.confusion += np.bincount(cells, minlength=4).reshape(2, 2)
        if labels is not None:
            if self.semantic is None:
                raise ValueError('labels given to a class-agnostic OccupancyAccumulator (pass class_names)')
            lab = as_int_labels(labels, 'labels')
            if lab.size != g.size:
                raise ValueError(f'{lab.size} predicted labels for {g.size} voxels')
            sem = observed & (g != OCCUPIED)
            truth = np.where(g == FREE, k, g)[sem]
            pred = np.where(occ, lab, k)[sem]
            self.semantic.update(pred, truth)
        return int(observed.sum())

    def merge(self, other: OccupancyAccumulator) -> OccupancyAccumulator:
        """Add another accumulator (same classes); returns self."""
        if not isinstance(other, OccupancyAccumulator) or other.class_names != self.class_names:
            raise ValueError('can only merge occupancy accumulators over the same classes')
        self.confusion += other.confusion
        if self.semantic is not None:
            self.semantic.merge(other.semantic)
        return self

    def compute(self) -> OccupancyResult:
        """Metrics over everything accumulated."""
        (tn, fp), (fn, tp) = self.confusion.tolist()
        union = tp + fp + fn
        sem = self.semantic.compute() if self.semantic is not None and self.semantic.points else None
        return OccupancyResult(iou=tp / union if union else float('nan'),
                               precision=tp / (tp + fp) if tp + fp else float('nan'),
                               recall=tp / (tp + fn) if tp + fn else float('nan'),
                               observed_voxels=int(self.confusion.sum()), occupied_voxels=int(tp + fn),
                               confusion=self.confusion.copy(), semantic=sem)

    def state_dict(self) -> dict[str, Any]:
        """JSON-able state."""
        return {'kind': self.kind, 'version': self.version, 'class_names': self.class_names,
                'confusion': self.confusion.tolist(),
                'semantic': self.semantic.state_dict() if self.semantic is not None else None}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> OccupancyAccumulator:
        """Rebuild from :meth:`state_dict`."""
        check_state(state, cls.kind, cls.version)
        acc = cls(class_names=state['class_names'])
        acc.confusion += np.asarray(state['confusion'], dtype=np.int64).reshape(2, 2)
        if acc.semantic is not None:
            acc.semantic.merge(SemanticAccumulator.from_state(state['semantic']))
        return acc


class LidarSemanticAccumulator(SemanticAccumulator):
    """POP-3D "LiDAR mIoU": semantic metrics at the LiDAR points that project into a camera.

    The same accumulator as :class:`SemanticAccumulator`, but ``update`` requires the camera mask, so the
    protocol cannot be dropped by accident.
    """

    kind = 'lidar_semantic'

    def update(self, pred: Any, truth: Any, mask: Any | None = None) -> int:
        """Add one frame; ``mask`` (bool per point: projects into at least one camera) is required."""
        if mask is None:
            raise ValueError('LiDAR mIoU is defined at camera-visible points: pass the in-camera mask')
        return super().update(pred, truth, mask)


__all__ = ['EMPTY_NAME', 'FREE', 'IGNORE', 'OCCUPIED', 'LidarSemanticAccumulator', 'OccupancyAccumulator',
           'OccupancyResult']
