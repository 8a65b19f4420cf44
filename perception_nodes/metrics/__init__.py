"""Evaluation metrics shared by ``ovp eval`` and the trainer (ROS-free; numpy, torch inputs accepted).

Every accumulator streams: ``update(...)`` per frame or scene, ``compute()`` at the end, ``merge(other)``
to combine bags or ranks, ``state_dict()`` / ``from_state()`` (plain JSON-able dicts) to resume.

- :mod:`.semantic`: confusion-matrix IoU / mIoU / accuracy / precision / recall (ScanNet200 Sec. 4),
  seen / unseen / hIoU (Affinity3D Eq. 21), head / common / tail (ScanNet200 Sec. 4), point masks for the
  front-view protocol (Affinity3D Sec. 4.1).
- :mod:`.occupancy`: POP-3D ray-cast occupancy IoU, (classes + empty) mIoU and LiDAR mIoU (POP-3D Sec. 4).
- :mod:`.retrieval`: language-driven retrieval AP per query and mAP (POP-3D Sec. 4.1), exact streaming.
- :mod:`.instances`: class-agnostic instance AP / AP50 / AP25, the ScanNet benchmark's definition
  (UnScene3D Sec. 4.1).
- :mod:`.label_maps`: dataset ids -> vocabulary class indices (``config/label_maps/*.yaml``).
- :mod:`.plots`: confusion matrix, per-class IoU bars, precision-recall curves as PNGs.

:mod:`.occupancy` (torch, for the ray-cast label constants) and :mod:`.plots` (matplotlib) are imported on
first use of their names.
"""
from __future__ import annotations

import importlib
from typing import Any

from perception_nodes.metrics.instances import (SCANNET_AP_THRESHOLDS, SCANNET_INSTANCE_NYU40_IDS,
                                                SCANNET_MIN_REGION_SIZE, InstanceAccumulator, InstanceResult,
                                                PrecisionRecallCurve, class_agnostic_gt, masks_from_ids,
                                                match_scene, scannet_average_precision, scannet_pr_curve)
from perception_nodes.metrics.label_maps import (BUILTIN_LABEL_MAPS, LabelMap, apply_label_map,
                                                 label_map_from_dict, load_label_map)
from perception_nodes.metrics.retrieval import (RetrievalAccumulator, RetrievalCurve, RetrievalResult,
                                                average_precision)
from perception_nodes.metrics.semantic import (AFFINITY3D_UNSEEN, SemanticAccumulator, SemanticReport,
                                               SemanticResult, SeenUnseenResult, SplitMetrics,
                                               frequency_splits, harmonic_iou, head_common_tail,
                                               metrics_from_confusion, seen_unseen, split_metrics)

_LAZY = {
    'OccupancyAccumulator': 'perception_nodes.metrics.occupancy',
    'OccupancyResult': 'perception_nodes.metrics.occupancy',
    'LidarSemanticAccumulator': 'perception_nodes.metrics.occupancy',
    'plot_confusion': 'perception_nodes.metrics.plots',
    'plot_class_iou': 'perception_nodes.metrics.plots',
    'plot_pr_curves': 'perception_nodes.metrics.plots',
    'save_figure': 'perception_nodes.metrics.plots',
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    'AFFINITY3D_UNSEEN', 'BUILTIN_LABEL_MAPS', 'SCANNET_AP_THRESHOLDS', 'SCANNET_INSTANCE_NYU40_IDS',
    'SCANNET_MIN_REGION_SIZE', 'InstanceAccumulator', 'InstanceResult', 'LabelMap',
    'LidarSemanticAccumulator', 'OccupancyAccumulator', 'OccupancyResult', 'PrecisionRecallCurve',
    'RetrievalAccumulator', 'RetrievalCurve', 'RetrievalResult', 'SemanticAccumulator', 'SemanticReport',
    'SemanticResult', 'SeenUnseenResult', 'SplitMetrics', 'apply_label_map', 'average_precision',
    'class_agnostic_gt', 'frequency_splits',
    'harmonic_iou', 'head_common_tail', 'label_map_from_dict', 'load_label_map', 'masks_from_ids',
    'match_scene', 'metrics_from_confusion', 'plot_class_iou', 'plot_confusion', 'plot_pr_curves',
    'save_figure', 'scannet_average_precision', 'scannet_pr_curve', 'seen_unseen', 'split_metrics',
]
