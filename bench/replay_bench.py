"""``ovp replay`` speed on the KITTI sample bag, idle and with one core kept busy: prints ONE JSON line.

    python bench/replay_bench.py [--labeller none|student|teacher] [--frames 10] [--passes 3]
                                 [--threads 1,2] [--modes idle,loaded] [--src DIR ...] [--rounds 1]

Each case (checkout x geometry threads x idle/loaded) runs in a fresh child process: it builds the pipeline,
replays the bag once to warm up, then ``--passes`` more times; frames/s is the median over the passes and
the per-stage latencies are the p50 / p90 over all their frames (the pipeline's ``timings_ms``; ``frame_ms``
is the wall time per frame of the whole replay: bag read, frame assembly, pipeline, output messages and bag
write). ``loaded``: the parent keeps one core busy with a bounded busy loop (a subprocess) for the whole
child run, as another process would on a shared robot CPU. Cases are interleaved (``--rounds`` times), so
every checkout sees the same machine state; ``--src`` adds checkouts to compare with this one (e.g. a
``git archive`` of the commit before a change).

``--threads``: ``runtime.torch_threads`` (the geometry); the network gets ``runtime.network_threads``
(``--network-threads``, 0: the cores left). The teacher is the tiny random CLIP (``ovp-tiny``) unless
``--clip-model`` names another (random weights: speed only); the student is a fresh deployable student
exported to ONNX (ONNX Runtime). ``stages_over_100ms_p90`` lists the stages (not the teacher or student
network) whose p90 exceeds 100 ms.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _timing import busy_core

REPO = Path(__file__).resolve().parents[1]
NETWORK_STAGES = ('teacher', 'student', 'labeller_wait', 'total')


def child(args: argparse.Namespace) -> dict:
    """One case, in this process: build, warm up, replay ``passes`` times; per-stage p50 / p90."""
    import numpy as np

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
    if args.network_threads:
        overrides['runtime.network_threads'] = args.network_threads
    for pair in args.set:
        key, _, value = pair.partition('=')
        overrides[key.strip()] = value
    clip = None
    if args.labeller == 'student':
        from perception_nodes.teacher.clip_models import ClipSpec, load_clip
        clip = load_clip(ClipSpec(model=args.clip_model, pretrained='none'))
        overrides.update({'labeller.student': str(untrained_student(tmp, clip.embed_dim)),
                          'labeller.backend': 'onnxruntime'})
    config = with_overrides(PerceptionConfig(), overrides)
    t0 = time.perf_counter()
    pipeline = Pipeline(config, clip=clip)
    setup_s = time.perf_counter() - t0
    stages: dict[str, list[float]] = {}
    fps, walls = [], []
    try:
        replay_bag(bag, tmp / 'warm', pipeline, config, progress=False)
        for i in range(args.passes):
            summary = replay_bag(bag, tmp / f'out{i}', pipeline, config, progress=False,
                                 on_frame=lambda o: [stages.setdefault(k, []).append(v)
                                                     for k, v in o.timings_ms.items()])
            fps.append(summary['frames_per_s'])
            walls.append(summary['wall_s'] / max(summary['frames'], 1) * 1e3)
    finally:
        pipeline.close()
    p50 = {k: round(float(np.percentile(v, 50)), 1) for k, v in stages.items()}
    p90 = {k: round(float(np.percentile(v, 90)), 1) for k, v in stages.items()}
    return {'frames_per_s': round(statistics.median(fps), 2), 'frames_per_s_passes': fps,
            'frame_ms': round(statistics.median(walls), 1), 'setup_s': round(setup_s, 2),
            'stage_ms_p50': p50, 'stage_ms_p90': p90,
            'stages_over_100ms_p90': sorted(k for k, v in p90.items() if v > 100 and k not in NETWORK_STAGES)}


def untrained_student(out: Path, embed_dim: int) -> Path:
    """Export the deployable student with random weights (speed only) to ``out/student_untrained.onnx``."""
    import torch

    from perception_nodes.student.config import StudentConfig
    from perception_nodes.student.export import export_onnx
    from perception_nodes.student.model import build_student

    torch.manual_seed(0)
    config = StudentConfig.deployable(embed_dim=embed_dim, provenance={
        'trained': False, 'labels_meaningful': False, 'note': 'random student of bench/replay_bench.py'})
    return export_onnx(build_student(config).eval(), out / 'student_untrained.onnx')


def run_case(src: Path, threads: int, network: int, loaded: bool, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, '--child', '--labeller', args.labeller, '--frames', str(args.frames),
           '--passes', str(args.passes), '--threads', str(threads), '--clip-model', args.clip_model,
           '--network-threads', str(network)] + [f'--set={pair}' for pair in args.set]
    env = {**os.environ, 'PYTHONPATH': str(src), 'PYTHONWARNINGS': 'ignore'}
    start_load = os.getloadavg()[0]
    with busy_core(args.busy_seconds, enabled=loaded):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(REPO),
                              timeout=args.busy_seconds)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith('{')]
    if proc.returncode or not lines:
        return {'error': (proc.stderr.strip().splitlines() or ['failed'])[-1][:300]}
    out = json.loads(lines[-1])
    out['loadavg_1m_before'] = round(start_load, 2)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--frames', type=int, default=10)
    ap.add_argument('--passes', type=int, default=3, help='timed replays per case (after a warm-up)')
    ap.add_argument('--labeller', choices=('teacher', 'student', 'none'), default='none')
    ap.add_argument('--clip-model', default='ovp-tiny')
    ap.add_argument('--threads', default='1', help='comma-separated runtime.torch_threads values')
    ap.add_argument('--network-threads', default='0', help='comma-separated runtime.network_threads values '
                    '(0: the default, the cores left by the geometry)')
    ap.add_argument('--modes', default='idle,loaded', help='idle, loaded (one core kept busy) or both')
    ap.add_argument('--src', action='append', default=[], help='another checkout to compare (repeatable)')
    ap.add_argument('--rounds', type=int, default=1, help='interleaved repetitions of every case')
    ap.add_argument('--busy-seconds', type=float, default=900.0, help='bound of the busy loop and of a case')
    ap.add_argument('--set', action='append', default=[], help='KEY=VALUE config override (repeatable)')
    ap.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        args.threads, args.network_threads = int(args.threads), int(args.network_threads)
        print(json.dumps(child(args)))
        return 0
    sources = [REPO] + [Path(s).resolve() for s in args.src]
    threads = [int(t) for t in str(args.threads).split(',')]
    networks = [int(t) for t in str(args.network_threads).split(',')]
    modes = [m for m in args.modes.split(',') if m]
    runs: dict[str, list[dict]] = {}
    for _ in range(args.rounds):
        for mode in modes:
            for t in threads:
                for net in networks:
                    for src in sources:
                        key = f'{src.name}|threads={t}|network={net or "default"}|{mode}'
                        runs.setdefault(key, []).append(run_case(src, t, net, mode == 'loaded', args))
    cases = {}
    for key, results in runs.items():
        ok = [r for r in results if 'error' not in r]
        if not ok:
            cases[key] = results[-1]
            continue
        best = sorted(ok, key=lambda r: r['frames_per_s'])[len(ok) // 2]        # the median round
        best['rounds_frames_per_s'] = [r['frames_per_s'] for r in ok]
        cases[key] = best
    print(json.dumps({'bench': 'replay', 'labeller': args.labeller, 'clip_model': args.clip_model,
                      'frames': args.frames, 'passes': args.passes, 'rounds': args.rounds,
                      'cpu_count': os.cpu_count(), 'loadavg_1m_end': round(os.getloadavg()[0], 2),
                      'sources': [str(s) for s in sources], 'cases': cases}))
    return 0


if __name__ == '__main__':
    sys.exit(main())
