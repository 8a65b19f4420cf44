"""torch.distributed for the trainer: started by torchrun (or one process), gloo on CPU, NCCL on GPU.

``torchrun --nproc-per-node N -m training.train ...`` (and multi-node with torchrun's ``--nnodes``,
``--rdzv-backend``, ``--rdzv-endpoint``) sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR; this module reads
them. There is no launcher here: torchrun is the launcher. Without those variables the run is one process.
"""
from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist


@dataclass
class DistEnv:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device('cpu')
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def pick_device(request: str = 'auto', local_rank: int = 0) -> torch.device:
    """``auto``: the local rank's GPU when CUDA is available, else the CPU."""
    if request == 'cpu' or (request == 'auto' and not torch.cuda.is_available()):
        return torch.device('cpu')
    if not torch.cuda.is_available():
        raise RuntimeError('train.device is cuda but CUDA is not available')
    return torch.device('cuda', local_rank % max(1, torch.cuda.device_count()))


def init_distributed(device: str = 'auto', timeout_s: float = 1800.0) -> DistEnv:
    """Join the process group torchrun describes (env://), or return a single-process DistEnv."""
    world = int(os.environ.get('WORLD_SIZE', '1'))
    rank = int(os.environ.get('RANK', '0'))
    local = int(os.environ.get('LOCAL_RANK', '0'))
    dev = pick_device(device, local)
    if world <= 1:
        return DistEnv(0, 1, 0, dev, None)
    backend = 'nccl' if dev.type == 'cuda' else 'gloo'
    if dev.type == 'cuda':
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group(backend, init_method='env://', rank=rank, world_size=world,
                                timeout=timedelta(seconds=timeout_s))
    return DistEnv(rank, world, local, dev, backend)


def env_from_group(device: torch.device | None = None) -> DistEnv:
    """Describe an already initialised process group (tests spawn ranks with a file:// init)."""
    if not dist.is_initialized():
        return DistEnv(device=device or torch.device('cpu'))
    return DistEnv(dist.get_rank(), dist.get_world_size(), int(os.environ.get('LOCAL_RANK', '0')),
                   device or torch.device('cpu'), dist.get_backend())


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()


def all_reduce_mean(values: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """Mean over ranks of a float tensor (identity on one process)."""
    if not env.distributed:
        return values
    out = values.detach().to(env.device, torch.float64).clone()
    dist.all_reduce(out)
    return (out / env.world_size).to(values.device)


def all_reduce_max(value: float, env: DistEnv) -> float:
    if not env.distributed:
        return value
    t = torch.tensor([float(value)], dtype=torch.float64, device=env.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def all_gather_bytes(data: bytes, env: DistEnv) -> list[bytes]:
    """Every rank's ``data`` (as bytes tensors, no pickling), in rank order."""
    if not env.distributed:
        return [data]
    size = torch.tensor([len(data)], dtype=torch.long, device=env.device)
    sizes = [torch.zeros_like(size) for _ in range(env.world_size)]
    dist.all_gather(sizes, size)
    longest = max(int(s) for s in sizes)
    buf = torch.zeros(longest, dtype=torch.uint8, device=env.device)
    if data:
        buf[:len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8).to(env.device)
    bufs = [torch.zeros_like(buf) for _ in range(env.world_size)]
    dist.all_gather(bufs, buf)
    return [bytes(b[:int(s)].cpu().numpy().tobytes()) for b, s in zip(bufs, sizes)]


def broadcast_json(obj: Any, env: DistEnv) -> Any:
    """Rank 0's JSON-able ``obj`` on every rank."""
    if not env.distributed:
        return obj
    blobs = all_gather_bytes(json.dumps(obj).encode() if env.is_main else b'', env)
    return json.loads(blobs[0].decode())


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA) global generators."""
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def mix_seed(*parts: int) -> int:
    """Mix integers into a deterministic 63-bit seed (splitmix64 of the sequence)."""
    x = 0x9E3779B97F4A7C15
    for p in parts:
        x = (x ^ (int(p) & 0xFFFFFFFFFFFFFFFF)) & 0xFFFFFFFFFFFFFFFF
        x = (x + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
        z = x
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        x = z ^ (z >> 31)
    return x & 0x7FFFFFFFFFFFFFFF
