"""``ovp replay`` speed on the KITTI sample bag: frames/s and per-stage p50, one JSON line.

    python bench/replay_bench.py [--frames 6] [--labeller teacher|student|none] [--threads 1] [--load]

``--load`` runs a bounded busy loop in a second process (one core kept busy), as on a shared robot CPU.
The teacher is the tiny random CLIP (``ovp-tiny``) unless ``--clip-model`` names another (random weights:
speed only); the student is a fresh deployable student exported to ONNX.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path


def _busy(stop_after: float) -> None:
    end = time.time() + stop_after
    x = 0
    while time.time() < end:
        x += 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--frames', type=int, default=6)
    ap.add_argument('--labeller', choices=('teacher', 'student', 'none'), default='teacher')
    ap.add_argument('--clip-model', default='ovp-tiny')
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--load', action='store_true', help='keep one core busy while measuring')
    args = ap.parse_args(argv)

    from perception_nodes.config import PerceptionConfig, with_overrides
    from perception_nodes.io.kitti import shared_data_dir
    from perception_nodes.io.sample_bags import write_kitti_sample_bag
    from perception_nodes.pipeline import Pipeline
    from perception_nodes.replay import replay_bag

    tmp = Path(tempfile.mkdtemp(prefix='ovp-replay-bench-'))
    bag = tmp / 'kitti'
    write_kitti_sample_bag(shared_data_dir() / 'kitti_raw_2011_09_26_seq', bag, max_frames=args.frames)
    overrides = {'labeller.kind': args.labeller, 'teacher.clip_model': args.clip_model,
                 'teacher.clip_pretrained': 'none', 'teacher.cache_dir': str(tmp),
                 'vocabulary.templates': ['a photo of a {}.'], 'replay.overlay_pngs': 0,
                 'runtime.torch_threads': args.threads}
    clip = None
    if args.labeller == 'student':
        from perception_nodes.cli.demo import fresh_student
        from perception_nodes.teacher.clip_models import ClipSpec, load_clip
        clip = load_clip(ClipSpec(model=args.clip_model, pretrained='none'))
        overrides.update({'labeller.student': str(fresh_student(tmp, clip.embed_dim)),
                          'labeller.backend': 'onnxruntime'})
    config = with_overrides(PerceptionConfig(), overrides)
    t0 = time.perf_counter()
    pipeline = Pipeline(config, clip=clip)
    setup_s = time.perf_counter() - t0
    busy = None
    if args.load:
        busy = mp.Process(target=_busy, args=(600.0,), daemon=True)
        busy.start()
    try:
        summary = replay_bag(bag, tmp / 'out', pipeline, config, progress=False)
    finally:
        if busy is not None:
            busy.terminate()
        pipeline.close()
    print(json.dumps({
        'bench': 'replay', 'labeller': args.labeller, 'clip_model': args.clip_model,
        'frames': summary['frames'],
        'frames_per_s': summary['frames_per_s'], 'wall_s': summary['wall_s'], 'setup_s': round(setup_s, 2),
        'stage_ms_p50': {k: v.get('p50') for k, v in summary['latency_ms'].items()},
        'threads': args.threads, 'loaded': args.load, 'cpu_count': os.cpu_count(),
        'loadavg_1m': round(os.getloadavg()[0], 2)}))
    return 0


if __name__ == '__main__':
    sys.exit(main())
