"""Per-stage pipeline latency and replay frames/s on this machine: prints ONE JSON line.

Setup (the issue's target case): a ViT-B-32-shaped CLIP with random weights (open_clip
``create_model('ViT-B-32', pretrained=None)``; timing does not depend on the weights), MaskCLIP dense
features at 224x416, one camera, a ~120k-point sweep: the KITTI raw sample (1242x375 images, ~120k
points per sweep) replayed from a bag, or the synthetic world (64x2048 beams) when the data is absent.
``ovp replay`` runs end to end (bag read, frame assembly, pipeline, output bag write); the per-stage
latencies are the pipeline's own ``timings_ms``; the first frame is a warm-up and is excluded.

    python bench/pipeline_bench.py [--frames 6] [--model ViT-B-32] [--threads 1] [--network-threads 0]

``--threads``: ``runtime.torch_threads`` (the geometry, in the calling thread); ``--network-threads``:
``runtime.network_threads`` (the teacher's worker; 0: the cores the geometry leaves).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

FUSION_GEOMETRY = ('projection', 'visibility', 'sampling')         # what the 2D->3D transfer costs
PRODUCTS_3D = ('instances', 'occupancy', 'voxels')                   # segments, grids (label-independent)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--frames', type=int, default=6, help='frames replayed (the first is a warm-up)')
    ap.add_argument('--model', default='ViT-B-32')
    ap.add_argument('--threads', type=int, default=1, help='runtime.torch_threads (geometry)')
    ap.add_argument('--network-threads', type=int, default=0, help='runtime.network_threads (teacher)')
    ap.add_argument('--device', default='cpu')
    ap.add_argument('--source', choices=('auto', 'kitti', 'sim'), default='auto')
    ap.add_argument('--sequential', action='store_true', help='teacher in the main thread (no overlap)')
    args = ap.parse_args(argv)

    from perception_nodes.config import PerceptionConfig, with_overrides
    from perception_nodes.io.kitti import shared_data_dir
    from perception_nodes.io.sample_bags import sim_frames, write_kitti_sample_bag, write_sim_bag
    from perception_nodes.pipeline import Pipeline
    from perception_nodes.replay import replay_bag
    from perception_nodes.teacher.clip_models import ClipSpec, load_clip

    tmp = Path(tempfile.mkdtemp(prefix='ovp-pipeline-bench-'))
    kitti = shared_data_dir() / 'kitti_raw_2011_09_26_seq'
    source = args.source if args.source != 'auto' else ('kitti' if kitti.is_dir() else 'sim')
    bag = tmp / 'in'
    if source == 'kitti':
        write_kitti_sample_bag(kitti, bag, max_frames=args.frames)
        vocabulary = 'semantickitti'
    else:
        write_sim_bag(bag, sim_frames(args.frames, num_cameras=1, image_size='kitti', beams=(64, 2048)))
        vocabulary = 'sim'

    t0 = time.perf_counter()
    clip = load_clip(ClipSpec(model=args.model, pretrained='none', device=args.device))
    cfg = with_overrides(PerceptionConfig(), {
        'teacher.clip_model': args.model, 'teacher.clip_pretrained': 'none', 'teacher.cache_dir': str(tmp),
        'vocabulary.classes': [vocabulary], 'vocabulary.templates': ['a photo of a {}.'],
        'runtime.device': args.device, 'replay.overlay_pngs': 0, 'runtime.torch_threads': args.threads,
        'runtime.network_threads': args.network_threads, 'runtime.concurrent_teacher': not args.sequential})
    pipeline = Pipeline(cfg, clip=clip)
    setup_s = time.perf_counter() - t0

    latencies: dict[str, list[float]] = {}
    points: list[int] = []
    seen = {'n': 0}

    def record(outputs) -> None:
        seen['n'] += 1
        if seen['n'] == 1:
            return                                  # warm-up frame
        points.append(len(outputs.points))
        for stage, ms in outputs.timings_ms.items():
            latencies.setdefault(stage, []).append(ms)

    summary = replay_bag(bag, tmp / 'out', pipeline, cfg, progress=False, on_frame=record)
    p50 = {k: round(float(np.median(v)), 1) for k, v in latencies.items()}
    total = p50.get('total', float('nan'))
    geometry = sum(p50.get(k, 0.0) for k in FUSION_GEOMETRY)
    products = sum(p50.get(k, 0.0) for k in PRODUCTS_3D)
    # CPU time of all stages (with the overlapped teacher, the stages add up to more than the wall time)
    cpu = sum(v for k, v in p50.items() if k not in ('total', 'teacher_wait'))
    load = os.getloadavg() if hasattr(os, 'getloadavg') else None
    print(json.dumps({
        'bench': 'pipeline', 'source': source, 'model': f'{args.model} (random weights)',
        'input_size': list(cfg.teacher.input_size), 'cameras': 1, 'device': args.device,
        'points_per_frame': int(np.mean(points)) if points else 0, 'frames_timed': len(points),
        'stage_ms_p50': p50,
        'pipeline_fps': round(1000.0 / total, 2) if total == total and total > 0 else None,
        'fusion_geometry_ms': round(geometry, 1),
        'fusion_geometry_share': round(geometry / total, 3) if total else None,
        'products_3d_ms': round(products, 1),
        'cpu_ms_all_stages': round(cpu, 1),
        'teacher_overlapped': not args.sequential,
        'replay_fps': summary['frames_per_s'], 'replay_frames': summary['frames'],
        'setup_s': round(setup_s, 1), 'threads': getattr(pipeline, 'geometry_threads', args.threads),
        'network_threads': getattr(pipeline, 'network_threads', None), 'cpu_count': os.cpu_count(),
        'loadavg_1m': round(load[0], 2) if load else None, 'python': platform.python_version(),
        'torch': torch.__version__}))
    return 0


if __name__ == '__main__':
    sys.exit(main())
