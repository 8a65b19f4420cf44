"""Geometry timings on a full synthetic sweep (~120k points): prints ONE JSON line of median milliseconds.

Projection with and without each visibility variant for 1 and 6 KITTI-sized cameras, feature sampling,
voxelization, occupancy targets, POP-3D ray-cast labels (coarse and fine grids), the navigation grid (the
all-rays reference and ``navigation_grid_fast``), the synthetic world itself, and on a real KITTI sweep
(when the sample is present) ground fitting and ``segment_scan`` with the live settings. Measured idle
and again while a busy loop (a subprocess, bounded by ``--busy-seconds``) keeps one core loaded
(``--no-loaded`` skips that). ``--threads`` sets torch's intra-op threads (default 1: on a shared 2-core
machine more threads only add contention). ``--src DIR`` imports ``perception_nodes`` from another
checkout (before/after tables); rows it lacks are left out.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from _timing import busy_core, median_ms


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    return round(median_ms(fn, repeats), 2)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Every row once, in the current machine state."""
    import numpy as np
    import torch

    from perception_nodes.geometry import occupancy
    from perception_nodes.geometry.occupancy import NavGridSpec, navigation_grid, ray_cast_labels
    from perception_nodes.geometry.projection import project_points
    from perception_nodes.geometry.sampling import sample_features
    from perception_nodes.geometry.sim import make_sim_frame
    from perception_nodes.geometry.visibility import VisibilityConfig, visible_mask
    from perception_nodes.geometry.voxels import FINE_GRID, POP3D_GRID, dense_occupancy, voxelize
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
    out: dict[str, Any] = {'points': int(points.shape[0]), 'image_size': list(images[0].shape[:2])}

    def proj(m: int):
        return project_points(points, cams[:m], Ts[:m])

    for m in (1, 6):
        p = proj(m)
        out[f'project_{m}cam_ms'] = _median_ms(lambda: proj(m), r)
        out[f'project_depth_buffer_{m}cam_ms'] = _median_ms(lambda: visible_mask(proj(m), None, fast), r)
        if not args.quick:
            out[f'project_superpixel_{m}cam_ms'] = _median_ms(
                lambda: visible_mask(proj(m), images[:m], slow), max(1, r // 3) if m == 1 else 1)
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
    if not args.quick:
        out['ray_cast_labels_fine_ms'] = _median_ms(
            lambda: ray_cast_labels(points, origin, FINE_GRID, labels), max(1, r // 3))
    out['navigation_grid_0.2m_100m_ms'] = _median_ms(lambda: navigation_grid(points, origin, NavGridSpec()),
                                                     max(1, r // 3))
    fast_grid = getattr(occupancy, 'navigation_grid_fast', None)
    if fast_grid is not None:
        out['navigation_grid_fast_0.2m_100m_ms'] = _median_ms(
            lambda: fast_grid(points, origin, NavGridSpec()), r)
    out['make_sim_frame_6cam_kitti_ms'] = round(sim_ms, 1)
    out['make_sim_frame_1cam_small_ms'] = _median_ms(lambda: make_sim_frame(1, image_size='small'), 3)
    out.update(kitti_rows(r))
    return out


def kitti_rows(repeats: int) -> dict[str, Any]:
    """Ground fitting and segment_scan (live settings) on the KITTI raw sample's first sweep."""
    from perception_nodes.io.kitti import find_kitti_frames, load_kitti_frame, shared_data_dir
    data = shared_data_dir() / 'kitti_raw_2011_09_26_seq'
    if not data.is_dir():
        return {'kitti_skipped': f'no KITTI raw sample at {data}'}
    points = load_kitti_frame(find_kitti_frames(data)[0]).points
    from perception_nodes.teacher.instances import fit_ground_plane, segment_scan
    live = {'voxel_size': 0.2, 'cluster': 'connected_components'}
    return {'kitti_points': int(len(points)),
            'fit_ground_plane_kitti_ms': _median_ms(lambda: fit_ground_plane(points), repeats),
            'segment_scan_kitti_ms': _median_ms(lambda: segment_scan(points, **live), repeats),
            **first_segment_scan()}


FIRST = '''
import sys, time
sys.path.insert(0, {src!r})
import numpy as np, torch
from perception_nodes.io.kitti import find_kitti_frames, load_kitti_frame, shared_data_dir
points = load_kitti_frame(find_kitti_frames(shared_data_dir() / 'kitti_raw_2011_09_26_seq')[0]).points
t0 = time.perf_counter()
from perception_nodes.teacher.instances import segment_scan
t1 = time.perf_counter()
segment_scan(points, voxel_size=0.2, cluster='connected_components')
t2 = time.perf_counter()
print(round(t1 - t0, 3), round((t2 - t1) * 1e3, 1))
'''


def first_segment_scan() -> dict[str, Any]:
    """In a fresh process (numpy and torch already imported): import of instances, first segment_scan."""
    import perception_nodes
    src = str(Path(perception_nodes.__file__).resolve().parents[1])
    proc = subprocess.run([sys.executable, '-c', FIRST.format(src=src)], capture_output=True, text=True,
                          timeout=300)
    if proc.returncode != 0:
        return {'segment_scan_first_error': proc.stderr.strip().splitlines()[-1:]}
    imp, first = proc.stdout.split()
    return {'instances_import_s': float(imp), 'segment_scan_first_call_ms': float(first)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--repeats', type=int, default=7)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--busy-seconds', type=float, default=900.0)
    parser.add_argument('--no-loaded', action='store_true', help='idle figures only')
    parser.add_argument('--quick', action='store_true', help='skip the superpixel and fine ray-cast rows')
    parser.add_argument('--src', help='checkout to import perception_nodes from (default: this one)')
    args = parser.parse_args()
    src = Path(args.src or Path(__file__).resolve().parents[1]).resolve()
    sys.path.insert(0, str(src))
    import torch
    torch.set_num_threads(args.threads)
    out: dict[str, Any] = {'bench': 'geometry', 'src': str(src), 'device': args.device,
                           'threads': args.threads}
    out['idle'] = measure(args)
    if not args.no_loaded:
        with busy_core(args.busy_seconds):
            out['loaded'] = measure(args)
    print(json.dumps(out))


if __name__ == '__main__':
    main()
