"""UnScene3D initial pseudo masks (masked NCut, Sec. 3.1 / Alg. 1) vs Felzenszwalb segments: ONE JSON line.

Scenes:
- synthetic rooms (``geometry.sim.room``: floor, walls, tables, chairs, cabinets, sofas, boxes, lamps; scanned
  at 4 cm with 1 cm noise), objects only as ground truth (walls and floor excluded, as in ScanNet's
  instance benchmark); 2D features from ``ClipLikeTeacher`` on 4 posed 240 x 320 views, fused at the
  visible points (``DenseTargets``); 3D features: geometric descriptors (no learned weights);
- the real ScanNet scene0000_00 (``$OVP_DATA/scannet_scene0000_00``, 81,369 mesh vertices with NYU40
  semantic and instance labels; no mesh faces, so the graph is the kNN graph): 3D-only features, ground
  truth = instances of ScanNet's 18 instance classes.

Methods: Felzenszwalb segments used directly as masks (the paper's baseline, Tables 1 and 8), masked NCut
with 3D features (τ_cut = 0.55) and, on the rooms, 2D + 3D (τ_cut = 0.65); each NCut also with the
denser "min foreground segments = 2" setting of Table 9.

Measures (``training.pseudo.quality.mask_quality``): mean best IoU per ground-truth instance, recall at
IoU 0.5 / 0.25, precision of the masks at IoU 0.5, counts. Class-agnostic AP / AP50 / AP25 (ScanNet
protocol) are not computed yet: ``perception_nodes.metrics.instances`` is being written elsewhere; when it
lands, add its call in :func:`evaluate` (the masks, their scores and the ground truth are all there).

    python bench/unscene3d_masks.py [--rooms 3] [--quick]
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from perception_nodes.geometry.projection import project_points
from perception_nodes.geometry.sim.room import ROOM_CLASSES, make_room, room_view
from perception_nodes.teacher.oracle import ClipLikeNoise, ClipLikeTeacher, clip_like_text_embeddings
from training.pseudo.dense_targets import DenseTargets
from training.pseudo.oversegment import FHConfig, fh_oversegment
from training.pseudo.quality import mask_quality
from training.pseudo.unscene3d import NCutConfig, PseudoMasks, UnScene3DConfig, segments_as_masks, \
    unscene3d_pseudo_masks

# ScanNet's 18 instance classes (NYU40 ids): cabinet, bed, chair, sofa, table, door, window, bookshelf,
# picture, counter, desk, curtain, refrigerator, shower curtain, toilet, sink, bathtub, other furniture.
SCANNET_INSTANCE_NYU40 = (3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 24, 28, 33, 34, 36, 39)
PAPER = {'source': 'UnScene3D Table 4 (initial pseudo masks, ScanNet val) and Table 1 (Felzenszwalb)',
         'initial_3d_only': 'AP25 13.8 / AP50 4.7 / AP 2.0',
         'initial_2d_3d': 'AP25 19.9 / AP50 10.0 / AP 5.9',
         'felzenszwalb_as_method': 'AP25 38.9 / AP50 12.7 / AP 5.0',
         'note': 'initial masks are sparse by design (few, clean masks; recall is low until self-training)'}


def evaluate(pred: PseudoMasks, gt_ids: np.ndarray, gt_valid: np.ndarray) -> dict:
    """Mask quality of one method on one scene (the place to add the AP call)."""
    q = mask_quality(pred.instance_ids, gt_ids, gt_valid, min_gt_points=50)
    q['ap'] = None   # class-agnostic AP / AP50 / AP25: perception_nodes.metrics.instances (not merged yet)
    return q


def methods(points: np.ndarray, segments, features_2d: np.ndarray | None) -> dict[str, PseudoMasks]:
    """FH-as-masks and the NCut variants on one scene."""
    out = {'felzenszwalb': segments_as_masks(segments.segment_ids)}
    for min_fg in (8, 2):
        cfg = UnScene3DConfig(ncut=NCutConfig(min_foreground_segments=min_fg))
        out[f'ncut_3d_minfg{min_fg}'] = unscene3d_pseudo_masks(points, cfg, segments=segments)
        if features_2d is not None:
            out[f'ncut_2d3d_minfg{min_fg}'] = unscene3d_pseudo_masks(points, cfg, features_2d=features_2d,
                                                                     segments=segments)
    return out


def room_features_2d(room, teacher: ClipLikeTeacher, views: int = 4) -> np.ndarray:
    """Teacher features fused at the room points visible in ``views`` posed cameras (zero where none)."""
    cams = [room_view(room, i, views) for i in range(views)]
    proj = project_points(torch.from_numpy(room.points), [c.model for c in cams],
                          torch.from_numpy(np.stack([c.T_cam_lidar for c in cams])))
    visible = torch.from_numpy(np.stack([c.truth['visible'] for c in cams])) & proj.in_image
    targets = DenseTargets.encode(teacher.dense_features(cams), proj.uv, visible,
                                  [(c.model.height, c.model.width) for c in cams])
    return targets.features().numpy()


def pooled(per_scene: list[dict]) -> dict:
    """Instance-weighted means over scenes (recall / IoU) and mask-weighted precision."""
    gt = np.array([q['gt_instances'] for q in per_scene], dtype=float)
    masks = np.array([q['masks'] for q in per_scene], dtype=float)
    out = {'gt_instances': int(gt.sum()), 'masks': int(masks.sum())}
    for key in ('mean_best_iou', 'recall_50', 'recall_25'):
        out[key] = round(float(np.nansum([q[key] * g for q, g in zip(per_scene, gt)]) / max(gt.sum(), 1)), 4)
    prec = [q['precision_50'] * m for q, m in zip(per_scene, masks) if m > 0]
    out['precision_50'] = round(float(np.sum(prec) / max(masks.sum(), 1)), 4)
    return out


def scannet(data: Path, fh: FHConfig) -> dict | str:
    scene = data / 'scannet_scene0000_00'
    if not (scene / 'scene0000_00_vert_all.npy').is_file():
        return f'not found: {scene}'
    verts = np.load(scene / 'scene0000_00_vert_all.npy')
    sem = np.load(scene / 'scene0000_00_sem_label_all.npy').astype(np.int64)
    ins = np.load(scene / 'scene0000_00_ins_label_all.npy').astype(np.int64)
    t = time.perf_counter()
    segments = fh_oversegment(verts[:, :3], fh)
    fh_s = time.perf_counter() - t
    valid = np.isin(sem, SCANNET_INSTANCE_NYU40)
    t = time.perf_counter()
    res = {name: evaluate(m, ins, valid) for name, m in methods(verts[:, :3], segments, None).items()}
    return {'points': int(len(verts)), 'segments': segments.num_segments, 'fh_seconds': round(fh_s, 2),
            'ncut_seconds': round(time.perf_counter() - t, 2),
            'results': {k: {m: (round(v, 4) if isinstance(v, float) else v) for m, v in r.items()}
                        for k, r in res.items()}}


def main(argv: list[str] | None = None) -> int:
    from perception_nodes.io.kitti import shared_data_dir
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--rooms', type=int, default=3)
    ap.add_argument('--quick', action='store_true', help='one smaller room, no ScanNet')
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    fh = FHConfig()
    emb = clip_like_text_embeddings(ROOM_CLASSES, 64, seed=0)
    teacher = ClipLikeTeacher(emb, ROOM_CLASSES, ClipLikeNoise(seed=2), downsample=8)
    per_method: dict[str, list[dict]] = {}
    segs = []
    for seed in range(1 if args.quick else args.rooms):
        room = make_room(seed, n_objects=8, rays=(360, 180)) if args.quick else make_room(seed, n_objects=12)
        segments = fh_oversegment(room.points, fh)
        segs.append(segments.num_segments)
        f2d = room_features_2d(room, teacher)
        for name, masks in methods(room.points, segments, f2d).items():
            per_method.setdefault(name, []).append(evaluate(masks, room.instances, room.object_mask))
    rooms = {name: pooled(qs) for name, qs in per_method.items()}
    out = {'bench': 'unscene3d_masks', 'rooms': len(segs), 'room_segments': segs,
           'segments': {'method': 'Felzenszwalb-Huttenlocher on a kNN point graph, normals from PCA',
                        **{k: v for k, v in vars(fh).items()}},
           'ncut': {k: v for k, v in vars(replace(NCutConfig())).items()},
           'synthetic_rooms': rooms,
           'scannet_scene0000_00': 'skipped (--quick)' if args.quick else scannet(shared_data_dir(), fh),
           'ap': 'not computed: perception_nodes.metrics.instances (class-agnostic AP, ScanNet protocol) is '
                 'not in this branch; evaluate() is where its one call goes',
           'paper': PAPER, 'seconds': round(time.perf_counter() - t0, 1), 'python': platform.python_version()}
    print(json.dumps(out))
    return 0


if __name__ == '__main__':
    sys.exit(main())
