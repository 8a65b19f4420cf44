"""``ovp eval`` frames/s on the real KITTI sample bag: prints ONE JSON line.

The bag: ``write_kitti_sample_bag`` of the SemanticKITTI sample (``$OVP_DATA/semantickitti_seq00``: 3 scans
of ~120k points with ground-truth labels, no camera; the KITTI raw sample has no labels to score). The
pipeline: ``--labeller teacher`` with the tiny random
CLIP (camera-free: it labels nothing, so this times the geometry, the ground truth and the metrics) or
``none``. A warm-up evaluation of one frame runs first (imports, first-call compilation); then the whole
bag is evaluated through :func:`perception_nodes.evaluation.evaluate_bags` with every metric family
(semantic, occupancy ray casting on the config's 256x256x20 voxel grid, instances), no BEV render.
``frames_per_s``: frames / wall time of the bag loop (bag read, frame assembly, pipeline, ground truth,
metrics; ``wall_s_with_report`` adds merging, report.json / report.md and the figures);
``pipeline_frames_per_s``: frames / the pipeline's own time; ``eval_ms``: ground truth + metrics per frame.

    python bench/eval_bench.py [--labeller teacher|none] [--threads 1] [--metrics semantic,instances]
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--labeller', choices=('teacher', 'none'), default='teacher')
    ap.add_argument('--threads', type=int, default=1,
                    help='torch threads of the geometry (runtime.torch_threads)')
    ap.add_argument('--metrics', default='semantic,occupancy,instances')
    args = ap.parse_args(argv)

    from perception_nodes.config import PerceptionConfig, with_overrides
    from perception_nodes.evaluation import EvalOptions, evaluate_bags, parse_metrics
    from perception_nodes.io.kitti import shared_data_dir
    from perception_nodes.io.sample_bags import write_kitti_sample_bag
    from perception_nodes.pipeline import Pipeline

    src = shared_data_dir() / 'semantickitti_seq00'
    if not src.is_dir():
        print(json.dumps({'bench': 'eval', 'skipped': f'SemanticKITTI sample not found at {src}'}))
        return 0
    tmp = Path(tempfile.mkdtemp(prefix='ovp-eval-bench-'))
    bag = tmp / 'kitti_bag'
    write_kitti_sample_bag(src, bag, max_frames=3)
    overrides = {'labeller.kind': args.labeller, 'teacher.clip_model': 'ovp-tiny',
                 'teacher.clip_pretrained': 'none', 'teacher.cache_dir': str(tmp),
                 'vocabulary.templates': ['a photo of a {}.'],
                 'runtime.torch_threads': args.threads, 'overlay.enabled': False}
    t0 = time.perf_counter()
    pipeline = Pipeline(with_overrides(PerceptionConfig(), overrides))
    setup_s = time.perf_counter() - t0
    options = EvalOptions(metrics=parse_metrics(args.metrics), bev_frames=0, progress=False, resume=False)
    warm = with_overrides(pipeline.config, {'replay.max_frames': 1})
    evaluate_bags([bag], pipeline, tmp / 'warmup', options, config=warm)
    start = time.perf_counter()
    report = evaluate_bags([bag], pipeline, tmp / 'report', options)
    wall = time.perf_counter() - start
    pipeline.close()
    speed = report['overall']['speed']
    lat = speed['latency_ms']
    frames = report['headline']['frames']
    print(json.dumps({
        'bench': 'eval', 'bag': 'SemanticKITTI seq00 sample (write_kitti_sample_bag)', 'frames': frames,
        'points_per_frame': round(report['overall']['points']['total'] / max(frames, 1)),
        'labeller': args.labeller, 'metrics': list(options.metrics),
        'frames_per_s': speed['frames_per_s'], 'pipeline_frames_per_s': speed['pipeline_frames_per_s'],
        'wall_s_with_report': round(wall, 3),
        'eval_ms_p50': lat.get('eval', {}).get('p50'), 'pipeline_ms_p50': lat.get('total', {}).get('p50'),
        'fraction_evaluated': report['headline']['fraction_evaluated'],
        'fraction_unknown': report['headline']['fraction_unknown'],
        'setup_s': round(setup_s, 2), 'threads': args.threads, 'cpus': os.cpu_count(),
        'python': platform.python_version(), 'platform': sys.platform}))
    return 0


if __name__ == '__main__':
    sys.exit(main())
