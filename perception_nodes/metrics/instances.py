"""Class-agnostic 3D instance segmentation AP, the ScanNet benchmark's definition (UnScene3D Sec. 4.1).

UnScene3D reports class-agnostic AP@25, AP@50 and AP (the mean over IoU thresholds 0.5:0.05:0.95) on
mesh vertices, "following the strategy of the supervised benchmark" (ScanNet's
``evaluate_semantic_instance.py``; ScanNet200 Sec. 4 uses the same). This module follows that script's
definition, re-implemented here:

- **Ground truth**: per-point instance ids, -1 = void (points of no evaluated instance: for ScanNet the
  non-instance classes wall / floor, unannotated points and classes outside the benchmark; see
  :func:`class_agnostic_gt`). Instances with fewer than ``min_region_size`` points (100 vertices in the
  benchmark) are not evaluated: they are neither matched nor missed.
- **Predictions**: boolean masks with a confidence score. Masks with fewer than ``min_region_size``
  points are dropped, as the script does.
- **IoU** of a prediction and a ground-truth instance: intersection over union over *all* points, so
  predicted points on void or on other instances enlarge the union.
- **Matching**, per IoU threshold t: predictions in decreasing score order (ties: input order) each take
  the unmatched, evaluated ground-truth instance of largest IoU **strictly above** t (the script's
  ``overlap > overlap_th``) -> true positive. A prediction whose IoU exceeds t only with instances already
  matched is a duplicate -> false positive. A prediction that exceeds t only with too-small instances is
  ignored. Any other prediction is a false positive unless more than a fraction t of its points lie on
  void or on too-small instances, in which case it is ignored (the script's ``proportion_ignore``).
  For t >= 0.5 a prediction can exceed t with at most one ground-truth instance (instances are disjoint),
  and this matching gives exactly the script's outcomes; for t < 0.5 (AP@25) the script walks the
  ground truth in file order and can count a prediction as the true positive of two instances, which
  score-ordered greedy matching does not.
- **AP** (the script's integration): over the pooled predictions of all scenes, one precision-recall
  point per distinct score (every prediction scoring >= it; recall over all evaluated ground-truth
  instances, unmatched ones included), plus an artificial end point (recall 0, precision 1); AP is the
  trapezoidal area under those points taken in recall order: ``sum_j (r_j - r_{j+1}) (p_j + p_{j+1}) / 2``.
  No ground truth -> NaN; ground truth but no prediction -> 0.
- **Thresholds**: the script evaluates ``np.arange(0.5, 0.95, 0.05)``, i.e. **0.50, 0.55, ..., 0.90 (nine
  values; 0.95 is not included, although the papers write 0.5:0.05:0.95)**, plus 0.25. ``AP`` is the
  mean over those nine (:data:`SCANNET_AP_THRESHOLDS`), ``AP50`` / ``AP25`` the values at 0.5 / 0.25.
  Pass ``ap_thresholds`` to change the set (e.g. to add 0.95).

One difference from the ScanNet script as published, deliberately: its ``bool_void`` tests raw encoded ids
(``label * 1000 + instance``) against class ids and so finds almost no void points; the maintained copies
(Mask3D and later) test ``gt_ids // 1000`` -- void is what it says. Here void is the ground truth's -1.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from perception_nodes.metrics._common import (as_int_labels, as_numpy, check_state, decode_array,
                                              encode_array, json_float, nanmean)

#: IoU thresholds averaged into AP by the ScanNet script: np.arange(0.5, 0.95, 0.05) = 0.50 .. 0.90.
SCANNET_AP_THRESHOLDS: tuple[float, ...] = tuple(float(v) for v in np.arange(0.5, 0.95, 0.05))
AP50_THRESHOLD = 0.5
AP25_THRESHOLD = 0.25
#: Minimum instance size (vertices) of the ScanNet benchmark, for ground truth and predictions.
SCANNET_MIN_REGION_SIZE = 100
#: NYU40 ids of ScanNet's 18 instance classes (the 20 benchmark classes without wall and floor).
SCANNET_INSTANCE_NYU40_IDS: tuple[int, ...] = (3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 24, 28, 33, 34, 36,
                                               39)

TRUE_POSITIVE, FALSE_POSITIVE, IGNORED = 1, 0, -1


def class_agnostic_gt(instance_ids: Any, semantic_ids: Any,
                      instance_classes: Sequence[int] = SCANNET_INSTANCE_NYU40_IDS,
                      unannotated_instance: int | None = 0) -> np.ndarray:
    """Per-point ground-truth instance ids for class-agnostic AP: points not in ``instance_classes`` -> -1.

    ``semantic_ids`` are the dataset's class ids per point (ScanNet: NYU40), ``instance_ids`` its instance
    ids; ``unannotated_instance`` (0 in ScanNet exports) is void too. Instance ids are kept as given.
    """
    inst = as_int_labels(instance_ids, 'instance_ids')
    sem = as_int_labels(semantic_ids, 'semantic_ids')
    if inst.size != sem.size:
        raise ValueError(f'{inst.size} instance ids for {sem.size} semantic ids')
    keep = np.isin(sem, np.asarray(list(instance_classes), dtype=np.int64))
    if unannotated_instance is not None:
        keep &= inst != unannotated_instance
    return np.where(keep, inst, -1)


def masks_from_ids(ids: Any) -> tuple[np.ndarray, np.ndarray]:
    """(M, N) boolean masks of the ids >= 0 (in increasing id order) and those ids."""
    ids = as_int_labels(ids, 'ids')
    uniq = np.unique(ids[ids >= 0])
    return ids[None, :] == uniq[:, None], uniq


def _gt_index(gt: Any, n_points: int | None) -> np.ndarray:
    """Compact per-point ground-truth index 0..G-1, -1 void, from ids (N,) or disjoint masks (G, N)."""
    arr = as_numpy(gt)
    if arr.dtype == bool:
        if arr.ndim != 2:
            raise ValueError(f'ground-truth masks must be (G, N), got {arr.shape}')
        if arr.shape[0] and (arr.sum(axis=0) > 1).any():
            raise ValueError('ground-truth instance masks overlap; instances must be disjoint')
        out = np.full(arr.shape[1], -1, dtype=np.int64)
        rows, cols = np.nonzero(arr)
        out[cols] = rows
    else:
        ids = as_int_labels(arr, 'gt')
        if (ids < -1).any():
            raise ValueError('ground-truth instance ids must be >= 0, or -1 for void')
        uniq, inv = np.unique(ids, return_inverse=True)
        out = inv.astype(np.int64) - (1 if uniq.size and uniq[0] == -1 else 0)
    if n_points is not None and out.size != n_points:
        raise ValueError(f'ground truth covers {out.size} points, predictions {n_points}')
    return out


def match_scene(gt: Any, pred_masks: Any, scores: Any, thresholds: Sequence[float],
                min_region_size: int = SCANNET_MIN_REGION_SIZE) -> tuple[np.ndarray, np.ndarray, int]:
    """Match one scene's predictions at every threshold.

    Returns ``(scores (P,), outcomes (P, T) int8 in {TRUE_POSITIVE, FALSE_POSITIVE, IGNORED}, num_gt)`` for
    the P predictions of at least ``min_region_size`` points, ``num_gt`` = evaluated ground-truth instances.
    ``pred_masks``: (P, N) bool, or (N,) per-point ids (-1 none) whose masks are taken in increasing id
    order; ``scores``: (P,) floats in that order.
    """
    masks = as_numpy(pred_masks)
    if masks.dtype != bool:
        masks, _ = masks_from_ids(masks)
    if masks.ndim != 2:
        raise ValueError(f'predicted masks must be (P, N), got {masks.shape}')
    sc = as_numpy(scores).astype(np.float64).reshape(-1)
    if sc.size != masks.shape[0]:
        raise ValueError(f'{sc.size} scores for {masks.shape[0]} predicted masks')
    if np.isnan(sc).any():
        raise ValueError('prediction scores must not be NaN')
    g = _gt_index(gt, masks.shape[1])
    n_gt_all = int(g.max()) + 1 if g.size and g.max() >= 0 else 0
    gt_size = np.bincount(g[g >= 0], minlength=n_gt_all)
    evaluated = gt_size >= min_region_size
    pred_size = masks.sum(axis=1)
    keep = pred_size >= min_region_size
    masks, sc, pred_size = masks[keep], sc[keep], pred_size[keep]
    p = masks.shape[0]
    thr = np.asarray(list(thresholds), dtype=np.float64)
    outcomes = np.full((p, thr.size), IGNORED, dtype=np.int8)
    if p == 0:
        return sc, outcomes, int(evaluated.sum())
    rows, cols = np.nonzero(masks)
    inter_all = np.bincount(rows * (n_gt_all + 1) + (g[cols] + 1),
                            minlength=p * (n_gt_all + 1)).reshape(p, n_gt_all + 1)
    void_inter = inter_all[:, 0]
    inter = inter_all[:, 1:]
    union = gt_size[None, :] + pred_size[:, None] - inter
    iou = np.where(inter > 0, inter / np.maximum(union, 1), 0.0)
    ignorable = (void_inter + inter[:, ~evaluated].sum(axis=1)) / pred_size
    order = np.argsort(-sc, kind='stable')
    for ti, t in enumerate(thr):
        above = iou > t
        matched = np.zeros(n_gt_all, dtype=bool)
        for i in order:
            cand = above[i] & evaluated & ~matched
            if cand.any():
                j = int(np.argmax(np.where(cand, iou[i], -1.0)))
                matched[j] = True
                outcomes[i, ti] = TRUE_POSITIVE
            elif (above[i] & evaluated).any():
                outcomes[i, ti] = FALSE_POSITIVE        # duplicate of a matched instance
            elif above[i].any():
                outcomes[i, ti] = IGNORED               # matches only a too-small instance
            else:
                outcomes[i, ti] = IGNORED if ignorable[i] > t else FALSE_POSITIVE
    return sc, outcomes, int(evaluated.sum())


@dataclass
class PrecisionRecallCurve:
    """The script's precision-recall points, increasing score threshold, artificial (r=0, p=1) last."""

    precision: np.ndarray
    recall: np.ndarray
    thresholds: np.ndarray       # the distinct scores (len = len(precision) - 1)


def scannet_pr_curve(scores: np.ndarray, is_tp: np.ndarray, num_gt: int) -> PrecisionRecallCurve:
    """Precision / recall at every distinct score of the scored (non-ignored) predictions."""
    scores = np.asarray(scores, dtype=np.float64)
    is_tp = np.asarray(is_tp, dtype=bool)
    uniq, inverse = np.unique(scores, return_inverse=True)
    tp_at = np.bincount(inverse[is_tp], minlength=uniq.size)
    n_at = np.bincount(inverse, minlength=uniq.size)
    tp = np.cumsum(tp_at[::-1])[::-1]            # predictions scoring >= each distinct score
    n = np.cumsum(n_at[::-1])[::-1]
    precision = np.append(tp / np.maximum(n, 1), 1.0)
    recall = np.append(tp / num_gt if num_gt else np.zeros(tp.shape), 0.0)
    return PrecisionRecallCurve(precision=precision, recall=recall, thresholds=uniq)


def scannet_average_precision(scores: np.ndarray, is_tp: np.ndarray, num_gt: int, num_pred: int | None = None
                              ) -> float:
    """Compute the ScanNet script's AP of pooled predictions (see the module docstring).

    ``num_pred``: predictions considered before ignoring (the script's ``has_pred``); defaults to
    ``len(scores)``.
    """
    num_pred = len(scores) if num_pred is None else num_pred
    if num_gt == 0:
        return float('nan')
    if num_pred == 0 or len(scores) == 0:
        return 0.0
    c = scannet_pr_curve(scores, is_tp, num_gt)
    return float(np.sum((c.recall[:-1] - c.recall[1:]) * (c.precision[:-1] + c.precision[1:]) / 2.0))


@dataclass
class InstanceResult:
    """Class-agnostic AP summary."""

    ap: float                            # mean over ap_thresholds
    ap50: float
    ap25: float
    ap_per_threshold: dict[float, float]
    ap_thresholds: tuple[float, ...]
    num_gt: int
    num_pred: int
    scenes: int
    min_region_size: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (threshold keys as strings rounded to 2 decimals)."""
        return {'ap': json_float(self.ap), 'ap50': json_float(self.ap50), 'ap25': json_float(self.ap25),
                'ap_per_threshold': {f'{t:.2f}': json_float(v) for t, v in self.ap_per_threshold.items()},
                'num_gt': self.num_gt, 'num_pred': self.num_pred, 'scenes': self.scenes,
                'min_region_size': self.min_region_size}


class InstanceAccumulator:
    """Streams scenes: ``update(gt, pred_masks, scores)`` per scene, ``compute()`` at the end.

    Keeps per prediction its score and one outcome per threshold (bounded by the number of predictions),
    plus the number of evaluated ground-truth instances; mergeable and serialisable.
    """

    kind = 'instances'
    version = 1

    def __init__(self, ap_thresholds: Sequence[float] = SCANNET_AP_THRESHOLDS,
                 min_region_size: int = SCANNET_MIN_REGION_SIZE) -> None:
        self.ap_thresholds = tuple(float(t) for t in ap_thresholds)
        if not self.ap_thresholds or not all(0.0 <= t < 1.0 for t in self.ap_thresholds):
            raise ValueError(f'AP thresholds must be in [0, 1), got {self.ap_thresholds}')
        self.thresholds = tuple(sorted(set(self.ap_thresholds) | {AP50_THRESHOLD, AP25_THRESHOLD}))
        self.min_region_size = int(min_region_size)
        self._scores: list[np.ndarray] = []
        self._outcomes: list[np.ndarray] = []
        self.num_gt = 0
        self.scenes = 0

    def update(self, gt: Any, pred_masks: Any, scores: Any) -> None:
        """Add one scene (see :func:`match_scene` for the input forms)."""
        sc, out, n_gt = match_scene(gt, pred_masks, scores, self.thresholds, self.min_region_size)
        self._scores.append(sc)
        self._outcomes.append(out)
        self.num_gt += n_gt
        self.scenes += 1

    def _pooled(self) -> tuple[np.ndarray, np.ndarray]:
        if len(self._scores) != 1:
            sc = np.concatenate(self._scores) if self._scores else np.zeros(0)
            out = (np.concatenate(self._outcomes) if self._outcomes
                   else np.zeros((0, len(self.thresholds)), np.int8))
            self._scores, self._outcomes = [sc], [out]
        return self._scores[0], self._outcomes[0]

    @property
    def num_pred(self) -> int:
        """Predictions evaluated so far (after the minimum-size filter)."""
        return int(sum(s.size for s in self._scores))

    def _index(self, threshold: float) -> int:
        for i, t in enumerate(self.thresholds):
            if np.isclose(t, threshold):
                return i
        raise ValueError(f'threshold {threshold} was not evaluated (have {self.thresholds})')

    def average_precision(self, threshold: float) -> float:
        """AP at one evaluated IoU threshold."""
        sc, out = self._pooled()
        o = out[:, self._index(threshold)]
        scored = o != IGNORED
        return scannet_average_precision(sc[scored], o[scored] == TRUE_POSITIVE, self.num_gt, sc.size)

    def curve(self, threshold: float = AP50_THRESHOLD) -> PrecisionRecallCurve:
        """Return the precision-recall points at one threshold (for plots)."""
        sc, out = self._pooled()
        o = out[:, self._index(threshold)]
        scored = o != IGNORED
        return scannet_pr_curve(sc[scored], o[scored] == TRUE_POSITIVE, self.num_gt)

    def compute(self) -> InstanceResult:
        """AP, AP50, AP25 and AP per threshold."""
        per = {t: self.average_precision(t) for t in self.thresholds}
        return InstanceResult(ap=nanmean(np.array([per[t] for t in self.ap_thresholds])),
                              ap50=per[self.thresholds[self._index(AP50_THRESHOLD)]],
                              ap25=per[self.thresholds[self._index(AP25_THRESHOLD)]],
                              ap_per_threshold=per, ap_thresholds=self.ap_thresholds, num_gt=self.num_gt,
                              num_pred=self.num_pred, scenes=self.scenes,
                              min_region_size=self.min_region_size)

    def merge(self, other: InstanceAccumulator) -> InstanceAccumulator:
        """Add another accumulator's scenes (same thresholds and minimum size); returns self."""
        if (not isinstance(other, InstanceAccumulator) or other.ap_thresholds != self.ap_thresholds
                or other.min_region_size != self.min_region_size):
            raise ValueError('can only merge instance accumulators with the same thresholds and '
                             'min_region_size')
        sc, out = other._pooled()
        self._scores.append(sc.copy())
        self._outcomes.append(out.copy())
        self.num_gt += other.num_gt
        self.scenes += other.scenes
        return self

    def state_dict(self) -> dict[str, Any]:
        """JSON-able state."""
        sc, out = self._pooled()
        return {'kind': self.kind, 'version': self.version, 'ap_thresholds': list(self.ap_thresholds),
                'min_region_size': self.min_region_size, 'num_gt': self.num_gt, 'scenes': self.scenes,
                'scores': encode_array(sc), 'outcomes': encode_array(out)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> InstanceAccumulator:
        """Rebuild from :meth:`state_dict`."""
        check_state(state, cls.kind, cls.version)
        acc = cls(ap_thresholds=state['ap_thresholds'], min_region_size=state['min_region_size'])
        out = decode_array(state['outcomes']).astype(np.int8)
        if out.ndim != 2 or out.shape[1] != len(acc.thresholds):
            raise ValueError(f'outcomes of shape {out.shape} do not fit {len(acc.thresholds)} thresholds')
        acc._scores = [decode_array(state['scores']).astype(np.float64)]
        acc._outcomes = [out]
        acc.num_gt = int(state['num_gt'])
        acc.scenes = int(state['scenes'])
        return acc


__all__ = ['AP25_THRESHOLD', 'AP50_THRESHOLD', 'FALSE_POSITIVE', 'IGNORED', 'SCANNET_AP_THRESHOLDS',
           'SCANNET_INSTANCE_NYU40_IDS', 'SCANNET_MIN_REGION_SIZE', 'TRUE_POSITIVE', 'InstanceAccumulator',
           'InstanceResult', 'PrecisionRecallCurve', 'class_agnostic_gt', 'masks_from_ids', 'match_scene',
           'scannet_average_precision', 'scannet_pr_curve']
