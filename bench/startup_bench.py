"""Start-up of ``ovp replay --labeller none``: wall clock from process start to the first processed frame.

Prints ONE JSON line. Each run is a fresh ``python -m perception_nodes.cli.main replay --labeller none`` on
the KITTI sample bag (``--max-frames 1``) in a subprocess, started through a small wrapper that only adds a
timestamp when ``Pipeline.process`` returns for the first time (the wrapper imports ``perception_nodes
.pipeline.core`` first, which the replay imports anyway). Reported, medians over ``--runs``:

- ``first_frame_s``: from just before the subprocess is spawned to the first frame's outputs (target 3 s);
- ``exit_s``: to the process's exit (the frame written, summary.json and legend.png, interpreter teardown);
- ``import_ms``: ``python -X importtime`` of the same command, cumulative per top-level package, from one
  extra run (the biggest ones), and whether open_clip / torchvision / torch._dynamo / sklearn were loaded.

    python bench/startup_bench.py [--runs 5] [--src DIR ...] [--labeller none]

``--src`` adds other checkouts, run interleaved with this one (same machine state).
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

REPO = Path(__file__).resolve().parents[1]
WRAPPER = r'''
import os, runpy, sys, time
t0 = float(os.environ['OVP_BENCH_T0'])
import perception_nodes.pipeline.core as core
first = core.Pipeline.process
def process(self, frame):
    out = first(self, frame)
    if not getattr(process, 'done', False):
        process.done = True
        sys.stderr.write(f'OVP_FIRST_FRAME {time.time() - t0:.4f}\n')
        sys.stderr.flush()
    return out
core.Pipeline.process = process
sys.argv = ['ovp'] + sys.argv[1:]
runpy.run_module('perception_nodes.cli.main', run_name='__main__')
'''
WATCH = ('open_clip', 'torchvision', 'torch._dynamo', 'sklearn', 'matplotlib', 'cv2', 'onnxruntime', 'scipy')


def replay_args(bag: Path, out: Path, labeller: str) -> list[str]:
    return ['replay', '--bag', str(bag), '--out', str(out), '--labeller', labeller, '--max-frames', '1',
            '--quiet', '--overwrite', '--set', 'replay.overlay_pngs=0']


def timed_run(src: Path, bag: Path, out: Path, labeller: str) -> dict:
    env = {**os.environ, 'PYTHONPATH': str(src), 'PYTHONWARNINGS': 'ignore'}
    env['OVP_BENCH_T0'] = repr(time.time())
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, '-c', WRAPPER] + replay_args(bag, out, labeller),
                          capture_output=True, text=True, env=env, cwd=str(src))
    exit_s = time.perf_counter() - start
    first = [ln.split()[1] for ln in proc.stderr.splitlines() if ln.startswith('OVP_FIRST_FRAME')]
    if proc.returncode or not first:
        return {'error': (proc.stderr.strip().splitlines() or ['failed'])[-1][:300]}
    return {'first_frame_s': float(first[0]), 'exit_s': round(exit_s, 3)}


def import_profile(src: Path, bag: Path, out: Path, labeller: str) -> dict:
    env = {**os.environ, 'PYTHONPATH': str(src), 'PYTHONWARNINGS': 'ignore'}
    proc = subprocess.run([sys.executable, '-X', 'importtime', '-m', 'perception_nodes.cli.main']
                          + replay_args(bag, out, labeller), capture_output=True, text=True, env=env,
                          cwd=str(src))
    cumulative: dict[str, int] = {}
    loaded = set()
    for line in proc.stderr.splitlines():
        if not line.startswith('import time:') or '|' not in line:
            continue
        parts = line.split('|')
        if not parts[1].strip().isdigit():
            continue                                    # the header line
        cum = int(parts[1].strip())
        module = parts[2].rstrip()
        depth = (len(module) - len(module.lstrip())) // 2
        module = module.strip()
        loaded.add(module)
        if depth == 0:
            top = module.split('.')[0]
            cumulative[top] = cumulative.get(top, 0) + cum
    biggest = dict(sorted(((k, round(v / 1e3)) for k, v in cumulative.items()), key=lambda kv: -kv[1])[:8])
    return {'import_ms_by_top_level': biggest, 'import_ms_total': round(sum(cumulative.values()) / 1e3),
            'loaded': {m: m in loaded for m in WATCH}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--runs', type=int, default=5)
    ap.add_argument('--labeller', default='none')
    ap.add_argument('--src', action='append', default=[], help='another checkout to compare (repeatable)')
    args = ap.parse_args(argv)
    sys.path.insert(0, str(REPO))
    from perception_nodes.io.kitti import shared_data_dir
    from perception_nodes.io.sample_bags import write_kitti_sample_bag

    tmp = Path(tempfile.mkdtemp(prefix='ovp-startup-bench-'))
    bag = tmp / 'kitti'
    write_kitti_sample_bag(shared_data_dir() / 'kitti_raw_2011_09_26_seq', bag, max_frames=2)
    sources = [REPO] + [Path(s).resolve() for s in args.src]
    runs: dict[str, list[dict]] = {s.name: [] for s in sources}
    for i in range(args.runs):
        for src in sources:
            runs[src.name].append(timed_run(src, bag, tmp / f'out-{src.name}', args.labeller))
    result = {}
    for src in sources:
        ok = [r for r in runs[src.name] if 'error' not in r]
        entry: dict = {'runs': len(ok)}
        if ok:
            entry['first_frame_s'] = round(statistics.median(r['first_frame_s'] for r in ok), 3)
            entry['first_frame_s_all'] = [round(r['first_frame_s'], 3) for r in ok]
            entry['exit_s'] = round(statistics.median(r['exit_s'] for r in ok), 3)
        else:
            entry['error'] = runs[src.name][-1].get('error')
        entry.update(import_profile(src, bag, tmp / f'imp-{src.name}', args.labeller))
        result[src.name] = entry
    print(json.dumps({'bench': 'startup', 'command': 'ovp replay --labeller ' + args.labeller,
                      'target_first_frame_s': 3.0, 'cpu_count': os.cpu_count(),
                      'loadavg_1m': round(os.getloadavg()[0], 2), 'checkouts': result}))
    return 0


if __name__ == '__main__':
    sys.exit(main())
