"""Bench helper: the fusion pipeline with the noisy oracle teacher on the synthetic world, scored.

Used by bench/fusion_quality.py and test/bench/test_oracle_eval.py (loaded by path: bench/ is not a package).

``label_metrics``: ``UNKNOWN_LABEL`` predictions count as "no label": they lower coverage and recall,
never precision. IoU per class c (over the evaluated points): ``TP_c / (TP_c + FP_c + FN_c)`` with unknown
predictions counted as false negatives of their true class (unlabelled points are misses); mIoU averages
the classes present in the ground truth or the predictions.

``evaluate_fusion``: the pipeline with the noisy ground-truth oracle teacher over synthetic frames, for each
(visibility variant, instance voting) pair; used by bench/fusion_quality.py and the tests.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from perception_nodes.config import PerceptionConfig, with_overrides
from perception_nodes.frame import Frame
from perception_nodes.outputs import UNKNOWN_LABEL
from perception_nodes.pipeline.core import Pipeline

VARIANTS = [(vis, vote) for vis in ('none', 'depth_buffer', 'superpixel') for vote in (False, True)]


def label_metrics(pred: np.ndarray, truth: np.ndarray, num_classes: int,
                  mask: np.ndarray | None = None) -> dict[str, float]:
    """Compute label metrics.

    accuracy (all evaluated points, unknown = wrong), precision (among labelled points), coverage,
    wrong_rate (labelled and wrong), mIoU, and the number of evaluated points.
    """
    pred = np.asarray(pred).astype(np.int64).reshape(-1)
    truth = np.asarray(truth).astype(np.int64).reshape(-1)
    if pred.shape != truth.shape:
        raise ValueError(f'{pred.size} predictions for {truth.size} ground-truth labels')
    keep = (truth >= 0) & (truth < num_classes)
    if mask is not None:
        keep &= np.asarray(mask, dtype=bool).reshape(-1)
    p, t = pred[keep], truth[keep]
    n = int(t.size)
    if n == 0:
        return {'points': 0, 'accuracy': float('nan'), 'precision': float('nan'), 'coverage': float('nan'),
                'wrong_rate': float('nan'), 'miou': float('nan')}
    labelled = p != UNKNOWN_LABEL
    correct = p == t
    conf = np.zeros((num_classes, num_classes + 1), dtype=np.int64)     # last column: unknown
    np.add.at(conf, (t, np.where(labelled & (p < num_classes), p, num_classes)), 1)
    tp = np.diag(conf[:, :num_classes]).astype(np.float64)
    fp = conf[:, :num_classes].sum(axis=0) - tp
    fn = conf.sum(axis=1) - tp
    present = (conf.sum(axis=1) + conf[:, :num_classes].sum(axis=0)) > 0
    iou = tp[present] / np.maximum(tp + fp + fn, 1)[present]
    return {'points': n,
            'accuracy': float(correct.mean()),
            'precision': float(correct[labelled].mean()) if labelled.any() else float('nan'),
            'coverage': float(labelled.mean()),
            'wrong_rate': float((labelled & ~correct).mean()),
            'miou': float(iou.mean()) if iou.size else float('nan')}


def oracle_pipeline(visibility: str, voting: bool, noise: Any, block: int = 2,
                    dim: int = 64, seed: int = 0) -> Pipeline:
    """Build a pipeline whose teacher is the noisy ground-truth oracle.

    ``noise``: OracleNoise; the vocabulary is SIM_CLASSES.
    """
    from perception_nodes.geometry.sim import SIM_CLASSES
    from perception_nodes.teacher.oracle import OracleTeacher
    gen = torch.Generator().manual_seed(seed)
    emb = F.normalize(torch.randn(len(SIM_CLASSES), dim, generator=gen), dim=1)
    cfg = with_overrides(PerceptionConfig(), {
        'fusion.visibility': visibility, 'fusion.instance_voting': voting, 'overlay.enabled': False,
        'fusion.visibility_block': block, 'fusion.visibility_dilation': 1,
        'fusion.visibility_relative_threshold': 0.1, 'segments.enabled': voting,
        'grids.nav_grid': False, 'grids.voxels': False})
    pipeline = Pipeline(cfg, teacher=OracleTeacher(emb, noise=noise))
    pipeline.set_vocabulary('sim', embeddings=emb)
    return pipeline


def evaluate_fusion(frames: Sequence[Frame], noise: Any, variants=VARIANTS,
                    block: int = 2) -> dict[str, dict]:
    """Metrics per variant name ``<visibility>+vote`` / ``<visibility>``, pooled over ``frames``."""
    from perception_nodes.geometry.projection import project_frame
    from perception_nodes.geometry.sim import SIM_CLASSES
    k = len(SIM_CLASSES)
    masks = []
    for f in frames:
        in_image = project_frame(f).in_image.any(0).numpy()
        truly_visible = np.any([v.truth['visible'] for v in f.cameras], axis=0)
        masks.append((in_image, in_image & ~truly_visible))
    results = {}
    for vis, vote in variants:
        pipeline = oracle_pipeline(vis, vote, noise, block)
        preds = [pipeline.process(f).labels.astype(np.int64) for f in frames]
        pred = np.concatenate(preds)
        truth = np.concatenate([f.labels for f in frames])
        fov = np.concatenate([m[0] for m in masks])
        occluded = np.concatenate([m[1] for m in masks])
        m = label_metrics(pred, truth, k, fov)
        wrong = (pred != truth) & (pred != UNKNOWN_LABEL)
        m['occluded_points'] = int(occluded.sum())
        m['occluded_wrong_rate'] = float(wrong[occluded].mean()) if occluded.any() else float('nan')
        results[f'{vis}+vote' if vote else vis] = {key: round(v, 4) if isinstance(v, float) else v
                                                   for key, v in m.items()}
    return results
