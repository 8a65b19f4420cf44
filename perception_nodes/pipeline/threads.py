"""Thread counts of the pipeline on a small, shared CPU (``runtime.torch_threads`` / ``network_threads``).

The 3D stages (projection, visibility, voxels, the grids) are many small vectorised operations: with more
than one intra-op thread each of them forks and joins an OpenMP team, and when another process holds a
core the team's threads wait on each other (measured on 2 shared cores: voxelize 410 ms with 2 threads vs
14 ms with 1). They run with ``runtime.torch_threads`` (default 1), and numpy's BLAS (OpenBLAS threads
spin while they wait, too) is limited to the same count. The network (2D teacher in torch, the student in
torch or ONNX Runtime) is one large computation that does scale: it runs in its own worker thread with
``runtime.network_threads`` (0: the cores left over by the geometry, at least 1).

Thread counts are per thread in torch's OpenMP build: ``torch.set_num_threads`` sets the calling thread's
OpenMP team size (and a process-wide default), while a thread that has not run a parallel operation yet
takes the process-wide default on its first one. :func:`use_torch_threads` first makes torch initialise
the calling thread (``torch.get_num_threads``), then sets its own count, so each pipeline thread keeps its
count whichever thread set the default last (test/pipeline checks this by measurement).
"""
from __future__ import annotations

import os
import threading
from typing import Any

import torch

_BLAS_LIMIT: dict[str, Any] = {}
_LOCK = threading.Lock()


def cpu_count() -> int:
    """Return how many CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def resolve_threads(torch_threads: int, network_threads: int) -> tuple[int, int]:
    """(geometry, network) thread counts; 0 means: geometry torch's default, network the cores left (>= 1)."""
    geometry = int(torch_threads) if torch_threads > 0 else 0
    if network_threads > 0:
        network = int(network_threads)
    else:
        network = max(1, cpu_count() - (geometry or 1))
    return geometry, network


def use_torch_threads(count: int) -> None:
    """Give the calling thread ``count`` torch intra-op threads (0: leave it as it is); module docstring."""
    if count <= 0:
        return
    torch.get_num_threads()          # initialises this thread from the process default first ...
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)  # ... so that this count stays the thread's own


def limit_blas_threads(count: int) -> None:
    """Limit numpy / scipy BLAS (OpenBLAS, MKL) to ``count`` threads process-wide (0: leave them)."""
    if count <= 0:
        return
    with _LOCK:
        if _BLAS_LIMIT.get('count') == count:
            return
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:          # threadpoolctl comes with scikit-learn; without it BLAS keeps its own
            return
        _BLAS_LIMIT['limiter'] = threadpool_limits(limits=count, user_api='blas')
        _BLAS_LIMIT['count'] = count
