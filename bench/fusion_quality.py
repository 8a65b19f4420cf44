"""Fusion quality on the synthetic world with the oracle teacher: prints ONE JSON line.

Each scene: a synthetic LiDAR sweep with cameras (perception_nodes.geometry.sim); the 2D teacher is the
ground-truth oracle with noise (instance-level label flips, boundary bleeding), so every error of the
fused 3D labels comes from the 2D->3D transfer: points hidden from the camera taking the occluder's
label (what visibility removes) and bled / flipped 2D labels (what instance voting repairs).

Two camera mountings: 'kitti' (camera 2 of KITTI, 0.27 m ahead of and 0.08 m below the LiDAR: little
parallax) and 'roof' (a roof LiDAR with cameras 0.8 m ahead and 0.6 m below it, as on most robots and on
nuScenes-like rigs: much more parallax occlusion).

Reported per mounting and variant (visibility none / depth_buffer / superpixel x instance voting off / on),
over the points inside at least one camera image, pooled over scenes: precision (accuracy of the labelled
points), coverage, accuracy (unknown = wrong), mIoU, wrong_rate; and on the points the cameras truly cannot
see (in the image but occluded): occluded_wrong_rate, the share of them given a wrong label.

    python bench/fusion_quality.py [--scenes 4] [--cameras 2] [--image-size small] [--beams 64]
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from perception_nodes.geometry.sim import LidarBeamModel, make_sim_frame
from perception_nodes.teacher.oracle import OracleNoise

sys.path.insert(0, str(Path(__file__).resolve().parent))
from oracle_eval import evaluate_fusion  # noqa: E402  (bench/ helper, not a package)

MOUNTINGS = {'kitti': (0.27, 0.06, -0.08), 'roof': (0.8, 0.0, -0.6)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--scenes', type=int, default=4)
    ap.add_argument('--cameras', type=int, default=2)
    ap.add_argument('--image-size', default='small', help="'tiny' | 'small' | 'kitti'")
    ap.add_argument('--beams', type=int, default=64)
    ap.add_argument('--azimuth', type=int, default=2048)
    ap.add_argument('--flip-prob', type=float, default=0.1)
    ap.add_argument('--bleed-px', type=int, default=3)
    ap.add_argument('--block', type=int, default=None, help='depth-buffer cell (default: 2 small, 4 kitti)')
    ap.add_argument('--mountings', default='kitti,roof', help=f'comma list of {sorted(MOUNTINGS)}')
    args = ap.parse_args(argv)
    block = args.block or {'kitti': 4, 'tiny': 1}.get(args.image_size, 2)
    beams = LidarBeamModel(n_beams=args.beams, n_azimuth=args.azimuth)
    noise = OracleNoise(flip_prob=args.flip_prob, boundary_bleed_px=args.bleed_px, seed=0)
    t0 = time.perf_counter()
    report: dict = {'bench': 'fusion_quality', 'scenes': args.scenes, 'cameras': args.cameras,
                    'image_size': args.image_size, 'lidar': f'{args.beams}x{args.azimuth}',
                    'noise': {'flip_prob': args.flip_prob, 'boundary_bleed_px': args.bleed_px},
                    'depth_buffer_block': block, 'mountings': {}}
    for name in args.mountings.split(','):
        offset = MOUNTINGS[name]
        frames = [make_sim_frame(seed, num_cameras=args.cameras, image_size=args.image_size, beam_model=beams,
                                 camera_offset=offset) for seed in range(args.scenes)]
        results = evaluate_fusion(frames, noise, block=block)
        base, vis = results['none'], results['depth_buffer']
        report['mountings'][name] = {
            'camera_offset': list(offset), 'points_per_scene': int(np.mean([f.num_points for f in frames])),
            'variants': results,
            'visibility_gain': {
                'precision': round(vis['precision'] - base['precision'], 4),
                'wrong_rate_reduction': round(1 - vis['wrong_rate'] / base['wrong_rate'], 4)
                if base['wrong_rate'] else None,
                'occluded_wrong_rate': [base['occluded_wrong_rate'], vis['occluded_wrong_rate']]},
            'voting_gain_miou': round(results['depth_buffer+vote']['miou'] - vis['miou'], 4)}
    report.update({'wall_s': round(time.perf_counter() - t0, 1), 'python': platform.python_version(),
                   'torch': torch.__version__, 'threads': torch.get_num_threads()})
    print(json.dumps(report))
    return 0


if __name__ == '__main__':
    sys.exit(main())
