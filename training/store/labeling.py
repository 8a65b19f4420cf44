"""One shard's units through the seed papers' pseudo-label methods, from the perception pipeline's outputs.

The pipeline (``perception_nodes.pipeline.Pipeline`` with ``outputs.projections: true``) has already
projected the unit's points into its cameras (Affinity3D Eq. 1), run the visibility test (Eq. 9-10 or the
depth buffer) and the teacher (MaskCLIP dense features, or the synthetic teacher); :class:`ChunkLabeler`
takes those from :class:`~perception_nodes.outputs.Outputs` instead of recomputing them, and runs the
methods of :mod:`training.pseudo` on them:

- ``dense``: the teacher's fused features at the visible projections, stored compactly
  (:class:`~training.pseudo.dense_targets.DenseTargets`: the low-resolution maps, per camera the bit mask
  of the points used and their float32 ``uv``), and Affinity3D's "MC" labels from them
  (:func:`~training.pseudo.affinity3d.dense_frame_labels`; in GZS over the unseen classes with the seen
  ground truth kept, or over every class for a unit without ground truth). The dense targets are always
  stored: they are POP-3D's feature targets (Eq. 5-7), the knowledge-transfer inputs (uv, camera) and
  CNS's 2D labels.
- ``affinity3d``: PL' of Sec. 3.2-3.5 (superpoints, crops, Eq. 4, the temporal queue of Eq. 5-8, Eq. 10);
  the queue spans the units of one shard (it is flushed at the end of the shard).
- ``cns``: regions per image, max-voted CLIP labels, each point's region (its first visible camera).
- ``pop3d``: occupancy targets on the configured grids (sparse) and the ray-cast evaluation labels.
- ``unscene3d``: class-agnostic pseudo masks (Sec. 3.1, Alg. 1) with 2D (teacher) and / or 3D features.

Tensors of unit ``j`` in its shard (``u<j>/`` + name; N points, M usable cameras)::

    points             (N, 4) float32   x, y, z, intensity (0 without intensity), LiDAR (scene) frame
    visible            (ceil(N/8),) uint8  packed bits: visible in some camera (the pipeline's test)
    labels/<method>    (N,) int8/int16  class index, -1 ignore (dense, affinity3d, cns); int8 if K < 128
    gt_labels          (N,) int8/int16  ground truth as vocabulary indices, -1 none (when the cloud has it)
    gt_instances       (N,) int32       ground-truth instance ids as in the cloud
    dense/...          DenseTargets.to_arrays(): map_<m> (C, h, w), used_<m>, uv_<m>, image_sizes, ...
    regions            (n,) int32       CNS region id (unique across cameras) of the n points the dense
                                        targets see (ascending point order; the others have none), -1 none
    image/<m>          (B,) uint8       JPEG / PNG bytes of camera m's image
    instances          (N,) int16/int32 Affinity3D superpoint (instance) id per point, -1 none
    masks/ids          (N,) int32       UnScene3D mask index per point, -1 none; masks/scores (Q,) float32
    pop3d/occupied/<g> (V,) int32       sorted linear indices of the occupied voxels of grid g
    pop3d/raycast_index/<g>, pop3d/raycast_label/<g>   observed voxels and their labels (int32, int16)
    sweep              (N,) int16       scenes: the sweep (0..K-1) each point comes from
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import numpy as np
import torch

from perception_nodes.frame import CameraView, Frame
from perception_nodes.geometry.projection import Projection
from perception_nodes.outputs import Outputs
from training.pseudo.affinity3d import Affinity3DLabeler, FramePseudoLabels, dense_frame_labels
from training.pseudo.assembly import SeenUnseenSplit, assemble_point_labels
from training.pseudo.dense_targets import DenseTargets
from training.pseudo.instance_labels import CropEncoder
from training.pseudo.pop3d import pop3d_targets
from training.pseudo.regions import frame_region_targets
from training.pseudo.superpoints import drop_small
from training.pseudo.unscene3d import unscene3d_pseudo_masks
from training.pseudo.visibility import PointVisibility
from training.store.config import PseudoLabelConfig
from training.store.shards import UnitMeta


def label_dtype(num_classes: int) -> type:
    """Smallest signed integer type holding the class indices and -1: int8 below 128 classes, else int16."""
    if num_classes > np.iinfo(np.int16).max:
        raise ValueError(f'{num_classes} classes do not fit the stored int16 labels')
    return np.int8 if num_classes <= np.iinfo(np.int8).max else np.int16


@dataclass
class UnitInput:
    """A frame or a scene to label: its key, unit number, source clouds and (scenes) per-point sweep."""

    key: str
    unit: int
    clouds: list[int]
    frame: Frame
    sweep: np.ndarray | None = None


@dataclass
class UnitResult:
    """What one unit puts in its shard and its record."""

    meta: UnitMeta
    tensors: dict[str, np.ndarray]
    stats: dict[str, Any]
    timings_ms: dict[str, float] = field(default_factory=dict)


def usable_views(frame: Frame) -> list[CameraView]:
    """Return the cameras the pipeline uses: (H, W, 3) uint8 images of their CameraInfo's size (its rule)."""
    out = []
    for v in frame.cameras:
        image = np.asarray(v.image)
        if image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8 and \
                image.shape[:2] == (v.model.height, v.model.width):
            out.append(v)
    return out


def label_counts(labels: np.ndarray, num_classes: int) -> dict[str, Any]:
    """Per-class counts and the ignored count of a point-wise label array (-1 = ignore)."""
    lab = np.asarray(labels, dtype=np.int64)
    ok = (lab >= 0) & (lab < num_classes)
    return {'points': int(lab.size), 'ignored': int(lab.size - ok.sum()),
            'per_class': np.bincount(lab[ok], minlength=num_classes).astype(int).tolist()}


def add_stats(dst: dict[str, Any], src: dict[str, Any]) -> None:
    """Add statistics ``src`` into ``dst`` in place: numbers add, lists add element-wise, dicts recurse."""
    for k, v in src.items():
        if isinstance(v, dict):
            add_stats(dst.setdefault(k, {}), v)
        elif isinstance(v, list):
            cur = dst.get(k)
            dst[k] = list(v) if cur is None else [a + b for a, b in zip(cur, v)]
        else:
            dst[k] = dst.get(k, 0) + v


def encode_image(image: np.ndarray, fmt: str, quality: int) -> np.ndarray:
    """JPEG / PNG bytes of an RGB uint8 image, as a uint8 array."""
    import cv2
    bgr = np.ascontiguousarray(np.asarray(image)[..., ::-1])
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if fmt == 'jpeg' else []
    ok, data = cv2.imencode('.jpg' if fmt == 'jpeg' else '.png', bgr, params)
    if not ok:
        raise ValueError(f'cannot encode a {image.shape} image as {fmt}')
    return np.asarray(data, dtype=np.uint8).reshape(-1)


def outputs_visibility(outputs: Outputs) -> tuple[PointVisibility, PointVisibility, list[torch.Tensor]]:
    """(visible, in-image) PointVisibility and the teacher maps, from the pipeline's ``Outputs.projections``.

    The projection's per-camera depth is not carried by the outputs and nothing here reads it (NaN).
    """
    proj = outputs.projections
    if proj is None:
        raise ValueError('the pipeline outputs carry no projections (outputs.projections must be true)')
    if proj.teacher_maps is None:
        raise ValueError('the pipeline outputs carry no teacher feature maps (labeller.kind must be teacher)')
    uv = torch.from_numpy(np.asarray(proj.uv, dtype=np.float32))
    in_image = torch.from_numpy(np.asarray(proj.in_image, dtype=bool))
    visible = torch.from_numpy(np.asarray(proj.visible, dtype=bool))
    projection = Projection(uv=uv, depth=torch.full(in_image.shape, float('nan')), in_image=in_image,
                            image_sizes=[tuple(s) for s in proj.image_sizes])
    maps = [torch.from_numpy(np.asarray(m, dtype=np.float32)) for m in proj.teacher_maps]
    return PointVisibility(projection, visible), PointVisibility(projection, in_image.clone()), maps


class ChunkLabeler:
    """Labels the units of one shard (module docstring): :meth:`add` each unit, then :meth:`finish`."""

    def __init__(self, config: PseudoLabelConfig, class_names: Sequence[str], text_embeddings: torch.Tensor,
                 crop_encoder: CropEncoder | None, sampling: str = 'bilinear',
                 gt_lut: np.ndarray | None = None, scenes: bool = False) -> None:
        self.config = config
        self.class_names = list(class_names)
        self.num_classes = len(self.class_names)
        self.label_dtype = label_dtype(self.num_classes)
        self.text = text_embeddings.float().cpu()
        self.sampling = sampling
        self.gt_lut = gt_lut
        self.scenes = scenes
        self.methods = set(config.methods)
        self.split = config.affinity3d.split(self.class_names)
        self.affinity = None
        if 'affinity3d' in self.methods:
            if crop_encoder is None:
                raise ValueError('affinity3d needs a crop encoder')
            self.affinity = Affinity3DLabeler(config.affinity3d, self.class_names, self.text, crop_encoder)
        self._pending: dict[int, UnitResult] = {}
        self._order: list[int] = []
        self._ticket = 0

    def ground_truth(self, frame: Frame) -> np.ndarray | None:
        """(N,) vocabulary indices of the cloud's ground-truth ids (-1 none), or None without them."""
        if frame.labels is None:
            return None
        raw = np.asarray(frame.labels, dtype=np.int64)
        if self.gt_lut is None:
            return np.where((raw >= 0) & (raw < self.num_classes), raw, -1)
        inside = (raw >= 0) & (raw < self.gt_lut.size)
        out = np.full(raw.shape, -1, dtype=np.int64)
        out[inside] = self.gt_lut[raw[inside]]
        return out

    def add(self, unit: UnitInput, outputs: Outputs) -> None:
        """Run the configured methods on one unit (raises on a failure; the caller skips the unit)."""
        cfg = self.config
        times: dict[str, float] = {f'pipeline/{k}': float(v) for k, v in outputs.timings_ms.items()}
        t = time.perf_counter()

        def lap(name: str) -> None:
            nonlocal t
            now = time.perf_counter()
            times[f'store/{name}'] = times.get(f'store/{name}', 0.0) + (now - t) * 1e3
            t = now

        frame = unit.frame
        n = frame.num_points
        vis, novis, maps = outputs_visibility(outputs)
        views = usable_views(frame)
        if [v.name for v in views] != list(outputs.projections.cameras):
            raise ValueError(f'the pipeline used cameras {outputs.projections.cameras}, the frame has '
                             f'{[v.name for v in views]}')
        gt = self.ground_truth(frame)
        frame = replace(frame, cameras=views, labels=gt)
        use_vis = cfg.affinity3d.use_visibility
        chosen = vis if use_vis else novis
        sizes = [tuple(int(x) for x in s) for s in vis.projection.image_sizes]
        intensity = frame.intensity if frame.intensity is not None else np.zeros(n, np.float32)
        tensors: dict[str, np.ndarray] = {
            'points': np.concatenate([frame.points, np.asarray(intensity, np.float32)[:, None]], axis=1),
            'visible': np.packbits(np.asarray(outputs.visible, dtype=bool).reshape(-1))}
        stats: dict[str, Any] = {'points': n, 'cameras': len(views),
                                 'in_image': int(vis.in_image.any(dim=0).sum()) if views else 0,
                                 'visible': int(vis.visible.any(dim=0).sum()) if views else 0}
        map_dtype = torch.float16 if cfg.store.map_dtype == 'float16' else torch.float32
        targets = DenseTargets.encode(maps, vis.projection.uv, vis.visible, sizes, self.sampling, map_dtype)
        tensors.update({f'dense/{k}': v for k, v in targets.to_arrays().items()})
        if gt is not None:
            tensors['gt_labels'] = gt.astype(self.label_dtype)
        if frame.instances is not None:
            tensors['gt_instances'] = np.asarray(frame.instances, dtype=np.int32)
        if unit.sweep is not None:
            tensors['sweep'] = np.asarray(unit.sweep, dtype=np.int16)
        if cfg.store.images:
            for m, v in enumerate(views):
                tensors[f'image/{m}'] = encode_image(v.image, cfg.store.image_format, cfg.store.jpeg_quality)
        lap('encode')
        if 'dense' in self.methods:
            split = self.split if gt is not None else SeenUnseenSplit.annotation_free(self.class_names)
            if views:
                labels, _ = dense_frame_labels(frame, maps, self.text, split, chosen, use_vis,
                                               cfg.affinity3d.assembly, self.sampling)
            else:       # no camera: no teacher label; GZS ground truth follows the assembly rules
                gzs = gt is not None and not self.split.unseen_mask.all()
                labels = assemble_point_labels(np.full(n, -1), np.zeros(0, dtype=np.int64),
                                               np.zeros(n, dtype=bool), gt if gzs else None,
                                               self.split.seen_mask if gzs else None, cfg.affinity3d.assembly)
            tensors['labels/dense'] = labels.labels.astype(self.label_dtype)
            stats['dense'] = label_counts(labels.labels, self.num_classes)
            lap('dense')
        if 'cns' in self.methods:
            rt = frame_region_targets([v.image for v in views], maps, self.text, vis.projection.uv,
                                      vis.visible, cfg.cns)
            tensors['labels/cns'] = rt.point_labels.astype(self.label_dtype)
            primary = rt.regions.primary()           # -1 wherever no camera sees the point: store the seen
            tensors['regions'] = primary[targets.seen].astype(np.int32)
            stats['cns'] = label_counts(rt.point_labels, self.num_classes)
            stats['cns']['regions'] = int(sum(int(r.max(initial=-1)) + 1 for r in rt.region_maps))
            lap('cns')
        if 'pop3d' in self.methods:
            pcfg = cfg.pop3d if not self.scenes else replace(cfg.pop3d, ray_cast=False)
            in_camera = (vis.visible if pcfg.use_visibility else vis.in_image).any(dim=0).numpy() if views \
                else np.zeros(n, dtype=bool)
            pt = pop3d_targets(frame.points, np.zeros(3), in_camera, gt, pcfg)
            for name, occ in zip(pcfg.grids, pt.occupancy):
                tensors[f'pop3d/occupied/{name}'] = occ.occupied.astype(np.int32)
            for name, rays in zip(pcfg.grids, pt.ray_cast):
                tensors[f'pop3d/raycast_index/{name}'] = rays.index.astype(np.int32)
                tensors[f'pop3d/raycast_label/{name}'] = rays.label.astype(np.int16)
            stats['pop3d'] = {'occupied': [int(o.occupied.size) for o in pt.occupancy],
                              'feature_points': int(pt.feature_points.size)}
            lap('pop3d')
        if 'unscene3d' in self.methods:
            f2d = targets.features().numpy() if cfg.unscene3d.use_2d and views else None
            masks = unscene3d_pseudo_masks(frame.points, cfg.unscene3d, features_2d=f2d)
            tensors['masks/ids'] = masks.instance_ids.astype(np.int32)
            tensors['masks/scores'] = masks.scores.astype(np.float32)
            stats['unscene3d'] = {'masks': masks.num_masks,
                                  'segments': int(masks.segment_ids.max(initial=-1)) + 1,
                                  'masked_points': int((masks.instance_ids >= 0).sum())}
            lap('unscene3d')
        meta = UnitMeta(unit.key, unit.unit, list(unit.clouds), int(frame.stamp_ns), frame.frame_id, n,
                        [v.name for v in views], sorted(set(outputs.notes)))
        result = UnitResult(meta, tensors, stats, times)
        ticket = self._ticket
        self._ticket += 1
        self._pending[ticket] = result
        self._order.append(ticket)
        if self.affinity is not None:
            segment_ids = None
            sp = cfg.affinity3d.superpoints
            if cfg.affinity3d.setting == 'af' and sp.af_method == 'segment_scan':
                segment_ids = drop_small(np.asarray(outputs.instances, dtype=np.int64) - 1, sp.min_points)
            try:
                done = self.affinity.push(frame, key=ticket, visibility=chosen, segment_ids=segment_ids)
            except Exception:
                del self._pending[ticket]
                self._order.pop()
                raise
            self._take(done)
            lap('affinity3d')

    def _take(self, done: list[FramePseudoLabels]) -> None:
        for d in done:
            r = self._pending[d.key]
            labels = d.point_labels.labels
            r.tensors['labels/affinity3d'] = labels.astype(self.label_dtype)
            seg = np.asarray(d.segment_ids, dtype=np.int64)
            small = seg.max(initial=-1) < np.iinfo(np.int16).max
            r.tensors['instances'] = seg.astype(np.int16 if small else np.int32)
            r.stats['affinity3d'] = label_counts(labels, self.num_classes)
            r.stats['affinity3d'].update({'superpoints': int(d.kept.size),
                                          'kept_instances': int(d.kept.sum())})

    def finish(self) -> list[UnitResult]:
        """Flush the Affinity3D queue and return every unit added, in order."""
        if self.affinity is not None:
            t = time.perf_counter()
            self._take(self.affinity.flush())
            if self._order:
                last = self._pending[self._order[-1]].timings_ms
                last['store/affinity3d'] = last.get('store/affinity3d', 0.0) + (time.perf_counter() - t) * 1e3
        out = [self._pending.pop(t) for t in self._order]
        self._order = []
        return out
