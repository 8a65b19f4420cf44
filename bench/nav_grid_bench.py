"""Navigation grid (issue 14) on the KITTI raw sample: prints ONE JSON line.

For every frame of the sample (0.2 m cells, 100 m x 100 m = 500 x 500, the pipeline's grid):

- ``fast_ms``: :func:`perception_nodes.geometry.occupancy.navigation_grid_fast` (every ray);
- ``float32_dedupe_ms``: what pipeline/core.py::_navigation_grid did before (one ray per float32 key, then
  the exact traversal of those rays), and the occupied cells it lost;
- ``exact_ms``: the all-rays reference :func:`navigation_grid` (slow; ``--exact-frames`` of them);
- free-cell Jaccard of the fast grid against the exact one, cells it misses / adds, and whether the
  occupied cells are identical.

Timings are medians over frames x ``--repeat``, measured idle and again while a busy loop (a
subprocess, bounded by ``--busy-seconds``) keeps one core loaded. ``--src DIR`` imports
``perception_nodes`` from another checkout (e.g. the commit before, for a before/after table); rows
that checkout lacks are left out. Usage: python bench/nav_grid_bench.py [--repeat R] [--src DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from _timing import busy_core, median_ms


def dedupe_float32(points: Any, spec: Any) -> Any:
    """Run the former pipeline path: one ray per (float32 cell, height band) key, then the exact grid."""
    import torch

    from perception_nodes.geometry.occupancy import navigation_grid
    origin = torch.zeros(3)
    pts = points[torch.isfinite(points).all(dim=1)]
    grid = spec.grid(origin)
    lower = torch.tensor(grid.lower[:2], dtype=pts.dtype)
    cell = torch.floor((pts[:, :2] - lower) / spec.resolution).long().clamp(-(1 << 20), 1 << 20)
    bounds = torch.tensor([grid.lower[2], grid.upper[2]], dtype=pts.dtype)
    band = torch.bucketize(pts[:, 2].contiguous(), bounds, right=True)
    key = (((cell[:, 0] + (1 << 20)) << 21) + cell[:, 1] + (1 << 20)) * 8 + band * 2
    _, inverse = torch.unique(key, return_inverse=True)
    first = torch.full((int(inverse.max()) + 1,), pts.shape[0], dtype=torch.long)
    first = first.scatter_reduce(0, inverse, torch.arange(pts.shape[0]), 'amin')
    return navigation_grid(pts[first], origin, spec)


def measure(clouds: list[Any], exact: list[Any], repeat: int) -> dict[str, Any]:
    import numpy as np
    import torch

    from perception_nodes.geometry import occupancy
    spec = occupancy.NavGridSpec()
    fast_fn = getattr(occupancy, 'navigation_grid_fast', None)
    out: dict[str, Any] = {}
    dedupe = [median_ms(lambda: dedupe_float32(p, spec), max(1, repeat // 3)) for p in clouds]
    out['float32_dedupe_ms'] = round(statistics.median(dedupe), 2)
    lost = [int(((g.data == 100) & (dedupe_float32(p, spec).data != 100)).sum())
            for p, g in zip(clouds, exact)]
    out['float32_dedupe_occupied_lost_per_frame'] = [min(lost), max(lost)]
    if fast_fn is None:
        return out
    fast_fn(clouds[0], torch.zeros(3), spec)                    # builds the per-grid angle tables once
    times = [median_ms(lambda: fast_fn(p, torch.zeros(3), spec), repeat) for p in clouds]
    out['fast_ms'] = round(statistics.median(times), 2)
    out['fast_ms_max_frame'] = round(max(times), 2)
    jac, miss, extra, same = [], [], [], []
    for p, g in zip(clouds, exact):
        f = fast_fn(p, torch.zeros(3), spec).data
        fe, ff = g.data == 0, f == 0
        jac.append(float((fe & ff).sum() / (fe | ff).sum()))
        miss.append(int((fe & ~ff).sum()))
        extra.append(int((ff & ~fe).sum()))
        same.append(bool(np.array_equal(g.data == 100, f == 100)))
    out['fast_free_jaccard_min'] = round(min(jac), 5)
    out['fast_free_missing_max'] = max(miss)
    out['fast_free_extra_max'] = max(extra)
    out['fast_occupied_identical'] = all(same)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--repeat', type=int, default=9)
    parser.add_argument('--exact-frames', type=int, default=10, help='frames compared with the exact grid')
    parser.add_argument('--busy-seconds', type=float, default=600.0)
    parser.add_argument('--src', help='checkout to import perception_nodes from (default: this one)')
    args = parser.parse_args()
    src = Path(args.src or Path(__file__).resolve().parents[1]).resolve()
    sys.path.insert(0, str(src))
    import torch
    torch.set_num_threads(1)

    from perception_nodes.geometry.occupancy import NavGridSpec, navigation_grid
    from perception_nodes.io.kitti import find_kitti_frames, load_kitti_frame, shared_data_dir
    out: dict[str, Any] = {'bench': 'nav_grid', 'src': str(src), 'grid': '0.2 m, 500 x 500',
                           'torch_threads': 1, 'cpus': os.cpu_count()}
    data = shared_data_dir() / 'kitti_raw_2011_09_26_seq'
    if not data.is_dir():
        out['skipped'] = f'no KITTI raw sample at {data}'
        print(json.dumps(out))
        return
    frames = find_kitti_frames(data)[:args.exact_frames]
    clouds = [torch.from_numpy(load_kitti_frame(f).points) for f in frames]
    out['frames'], out['points_per_frame'] = len(clouds), int(statistics.median(len(c) for c in clouds))
    spec = NavGridSpec()
    exact, exact_ms = [], []
    for p in clouds:
        t0 = time.perf_counter()
        exact.append(navigation_grid(p, torch.zeros(3), spec))
        exact_ms.append((time.perf_counter() - t0) * 1e3)
    out['exact_all_rays_ms'] = round(statistics.median(exact_ms), 1)
    out['idle'] = measure(clouds, exact, args.repeat)
    with busy_core(args.busy_seconds):
        out['loaded'] = measure(clouds, exact, args.repeat)
    print(json.dumps(out))


if __name__ == '__main__':
    main()
