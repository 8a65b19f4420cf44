"""Visibility module vs ground truth on synthetic scenes (Affinity3D Sec. 3.5): prints ONE JSON line.

For each seed a synthetic frame is rendered; among the LiDAR points projecting into the image we count
the fraction wrongly matched without the module (truly hidden from the camera) and the precision / recall
of the visible mask of both variants (positive = visible), plus the fraction of hidden points removed.
On the real KITTI frames (when present) it reports the fraction of in-image points each variant judges
invisible (no truth there). Two camera mounts: KITTI's (0.27 m ahead, 0.08 m below the LiDAR) and a
wide one (1.0 m ahead, 0.4 m aside, 0.6 m below, like a bumper camera under a roof LiDAR).
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from perception_nodes.geometry.projection import project_frame
from perception_nodes.geometry.sim import SMALL_BEAM_MODEL, LidarBeamModel, make_sim_frame
from perception_nodes.geometry.visibility import VisibilityConfig, visible_mask
from perception_nodes.io.kitti import find_kitti_frames, load_kitti_frame, shared_data_dir

MOUNTS = {'kitti': (0.27, 0.06, -0.08), 'wide': (1.0, 0.4, -0.6)}


def _scores(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    tp = float(np.sum(pred & truth))
    hidden = ~truth
    return {'precision': tp / max(float(pred.sum()), 1.0), 'recall': tp / max(float(truth.sum()), 1.0),
            'hidden_removed': float(np.sum(~pred & hidden)) / max(float(hidden.sum()), 1.0),
            'wrongly_matched_after': float(np.sum(pred & hidden)) / max(float(pred.sum()), 1.0)}


def evaluate(seeds: list[int], mount: str, image_size, beam_model: LidarBeamModel | None,
             configs: dict[str, VisibilityConfig], num_cameras: int = 1) -> dict:
    preds: dict[str, list[np.ndarray]] = {name: [] for name in configs}
    truths, times = [], {name: [] for name in configs}
    for seed in seeds:
        frame = make_sim_frame(seed, num_cameras=num_cameras, image_size=image_size, beam_model=beam_model,
                               camera_offset=MOUNTS[mount])
        proj = project_frame(frame)
        inside = proj.in_image.numpy()
        truth = np.stack([view.truth['visible'] for view in frame.cameras])
        truths.append(truth[inside])
        images = [view.image for view in frame.cameras]
        for name, cfg in configs.items():
            t0 = time.perf_counter()
            vis = visible_mask(proj, images, cfg).numpy()
            times[name].append(time.perf_counter() - t0)
            preds[name].append(vis[inside])
    truth = np.concatenate(truths)
    out = {'in_image_points': int(truth.size), 'wrongly_matched_without_module': float(1 - truth.mean())}
    for name in configs:
        scores = _scores(np.concatenate(preds[name]), truth)
        scores['median_ms'] = 1000 * float(np.median(times[name]))
        out[name] = {k: round(v, 4) for k, v in scores.items()}
    return out


def real_kitti(configs: dict[str, VisibilityConfig]) -> dict | None:
    """Fraction of in-image points each variant judges invisible on the shared real KITTI frames."""
    roots = [shared_data_dir() / name for name in ('kitti_raw_2011_09_26_seq', 'kitti_object_vis')]
    frames = [f for root in roots if root.is_dir() for f in find_kitti_frames(root)
              if f.image is not None and f.calib is not None]
    if not frames:
        return None
    fractions: dict[str, list[float]] = {name: [] for name in configs}
    for files in frames:
        frame = load_kitti_frame(files)
        image = frame.cameras[0].image
        proj = project_frame(frame)
        inside = proj.in_image[0]
        for name, cfg in configs.items():
            vis = visible_mask(proj, [image], cfg)[0]
            fractions[name].append(1 - float(vis[inside].float().mean()))
    return {'frames': len(frames), **{f'{name}_judged_invisible_mean': round(float(np.mean(v)), 4)
                                      for name, v in fractions.items()},
            **{f'{name}_judged_invisible_range': [round(min(v), 4), round(max(v), 4)]
               for name, v in fractions.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--seeds', type=int, default=6)
    parser.add_argument('--image-size', default='kitti', help="'kitti', 'small' or H,W")
    parser.add_argument('--small-lidar', action='store_true', help='32 x 512 beams instead of 64 x 2048')
    parser.add_argument('--threads', type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    size = tuple(int(v) for v in args.image_size.split(',')) if ',' in args.image_size else args.image_size
    beams = SMALL_BEAM_MODEL if args.small_lidar else None
    configs = {'depth_buffer': VisibilityConfig(variant='depth_buffer'),
               'superpixel': VisibilityConfig(variant='superpixel')}
    result = {'bench': 'visibility', 'seeds': args.seeds, 'image_size': size, 'threshold_m': 0.5,
              'depth_buffer_block': configs['depth_buffer'].block,
              'depth_buffer_dilation': configs['depth_buffer'].dilation,
              'depth_buffer_relative_threshold': configs['depth_buffer'].relative_threshold,
              'superpixel_method': 'slic', 'superpixel_segments': 4000}
    for mount in MOUNTS:
        result[mount] = evaluate(list(range(args.seeds)), mount, size, beams, configs)
    result['real_kitti'] = real_kitti(configs)
    print(json.dumps(result))


if __name__ == '__main__':
    main()
