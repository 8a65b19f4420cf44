"""Ground truth for ``ovp eval``, from the frames of a bag: labels, instances, view masks, ray-cast voxels.

- **Semantic labels**: the cloud's ``label`` field (``Frame.labels``, raw dataset ids) through a label map
  (``metrics.label_maps``) to the pipeline's class indices; raw ids the map lists as ``ignore`` and raw
  ids it does not list at all both become -1 (not evaluated). The unlisted ones are counted per raw id so
  the report can say what was dropped.
- **Instances** (class-agnostic, UnScene3D / ScanNet protocol): one ground-truth instance per
  (class, ``instance`` id) pair among points of the label map's instance ("thing") classes with an
  instance id other than 0 (0 = unannotated / stuff in ScanNet, SemanticKITTI and the synthetic world);
  every other point is void (-1).
- **Field of view** (Affinity3D's front-view protocol; POP-3D's "points that project into a camera"): a
  point projects inside the image of at least one camera of the frame, in front of it. No occlusion test:
  that is what ``Outputs.visible`` adds ("visible"), reported as a third protocol.
- **Ray-cast voxels** (POP-3D Sec. 4.1): ``geometry.occupancy.ray_cast_labels`` of the sweep from the
  sensor at the origin of the cloud's frame: free / ignore / occupied, an occupied voxel carrying the most
  frequent evaluated class of its points (voxels holding only ignored points stay class-less
  ``OCCUPIED``: they count for the class-agnostic IoU only).
"""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from perception_nodes.frame import Frame
from perception_nodes.geometry.occupancy import ray_cast_labels
from perception_nodes.geometry.voxels import GridSpec, majority_label
from perception_nodes.metrics.label_maps import BUILTIN_LABEL_MAPS, LabelMap, load_label_map

#: Cloud frames that are a world frame, not a sensor: no ray origin (reconstructed scenes such as ScanNet).
WORLD_FRAMES = ('map', 'odom', 'world', 'earth')
TRUTH_FIELDS = ('label', 'instance')


class MissingTruthError(ValueError):
    """A bag (or frame) has no ground-truth ``label`` field: nothing can be scored."""


def missing_truth_message(where: str, topic: str, fields: Sequence[str]) -> str:
    """Return the error text naming the missing fields and how to get them."""
    missing = [f for f in TRUTH_FIELDS if f not in fields]
    return (f'{where}: the clouds on {topic} have no ground-truth field(s) {missing} (fields: '
            f'{", ".join(fields) or "none"}); ovp eval needs a per-point "label" field ("instance" for '
            f'instance AP), as ovp kitti-to-bag (SemanticKITTI), ovp scannet-to-bag, ovp nuscenes-to-bag '
            f'(with lidarseg) and write_sim_bag(..., truth=True) write them')


def cloud_fields(bag: str | os.PathLike, inputs: Any = None) -> tuple[str, list[str]]:
    """(LiDAR topic, field names of its first cloud) of a bag; ([], topic) when it has no cloud message."""
    from perception_nodes.io.bag_source import BagSource
    from perception_nodes.io.bags import read_messages
    with BagSource(bag, inputs) as source:
        for item in read_messages(source.reader, [source.lidar_topic], deserialize=False, path=source.path):
            msg = source.reader.deserialize(item.msg, item.msgtype)
            return source.lidar_topic, [str(f.name) for f in msg.fields]
        return source.lidar_topic, []


def check_bag_truth(bag: str | os.PathLike, inputs: Any = None) -> list[str]:
    """Raise :class:`MissingTruthError` unless the bag's clouds carry ``label``; returns the field names."""
    topic, fields = cloud_fields(bag, inputs)
    if 'label' not in fields:
        raise MissingTruthError(missing_truth_message(str(bag), topic, fields))
    return fields


# ------------------------------------------------------------------------------------------ label maps

def vocabulary_label_map(vocabulary: Any) -> LabelMap:
    """Return the label map a vocabulary's own ``ids`` define (raw id -> class index; the synthetic world)."""
    mapping = vocabulary.label_map()
    if not mapping:
        raise ValueError(f'vocabulary {vocabulary.name!r} lists no dataset ids: pass a label map '
                         f'(--label-map {"|".join(BUILTIN_LABEL_MAPS)}|FILE)')
    return LabelMap(name=f'{vocabulary.name} (vocabulary ids)', vocabulary=vocabulary.name,
                    class_names=list(vocabulary.names), mapping=dict(mapping), source='vocabulary')


def resolve_label_map(spec: str | None, class_names: Sequence[str], vocabulary: Any = None) -> LabelMap:
    """Return the label map for ``spec`` (name / file / None), checked against the pipeline's classes.

    None: the built-in map named like the vocabulary, else the vocabulary's ids. A map whose classes are not
    the pipeline's (same names, same order) is refused with a ValueError naming the differences.
    """
    names = list(class_names)
    vocab_name = getattr(vocabulary, 'name', '')
    if spec is None:
        if vocab_name in BUILTIN_LABEL_MAPS:
            lm = load_label_map(vocab_name)
        elif vocabulary is not None:
            lm = vocabulary_label_map(vocabulary)
        else:
            raise ValueError('no label map given and the pipeline has no vocabulary to take one from')
    else:
        lm = load_label_map(spec)
    if lm.class_names != names:
        extra = [c for c in lm.class_names if c not in names]
        absent = [c for c in names if c not in lm.class_names]
        what = (f'label-map classes not in the vocabulary: {extra}; vocabulary classes not in the label map: '
                f'{absent}' if extra or absent else 'the same classes in another order')
        raise ValueError(f'label map {lm.name!r} targets vocabulary {lm.vocabulary!r} ({len(lm.class_names)} '
                         f'classes) but the pipeline labels with {vocab_name or "its vocabulary"!r} '
                         f'({len(names)} classes): {what}. Pass the matching --vocabulary or --label-map')
    return lm


class TruthMapper:
    """Raw ids of the frames -> class indices (-1 ignore), counting the raw ids the map does not list."""

    def __init__(self, label_map: LabelMap) -> None:
        self.label_map = label_map
        listed = [int(r) for r in list(label_map.mapping) + list(label_map.ignored)]
        self.listed = np.zeros(max(listed, default=0) + 1, dtype=bool)
        self.listed[listed] = True
        self.things = np.zeros(len(label_map.class_names), dtype=bool)
        self.things[label_map.instance_class_indices()] = True

    def semantic(self, frame: Frame, unlisted: Counter[int] | None = None) -> np.ndarray:
        """(N,) int64 class index or -1 for the frame's points (MissingTruthError without labels)."""
        if frame.labels is None:
            raise MissingTruthError(f'frame {frame.index} carries no ground-truth labels (cloud field '
                                    f'"label")')
        raw = np.asarray(frame.labels).astype(np.int64).reshape(-1)
        gt = self.label_map.apply(raw)
        if unlisted is not None:
            inside = (raw >= 0) & (raw < self.listed.size)
            off = ~inside
            off[inside] = ~self.listed[raw[inside]]
            if off.any():
                ids, counts = np.unique(raw[off], return_counts=True)
                unlisted.update({int(i): int(c) for i, c in zip(ids, counts)})
        return gt

    def instances(self, frame: Frame, gt: np.ndarray) -> np.ndarray | None:
        """(N,) int64 instance index (one per (class, instance id) pair) or -1; None without the field."""
        if frame.instances is None:
            return None
        inst = np.asarray(frame.instances).astype(np.int64).reshape(-1)
        keep = (gt >= 0) & (inst != 0)
        keep[keep] = self.things[gt[keep]]
        out = np.full(inst.shape, -1, dtype=np.int64)
        if keep.any():
            pairs = gt[keep] * (int(inst[keep].max()) + 1) + inst[keep]
            _, out[keep] = np.unique(pairs, return_inverse=True)
        return out


# --------------------------------------------------------------------------------------- view masks

def field_of_view(frame: Frame) -> np.ndarray:
    """(N,) bool: the point projects into the image of a camera of the frame (no occlusion test)."""
    from perception_nodes.geometry.projection import project_frame
    if not frame.cameras or frame.num_points == 0:
        return np.zeros(frame.num_points, dtype=bool)
    return project_frame(frame).in_image.any(dim=0).cpu().numpy()


# ----------------------------------------------------------------------------------------- occupancy

def sensor_origin(frame: Frame) -> np.ndarray | None:
    """Return the ray origin: the cloud frame's origin, None when it is a world frame (WORLD_FRAMES)."""
    if frame.frame_id.strip('/').lower() in WORLD_FRAMES:
        return None
    return np.zeros(3)


def ray_cast_truth(points: np.ndarray, gt: np.ndarray, grid: GridSpec, origin: np.ndarray) -> np.ndarray:
    """POP-3D ray-cast labels on ``grid``: FREE / IGNORE / OCCUPIED or the majority evaluated class (flat)."""
    pts = torch.as_tensor(np.asarray(points, np.float32))
    out = ray_cast_labels(pts, torch.as_tensor(origin, dtype=torch.float64), grid).reshape(-1)
    idx, inside = grid.voxel_indices(pts.double())
    labelled = inside & torch.as_tensor(gt >= 0)
    if labelled.any():
        lin = grid.linear_index(idx[labelled])
        uniq, inverse = torch.unique(lin, return_inverse=True)
        out[uniq] = majority_label(inverse, torch.as_tensor(gt)[labelled], int(uniq.numel()))
    return out.numpy()


def load_masks(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Class-agnostic instance predictions from an ``.npz``: ``masks`` (M, N) bool and ``scores`` (M,)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f'masks file not found: {p}')
    with np.load(p) as data:
        if 'masks' not in data or 'scores' not in data:
            raise ValueError(f'{p}: expected arrays "masks" (M, N) bool and "scores" (M,); it has '
                             f'{sorted(data.files)}')
        masks, scores = np.asarray(data['masks']), np.asarray(data['scores'], dtype=np.float64).reshape(-1)
    if masks.ndim != 2 or masks.dtype != bool:
        raise ValueError(f'{p}: masks must be (M, N) bool, got {masks.shape} {masks.dtype}')
    if scores.size != masks.shape[0] or not np.isfinite(scores).all():
        raise ValueError(f'{p}: {scores.size} finite scores needed for {masks.shape[0]} masks')
    return masks, scores


__all__ = ['MissingTruthError', 'TRUTH_FIELDS', 'TruthMapper', 'WORLD_FRAMES', 'check_bag_truth',
           'cloud_fields',
           'field_of_view', 'load_masks', 'missing_truth_message', 'ray_cast_truth', 'resolve_label_map',
           'sensor_origin', 'vocabulary_label_map']
