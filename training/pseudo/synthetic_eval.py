"""Affinity3D's label variants measured on the synthetic street with the CLIP-like teacher.

The Table 3/4 rows at pseudo-label level: dense teacher ("MC"), instance crops ("CI") and crops +
affinity ("CI + Aff."), each with and without visibility ("Vis."), in the GZS or AF setting. Used by
``bench/pseudo_label_quality.py`` and the direction tests.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np
import torch

from perception_nodes.frame import Frame
from perception_nodes.geometry.visibility import VisibilityConfig
from training.pseudo.affinity import AffinityConfig
from training.pseudo.affinity3d import Affinity3DConfig, Affinity3DLabeler, dense_frame_labels
from training.pseudo.instance_labels import TeacherCropEncoder
from training.pseudo.quality import label_quality
from training.pseudo.superpoints import SuperpointConfig
from training.pseudo.visibility import PointVisibility, point_visibility

VARIANTS = ('dense', 'dense+vis', 'crops', 'crops+vis', 'crops+aff', 'crops+aff+vis')


@dataclass
class LabelEvalConfig:
    """What to compare (see the module docstring)."""

    setting: str = 'gzs'
    unseen: tuple[str, ...] = ('truck', 'motorcycle', 'bicyclist', 'traffic-sign')
    affinity: AffinityConfig = field(default_factory=AffinityConfig)
    visibility: VisibilityConfig = field(default_factory=lambda: VisibilityConfig(variant='superpixel'))
    superpoints: SuperpointConfig = field(default_factory=SuperpointConfig)
    variants: tuple[str, ...] = VARIANTS


def evaluate_label_variants(frames: Sequence[Frame], teacher, class_names: Sequence[str],
                            text_embeddings: torch.Tensor,
                            config: LabelEvalConfig | None = None) -> dict[str, dict]:
    """Pooled :func:`~training.pseudo.quality.label_quality` per variant over ``frames`` (in sequence order).

    Evaluated points: the camera field of view; in GZS only the points whose true class is unseen (the
    ones the pseudo labels are for). ``truly_visible`` comes from the synthetic world's visibility truth.
    """
    config = config or LabelEvalConfig()
    torch.set_num_threads(1)
    base = Affinity3DConfig(setting=config.setting, unseen=config.unseen, superpoints=config.superpoints,
                            visibility=config.visibility, affinity=config.affinity)
    split = base.split(class_names)
    vis = [point_visibility(f, config.visibility) for f in frames]
    novis = [PointVisibility(v.projection, v.in_image.clone()) for v in vis]
    fov = [v.any_in_image for v in vis]
    truly = [np.any([c.truth['visible'] for c in f.cameras], axis=0) for f in frames]
    evaluate = [np.isin(f.labels, np.flatnonzero(split.unseen_mask)) for f in frames]
    preds: dict[str, list[np.ndarray]] = {}
    encoder = TeacherCropEncoder(teacher)
    segments = None
    for variant in config.variants:
        use_vis = variant.endswith('+vis')
        if variant.startswith('dense'):
            out = []
            for f, v, nv in zip(frames, vis, novis):
                maps = teacher.dense_features(f.cameras)
                labels, _ = dense_frame_labels(f, maps, text_embeddings, split, v if use_vis else nv, use_vis)
                out.append(labels.labels)
            preds[variant] = out
            continue
        aff = replace(config.affinity, enabled='+aff' in variant)
        labeler = Affinity3DLabeler(replace(base, affinity=aff, use_visibility=use_vis), class_names,
                                    text_embeddings, encoder)
        if segments is None:
            segments = [labeler.superpoints(f) for f in frames]
        done = []
        for i, f in enumerate(frames):
            v = vis[i] if use_vis else novis[i]
            done += labeler.push(f, key=i, visibility=v, segment_ids=segments[i])
        done += labeler.flush()
        preds[variant] = [d.point_labels.labels for d in sorted(done, key=lambda d: d.key)]
    results = {}
    for variant, out in preds.items():
        truth = np.concatenate([f.labels for f in frames])
        q = label_quality(np.concatenate(out), truth, np.concatenate(fov), np.concatenate(truly),
                          np.concatenate(evaluate))
        results[variant] = {k: round(v, 4) if isinstance(v, float) else v for k, v in q.items()}
    return results
