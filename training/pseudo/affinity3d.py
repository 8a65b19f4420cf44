"""Affinity3D's pseudo-label generation, frame by frame (Sec. 3.2-3.5; Tables 3-4 "CI", "Aff.", "Vis.", "MC").

:class:`Affinity3DLabeler` chains, per frame: superpoints (:mod:`~training.pseudo.superpoints`) → boxes
≥ 30 × 30 px and crop embeddings (:mod:`~training.pseudo.instance_labels`) → Eq. 4 over the candidate
classes → the temporal affinity queue (Eq. 5-8, :mod:`~training.pseudo.affinity`) → visibility (Eq. 9-10,
:mod:`~training.pseudo.visibility`) → PL' (:mod:`~training.pseudo.assembly`). Because the queue spans
frames, a frame's labels are final only when the queue pops: :meth:`Affinity3DLabeler.push` returns the
frames completed by that push and :meth:`Affinity3DLabeler.flush` the rest (call it after the last frame).

:func:`dense_point_labels` is the "MC" baseline: every point takes the class of its fused dense teacher
feature (argmax of the cosine over the candidate classes), from
:class:`~training.pseudo.dense_targets.DenseTargets`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from perception_nodes.frame import Frame
from perception_nodes.geometry.visibility import VisibilityConfig
from training.pseudo.affinity import AffinityConfig, AffinityQueue
from training.pseudo.assembly import (SEMANTICKITTI_UNSEEN, AssemblyConfig, PointLabels, SeenUnseenSplit,
                                      assemble_point_labels)
from training.pseudo.dense_targets import DenseTargets
from training.pseudo.instance_labels import (LOGIT_SCALE, MIN_BOX, CropEncoder, instance_crops,
                                             instance_probabilities)
from training.pseudo.superpoints import SuperpointConfig, annotation_free_superpoints, gzs_superpoints
from training.pseudo.visibility import PointVisibility, point_visibility


@dataclass
class Affinity3DConfig:
    """Affinity3D pseudo labels. ``setting``: 'gzs' (seen ground truth available) or 'af' (none)."""

    setting: str = 'gzs'
    unseen: tuple[str, ...] = SEMANTICKITTI_UNSEEN
    superpoints: SuperpointConfig = field(default_factory=SuperpointConfig)
    affinity: AffinityConfig = field(default_factory=AffinityConfig)
    use_visibility: bool = True
    visibility: VisibilityConfig = field(default_factory=lambda: VisibilityConfig(variant='superpixel'))
    logit_scale: float = LOGIT_SCALE
    min_box: float = MIN_BOX
    assembly: AssemblyConfig = field(default_factory=AssemblyConfig)

    def __post_init__(self) -> None:
        if self.setting not in ('gzs', 'af'):
            raise ValueError(f"setting must be 'gzs' or 'af', got {self.setting!r}")

    def split(self, class_names: Sequence[str]) -> SeenUnseenSplit:
        """Return the seen/unseen split for a vocabulary (AF: everything unseen)."""
        if self.setting == 'af':
            return SeenUnseenSplit.annotation_free(class_names)
        return SeenUnseenSplit(tuple(class_names), tuple(self.unseen))


@dataclass
class FramePseudoLabels:
    """Everything Affinity3D derives for one frame."""

    key: Any
    point_labels: PointLabels            # PL' (labels, source, visible)
    segment_ids: np.ndarray              # (N,) superpoint ids, -1 none
    kept: np.ndarray                     # (S,) bool: instance kept (has a crop in some image)
    instance_probs: np.ndarray           # (S, K) Eq. 4 (zero rows where not kept)
    instance_refined: np.ndarray         # (S, K) Eq. 8
    instance_labels: np.ndarray          # (S,) int64 refined label, -1 where not kept
    crop_features: np.ndarray            # (S, C) float16 crop embeddings


@dataclass
class _Pending:
    key: Any
    segment_ids: np.ndarray
    kept: np.ndarray
    visible: np.ndarray
    ground_truth: np.ndarray | None
    features: torch.Tensor
    probs: torch.Tensor
    instance_labels: np.ndarray | None = None
    refined: np.ndarray | None = None


class Affinity3DLabeler:
    """Streaming Affinity3D PL' generator (see the module docstring)."""

    def __init__(self, config: Affinity3DConfig, class_names: Sequence[str], text_embeddings: torch.Tensor,
                 crop_encoder: CropEncoder) -> None:
        self.config = config
        self.class_names = tuple(class_names)
        if text_embeddings.shape[0] != len(self.class_names):
            raise ValueError(f'{text_embeddings.shape[0]} text embeddings for {len(self.class_names)} '
                             f'classes')
        self.text_embeddings = F.normalize(text_embeddings.float().cpu(), dim=1)
        self.encoder = crop_encoder
        self.split = config.split(self.class_names)
        self.queue = AffinityQueue(config.affinity)
        self._pending: dict[int, _Pending] = {}
        self._order: list[int] = []
        self._next = 0

    def visibility(self, frame: Frame) -> PointVisibility:
        """Project the frame and apply the configured visibility test."""
        cfg = self.config.visibility if self.config.use_visibility else VisibilityConfig(variant='none')
        return point_visibility(frame, cfg)

    def superpoints(self, frame: Frame) -> np.ndarray:
        """(N,) superpoint ids of the frame (GZS needs ``frame.labels`` as vocabulary indices)."""
        if self.config.setting == 'gzs':
            if frame.labels is None:
                raise ValueError('the GZS setting needs ground-truth labels in the frame (frame.labels)')
            return gzs_superpoints(frame.points, frame.labels, self.split.seen_mask, self.config.superpoints)
        return annotation_free_superpoints(frame.points, self.config.superpoints)

    def push(self, frame: Frame, key: Any = None, visibility: PointVisibility | None = None,
             segment_ids: np.ndarray | None = None) -> list[FramePseudoLabels]:
        """Label one frame; return the frames this push completed (in push order)."""
        vis = visibility if visibility is not None else self.visibility(frame)
        seg = self.superpoints(frame) if segment_ids is None else np.asarray(segment_ids, dtype=np.int64)
        crops = instance_crops(frame.cameras, vis.projection.uv, vis.projection.in_image, seg, self.encoder,
                               self.config.min_box)
        kept = crops.valid
        feats = crops.features[torch.from_numpy(kept)]
        probs = instance_probabilities(feats, self.text_embeddings, self.split.unseen_mask,
                                       self.config.logit_scale)
        visible = vis.any_visible
        gt = None if self.config.setting == 'af' or frame.labels is None else np.asarray(frame.labels)
        ticket = self._next
        self._next += 1
        self._pending[ticket] = _Pending(frame.index if key is None else key, seg, kept, visible, gt,
                                         crops.features, probs)
        self._order.append(ticket)
        self._collect(self.queue.push(ticket, feats, probs))
        return self._completed()

    def flush(self) -> list[FramePseudoLabels]:
        """Refine what is left in the queue and return every remaining frame."""
        self._collect(self.queue.flush())
        return self._completed()

    def _collect(self, batches) -> None:
        for b in batches:
            p = self._pending[b.key]
            labels = np.full(len(p.kept), -1, dtype=np.int64)
            labels[p.kept] = b.labels.numpy()
            refined = np.zeros((len(p.kept), len(self.class_names)), dtype=np.float32)
            refined[p.kept] = b.refined.numpy()
            p.instance_labels, p.refined = labels, refined

    def _completed(self) -> list[FramePseudoLabels]:
        out = []
        while self._order and self._pending[self._order[0]].instance_labels is not None:
            p = self._pending.pop(self._order.pop(0))
            seen = self.split.seen_mask if p.ground_truth is not None else None
            cfg = self.config.assembly
            if not self.config.use_visibility:
                cfg = AssemblyConfig(ignore_invisible_ground_truth=False, ignore_invisible=False)
            pl = assemble_point_labels(p.segment_ids, p.instance_labels, p.visible, p.ground_truth, seen, cfg)
            probs = np.zeros_like(p.refined)
            probs[p.kept] = p.probs.numpy()
            out.append(FramePseudoLabels(p.key, pl, p.segment_ids, p.kept, probs, p.refined,
                                         p.instance_labels, p.features.numpy().astype(np.float16)))
        return out


def dense_point_labels(targets: DenseTargets, text_embeddings: torch.Tensor,
                       candidates: np.ndarray | None = None) -> np.ndarray:
    """MC labels: (N,) argmax of the fused dense feature's cosine over the candidate classes, -1 if unseen."""
    feats = targets.features()
    seen = targets.seen
    emb = F.normalize(text_embeddings.float(), dim=1)
    k = emb.shape[0]
    cand = np.ones(k, dtype=bool) if candidates is None else np.asarray(candidates, dtype=bool)
    scores = feats @ emb.T
    scores[:, torch.from_numpy(~cand)] = -float('inf')
    labels = scores.argmax(dim=1).numpy().astype(np.int64)
    labels[~seen] = -1
    return labels


def dense_frame_labels(frame: Frame, feature_maps: Sequence[torch.Tensor], text_embeddings: torch.Tensor,
                       split: SeenUnseenSplit, visibility: PointVisibility, use_visibility: bool = True,
                       assembly: AssemblyConfig | None = None, mode: str = 'bilinear') -> tuple[PointLabels,
                                                                                                DenseTargets]:
    """Affinity3D's "MC" PL' for one frame: dense teacher labels (GZS: seen points keep ground truth).

    Without visibility the teacher is sampled at every in-image projection (occluded points included).
    """
    used = visibility.visible if use_visibility else visibility.in_image
    sizes = [(v.model.height, v.model.width) for v in frame.cameras]
    targets = DenseTargets.encode(feature_maps, visibility.projection.uv, used, sizes, mode)
    dense = dense_point_labels(targets, text_embeddings, split.unseen_mask)
    gzs = frame.labels is not None and not split.unseen_mask.all()
    cfg = assembly or AssemblyConfig()
    if not use_visibility:
        cfg = AssemblyConfig(ignore_invisible_ground_truth=False, ignore_invisible=False)
    n = frame.num_points
    gt = np.asarray(frame.labels) if gzs else None
    labels = assemble_point_labels(np.full(n, -1), np.zeros(0, dtype=np.int64), used.any(dim=0).cpu().numpy(),
                                   gt, split.seen_mask if gzs else None, cfg, dense_labels=dense)
    return labels, targets
