"""Per-frame scoring into streaming accumulators (bounded memory), their state, and merging across bags.

:class:`BagScore` holds, for one bag (or, merged, for several), the ``perception_nodes.metrics``
accumulators and counters; :class:`Scorer` adds one frame and its :class:`~perception_nodes.outputs.Outputs`
to it. What each accumulator receives:

- ``semantic_all`` / ``semantic_fov`` / ``semantic_visible``: point labels (``Outputs.labels``, unknown =
  a miss) against the mapped ground truth over all points, over the points in a camera's field of view
  (the front-view protocol, Affinity3D Sec. 4.1, which is also POP-3D's "LiDAR mIoU" set: points that
  project into a camera; a ``LidarSemanticAccumulator``), and over the points a camera sees after the
  occlusion test (``Outputs.visible``), and ``semantic_invisible`` over the points no camera sees (the rest:
  where a 2D teacher has no evidence and a LiDAR student still labels).
- ``occupancy`` (POP-3D Sec. 4.1): the ray-cast ground truth of the sweep (``truth.ray_cast_truth``) against
  the predicted voxels: the pipeline's semantic voxels (``Outputs.voxels``: the student's occupancy head
  (p > 0.5) on its grid when ``Outputs.occupancy_3d`` is present, else the voxels of the config grid that
  hold LiDAR points, labelled by the majority known point label). The geometric prediction occupies exactly
  the voxels holding returns, so its class-agnostic IoU is 1 by construction; only its (classes + empty)
  mIoU says something (about the labels).
- ``retrieval`` (POP-3D Sec. 4.1): per query, the similarity of each point's feature to the query
  (``runtime.query.similarity_scores``, what ``Pipeline.similarity`` computes; NaN = no feature, ranked
  last) against the query's positive mask, pooled over the bag's frames.
- ``instances`` (UnScene3D Sec. 4.1, ScanNet's definition): the pipeline's class-agnostic segments
  (``Outputs.instances``) scored by ``EvalOptions.instance_score``; ``instances_masks``: the masks of
  ``EvalOptions.masks`` (applied to each frame with as many points).
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from perception_nodes.evaluation.options import EvalOptions
from perception_nodes.evaluation.queries import Query
from perception_nodes.evaluation.truth import (TruthMapper, field_of_view, ray_cast_truth, sensor_origin)
from perception_nodes.frame import Frame
from perception_nodes.geometry.voxels import GridSpec
from perception_nodes.metrics import InstanceAccumulator, RetrievalAccumulator, SemanticAccumulator
from perception_nodes.metrics.instances import masks_from_ids
from perception_nodes.metrics.occupancy import LidarSemanticAccumulator, OccupancyAccumulator
from perception_nodes.outputs import UNKNOWN_LABEL, Outputs

STATE_VERSION = 2
SEMANTIC_SETS = ('all', 'fov', 'visible', 'invisible')


@dataclass
class BagScore:
    """Accumulators and counters of one bag (or several, merged); JSON-able via :meth:`state_dict`."""

    class_names: list[str]
    semantic: dict[str, SemanticAccumulator]
    occupancy: OccupancyAccumulator | None = None
    retrieval: RetrievalAccumulator | None = None
    instances: InstanceAccumulator | None = None
    instances_masks: InstanceAccumulator | None = None
    counts: Counter[str] = field(default_factory=Counter)
    unlisted_raw_ids: Counter[int] = field(default_factory=Counter)
    latency_ms: dict[str, list[float]] = field(default_factory=dict)
    notes: Counter[str] = field(default_factory=Counter)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    stats_counts: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    wall_s: float = 0.0

    @classmethod
    def empty(cls, class_names: Sequence[str], options: EvalOptions, occupancy: bool, retrieval: bool,
              instances: bool, masks: bool) -> BagScore:
        """Fresh accumulators for the metric families that apply."""
        names = list(class_names)
        sem = {'all': SemanticAccumulator(class_names=names),
               'fov': LidarSemanticAccumulator(class_names=names),
               'visible': SemanticAccumulator(class_names=names),
               'invisible': SemanticAccumulator(class_names=names)}
        size = options.min_region_size
        return cls(class_names=names, semantic=sem,
                   occupancy=OccupancyAccumulator(names) if occupancy else None,
                   retrieval=RetrievalAccumulator(options.retrieval_decimals) if retrieval else None,
                   instances=InstanceAccumulator(min_region_size=size) if instances else None,
                   instances_masks=InstanceAccumulator(min_region_size=size) if masks else None)

    # -- state ---------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """JSON-able state (the accumulators' own state dicts)."""
        def opt(acc: Any) -> Any:
            return None if acc is None else acc.state_dict()
        return {'version': STATE_VERSION, 'class_names': self.class_names,
                'semantic': {k: v.state_dict() for k, v in self.semantic.items()},
                'occupancy': opt(self.occupancy), 'retrieval': opt(self.retrieval),
                'instances': opt(self.instances), 'instances_masks': opt(self.instances_masks),
                'counts': dict(self.counts),
                'unlisted_raw_ids': {str(k): v for k, v in self.unlisted_raw_ids.items()},
                'latency_ms': self.latency_ms, 'notes': dict(self.notes), 'skipped': self.skipped,
                'stats_counts': dict(self.stats_counts), 'errors': self.errors, 'wall_s': self.wall_s}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> BagScore:
        """Rebuild from :meth:`state_dict` (ValueError on another version)."""
        if not isinstance(state, dict) or state.get('version') != STATE_VERSION:
            raise ValueError(f'not a bag-score state of version {STATE_VERSION}')
        sem_types = {'all': SemanticAccumulator, 'fov': LidarSemanticAccumulator,
                     'visible': SemanticAccumulator, 'invisible': SemanticAccumulator}

        def opt(kind: Any, value: Any) -> Any:
            return None if value is None else kind.from_state(value)
        return cls(class_names=list(state['class_names']),
                   semantic={k: sem_types[k].from_state(v) for k, v in state['semantic'].items()},
                   occupancy=opt(OccupancyAccumulator, state['occupancy']),
                   retrieval=opt(RetrievalAccumulator, state['retrieval']),
                   instances=opt(InstanceAccumulator, state['instances']),
                   instances_masks=opt(InstanceAccumulator, state['instances_masks']),
                   counts=Counter(state['counts']),
                   unlisted_raw_ids=Counter({int(k): int(v) for k, v in state['unlisted_raw_ids'].items()}),
                   latency_ms={k: list(v) for k, v in state['latency_ms'].items()},
                   notes=Counter(state['notes']), skipped=list(state['skipped']),
                   stats_counts=Counter(state['stats_counts']), errors=list(state['errors']),
                   wall_s=float(state['wall_s']))

    def merge(self, other: BagScore) -> BagScore:
        """Add another bag's score (same classes and metric families); returns self."""
        if other.class_names != self.class_names:
            raise ValueError('can only merge bag scores over the same classes')
        for k, acc in self.semantic.items():
            acc.merge(other.semantic[k])
        for name in ('occupancy', 'retrieval', 'instances', 'instances_masks'):
            mine, theirs = getattr(self, name), getattr(other, name)
            if (mine is None) != (theirs is None):
                raise ValueError(f'cannot merge: {name} was computed for one bag and not the other')
            if mine is not None:
                mine.merge(theirs)
        self.counts.update(other.counts)
        self.unlisted_raw_ids.update(other.unlisted_raw_ids)
        for stage, values in other.latency_ms.items():
            self.latency_ms.setdefault(stage, []).extend(values)
        self.notes.update(other.notes)
        self.skipped.extend(other.skipped)
        self.stats_counts.update(other.stats_counts)
        self.errors.extend(other.errors)
        self.wall_s += other.wall_s
        return self


@dataclass
class FrameTruth:
    """What the scorer derived for one frame (the BEV renders and tests read it)."""

    gt: np.ndarray            # (N,) class index or -1
    fov: np.ndarray           # (N,) bool
    instances: np.ndarray | None


class Scorer:
    """Adds frames to a :class:`BagScore` (module docstring) with a fixed context.

    ``occupancy_grid``: the grid of the pipeline's geometric voxels (``Pipeline.voxel_grid``);
    ``student_grid``: the student's occupancy grid (for ``Outputs.occupancy_3d``) or None.
    ``queries`` / ``query_vectors``: retrieval queries and their unit embeddings (None: no retrieval).
    ``masks``: extra instance predictions ((M, N) bool, (M,) scores) or None.
    """

    def __init__(self, mapper: TruthMapper, options: EvalOptions, occupancy_grid: GridSpec | None = None,
                 student_grid: GridSpec | None = None, queries: Sequence[Query] = (),
                 query_vectors: Sequence[np.ndarray] | None = None,
                 masks: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        self.mapper = mapper
        self.class_names = list(mapper.label_map.class_names)
        self.options = options
        self.occupancy_grid = occupancy_grid
        self.student_grid = student_grid
        self.queries = list(queries)
        self.query_vectors = (None if query_vectors is None
                              else [np.asarray(v, np.float32) for v in query_vectors])
        self.masks = masks
        want = set(options.metrics)
        self.do_semantic = 'semantic' in want
        self.do_occupancy = 'occupancy' in want and (occupancy_grid is not None or student_grid is not None)
        self.do_retrieval = 'retrieval' in want and self.query_vectors is not None and bool(self.queries)
        self.do_instances = 'instances' in want

    def new_score(self) -> BagScore:
        """Empty accumulators for this context."""
        return BagScore.empty(self.class_names, self.options, self.do_occupancy, self.do_retrieval,
                              self.do_instances, self.do_instances and self.masks is not None)

    def update(self, score: BagScore, frame: Frame, outputs: Outputs) -> FrameTruth:
        """Score one frame into ``score``; returns the frame's derived truth."""
        start = time.perf_counter()
        n = frame.num_points
        c = score.counts
        gt = self.mapper.semantic(frame, score.unlisted_raw_ids)
        fov = field_of_view(frame)
        visible = (np.zeros(n, bool) if outputs.visible is None
                   else np.asarray(outputs.visible, bool).reshape(-1))
        pred = np.asarray(outputs.labels)
        labelled = gt >= 0
        c['frames'] += 1
        c['frames_with_camera'] += bool(frame.cameras)
        c['points'] += n
        c['points_evaluated_all'] += int(labelled.sum())
        c['points_in_fov'] += int(fov.sum())
        c['points_evaluated_fov'] += int((labelled & fov).sum())
        c['points_visible'] += int(visible.sum())
        c['points_evaluated_visible'] += int((labelled & visible).sum())
        c['points_evaluated_invisible'] += int((labelled & ~visible).sum())
        c['points_unknown_pred'] += int((pred == UNKNOWN_LABEL).sum())
        c['points_ignored_listed'] += int((~labelled).sum())
        if self.do_semantic:
            score.semantic['all'].update(pred, gt)
            score.semantic['fov'].update(pred, gt, fov)
            score.semantic['visible'].update(pred, gt, visible)
            score.semantic['invisible'].update(pred, gt, ~visible)
        if self.do_occupancy:
            self._occupancy(score, frame, outputs, gt)
        if self.do_retrieval:
            self._retrieval(score, frame, outputs, gt)
        inst = self.mapper.instances(frame, gt) if self.do_instances else None
        if self.do_instances:
            if inst is None:
                c['frames_without_instance_field'] += 1
            else:
                self._instances(score, frame, outputs, inst)
        for stage, ms in outputs.timings_ms.items():
            score.latency_ms.setdefault(stage, []).append(round(float(ms), 3))
        score.notes.update(outputs.notes)
        score.latency_ms.setdefault('eval', []).append(round((time.perf_counter() - start) * 1e3, 3))
        return FrameTruth(gt=gt, fov=fov, instances=inst)

    # -- occupancy ------------------------------------------------------------------------------------
    def _occupancy(self, score: BagScore, frame: Frame, outputs: Outputs, gt: np.ndarray) -> None:
        origin = sensor_origin(frame)
        if origin is None:
            score.counts['occupancy_frames_world_frame'] += 1
            return
        student = outputs.occupancy_3d is not None
        grid = self.student_grid if student else self.occupancy_grid
        if grid is None:
            score.counts['occupancy_frames_no_grid'] += 1
            return
        truth = ray_cast_truth(frame.points, gt, grid, origin)
        occupied, labels = predicted_voxels(outputs, grid)
        score.occupancy.update(truth, occupied, labels)
        score.counts['occupancy_frames_student' if student else 'occupancy_frames_geometry'] += 1

    # -- retrieval ------------------------------------------------------------------------------------
    def _retrieval(self, score: BagScore, frame: Frame, outputs: Outputs, gt: np.ndarray) -> None:
        from perception_nodes.runtime.query import similarity_scores
        n = frame.num_points
        emb = outputs.embeddings
        for query, vec in zip(self.queries, self.query_vectors):
            sim = similarity_scores(emb, vec) if emb is not None else np.full(n, np.nan, np.float32)
            score.retrieval.update(query.text, sim, query.positives(gt, frame))
        score.counts['retrieval_frames'] += 1
        score.counts['retrieval_frames_without_features'] += emb is None

    # -- instances ------------------------------------------------------------------------------------
    def _instances(self, score: BagScore, frame: Frame, outputs: Outputs, inst: np.ndarray) -> None:
        seg = np.asarray(outputs.instances).astype(np.int64) - 1          # 0 (no segment) -> -1
        masks, _ = masks_from_ids(seg)
        scores = segment_scores(masks, outputs.scores, self.options.instance_score)
        score.instances.update(inst, masks, scores)
        score.counts['instance_frames'] += 1
        score.counts['instance_segments'] += int(masks.shape[0])
        if self.masks is not None:
            file_masks, file_scores = self.masks
            if file_masks.shape[1] != frame.num_points:
                raise ValueError(f'the masks file has masks over {file_masks.shape[1]} points but frame '
                                 f'{frame.index} has {frame.num_points}')
            score.instances_masks.update(inst, file_masks, file_scores)


def segment_scores(masks: np.ndarray, point_scores: Any, how: str) -> np.ndarray:
    """Confidence of each segment mask: its share of the points, 1, or its mean point score."""
    m = masks.shape[0]
    if m == 0:
        return np.zeros(0)
    if how == 'uniform':
        return np.ones(m)
    if how == 'size':
        return masks.sum(axis=1) / max(masks.shape[1], 1)
    s = np.asarray(point_scores, np.float64).reshape(-1)
    return (masks.astype(np.float64) @ s) / np.maximum(masks.sum(axis=1), 1)


def predicted_voxels(outputs: Outputs, grid: GridSpec) -> tuple[np.ndarray, np.ndarray]:
    """(V,) occupied and (V,) label (UNKNOWN_LABEL where none) of the pipeline's voxels on ``grid`` (flat).

    ``Outputs.voxels`` when present (what the pipeline publishes), else the same computation
    (``pipeline.grids``): the student's head on its grid, or the voxels holding points.
    """
    import torch

    from perception_nodes.pipeline import grids
    vox = outputs.voxels
    if vox is None:
        points = torch.as_tensor(np.asarray(outputs.points, np.float32))
        labels = torch.as_tensor(np.asarray(outputs.labels).astype(np.int64))
        if outputs.occupancy_3d is not None:
            vox = grids.student_voxels(outputs.occupancy_3d, grid, points, labels)
        else:
            vox = grids.semantic_voxels(points, labels, grid)
    size = np.asarray(grid.voxel_size)
    idx = np.floor((np.asarray(vox.centers, np.float64) - np.asarray(grid.lower)) / size).astype(np.int64)
    inside = ((idx >= 0) & (idx < np.asarray(grid.shape))).all(axis=1)
    lin = (idx[inside, 0] * grid.shape[1] + idx[inside, 1]) * grid.shape[2] + idx[inside, 2]
    total = int(np.prod(grid.shape))
    occupied = np.zeros(total, dtype=bool)
    labels_out = np.full(total, UNKNOWN_LABEL, dtype=np.int64)
    occupied[lin] = True
    labels_out[lin] = np.asarray(vox.labels).astype(np.int64)[inside]
    return occupied, labels_out


__all__ = ['BagScore', 'FrameTruth', 'SEMANTIC_SETS', 'Scorer', 'predicted_voxels', 'segment_scores']
