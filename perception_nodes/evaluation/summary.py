"""Numbers from a :class:`~perception_nodes.evaluation.scoring.BagScore`: the JSON-able summary and headline.

Every metric is computed by ``perception_nodes.metrics`` from the accumulators; this module only picks the
protocols and splits (seen / unseen / hIoU: Affinity3D Eq. 21; head / common / tail: ScanNet200 Sec. 4)
and lays the numbers out. Protocol names in the summary: ``all`` (every point with ground truth),
``front_view`` (points in a camera's field of view: Affinity3D's front view and POP-3D's "LiDAR mIoU"
points), ``visible`` (points a camera sees after the occlusion test, ``Outputs.visible``) and ``invisible``
(the other points: no camera sees them).
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from perception_nodes.evaluation.scoring import BagScore
from perception_nodes.metrics import SemanticReport, head_common_tail, seen_unseen
from perception_nodes.metrics.semantic import frequency_splits
from perception_nodes.stats import percentiles

PROTOCOLS = {'all': 'all', 'front_view': 'fov', 'visible': 'visible', 'invisible': 'invisible'}
PROTOCOL_TEXT = {
    'all': 'every point with ground truth',
    'front_view': 'points inside a camera\'s field of view, no occlusion test (Affinity3D front view; POP-3D '
                  '"LiDAR mIoU")',
    'visible': 'points a camera sees after the occlusion test (Outputs.visible)',
    'invisible': 'points no camera sees (not Outputs.visible): a 2D teacher has no evidence there',
}


@dataclass
class SummaryContext:
    """How to read the accumulators: class names, the splits, the headline protocol, occupancy source."""

    class_names: list[str]
    unseen: tuple[str, ...] = ()
    splits: dict[str, list[int]] = field(default_factory=dict)
    splits_source: str = ''
    front_view: bool = False
    occupancy_source: str = ''

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (splits by class name)."""
        return {'unseen': list(self.unseen),
                'splits': {k: [self.class_names[i] for i in v] for k, v in self.splits.items()},
                'splits_source': self.splits_source, 'headline_protocol': self.headline_protocol,
                'occupancy_source': self.occupancy_source}

    @property
    def headline_protocol(self) -> str:
        return 'front_view' if self.front_view else 'all'


def resolve_splits(label_map: Any, class_counts: str | None, overall: BagScore | None
                   ) -> tuple[dict[str, list[int]], str]:
    """Head / common / tail: the label map's official lists, else counts from a file or the ground truth."""
    if label_map.splits:
        return label_map.split_indices(), f'label map {label_map.name!r} (official lists)'
    if not class_counts:
        return {}, ''
    names = label_map.class_names
    if class_counts == 'gt':
        if overall is None:
            return {}, ''
        counts = overall.semantic['all'].confusion.sum(axis=1)
        return frequency_splits(counts), ('counts of the evaluated ground truth (a stand-in for the '
                                          'training counts ScanNet200 splits by)')
    data = _read_counts(class_counts)
    missing = [n for n in names if n not in data]
    if missing:
        raise ValueError(f'{class_counts}: no count for classes {missing}')
    return frequency_splits([float(data[n]) for n in names]), f'class counts from {class_counts}'


def _read_counts(path: str | os.PathLike) -> dict[str, float]:
    import yaml
    text = Path(path).read_text(encoding='utf-8')
    data = json.loads(text) if str(path).endswith('.json') else yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f'{path}: expected a mapping class name -> count')
    return {str(k): float(v) for k, v in data.items()}


def _fraction(num: int, den: int) -> float | None:
    return None if den == 0 else round(num / den, 6)


def semantic_summary(score: BagScore, ctx: SummaryContext) -> dict[str, Any]:
    """Per protocol: IoU / precision / recall per class, mIoU, accuracy, splits (empty protocols say so)."""
    out: dict[str, Any] = {}
    for name, key in PROTOCOLS.items():
        result = score.semantic[key].compute()
        if result.points == 0:
            out[name] = {'points': 0, 'miou': None, 'note': f'no evaluated point ({PROTOCOL_TEXT[name]})'}
            continue
        su = None
        if ctx.unseen:
            su = seen_unseen(result, ctx.unseen)
        splits = head_common_tail(result, splits=ctx.splits) if ctx.splits else {}
        out[name] = SemanticReport(result, su, splits).to_dict()
        out[name]['protocol'] = PROTOCOL_TEXT[name]
    return out


def speed_summary(score: BagScore) -> dict[str, Any]:
    """Frames per second of the evaluation and of the pipeline alone, per-stage latency percentiles."""
    frames = score.counts.get('frames', 0)
    total = sum(score.latency_ms.get('total', []))
    return {'frames': frames, 'wall_s': round(score.wall_s, 3),
            'frames_per_s': round(frames / score.wall_s, 3) if score.wall_s > 0 and frames else None,
            'pipeline_frames_per_s': round(frames / (total / 1e3), 3) if total > 0 else None,
            'latency_ms': {k: percentiles(v) for k, v in sorted(score.latency_ms.items())},
            'stages': 'pipeline stages (Outputs.timings_ms; total = Pipeline.process) and eval (ground truth '
                      '+ metrics per frame)'}


def summarize(score: BagScore, ctx: SummaryContext) -> dict[str, Any]:
    """Return the JSON-able summary of one bag or of all (module docstring)."""
    c = score.counts
    n = c.get('points', 0)
    summary: dict[str, Any] = {
        'frames': c.get('frames', 0),
        'frames_with_camera': c.get('frames_with_camera', 0),
        'points': {
            'total': n,
            'evaluated_all': c.get('points_evaluated_all', 0),
            'evaluated_front_view': c.get('points_evaluated_fov', 0),
            'evaluated_visible': c.get('points_evaluated_visible', 0),
            'evaluated_invisible': c.get('points_evaluated_invisible', 0),
            'fraction_evaluated_all': _fraction(c.get('points_evaluated_all', 0), n),
            'fraction_evaluated_front_view': _fraction(c.get('points_evaluated_fov', 0), n),
            'fraction_evaluated_visible': _fraction(c.get('points_evaluated_visible', 0), n),
            'fraction_in_front_view': _fraction(c.get('points_in_fov', 0), n),
            'fraction_predicted_unknown': _fraction(c.get('points_unknown_pred', 0), n),
        },
        'ground_truth': {
            'ignored_points': c.get('points_ignored_listed', 0),
            'unlisted_raw_ids': {str(k): v for k, v in sorted(score.unlisted_raw_ids.items())},
            'note': 'ignored = raw ids the label map lists as ignore or does not list (unlisted_raw_ids: '
                    'id -> points)',
        },
        'semantic': semantic_summary(score, ctx),
    }
    summary['lidar_miou'] = summary['semantic']['front_view'].get('miou')
    summary['occupancy'] = _occupancy(score, ctx)
    summary['retrieval'] = _retrieval(score)
    summary['instances'] = _instances(score.instances, c, 'the pipeline\'s class-agnostic segments')
    if score.instances_masks is not None:
        summary['instances_masks'] = _instances(score.instances_masks, c, 'the masks file')
    summary['speed'] = speed_summary(score)
    summary['skipped'] = score.skipped
    summary['counts'] = dict(sorted(score.stats_counts.items()))
    summary['errors'] = list(score.errors)
    summary['notes'] = [f'{text} (x{count})' if count > 1 else text for text, count in score.notes.items()]
    return summary


def _occupancy(score: BagScore, ctx: SummaryContext) -> dict[str, Any]:
    c = score.counts
    if score.occupancy is None:
        return {'skipped': 'not requested or no grid'}
    frames = {k: c.get(f'occupancy_frames_{k}', 0) for k in ('student', 'geometry', 'world_frame', 'no_grid')}
    if not frames['student'] and not frames['geometry']:
        why = ('the clouds are in a world frame (no sensor origin to cast rays from)'
               if frames['world_frame'] else 'no frame had a grid')
        return {'skipped': why, 'frames': frames}
    out = score.occupancy.compute().to_dict()
    out['frames'] = frames
    out['source'] = ('student occupancy head (p > 0.5) on its grid' if frames['student'] else
                     'geometry: the voxels holding LiDAR points (class-agnostic IoU = 1 by construction)')
    return out


def _retrieval(score: BagScore) -> dict[str, Any]:
    if score.retrieval is None:
        return {'skipped': 'not requested, outputs.embeddings off, or no labeller'}
    out = score.retrieval.compute().to_dict()
    out['frames_without_features'] = score.counts.get('retrieval_frames_without_features', 0)
    return out


def _instances(acc: Any, counts: Any, what: str) -> dict[str, Any]:
    if acc is None:
        return {'skipped': 'not requested'}
    if acc.scenes == 0:
        return {'skipped': 'no frame had an "instance" field'}
    out = acc.compute().to_dict()
    out['predictions'] = what
    out['ap_thresholds'] = [round(t, 2) for t in acc.ap_thresholds]
    return out


def headline(summary: dict[str, Any], ctx: SummaryContext) -> dict[str, Any]:
    """Return the few numbers a reader looks at first (None where not computed)."""
    sem = summary['semantic']
    main = sem[ctx.headline_protocol]
    su = main.get('seen_unseen') or {}
    splits = main.get('splits') or {}
    inst = summary['instances']
    occ = summary['occupancy']
    out = {
        'protocol': ctx.headline_protocol,
        'miou': main.get('miou'),
        'accuracy': main.get('accuracy'),
        'miou_all_points': sem['all'].get('miou'),
        'miou_front_view': sem['front_view'].get('miou'),
        'miou_visible': sem['visible'].get('miou'),
        'miou_invisible': sem['invisible'].get('miou'),
        'lidar_miou': summary['lidar_miou'],
        'miou_seen': su.get('miou_seen'), 'miou_unseen': su.get('miou_unseen'), 'hiou': su.get('hiou'),
        'miou_head': (splits.get('head') or {}).get('miou'),
        'miou_common': (splits.get('common') or {}).get('miou'),
        'miou_tail': (splits.get('tail') or {}).get('miou'),
        'occupancy_iou': occ.get('iou'), 'occupancy_miou': occ.get('miou'),
        'retrieval_map': summary['retrieval'].get('map'),
        'instance_ap': inst.get('ap'), 'instance_ap50': inst.get('ap50'), 'instance_ap25': inst.get('ap25'),
        'fraction_evaluated': summary['points'][
            'fraction_evaluated_front_view' if ctx.front_view else 'fraction_evaluated_all'],
        'fraction_unknown': summary['points']['fraction_predicted_unknown'],
        'frames': summary['frames'],
        'frames_per_s': summary['speed']['frames_per_s'],
    }
    if 'instances_masks' in summary:
        m = summary['instances_masks']
        out.update({'masks_ap': m.get('ap'), 'masks_ap50': m.get('ap50'), 'masks_ap25': m.get('ap25')})
    return out


def finite(values: Sequence[Any]) -> list[float]:
    """Return the finite floats among ``values`` (None / NaN dropped)."""
    return [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]


def class_iou(summary_semantic: dict[str, Any], class_names: Sequence[str]) -> np.ndarray:
    """(K,) IoU per class from a semantic summary block (NaN where absent)."""
    per = summary_semantic.get('per_class') or {}
    return np.array([np.nan if (per.get(n) or {}).get('iou') is None else per[n]['iou'] for n in class_names])


__all__ = ['PROTOCOLS', 'PROTOCOL_TEXT', 'SummaryContext', 'class_iou', 'finite', 'headline',
           'resolve_splits', 'semantic_summary', 'speed_summary', 'summarize']
