#!/usr/bin/env python3
"""Training engine numbers: throughput and peak RSS of both students, DDP equality, resume exactness.

Prints ONE JSON object (and writes it to ``--out`` when given):

- ``throughput``: per (student, recipe) case, frames/s over the steps after a warm-up step and the peak RSS
  of the process, on the CPU with ``--threads`` intra-op threads (2 = the robot's 2-core budget), each case
  in its own subprocess so its ru_maxrss is its own; with CUDA (``--cuda``) the same with AMP fp16;
- ``ddp``: per-step losses of 2 gloo ranks (per-rank batch 1) against 1 rank (batch 2) on the same frames:
  the largest relative difference;
- ``resume``: a run killed after step k and resumed against an uninterrupted run: the largest difference.

The frames are the synthetic world (``--sim``, default 32 beams x 1024 columns, about 30k points: a
quarter of an HDL-64 sweep). Frame rates on a shared machine move with its load; ``load_avg`` is recorded.

    python bench/train_bench.py [--steps 6] [--threads 2] [--sim SPEC] [--cases range_unet:pop3d,...]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))          # this checkout's training/ and perception_nodes/, not installed ones
DEFAULT_SIM = 'sim:frames=8,beams=32,azimuth=1024,image=94x311,embed_dim=512'
DEFAULT_CASES = ('range_unet:pop3d', 'range_unet:affinity3d', 'sparse_unet:pop3d', 'sparse_unet:affinity3d')
STUDENTS = {'range_unet': {'preset': 'deployable'},
            'sparse_unet': {'preset': 'none', 'arch': 'sparse_unet'}}
TINY_SIM = 'sim:frames=4,beams=8,azimuth=128,image=32x96,embed_dim=16'
TINY_STUDENT = {'preset': 'none', 'arch': 'range_unet', 'range_height': 16, 'range_width': 128,
                'widths': [8, 16], 'depths': [1, 1], 'point_width': 16, 'head_hidden': 16, 'voxel_width': 4,
                'grid': {'lower': [-40.0, -40.0, -3.0], 'upper': [40.0, 40.0, 3.0], 'shape': [16, 16, 4]}}


def _tree(recipe: str, student: dict, steps: int, device: str, batch: int) -> dict:
    from training.engine.config import config_dir, load_yaml_tree
    tree = load_yaml_tree(config_dir() / f'{recipe}.yaml')
    tree['student'] = dict(student)
    tree['phases'] = [{'name': 'bench', 'steps': steps}]
    tree['schedule']['warmup_steps'] = 0
    tree['train'].update(progress=False, plots=False, batch_size=batch, device=device, log_every=1,
                         checkpoint_every=10 ** 6, amp='auto')
    tree['data']['num_workers'] = 0
    if recipe == 'affinity3d':
        tree['recipe']['knowledge_transfer'] = False    # the student's own loss (KT branch: training only)
    return tree


def one_case(arch: str, recipe: str, steps: int, threads: int, sim: str, device: str, batch: int) -> dict:
    """Train ``steps`` steps of one case in this process; frames/s after the first (warm-up) step."""
    import resource

    import torch

    from training.data import open_source
    from training.engine.config import config_from_tree
    from training.engine.trainer import Trainer

    torch.set_num_threads(threads)
    data = open_source(sim)
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(config_from_tree(_tree(recipe, STUDENTS[arch], steps, device, batch)), data, out,
                          log_to_stdout=False)
        trainer.fit()
    timed = trainer.history[1:]
    seconds = sum(h.seconds for h in timed)
    return {'student': arch, 'recipe': recipe, 'device': device, 'threads': threads, 'batch': batch,
            'amp': str(trainer.amp_dtype).split('.')[-1] if trainer.amp_dtype else 'off',
            'points_per_frame': round(sum(data[i].num_points for i in range(len(data))) / len(data)),
            'frames_per_s': round(sum(h.frames for h in timed) / seconds, 3) if seconds else None,
            's_per_step': [round(h.seconds, 3) for h in trainer.history],
            'peak_rss_mb': round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            'peak_cuda_mb': (round(torch.cuda.max_memory_allocated() / 2 ** 20, 1) if device == 'cuda'
                             else None)}


def run_case(case: str, args: argparse.Namespace, device: str) -> dict:
    arch, recipe = case.split(':')
    cmd = [sys.executable, str(Path(__file__).resolve()), '--one', case, '--steps', str(args.steps),
           '--threads', str(args.threads), '--sim', args.sim, '--device', device, '--batch', str(args.batch)]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get('PYTHONPATH', ''))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
    lines = [x for x in proc.stdout.splitlines() if x.startswith('{')]
    if proc.returncode != 0 or not lines:
        return {'student': arch, 'recipe': recipe, 'device': device, 'error': proc.stderr.strip()[-400:]}
    return json.loads(lines[-1])


def ddp_check(tmp: Path) -> dict:
    from training.engine.checks import ddp_losses
    tree = _tree('pop3d', TINY_STUDENT, 4, 'cpu', 2)
    tree['augment']['points'] = True
    one = [loss for loss, _ in ddp_losses(tree, TINY_SIM, 1, tmp / 'one', batch_size=2)]
    two = [loss for loss, _ in ddp_losses(tree, TINY_SIM, 2, tmp / 'two', batch_size=1)]
    rel = max(abs(a - b) / max(abs(a), 1e-12) for a, b in zip(one, two))
    return {'ranks': [1, 2], 'per_rank_batch': [2, 1], 'steps': len(one), 'losses_1_rank': one,
            'losses_2_ranks': two, 'max_rel_diff': rel, 'backend': 'gloo'}


def resume_check(tmp: Path) -> dict:
    from training.data import open_source
    from training.engine.checks import resume_losses
    from training.engine.config import config_from_tree
    from training.engine.trainer import Trainer
    tree = _tree('pop3d', TINY_STUDENT, 6, 'cpu', 2)
    tree['augment']['points'] = True
    full = Trainer(config_from_tree(tree), open_source(TINY_SIM), tmp / 'full', log_to_stdout=False)
    full.fit()
    before, after = resume_losses(tree, TINY_SIM, tmp / 'killed', stop_after=3)
    ref = [h.loss for h in full.history]
    return {'killed_after_step': 3, 'steps': len(ref), 'max_abs_diff': max(abs(a - b) for a, b in
                                                                           zip(before + after, ref))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--steps', type=int, default=6)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--sim', default=DEFAULT_SIM)
    parser.add_argument('--cases', default=','.join(DEFAULT_CASES))
    parser.add_argument('--cuda', action='store_true', help='also the CUDA cases (AMP fp16)')
    parser.add_argument('--skip-checks', action='store_true', help='throughput only (no DDP / resume checks)')
    parser.add_argument('--timeout', type=float, default=1800.0)
    parser.add_argument('--out', help='also write the JSON here')
    parser.add_argument('--one', help=argparse.SUPPRESS)
    parser.add_argument('--device', default='cpu', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        arch, recipe = args.one.split(':')
        print(json.dumps(one_case(arch, recipe, args.steps, args.threads, args.sim, args.device, args.batch)))
        return 0
    start = time.time()
    result: dict = {'bench': 'train', 'host': platform.node(), 'cpu_count': os.cpu_count(),
                    'load_avg_start': os.getloadavg(), 'sim': args.sim, 'steps': args.steps}
    devices = ['cpu'] + (['cuda'] if args.cuda else [])
    result['throughput'] = [run_case(c, args, d) for d in devices for c in args.cases.split(',') if c]
    if not args.skip_checks:
        with tempfile.TemporaryDirectory() as tmp:
            result['ddp'] = ddp_check(Path(tmp))
            result['resume'] = resume_check(Path(tmp))
    result['load_avg_end'] = os.getloadavg()
    result['seconds'] = round(time.time() - start, 1)
    text = json.dumps(result)
    print(text)
    if args.out:
        Path(args.out).write_text(text + '\n', encoding='utf-8')
    return 0


if __name__ == '__main__':
    sys.exit(main())
