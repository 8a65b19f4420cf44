"""Point-wise semantic segmentation metrics from a streamed confusion matrix.

Definitions (every count is over the *evaluated* points: ground truth not ignored, inside the optional
mask):

- per class c: ``IoU_c = TP_c / (TP_c + FP_c + FN_c)``, ``precision_c = TP_c / (TP_c + FP_c)``,
  ``recall_c = TP_c / (TP_c + FN_c)`` (ScanNet200, Sec. 4 "Evaluation metrics"; the ScanNet and
  SemanticKITTI benchmarks use the same IoU).
- "unknown" predictions (``perception_nodes.outputs.UNKNOWN_LABEL``) are misses: a false negative of the
  true class and a false positive of no class. They lower recall, IoU, accuracy and coverage, never
  precision.
- ``miou``: the mean IoU over the classes **present in the evaluated ground truth** (GT_c > 0). A class
  with no ground-truth point has no defined IoU (0/0 when never predicted; 0 when only falsely
  predicted, which says nothing about how well it is segmented), so it is left out of the mean; its
  false positives still lower the IoU of the true classes they were taken from. This is the ScanNet
  script's rule (classes with a zero denominator are NaN) and it makes per-frame or per-bag numbers
  comparable when a bag shows few classes.
- ``miou_all``: the SemanticKITTI benchmark convention (semantic-kitti-api ``getIoU``): the mean over
  **all** K classes of the split, a class with no ground truth counting IoU 0 (0 / (0 + 1e-15) there).
  On a full validation split, where every class occurs, the two agree.
- ``accuracy``: correct / evaluated points (unknown = wrong); ``coverage``: fraction of evaluated points
  with a label other than unknown.
- precision of a class never predicted is undefined (NaN) and left out of mean precision (ScanNet200's
  Table 1 reports tail precision well above tail recall, which only happens that way).

Splits:

- seen / unseen / **hIoU** (Affinity3D Eq. 21): ``hIoU = 2 mIoU_seen mIoU_unseen / (mIoU_seen + mIoU_unseen)``
  for a configurable unseen set (Affinity3D: motorcycle, truck, bicyclist, traffic-sign).
- **head / common / tail** (ScanNet200 Sec. 4): classes sorted by their number of labelled training points,
  split 66 / 68 / 66 for the 200 classes; for K classes ``K//3`` / ``K - 2(K//3)`` / ``K//3`` (which gives
  66/68/66 for K = 200), or an explicit split (e.g. the official lists in
  ``config/label_maps/scannet200.yaml``). Per split: mIoU, mean precision, mean recall.

Front-view protocol (Affinity3D Sec. 4.1, after TCKZ) and POP-3D's "LiDAR mIoU": pass ``mask`` = points
inside a camera view to ``update``; keep a second accumulator without a mask for all points.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from perception_nodes.metrics._common import as_int_labels, as_mask, check_state, json_float, nanmean
from perception_nodes.outputs import UNKNOWN_LABEL

IGNORE_LABEL = -1

#: Affinity3D's generalised zero-shot split of SemanticKITTI (Sec. 4.1): the unseen classes.
AFFINITY3D_UNSEEN = ('motorcycle', 'truck', 'bicyclist', 'traffic-sign')


@dataclass
class SemanticResult:
    """Metrics computed from a confusion matrix (see the module docstring for the definitions)."""

    class_names: list[str]
    confusion: np.ndarray          # (K, K+1) int64: rows ground truth, columns prediction, last = unknown
    iou: np.ndarray                # (K,) NaN where TP+FP+FN = 0
    precision: np.ndarray          # (K,) NaN where the class was never predicted
    recall: np.ndarray             # (K,) NaN where the class has no ground truth
    gt_points: np.ndarray          # (K,)
    pred_points: np.ndarray        # (K,) predictions of the class among evaluated points
    miou: float                    # over classes present in the ground truth
    miou_all: float                # SemanticKITTI convention: all K classes, absent ones count 0
    accuracy: float
    mean_precision: float
    mean_recall: float
    coverage: float
    points: int
    unknown_points: int

    @property
    def present(self) -> np.ndarray:
        """(K,) bool: classes with ground-truth points."""
        return self.gt_points > 0

    def class_index(self, cls: int | str) -> int:
        """Index of a class given by index or name."""
        return _class_index(cls, self.class_names)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (NaN as None); per-class values keyed by class name."""
        per_class = {name: {'iou': json_float(self.iou[k]), 'precision': json_float(self.precision[k]),
                            'recall': json_float(self.recall[k]), 'gt_points': int(self.gt_points[k]),
                            'pred_points': int(self.pred_points[k])}
                     for k, name in enumerate(self.class_names)}
        return {'miou': json_float(self.miou), 'miou_all': json_float(self.miou_all),
                'accuracy': json_float(self.accuracy), 'mean_precision': json_float(self.mean_precision),
                'mean_recall': json_float(self.mean_recall), 'coverage': json_float(self.coverage),
                'points': self.points, 'unknown_points': self.unknown_points,
                'classes_present': int(self.present.sum()), 'per_class': per_class}


def _class_index(cls: int | str, names: Sequence[str]) -> int:
    if isinstance(cls, str):
        try:
            return list(names).index(cls)
        except ValueError:
            raise ValueError(f'class {cls!r} is not one of {list(names)}') from None
    k = int(cls)
    if not 0 <= k < len(names):
        raise ValueError(f'class index {k} out of range for {len(names)} classes')
    return k


def metrics_from_confusion(confusion: np.ndarray, class_names: Sequence[str] | None = None) -> SemanticResult:
    """Compute every metric from a (K, K+1) confusion matrix (last column: unknown predictions)."""
    conf = np.asarray(confusion, dtype=np.int64)
    k = conf.shape[0]
    if conf.ndim != 2 or conf.shape[1] != k + 1:
        raise ValueError(f'confusion must be (K, K+1), got {conf.shape}')
    names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
    tp = np.diag(conf[:, :k]).astype(np.float64)
    gt = conf.sum(axis=1)
    pred = conf[:, :k].sum(axis=0)
    fn = gt - tp
    fp = pred - tp
    with np.errstate(invalid='ignore', divide='ignore'):
        union = tp + fp + fn
        iou = np.where(union > 0, tp / np.where(union > 0, union, 1), np.nan)
        precision = np.where(pred > 0, tp / np.where(pred > 0, pred, 1), np.nan)
        recall = np.where(gt > 0, tp / np.where(gt > 0, gt, 1), np.nan)
    present = gt > 0
    points = int(gt.sum())
    unknown = int(conf[:, k].sum())
    miou = float(iou[present].mean()) if present.any() else float('nan')
    miou_all = float(np.where(np.isnan(iou), 0.0, iou).mean()) if k else float('nan')
    return SemanticResult(
        class_names=names, confusion=conf.copy(), iou=iou, precision=precision, recall=recall,
        gt_points=gt, pred_points=pred, miou=miou, miou_all=miou_all,
        accuracy=float(tp.sum() / points) if points else float('nan'),
        mean_precision=nanmean(precision), mean_recall=nanmean(recall[present]),
        coverage=float((points - unknown) / points) if points else float('nan'),
        points=points, unknown_points=unknown)


class SemanticAccumulator:
    """Streaming confusion matrix for K classes plus an "unknown" column; mergeable and serialisable.

    ``update(pred, truth, mask)`` per frame; ``compute()`` at the end. Ground truth: class indices in
    ``[0, K)`` or -1 (ignored). Predictions: class indices in ``[0, K)`` or ``UNKNOWN_LABEL`` (65535).
    Numpy arrays or torch tensors, any shape (flattened). Memory: K x (K+1) int64.
    """

    kind = 'semantic'
    version = 1

    def __init__(self, num_classes: int | None = None, class_names: Sequence[str] | None = None) -> None:
        if class_names is not None:
            class_names = [str(c) for c in class_names]
            if num_classes is not None and num_classes != len(class_names):
                raise ValueError(f'num_classes={num_classes} but {len(class_names)} class names')
            num_classes = len(class_names)
        if num_classes is None or int(num_classes) < 1:
            raise ValueError('SemanticAccumulator needs num_classes >= 1 or class_names')
        self.num_classes = int(num_classes)
        self.class_names = class_names or [str(i) for i in range(self.num_classes)]
        self.confusion = np.zeros((self.num_classes, self.num_classes + 1), dtype=np.int64)

    def update(self, pred: Any, truth: Any, mask: Any | None = None) -> int:
        """Add one frame; returns the number of points evaluated (GT not ignored and inside ``mask``)."""
        p = as_int_labels(pred, 'pred')
        t = as_int_labels(truth, 'truth')
        if p.size != t.size:
            raise ValueError(f'{p.size} predictions for {t.size} ground-truth labels')
        k = self.num_classes
        bad_t = (t < IGNORE_LABEL) | (t >= k)
        if bad_t.any():
            raise ValueError(f'ground truth must be in [0, {k}) or {IGNORE_LABEL}; '
                             f'got e.g. {int(t[bad_t][0])}')
        keep = t != IGNORE_LABEL
        if mask is not None:
            keep &= as_mask(mask, t.size)
        p, t = p[keep], t[keep]
        bad_p = ((p < 0) | (p >= k)) & (p != UNKNOWN_LABEL)
        if bad_p.any():
            raise ValueError(f'predictions must be in [0, {k}) or UNKNOWN_LABEL ({UNKNOWN_LABEL}); '
                             f'got e.g. {int(p[bad_p][0])}')
        col = np.where(p == UNKNOWN_LABEL, k, p)
        self.confusion += np.bincount(t * (k + 1) + col, minlength=k * (k + 1)).reshape(k, k + 1)
        return int(t.size)

    def update_confusion(self, confusion: np.ndarray) -> None:
        """Add a (K, K+1) confusion matrix computed elsewhere."""
        conf = np.asarray(confusion, dtype=np.int64)
        if conf.shape != self.confusion.shape:
            raise ValueError(f'confusion must be {self.confusion.shape}, got {conf.shape}')
        if (conf < 0).any():
            raise ValueError('confusion counts must be >= 0')
        self.confusion += conf

    def merge(self, other: SemanticAccumulator) -> SemanticAccumulator:
        """Add another accumulator's counts (same classes) into this one; returns self."""
        if not isinstance(other, SemanticAccumulator) or other.kind != self.kind \
                or other.class_names != self.class_names:
            raise ValueError(f'can only merge {self.kind!r} accumulators over the same classes')
        self.confusion += other.confusion
        return self

    def reset(self) -> None:
        """Forget every count."""
        self.confusion[:] = 0

    @property
    def points(self) -> int:
        """Number of points evaluated so far."""
        return int(self.confusion.sum())

    def compute(self) -> SemanticResult:
        """Metrics over everything accumulated."""
        return metrics_from_confusion(self.confusion, self.class_names)

    def state_dict(self) -> dict[str, Any]:
        """JSON-able state (plain ints and strings)."""
        return {'kind': self.kind, 'version': self.version, 'class_names': list(self.class_names),
                'confusion': self.confusion.tolist()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> SemanticAccumulator:
        """Rebuild an accumulator from :meth:`state_dict`."""
        check_state(state, cls.kind, cls.version)
        acc = cls(class_names=state['class_names'])
        acc.update_confusion(np.asarray(state['confusion'], dtype=np.int64))
        return acc


# ----------------------------------------------------------------------------------------------- splits

@dataclass
class SplitMetrics:
    """Mean metrics over a subset of the classes."""

    classes: list[str]
    miou: float            # mean IoU over the subset's classes present in the ground truth
    precision: float       # mean precision over the subset's classes that were predicted
    recall: float          # mean recall over the subset's classes present in the ground truth
    classes_present: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {'classes': list(self.classes), 'miou': json_float(self.miou),
                'precision': json_float(self.precision), 'recall': json_float(self.recall),
                'classes_present': self.classes_present}


def split_metrics(result: SemanticResult, classes: Sequence[int | str]) -> SplitMetrics:
    """Compute mIoU, mean precision and mean recall over ``classes`` (indices or names).

    The same class-set rules as :class:`SemanticResult`: mIoU and recall over the classes present in the
    ground truth, precision over the classes that were predicted.
    """
    idx = np.array(sorted({result.class_index(c) for c in classes}), dtype=np.int64)
    present = result.present[idx]
    return SplitMetrics(classes=[result.class_names[i] for i in idx],
                        miou=float(result.iou[idx][present].mean()) if present.any() else float('nan'),
                        precision=nanmean(result.precision[idx]),
                        recall=nanmean(result.recall[idx][present]),
                        classes_present=int(present.sum()))


def harmonic_iou(miou_seen: float, miou_unseen: float) -> float:
    """Affinity3D Eq. 21: ``2 s u / (s + u)``; 0 when both are 0, NaN when either is NaN.

    Homogeneous of degree one, so percentages in give percentages out.
    """
    s, u = float(miou_seen), float(miou_unseen)
    if np.isnan(s) or np.isnan(u):
        return float('nan')
    return 0.0 if s + u == 0 else 2.0 * s * u / (s + u)


@dataclass
class SeenUnseenResult:
    """Generalised zero-shot summary (Affinity3D Table 1 columns: Seen, Unseen, All, hIoU)."""

    miou_seen: float
    miou_unseen: float
    miou: float           # "All": every class (same class-set rule as SemanticResult.miou)
    hiou: float
    seen: SplitMetrics
    unseen: SplitMetrics

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {'miou_seen': json_float(self.miou_seen), 'miou_unseen': json_float(self.miou_unseen),
                'miou': json_float(self.miou), 'hiou': json_float(self.hiou),
                'seen': self.seen.to_dict(), 'unseen': self.unseen.to_dict()}


def seen_unseen(result: SemanticResult, unseen: Sequence[int | str] = AFFINITY3D_UNSEEN) -> SeenUnseenResult:
    """Seen / unseen mIoU and hIoU (Affinity3D Eq. 21); seen = every class not in ``unseen``."""
    unseen_idx = {result.class_index(c) for c in unseen}
    if not unseen_idx:
        raise ValueError('the unseen split is empty')
    seen_idx = [k for k in range(len(result.class_names)) if k not in unseen_idx]
    if not seen_idx:
        raise ValueError('every class is unseen (annotation-free setting: report miou only)')
    s = split_metrics(result, seen_idx)
    u = split_metrics(result, sorted(unseen_idx))
    return SeenUnseenResult(miou_seen=s.miou, miou_unseen=u.miou, miou=result.miou,
                            hiou=harmonic_iou(s.miou, u.miou), seen=s, unseen=u)


HEAD_COMMON_TAIL = ('head', 'common', 'tail')


def frequency_splits(train_counts: Sequence[int] | np.ndarray, sizes: Sequence[int] | None = None,
                     names: Sequence[str] = HEAD_COMMON_TAIL) -> dict[str, list[int]]:
    """Split classes by training frequency (ScanNet200 Sec. 4: head / common / tail = 66 / 68 / 66).

    Classes are sorted by ``train_counts`` (labelled training points per class) in decreasing order,
    ties by class index, and cut into consecutive groups of ``sizes``. Default sizes for K classes:
    ``(K//3, K - 2*(K//3), K//3)``, which is 66 / 68 / 66 for K = 200. Returns name -> class indices in
    decreasing-count order.
    """
    counts = np.asarray(train_counts, dtype=np.float64).reshape(-1)
    k = counts.size
    if k == 0 or (counts < 0).any() or np.isnan(counts).any():
        raise ValueError('train_counts must be a non-empty list of counts >= 0')
    if sizes is None:
        if len(names) != 3:
            raise ValueError('default sizes are for three splits; pass sizes for other splits')
        sizes = (k // 3, k - 2 * (k // 3), k // 3)
    sizes = [int(s) for s in sizes]
    if len(sizes) != len(names) or sum(sizes) != k or min(sizes) < 0:
        raise ValueError(f'split sizes {sizes} must be {len(names)} non-negative sizes summing to {k}')
    order = np.lexsort((np.arange(k), -counts))       # decreasing count, then class index
    out, start = {}, 0
    for name, size in zip(names, sizes):
        out[name] = [int(i) for i in order[start:start + size]]
        start += size
    return out


def head_common_tail(result: SemanticResult, train_counts: Sequence[int] | np.ndarray | None = None,
                     splits: Mapping[str, Sequence[int | str]] | None = None) -> dict[str, SplitMetrics]:
    """Per-split metrics: explicit ``splits`` (name -> classes), else :func:`frequency_splits` of counts.

    The returned dict also holds ``'all'`` (every class).
    """
    if (train_counts is None) == (splits is None):
        raise ValueError('pass exactly one of train_counts or splits')
    if splits is None:
        counts = np.asarray(train_counts).reshape(-1)
        if counts.size != len(result.class_names):
            raise ValueError(f'{counts.size} training counts for {len(result.class_names)} classes')
        splits = frequency_splits(counts)
    out = {name: split_metrics(result, members) for name, members in splits.items()}
    out['all'] = split_metrics(result, range(len(result.class_names)))
    return out


@dataclass
class SemanticReport:
    """A semantic result with its optional split summaries, as one JSON-able object."""

    result: SemanticResult
    seen_unseen: SeenUnseenResult | None = None
    splits: dict[str, SplitMetrics] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        out = self.result.to_dict()
        if self.seen_unseen is not None:
            out['seen_unseen'] = self.seen_unseen.to_dict()
        if self.splits:
            out['splits'] = {k: v.to_dict() for k, v in self.splits.items()}
        return out


__all__ = ['AFFINITY3D_UNSEEN', 'HEAD_COMMON_TAIL', 'IGNORE_LABEL', 'SemanticAccumulator', 'SemanticReport',
           'SemanticResult', 'SeenUnseenResult', 'SplitMetrics', 'frequency_splits', 'harmonic_iou',
           'head_common_tail', 'metrics_from_confusion', 'seen_unseen', 'split_metrics']
