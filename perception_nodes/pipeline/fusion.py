"""Fusion maths of the 2D→3D label transfer, on torch tensors (one code path for CPU and GPU).

- ``FeatureAccumulator``: mean of the teacher features of the views that see a point, renormalised
  (the multi-view aggregation of the label-free seed and of Affinity3D's visible-only transfer,
  Affinity3D Eq. 11: only points whose visibility mask is set receive 2D knowledge).
- ``vote_segments``: instance voting, points of one class-agnostic segment share one label
  (majority of the member labels, or the class of the segment's mean feature — Affinity3D Eq. 4
  applied to the mean of the fused point features instead of a crop feature).
"""
from __future__ import annotations

import numpy as np
import torch

from perception_nodes.classify import classify
from perception_nodes.outputs import UNKNOWN_LABEL

VOTING_MODES = ('majority', 'mean_feature')


class FeatureAccumulator:
    """Per-point sum of unit features over camera views; only points seen by some view cost memory.

    Views are kept as (point index, features) pairs and reduced once in :meth:`fused` into an
    (n_seen, C) array: a 120k-point sweep of which 20k fall in the camera costs 20k x C floats, not 120k x C.
    """

    def __init__(self, num_points: int, device: torch.device | str = 'cpu') -> None:
        self.num_points = int(num_points)
        self.device = torch.device(device)
        self.count = torch.zeros(self.num_points, dtype=torch.int32, device=self.device)
        self._views: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._unit = True

    def add(self, point_index: torch.Tensor, features: torch.Tensor, unit: bool = False) -> None:
        """Add the (n, C) features of the points ``point_index`` (n,), distinct, as seen by one view.

        ``unit``: the rows are already unit vectors (lets a single view skip the renormalisation copy).
        """
        point_index = point_index.to(self.device).long().reshape(-1)
        if features.ndim != 2 or features.shape[0] != point_index.numel():
            raise ValueError(
                f'features must be (n, C) with n={point_index.numel()}, got {tuple(features.shape)}')
        if self._views and self._views[0][1].shape[1] != features.shape[1]:
            width = self._views[0][1].shape[1]
            raise ValueError(f'feature width {features.shape[1]} differs from earlier views ({width})')
        if point_index.numel() == 0:
            return
        self._views.append((point_index, features.to(self.device, torch.float32)))
        self._unit = self._unit and unit
        self.count.index_add_(0, point_index, torch.ones_like(point_index, dtype=torch.int32))

    @property
    def seen(self) -> torch.Tensor:
        """(N,) bool: seen by at least one view."""
        return self.count > 0

    def fused(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(seen_index (n,), features (n, C)): renormalised mean feature of every seen point.

        The index is ascending, except for a single view, whose own point order is kept (no copy).
        """
        if len(self._views) == 1:                       # one view: no reduction needed
            idx, feats = self._views[0]
            return idx, feats if self._unit else torch.nn.functional.normalize(feats, dim=1)
        index = torch.nonzero(self.seen).reshape(-1)
        if not self._views:
            return index, torch.zeros(0, 0, device=self.device)
        pos = torch.full((self.num_points,), -1, dtype=torch.long, device=self.device)
        pos[index] = torch.arange(index.numel(), device=self.device)
        width = self._views[0][1].shape[1]
        total = torch.zeros(index.numel(), width, dtype=torch.float32, device=self.device)
        for idx, feats in self._views:
            total.index_add_(0, pos[idx], feats)
        mean = total / self.count[index].unsqueeze(1).float()
        return index, torch.nn.functional.normalize(mean, dim=1)


def vote_segments(segments: torch.Tensor, labels: torch.Tensor, scores: torch.Tensor, num_classes: int,
                  mode: str = 'majority', features: tuple[torch.Tensor, torch.Tensor] | None = None,
                  text_embeddings: torch.Tensor | None = None, logit_scale: float = 100.0,
                  unknown_threshold: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Give every point of a segment the segment's label; returns new (labels, scores) for all N points.

    ``segments`` (N,) holds segment ids, -1 for ground / noise (those points keep their own label).
    ``labels`` / ``scores`` (N,) are the per-point results, UNKNOWN_LABEL for points without a label.
    ``mode='majority'``: the most frequent known label among the segment's points; its score is the mean
    score of the points that voted for it. ``mode='mean_feature'``: classify the mean of the fused
    features of the segment's seen points, ``features = (index (n,), feats (n, C))`` as returned by
    ``FeatureAccumulator.fused``. Segments without any labelled (resp. seen) point keep their points'
    labels. Unseen points of a partly seen segment receive the segment's label.
    """
    if mode not in VOTING_MODES:
        raise ValueError(f'unknown voting mode {mode!r}; expected one of {VOTING_MODES}')
    if mode == 'majority' and all(t.device.type == 'cpu' for t in (segments, labels, scores)):
        return _majority_vote_cpu(segments, labels, scores, num_classes)
    labels = labels.long()
    out_labels, out_scores = labels.clone(), scores.clone().float()
    in_seg = segments >= 0
    if not bool(in_seg.any()):
        return out_labels, out_scores
    point_idx = torch.nonzero(in_seg).reshape(-1)
    seg, s = _compact_ids(segments[point_idx])                          # compact ids 0..S-1
    known = labels[point_idx] != UNKNOWN_LABEL
    voter_seg, voter_pt = seg[known], point_idx[known]
    if voter_pt.numel() == 0 and mode == 'majority':
        return out_labels, out_scores
    if mode == 'majority':
        votes = torch.zeros(s * num_classes, dtype=torch.float32, device=labels.device)
        flat = voter_seg * num_classes + labels[voter_pt]
        votes.index_add_(0, flat, torch.ones_like(flat, dtype=torch.float32))
        score_sum = torch.zeros_like(votes).index_add_(0, flat, scores[voter_pt].float())
        votes, score_sum = votes.view(s, num_classes), score_sum.view(s, num_classes)
        count, seg_label = votes.max(dim=1)   # ties: lowest class index
        seg_score = score_sum.gather(1, seg_label[:, None]).squeeze(1) / count.clamp(min=1)
        has_votes = count > 0
    else:
        if features is None or text_embeddings is None:
            raise ValueError("mode='mean_feature' needs the fused features and the text embeddings")
        feat_index, feats = features
        seg_of_point = torch.full((labels.numel(),), -1, dtype=torch.int64, device=labels.device)
        seg_of_point[point_idx] = seg
        feat_seg = seg_of_point[feat_index.long()]
        keep = feat_seg >= 0
        mean = torch.zeros(s, feats.shape[1], dtype=torch.float32, device=labels.device)
        mean.index_add_(0, feat_seg[keep], feats[keep].float())
        has_votes = torch.zeros(s, dtype=torch.bool, device=labels.device)
        has_votes[feat_seg[keep]] = True
        result = classify(mean[has_votes], text_embeddings, logit_scale, unknown_threshold)
        seg_label = torch.full((s,), UNKNOWN_LABEL, dtype=torch.int64, device=labels.device)
        seg_score = torch.zeros(s, dtype=torch.float32, device=labels.device)
        seg_label[has_votes], seg_score[has_votes] = result.labels, result.scores
    member = has_votes[seg]                       # points of segments that received votes
    if bool(member.all()):
        points, point_seg = point_idx, seg
    else:                                         # integer indices: boolean ones cost ~3x as much
        keep = torch.nonzero(member).reshape(-1)
        points, point_seg = point_idx[keep], seg[keep]
    out_labels[points] = seg_label[point_seg]
    out_scores[points] = seg_score[point_seg]
    return out_labels, out_scores


def _majority_vote_cpu(segments: torch.Tensor, labels: torch.Tensor, scores: torch.Tensor,
                       num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``mode='majority'`` of :func:`vote_segments` in numpy (its gathers and scatters cost ~3x in torch).

    The same computation: votes counted per (segment, class), the first class with the most votes wins,
    its score the float32 sum of its voters' scores (accumulated in point order, as ``index_add_``)
    divided by their count.
    """
    seg_all = segments.detach().numpy()
    lab = labels.detach().long().numpy()
    sc = scores.detach().float().numpy()
    out_labels, out_scores = lab.copy(), sc.copy()
    point_idx = np.flatnonzero(seg_all >= 0)
    if not len(point_idx):
        return torch.from_numpy(out_labels), torch.from_numpy(out_scores)
    seg, s = _compact_ids_np(seg_all[point_idx])
    known = lab[point_idx] != UNKNOWN_LABEL
    voter_pt = point_idx[known]
    if not len(voter_pt):
        return torch.from_numpy(out_labels), torch.from_numpy(out_scores)
    flat = seg[known] * num_classes + lab[voter_pt]
    votes = np.bincount(flat, minlength=s * num_classes).reshape(s, num_classes)
    score_sum = np.zeros(s * num_classes, dtype=np.float32)
    np.add.at(score_sum, flat, sc[voter_pt])
    seg_label = np.argmax(votes, axis=1)                     # ties: the lowest class index
    count = votes[np.arange(s), seg_label]
    seg_score = score_sum.reshape(s, num_classes)[np.arange(s), seg_label] / np.maximum(count, 1).astype(
        np.float32)
    member = (count > 0)[seg]
    points, point_seg = (point_idx, seg) if member.all() else (point_idx[member], seg[member])
    out_labels[points] = seg_label[point_seg]
    out_scores[points] = seg_score[point_seg]
    return torch.from_numpy(out_labels), torch.from_numpy(out_scores)


def _compact_ids_np(ids: np.ndarray) -> tuple[np.ndarray, int]:
    """:func:`_compact_ids` in numpy."""
    top = int(ids.max())
    if top >= 4 * len(ids) + 4096:
        uniq, inverse = np.unique(ids, return_inverse=True)
        return inverse.reshape(-1), len(uniq)
    present = np.zeros(top + 1, dtype=bool)
    present[ids] = True
    rank = np.cumsum(present) - 1
    return rank[ids], int(rank[-1]) + 1


def _compact_ids(ids: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(rank of each id among the distinct ids, number of distinct ids): ``torch.unique``'s inverse.

    Non-negative ids not much larger than their count (segment_scan's are 0..S-1) are ranked with a
    presence table and a cumulative sum instead of a sort.
    """
    top = int(ids.max())
    if top >= 4 * ids.numel() + 4096:
        uniq, inverse = torch.unique(ids, return_inverse=True)
        return inverse, int(uniq.numel())
    present = torch.zeros(top + 1, dtype=torch.bool, device=ids.device)
    present[ids] = True
    rank = torch.cumsum(present, 0) - 1
    return rank[ids], int(rank[-1]) + 1
