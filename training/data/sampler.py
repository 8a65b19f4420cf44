"""Which frames each rank trains on at each step: a global order split disjointly across ranks.

Epoch e of phase p visits the frames in the order ``randperm(n)`` seeded by (seed, p, e). Step b of the
epoch takes the global batch ``order[b·G : (b+1)·G]`` with G = per-rank batch × world size, and rank r
takes its contiguous share ``[r·B : (r+1)·B]`` of it (disjoint, like DistributedSampler). The last partial
global batch is dropped so every rank has the same number of frames (then the DDP gradient mean equals
the single-process mean over the global batch). The data position is just (phase, epoch, step in epoch),
so a resumed run, or one with another number of ranks and the same global batch, sees the same frames.
Each frame also gets an augmentation key mixed from (seed, phase, epoch, index): its augmentation does
not depend on the rank, the worker or the resume point.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch

from training.engine.distributed import mix_seed


@dataclass
class DataPosition:
    """Where a run is in its data: phase, epoch in the phase, global batches done in the epoch."""

    phase: int = 0
    epoch: int = 0
    batch: int = 0

    def to_dict(self) -> dict[str, int]:
        return {'phase': self.phase, 'epoch': self.epoch, 'batch': self.batch}


class GlobalBatchPlan:
    """Frame order and per-rank shares (module docstring)."""

    def __init__(self, num_frames: int, batch_size: int, world_size: int, seed: int) -> None:
        self.num_frames = int(num_frames)
        self.batch_size = int(batch_size)
        self.world_size = int(world_size)
        self.seed = int(seed)
        if self.global_batch > self.num_frames:
            raise ValueError(f'the global batch ({self.batch_size} frames x {self.world_size} ranks = '
                             f'{self.global_batch}) is larger than the data set ({self.num_frames} frames)')

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world_size

    @property
    def steps_per_epoch(self) -> int:
        return self.num_frames // self.global_batch

    def order(self, phase: int, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(mix_seed(self.seed, phase, epoch))
        return torch.randperm(self.num_frames, generator=g)

    def augment_key(self, phase: int, epoch: int, index: int) -> int:
        return mix_seed(self.seed, 7919, phase, epoch, index)

    def rank_batch(self, phase: int, epoch: int, batch: int, rank: int,
                   order: torch.Tensor | None = None) -> list[tuple[int, int]]:
        """(dataset index, augmentation key) of rank ``rank``'s frames at global batch ``batch``."""
        if not 0 <= batch < self.steps_per_epoch:
            raise IndexError(f'batch {batch} outside the epoch ({self.steps_per_epoch} batches)')
        order = self.order(phase, epoch) if order is None else order
        start = batch * self.global_batch + rank * self.batch_size
        picked = order[start:start + self.batch_size]
        return [(int(i), self.augment_key(phase, epoch, int(i))) for i in picked]


class RankBatchSampler:
    """DataLoader ``batch_sampler`` for one rank over one epoch, from batch ``start`` on."""

    def __init__(self, plan: GlobalBatchPlan, phase: int, epoch: int, rank: int, start: int = 0,
                 stop: int | None = None) -> None:
        self.plan, self.phase, self.epoch, self.rank = plan, phase, epoch, rank
        self.start = start
        self.stop = plan.steps_per_epoch if stop is None else min(stop, plan.steps_per_epoch)

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order = self.plan.order(self.phase, self.epoch)
        for b in range(self.start, self.stop):
            yield self.plan.rank_batch(self.phase, self.epoch, b, self.rank, order)
