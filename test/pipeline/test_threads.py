"""Thread counts: the geometry (calling) threads and the network worker keep their own counts (measured)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from perception_nodes.pipeline.threads import resolve_threads

ROOT = Path(__file__).resolve().parents[2]

# Runs in a fresh process: what each thread's torch reports and how many OS threads a parallel operation
# in that thread starts (OpenMP teams are per calling thread: a 1-thread team starts none).
PROBE = r'''
import json, os, threading
import numpy as np
import torch
from perception_nodes.config import PerceptionConfig, with_overrides
from perception_nodes.io.sample_bags import sim_frames
from perception_nodes.pipeline import Pipeline


def tasks():
    return set(os.listdir('/proc/self/task'))


def probe():
    before = tasks()
    x = torch.ones(4_000_000)
    for _ in range(3):
        (x * 2.0).sum()
    return {'threads': torch.get_num_threads(), 'new_os_threads': len(tasks() - before)}


cfg = with_overrides(PerceptionConfig(), {'labeller.kind': 'none', 'runtime.torch_threads': 1,
                                           'runtime.network_threads': 2})
pipeline = Pipeline(cfg)
out = {'network': pipeline._executor().submit(probe).result()}
other = threading.Thread(target=torch.set_num_threads, args=(3,))   # changes the process default
other.start()
other.join()
out['main'] = probe()
out['network_again'] = pipeline._executor().submit(probe).result()
frame = sim_frames(1, beams=(8, 64))[0]


def node_worker():                   # a thread that only calls process(), as a ROS node's worker does
    pipeline.process(frame)
    out['process_thread'] = probe()


worker = threading.Thread(target=node_worker)
worker.start()
worker.join()
from threadpoolctl import threadpool_info
out['blas'] = sorted({d['num_threads'] for d in threadpool_info() if d['user_api'] == 'blas'})
pipeline.close()
print(json.dumps(out))
'''


def test_each_pipeline_thread_keeps_its_own_torch_thread_count():
    env = {**os.environ, 'PYTHONPATH': f'{ROOT}{os.pathsep}{os.environ.get("PYTHONPATH", "")}',
           'OMP_NUM_THREADS': '4'}
    proc = subprocess.run([sys.executable, '-c', PROBE], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got['network']['threads'] == 2
    assert got['network']['new_os_threads'] == 1          # a team of 2: the worker plus one OpenMP thread
    # another thread changed the process default to 3: the pipeline's threads keep their own counts
    assert got['main'] == {'threads': 1, 'new_os_threads': 0}
    assert got['network_again'] == {'threads': 2, 'new_os_threads': 0}
    assert got['process_thread'] == {'threads': 1, 'new_os_threads': 0}
    assert got['blas'] == [1]


def test_resolve_threads_defaults():
    geometry, network = resolve_threads(1, 0)
    assert geometry == 1 and network >= 1
    assert resolve_threads(2, 3) == (2, 3)
    assert resolve_threads(0, 0)[0] == 0
