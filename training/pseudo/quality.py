"""Measuring pseudo labels and pseudo masks against known truth (synthetic world, rooms, ScanNet).

- :func:`label_quality`: Affinity3D Table 4 style accuracy (correct / labelled points) of a point-wise
  pseudo label, split into points the camera truly sees and points it does not (occluded points a naive
  projection wrongly matches), plus the ignored fraction; evaluated on the camera field of view (the
  front-view protocol of Affinity3D Sec. 4.1).
- :func:`mask_quality`: class-agnostic mask quality without AP: mean best IoU per ground-truth instance,
  recall at IoU 0.5 / 0.25, and the precision of the masks at IoU 0.5 (AP/AP50/AP25 of the ScanNet
  protocol come from ``perception_nodes.metrics.instances`` once it is merged).
"""
from __future__ import annotations

import numpy as np


def label_quality(pred: np.ndarray, truth: np.ndarray, fov: np.ndarray, truly_visible: np.ndarray,
                  evaluate: np.ndarray | None = None) -> dict[str, float]:
    """Accuracy of pseudo labels (-1 = ignored) on the field of view.

    ``fov`` (N,) in some camera's image; ``truly_visible`` (N,) the camera really sees the point (ground
    truth); ``evaluate`` (N,) optional extra mask (e.g. unseen-class or pseudo-labelled points only).
    Returns ``accuracy`` (correct / labelled), ``mean_class_accuracy`` (the same per true class, averaged
    over the classes with labelled points), ``accuracy_visible`` / ``accuracy_occluded`` (same on truly
    visible / truly occluded points), ``ignored_fraction``, ``occluded_kept_fraction`` (occluded points
    that still carry a label) and the counts.
    """
    pred = np.asarray(pred, dtype=np.int64).reshape(-1)
    truth = np.asarray(truth, dtype=np.int64).reshape(-1)
    keep = np.asarray(fov, dtype=bool) & (truth >= 0)
    if evaluate is not None:
        keep &= np.asarray(evaluate, dtype=bool)
    vis = np.asarray(truly_visible, dtype=bool)
    labelled = keep & (pred >= 0)
    correct = labelled & (pred == truth)

    def ratio(a: np.ndarray, b: np.ndarray) -> float:
        nb = int(b.sum())
        return float(a.sum() / nb) if nb else float('nan')

    occluded = keep & ~vis
    classes = np.unique(truth[labelled])
    per_class = [ratio(correct & (truth == c), labelled & (truth == c)) for c in classes]
    return {'points': int(keep.sum()), 'labelled': int(labelled.sum()),
            'accuracy': ratio(correct, labelled),
            'mean_class_accuracy': float(np.mean(per_class)) if per_class else float('nan'),
            'accuracy_visible': ratio(correct & vis, labelled & vis),
            'accuracy_occluded': ratio(correct & ~vis, labelled & ~vis),
            'ignored_fraction': ratio(keep & ~labelled, keep),
            'occluded_points': int(occluded.sum()),
            'occluded_kept_fraction': ratio(labelled & ~vis, occluded)}


def mask_iou(pred_ids: np.ndarray, gt_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Compute the IoU of every (pred mask, gt instance) pair from per-point ids (-1 = none).

    Returns the (P, G) IoU matrix, the pred ids and the gt ids (sorted).
    """
    p = np.asarray(pred_ids, dtype=np.int64).reshape(-1)
    g = np.asarray(gt_ids, dtype=np.int64).reshape(-1)
    pu = np.unique(p[p >= 0])
    gu = np.unique(g[g >= 0])
    pi = np.searchsorted(pu, p)
    gi = np.searchsorted(gu, g)
    both = (p >= 0) & (g >= 0)
    inter = np.zeros((len(pu), len(gu)))
    np.add.at(inter, (pi[both], gi[both]), 1)
    psize = np.bincount(pi[p >= 0], minlength=len(pu)).astype(np.float64)
    gsize = np.bincount(gi[g >= 0], minlength=len(gu)).astype(np.float64)
    union = psize[:, None] + gsize[None, :] - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return iou, pu, gu


def mask_quality(pred_ids: np.ndarray, gt_ids: np.ndarray, gt_valid: np.ndarray | None = None,
                 min_gt_points: int = 1) -> dict[str, float]:
    """Class-agnostic mask quality (see the module docstring).

    ``gt_ids`` (N,) instance ids (-1 none); ``gt_valid`` (N,) marks the points of instances that count
    (e.g. objects, not walls and floor; ScanNet's benchmark classes); instances with fewer than
    ``min_gt_points`` points are skipped. Predicted masks are compared with the counted instances only.
    """
    g = np.asarray(gt_ids, dtype=np.int64).copy()
    if gt_valid is not None:
        g[~np.asarray(gt_valid, dtype=bool)] = -1
    counts = np.bincount(g[g >= 0]) if (g >= 0).any() else np.zeros(0, dtype=np.int64)
    small = np.flatnonzero((counts > 0) & (counts < min_gt_points))
    g[np.isin(g, small)] = -1
    iou, pu, gu = mask_iou(pred_ids, g)
    if len(gu) == 0:
        return {'gt_instances': 0, 'masks': int(len(pu)), 'mean_best_iou': float('nan'),
                'recall_50': float('nan'), 'recall_25': float('nan'), 'precision_50': float('nan')}
    best = iou.max(axis=0) if len(pu) else np.zeros(len(gu))
    prec = float((iou.max(axis=1) >= 0.5).mean()) if len(pu) else float('nan')
    return {'gt_instances': int(len(gu)), 'masks': int(len(pu)), 'mean_best_iou': float(best.mean()),
            'recall_50': float((best >= 0.5).mean()), 'recall_25': float((best >= 0.25).mean()),
            'precision_50': prec}
