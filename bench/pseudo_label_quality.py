"""Pseudo-label quality of Affinity3D's label variants on the synthetic street: prints ONE JSON line.

Frames: consecutive sweeps of seeded streets (``geometry.sim.street``: the base world plus trucks,
motorcycles, bicyclists and traffic signs), the ego advancing along the road so that instances recur in
the affinity queue. Teacher: ``ClipLikeTeacher`` (CLIP-like mistakes: per-object and per-patch confusions
between look-alike classes and boundary bleeding in the dense map, cleaner per-crop classification, crops
showing whatever fills the box, occlusion parallax since features come from the camera's view) with
CLIP-like correlated text embeddings.

Variants (Affinity3D Table 3/4 rows at the pseudo-label level): dense teacher ("MC"), instance crops ("CI"),
crops + affinity ("CI + Aff."), each without and with visibility (the paper's superpixel test, Eq. 9-10,
and the pipeline's depth buffer), in the GZS (unseen = truck, motorcycle, bicyclist, traffic-sign; the
points of those classes are evaluated) and annotation-free (all points) settings, on the camera field of
view. Accuracy = correct / labelled points (Table 4's measure); ``accuracy_occluded`` and
``occluded_kept_fraction`` are measured on the points the camera truly cannot see (the ones a naive
projection matches to the occluder). Also: an affinity ``scale`` sweep (the paper does not give it) and the
bytes per KITTI-size frame of the compact dense targets (``DenseTargets``).

    python bench/pseudo_label_quality.py [--sequences 2] [--frames 8] [--quick]
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import replace

import numpy as np
import torch

from perception_nodes.geometry.sim.lidar import LidarBeamModel
from perception_nodes.geometry.sim.street import STREET_CLASSES, make_street_frame, street_sequence
from perception_nodes.geometry.visibility import VisibilityConfig
from perception_nodes.teacher.oracle import ClipLikeNoise, ClipLikeTeacher, clip_like_text_embeddings
from training.pseudo.affinity import AffinityConfig
from training.pseudo.dense_targets import DenseTargets
from training.pseudo.synthetic_eval import LabelEvalConfig, evaluate_label_variants
from training.pseudo.visibility import point_visibility

MOUNTINGS = {'kitti': (0.27, 0.06, -0.08), 'roof': (0.8, 0.0, -0.6)}
PAPER = {'affinity_gain_points': {'gzs': 3.43, 'af': 3.11,
                                  'source': 'Affinity3D Table 4 (83.55 -> 86.98 GZS, 34.71 -> 37.82 AF)'},
         'visibility': 'Sec. 3.5 / Fig. 3: about 34% of naively projected points are wrongly matched; '
                       'visibility ignores them (Table 3 rows 1->2: +0.37 All GZS, +0.28 AF)',
         'instances_vs_dense': 'Table 3: CI >> MC (unseen mIoU +27.28 GZS, +4.28 AF after training)'}
KEYS = ('points', 'labelled', 'accuracy', 'mean_class_accuracy', 'accuracy_visible', 'accuracy_occluded',
        'ignored_fraction', 'occluded_points', 'occluded_kept_fraction')


def kitti_dense_bytes(seed: int = 0) -> dict:
    """Measure the DenseTargets bytes of one KITTI-size synthetic frame (64 x 2048 beams, 375 x 1242 image).

    Feature maps as MaskCLIP ViT-B/32 at the pipeline's 224 x 416 input gives them: 512 x 7 x 13.
    """
    frame = make_street_frame(seed, image_size='kitti', beam_model=LidarBeamModel())
    vis = point_visibility(frame, VisibilityConfig(variant='depth_buffer'))
    maps = [torch.zeros(512, 7, 13) for _ in frame.cameras]
    sizes = [(v.model.height, v.model.width) for v in frame.cameras]
    t = DenseTargets.encode(maps, vis.projection.uv, vis.visible, sizes)
    per_point = frame.num_points * 512 * 2
    return {'points': frame.num_points, 'visible_pairs': int(vis.visible.sum()), 'bytes': t.nbytes,
            'per_point_fp16_bytes': per_point, 'ratio': round(per_point / t.nbytes, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--sequences', type=int, default=2)
    ap.add_argument('--frames', type=int, default=8)
    ap.add_argument('--step', type=float, default=1.5)
    ap.add_argument('--dim', type=int, default=64)
    ap.add_argument('--quick', action='store_true', help='one sequence of 4 small frames, kitti mounting')
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    n_seq, n_frames = (1, 4) if args.quick else (args.sequences, args.frames)
    beams = LidarBeamModel(n_azimuth=1024)
    emb = clip_like_text_embeddings(STREET_CLASSES, args.dim, seed=0)
    teacher = ClipLikeTeacher(emb, STREET_CLASSES, ClipLikeNoise(seed=1))
    mountings = ['kitti'] if args.quick else list(MOUNTINGS)
    results: dict = {}
    sweep: dict = {}
    frames_total = 0
    for mount in mountings:
        frames = []
        for s in range(n_seq):
            frames += street_sequence(10 + s, n_frames, step=args.step, image_size='small', beam_model=beams,
                                      camera_offset=MOUNTINGS[mount])
        frames_total += len(frames)
        results[mount] = {}
        for setting in ('gzs', 'af'):
            for vis_name, vis in (('superpixel', VisibilityConfig(variant='superpixel')),
                                  ('depth_buffer', VisibilityConfig(variant='depth_buffer', block=2))):
                r = evaluate_label_variants(frames, teacher, STREET_CLASSES, emb,
                                            LabelEvalConfig(setting=setting, visibility=vis))
                results[mount][f'{setting}/{vis_name}'] = {k: {m: v[m] for m in KEYS} for k, v in r.items()}
            if mount == mountings[0]:
                sweep[setting] = {}
                for scale in (2.0, 5.0, 10.0, 20.0, 50.0):
                    r = evaluate_label_variants(frames, teacher, STREET_CLASSES, emb, LabelEvalConfig(
                        setting=setting, visibility=VisibilityConfig(variant='depth_buffer', block=2),
                        affinity=replace(AffinityConfig(), scale=scale), variants=('crops+aff+vis',)))
                    sweep[setting][str(scale)] = r['crops+aff+vis']['accuracy']
    first = results[mountings[0]]
    gains = {}
    for s in ('gzs', 'af'):
        row = first[f'{s}/depth_buffer']
        gains[s] = round(100 * (row['crops+aff+vis']['accuracy'] - row['crops+vis']['accuracy']), 2)
    out = {'bench': 'pseudo_label_quality', 'frames': frames_total, 'sequences_per_mounting': n_seq,
           'frames_per_sequence': n_frames, 'image_size': 'small (188x621)', 'beams': '64x1024',
           'teacher': 'ClipLikeTeacher(ClipLikeNoise(seed=1)), clip_like_text_embeddings(dim=%d)' % args.dim,
           'affinity': {'scale': AffinityConfig().scale, 'beta': AffinityConfig().beta,
                        'queue_size': AffinityConfig().queue_size},
           'results': results, 'affinity_gain_points_depth_buffer_vis': gains, 'affinity_scale_sweep': sweep,
           'paper': PAPER, 'dense_targets_kitti_frame': kitti_dense_bytes(),
           'seconds': round(time.perf_counter() - t0, 1), 'python': platform.python_version(),
           'torch_threads': torch.get_num_threads()}
    print(json.dumps(out, default=lambda o: float(o) if isinstance(o, np.floating) else str(o)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
