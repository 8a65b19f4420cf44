#!/usr/bin/env python3
"""Latency and peak memory of the students at 120k points: PyTorch vs ONNX Runtime (and GPU when present).

Prints ONE JSON line. Each case runs in its own subprocess so its peak RSS (ru_maxrss) is its own.
Weights are random (latency does not depend on their values). The scan is a real KITTI raw scan
resampled to ``--points`` when the shared data is present, else a synthetic ring scan.

    python bench/student_bench.py [--points 120000] [--repeats 10] [--threads 1,2] [--cases a,b]

CPU cases run once per thread count: on a shared 2-core machine one intra-op thread is often faster than
two (the second thread spins against other processes), so both are reported.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CASES = {
    # name: (student preset, backend kind, device, providers)
    'range_k64_torch_cpu': ('range_k64', 'torch', 'cpu', None),
    'range_k64_ort_cpu': ('range_k64', 'onnxruntime', 'cpu', ['CPUExecutionProvider']),
    'range_c512_torch_cpu': ('range_c512', 'torch', 'cpu', None),
    'range_c512_ort_cpu': ('range_c512', 'onnxruntime', 'cpu', ['CPUExecutionProvider']),
    'sparse_c512_torch_cpu': ('sparse_c512', 'torch', 'cpu', None),
    'range_k64_torch_cuda': ('range_k64', 'torch', 'cuda', None),
    'range_k64_ort_cuda': ('range_k64', 'onnxruntime', 'cuda', ['CUDAExecutionProvider']),
    'range_k64_tensorrt_fp16': ('range_k64', 'tensorrt', 'cuda', None),
    'sparse_c512_torch_cuda': ('sparse_c512', 'torch', 'cuda', None),
}
CPU_CASES = [k for k, v in CASES.items() if v[2] == 'cpu']


def student_config(preset: str):
    from perception_nodes.student.config import StudentConfig
    if preset == 'range_k64':
        return StudentConfig.deployable()
    if preset == 'range_c512':
        return StudentConfig.deployable(proj_dim=None)
    return StudentConfig(arch='sparse_unet')


def load_scan(n: int) -> tuple[np.ndarray, str]:
    from perception_nodes.io.kitti import read_velodyne, shared_data_dir
    scans = sorted((shared_data_dir() / 'kitti_raw_2011_09_26_seq').rglob('*.bin'))
    rng = np.random.default_rng(0)
    if scans:
        pts = read_velodyne(scans[0])
        source = f'KITTI raw {scans[0].name} ({len(pts)} points) resampled'
        idx = rng.choice(len(pts), n, replace=len(pts) < n)
        out = pts[idx].copy()
        out[:, :3] += rng.normal(0, 0.01, (n, 3)).astype(np.float32) * (np.arange(n) >= len(pts))[:, None]
        return out, source
    r, yaw = rng.uniform(2, 60, n), rng.uniform(-np.pi, np.pi, n)
    pts = np.stack([r * np.cos(yaw), r * np.sin(yaw), rng.uniform(-1.8, 1.0, n), rng.uniform(0, 1, n)], 1)
    return pts.astype(np.float32), 'synthetic ring scan'


def run_case(name: str, points: int, repeats: int, threads: int) -> dict:
    import torch

    from perception_nodes.student.backends import BackendConfig, load_backend
    from perception_nodes.student.checkpoint import save_checkpoint
    from perception_nodes.student.model import build_student
    torch.set_num_threads(threads)
    preset, kind, device, providers = CASES[name]
    torch.manual_seed(0)
    config = student_config(preset)
    work = Path(tempfile.mkdtemp(prefix='ovp-bench-'))
    save_checkpoint(work / 'ckpt', build_student(config))
    extra = {'providers': providers} if providers else {}
    backend = load_backend(BackendConfig(kind=kind, device=device, threads=threads, fp16=kind == 'tensorrt',
                                         engine_cache_dir=str(work / 'cache'), **extra), work / 'ckpt')
    scan, source = load_scan(points)
    for _ in range(2):
        backend.infer(scan)
    total, model = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        res = backend.infer(scan)
        total.append(time.perf_counter() - t)
        model.append(res.timings['inference_s'])
    shutil.rmtree(work, ignore_errors=True)
    ms = (lambda xs, q: round(float(np.percentile(xs, q)) * 1000, 1))
    return {'case': name, 'threads': threads, 'backend': backend.name, 'arch': config.arch,
            'embed_dim_out': config.out_dim,
            'widths': list(config.widths), 'max_points': backend.max_points, 'points': points,
            'num_used': res.num_used, 'p50_ms': ms(total, 50), 'p90_ms': ms(total, 90),
            'model_p50_ms': ms(model, 50), 'model_p90_ms': ms(model, 90),
            'hz_p50': round(1000 / max(ms(total, 50), 1e-3), 2),
            'peak_rss_mb': round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            'peak_cuda_mb': (round(torch.cuda.max_memory_allocated() / 2**20, 1)
                             if device == 'cuda' and torch.cuda.is_available() else None),
            'scan': source, 'repeats': repeats}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--points', type=int, default=120000)
    parser.add_argument('--repeats', type=int, default=10)
    parser.add_argument('--threads', default='1,2', help='comma-separated intra-op thread counts')
    parser.add_argument('--cases', help=f'comma-separated subset of {list(CASES)}')
    parser.add_argument('--case', help=argparse.SUPPRESS)       # child process mode
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.points, args.repeats, int(args.threads))))
        return 0
    import torch
    names = args.cases.split(',') if args.cases else CPU_CASES + (
        [k for k, v in CASES.items() if v[2] == 'cuda'] if torch.cuda.is_available() else [])
    results = []
    thread_counts = [int(t) for t in str(args.threads).split(',')]
    for name in names:
        if name not in CASES:
            raise SystemExit(f'unknown case {name}; choose from {list(CASES)}')
        for threads in thread_counts:
            repeats = min(args.repeats, 5) if name.startswith('sparse') else args.repeats
            cmd = [sys.executable, __file__, '--case', name, '--points', str(args.points),
                   '--repeats', str(repeats), '--threads', str(threads)]
            env = {**os.environ, 'PYTHONWARNINGS': 'ignore', 'OMP_NUM_THREADS': str(threads)}
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith('{')]
            if proc.returncode or not lines:
                results.append({'case': name, 'threads': threads,
                                'error': (proc.stderr.strip().splitlines() or ['failed'])[-1]})
            else:
                results.append(json.loads(lines[-1]))
    results.append({'case': 'sparse_c512_ort_cpu', 'error': 'not exportable: spconv sparse convolutions have '
                    'no standard ONNX operators (by design; range_unet is the deployable student)'})
    print(json.dumps({'bench': 'student', 'points': args.points, 'threads': thread_counts,
                      'cpu': platform.processor() or platform.machine(), 'cpu_count': os.cpu_count(),
                      'load_avg_1m': round(os.getloadavg()[0], 2), 'cuda': torch.cuda.is_available(),
                      'target': 'range_k64_ort_cpu >= 10 Hz', 'results': results}))
    return 0


if __name__ == '__main__':
    sys.exit(main())
