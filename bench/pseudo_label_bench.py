"""``ovp pseudo-label`` on the KITTI sample bag: store bytes per frame, frames/s (1 and 2 workers), peak RSS.

    python bench/pseudo_label_bench.py [--frames 4] [--clip-model ViT-B-32] [--methods dense,cns,...]

Prints ONE JSON line. The teacher is ``--clip-model`` with random weights (``--clip-pretrained none``: no
weights ship; the architecture, hence the feature-map size and the compute, is the real one; the labels
mean nothing), one prompt template, the semantickitti vocabulary, the annotation-free Affinity3D setting
(the sample has no ground truth). Each run is the real command in a fresh process (``python -m
training.store``), into a fresh store: ``frames_per_s`` counts the whole command (model loading and bag
hashing included), ``processing_units_per_s`` only the rank loop (the summary's). Peak RSS: the command's
process and each worker's (``ru_maxrss``). Bytes: the shard bytes per frame and their split by tensor group
(points, labels, dense teacher targets, images, ...), beside what 512-d float16 features per point would
take.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_store(bag: Path, out: Path, args: argparse.Namespace, workers: int) -> dict:
    """Run the command once in a fresh process; wall time, its peak RSS and the summary."""
    cmd = [sys.executable, '-m', 'training.store', str(bag), '--out', str(out), '--quiet',
           '--clip-model', args.clip_model, '--clip-pretrained', 'none', '--vocabulary', 'semantickitti',
           '--set', 'vocabulary.templates=[a photo of a {}.]', '--set', f'teacher.cache_dir={out.parent}',
           '--methods', args.methods, '--setting', 'af', '--shard-frames', str(args.shard_frames),
           '--workers', str(workers)]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get('PYTHONPATH', ''))
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f'{" ".join(cmd)} failed:\n{proc.stderr[-3000:]}')
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    summary = json.loads((out / 'summary.json').read_text())
    return {'wall_s': round(wall, 2), 'frames_per_s': round(summary['units'] / wall, 3),
            'processing_units_per_s': summary['run']['units_per_s'],
            'peak_rss_mb_largest_process': round(max(peak, before) / 1024, 1),
            'peak_rss_mb_ranks': [r['peak_rss_mb'] for r in summary['run']['ranks']],
            'units': summary['units'], 'summary': summary}


def bytes_by_group(out: Path) -> dict:
    """Shard bytes per frame, split by tensor group (the unit prefix removed)."""
    from safetensors import safe_open
    index = json.loads((out / 'index.json').read_text())
    groups: dict[str, int] = {}
    units = 0
    for shard in index['shards']:
        with safe_open(str(out / shard['file']), framework='pt') as f:
            for name in f.keys():
                t = f.get_tensor(name)
                field = name.split('/', 1)[1] if '/' in name else name
                group = field.split('/')[0]
                if group == 'dense' and field.startswith('dense/map_'):
                    group = 'dense/maps'
                elif group == 'dense':
                    group = 'dense/projections'
                groups[group] = groups.get(group, 0) + t.numel() * t.element_size()
        units += len(shard['units'])
    return {k: round(v / max(units, 1)) for k, v in sorted(groups.items())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--frames', type=int, default=4)
    ap.add_argument('--clip-model', default='ViT-B-32')
    ap.add_argument('--methods', default='dense,affinity3d,cns,pop3d')
    ap.add_argument('--shard-frames', type=int, default=2)
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from perception_nodes.io.kitti import shared_data_dir
    from perception_nodes.io.sample_bags import write_kitti_sample_bag

    src = shared_data_dir() / 'kitti_raw_2011_09_26_seq'
    if not src.is_dir():
        print(json.dumps({'bench': 'pseudo_label', 'skipped': f'KITTI sample not found at {src}'}))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_kitti_sample_bag(src, tmp / 'kitti', max_frames=args.frames)
        one = run_store(tmp / 'kitti', tmp / 'w1', args, 1)
        two = run_store(tmp / 'kitti', tmp / 'w2', args, 2)
        index1 = json.loads((tmp / 'w1' / 'index.json').read_text())
        index2 = json.loads((tmp / 'w2' / 'index.json').read_text())
        same = [s['sha256'] for s in index1['shards']] == [s['sha256'] for s in index2['shards']]
        groups = bytes_by_group(tmp / 'w1')
        s = one.pop('summary')
        two.pop('summary')
        points = s['points'] / max(s['units'], 1)
        out = {'bench': 'pseudo_label', 'data': 'KITTI raw 2011_09_26 sample (ovp kitti-to-bag)',
               'frames': s['units'], 'points_per_frame': round(points),
               'teacher': f'{args.clip_model} random weights (speed and sizes only), 1 template, '
                          'semantickitti',
               'methods': args.methods, 'bytes_per_frame': s['bytes']['per_unit'], 'bytes_by_group': groups,
               'per_point_512d_fp16_bytes': round(points * 512 * 2),
               'workers_1': one, 'workers_2': two, 'two_workers_same_shards': same,
               'timings_ms_per_frame': {k: v['per_unit'] for k, v in s['timings_ms'].items()},
               'visibility': s['visibility'], 'cpus': os.cpu_count(), 'python': platform.python_version()}
    print(json.dumps(out))
    return 0


if __name__ == '__main__':
    sys.exit(main())
