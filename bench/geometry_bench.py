"""Geometry timings on a full synthetic sweep (~120k points): prints ONE JSON line of median milliseconds.

Projection with and without each visibility variant for 1 and 6 KITTI-sized cameras, feature sampling,
voxelization, occupancy targets, POP-3D ray-cast labels (coarse and fine grids), the navigation grid and
the synthetic world itself. ``--threads`` sets torch's intra-op threads (default 1: on a shared 2-core
machine more threads only add contention).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Callable

import numpy as np
import torch

from perception_nodes.geometry.occupancy import NavGridSpec, navigation_grid, ray_cast_labels
from perception_nodes.geometry.projection import project_points
from perception_nodes.geometry.sampling import sample_features
from perception_nodes.geometry.sim import make_sim_frame
from perception_nodes.geometry.visibility import VisibilityConfig, visible_mask
from perception_nodes.geometry.voxels import FINE_GRID, POP3D_GRID, dense_occupancy, voxelize


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return round(1000 * statistics.median(times), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--repeats', type=int, default=7)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--device', default='cpu')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    r = args.repeats

    t0 = time.perf_counter()
    frame = make_sim_frame(0, num_cameras=6)
    sim_ms = 1000 * (time.perf_counter() - t0)
    points = torch.from_numpy(frame.points).to(dev)
    labels = torch.from_numpy(frame.labels).to(dev)
    cams = [v.model for v in frame.cameras]
    Ts = torch.from_numpy(np.stack([v.T_cam_lidar for v in frame.cameras])).to(dev)
    images = [v.image for v in frame.cameras]
    fast = VisibilityConfig(variant='depth_buffer')
    slow = VisibilityConfig(variant='superpixel')
    out: dict[str, object] = {'bench': 'geometry', 'device': str(dev), 'threads': args.threads,
                              'points': int(points.shape[0]), 'image_size': list(images[0].shape[:2])}

    def proj(m: int):
        return project_points(points, cams[:m], Ts[:m])

    for m in (1, 6):
        p = proj(m)
        out[f'project_{m}cam_ms'] = _median_ms(lambda: proj(m), r)
        out[f'project_depth_buffer_{m}cam_ms'] = _median_ms(lambda: visible_mask(proj(m), None, fast), r)
        out[f'project_superpixel_{m}cam_ms'] = _median_ms(lambda: visible_mask(proj(m), images[:m], slow),
                                                          max(1, r // 3) if m == 1 else 1)
        out[f'in_image_{m}cam'] = int(p.in_image.sum())
    p1 = proj(1)
    fmap = torch.randn(512, 375 // 16, 1242 // 16, device=dev)
    uv_in = p1.uv[0][p1.in_image[0]]
    out['sample_features_512ch_1_16_bilinear_ms'] = _median_ms(
        lambda: sample_features(fmap, uv_in, (375, 1242)), r)
    out['voxelize_pop3d_labels_ms'] = _median_ms(lambda: voxelize(points, POP3D_GRID, labels), r)
    out['voxelize_fine_labels_ms'] = _median_ms(lambda: voxelize(points, FINE_GRID, labels), r)
    out['dense_occupancy_pop3d_ms'] = _median_ms(lambda: dense_occupancy(points, POP3D_GRID), r)
    origin = torch.zeros(3, device=dev)
    out['ray_cast_labels_pop3d_ms'] = _median_ms(
        lambda: ray_cast_labels(points, origin, POP3D_GRID, labels), r)
    out['ray_cast_labels_fine_ms'] = _median_ms(lambda: ray_cast_labels(points, origin, FINE_GRID, labels),
                                                max(1, r // 3))
    out['navigation_grid_0.2m_100m_ms'] = _median_ms(lambda: navigation_grid(points, origin, NavGridSpec()),
                                                     max(1, r // 3))
    out['make_sim_frame_6cam_kitti_ms'] = round(sim_ms, 1)
    out['make_sim_frame_1cam_small_ms'] = _median_ms(lambda: make_sim_frame(1, image_size='small'), 3)
    print(json.dumps(out))


if __name__ == '__main__':
    main()
