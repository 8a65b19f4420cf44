"""Instance affinity propagation by one random-walk step (Affinity3D Sec. 3.4, Eq. 5-8).

Given the CLIP crop features ``F`` (N_I, C) and initial class distributions ``Y`` (N_I, K) of the kept
instances (Eq. 4):

- Eq. 5-6: ``W = softmax_row(scale · F Fᵀ)`` (rows sum to 1; ``F`` rows are L2-normalised first, so
  ``F Fᵀ`` holds cosines);
- Eq. 7: ``T = D⁻¹ W^∘β`` with ``D_ii = Σ_j W_ij^β`` and ``β = 2`` (element-wise power, rows renormalised);
- Eq. 8: ``Y' = T · Y``, one step; the refined label of an instance is ``argmax_k Y'``.

Instances are pooled over consecutive frames in a queue (:class:`AffinityQueue`): when it holds at least
``queue_size`` instances, all of them are popped and refined jointly (Sec. 3.4, last paragraph).

Choices where the paper is silent (DIGEST: NOT GIVEN): ``scale`` (default 10: on CLIP-like features,
whose image-image cosines span roughly 0.5-1, larger values concentrate each row on the instance itself
and the step changes nothing; smaller ones mix in other classes), the queue length (default 64 instances)
and the number of steps (Eq. 8 writes one).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F


@dataclass
class AffinityConfig:
    """Affinity propagation settings (Affinity3D Eq. 5-8)."""

    enabled: bool = True
    scale: float = 10.0       # Eq. 5-6 amplification factor: NOT GIVEN, our choice (see module docstring)
    beta: float = 2.0         # Eq. 7 (given)
    queue_size: int = 64      # instances refined jointly: NOT GIVEN, our choice
    steps: int = 1            # Eq. 8 writes one step

    def __post_init__(self) -> None:
        if not self.scale > 0 or not self.beta > 0:
            raise ValueError(f'affinity scale and beta must be positive, got {self.scale}, {self.beta}')
        if self.queue_size < 1 or self.steps < 1:
            raise ValueError(f'queue_size and steps must be >= 1, got {self.queue_size}, {self.steps}')


def affinity_matrix(features: torch.Tensor, scale: float) -> torch.Tensor:
    """Eq. 5-6: ``W = softmax_row(scale · F Fᵀ)`` on L2-normalised rows of ``features`` (N, C) -> (N, N)."""
    if features.ndim != 2:
        raise ValueError(f'features must be (N, C), got {tuple(features.shape)}')
    f = F.normalize(features.double(), dim=1)
    return torch.softmax(float(scale) * (f @ f.T), dim=1)


def transition_matrix(features: torch.Tensor, scale: float, beta: float = 2.0) -> torch.Tensor:
    """Eq. 7: ``T = D⁻¹ W^∘β``, ``D_ii = Σ_j W_ij^β``: (N, N) float64, rows sum to 1.

    Computed in the log domain (``β log W`` then a row softmax), which equals the formula exactly and does
    not underflow for large ``scale · β``.
    """
    if features.ndim != 2:
        raise ValueError(f'features must be (N, C), got {tuple(features.shape)}')
    f = F.normalize(features.double(), dim=1)
    log_w = torch.log_softmax(float(scale) * (f @ f.T), dim=1)        # log W (Eq. 6)
    return torch.softmax(float(beta) * log_w, dim=1)                  # D⁻¹ W^β (Eq. 7)


def propagate(features: torch.Tensor, probs: torch.Tensor, scale: float, beta: float = 2.0,
              steps: int = 1) -> torch.Tensor:
    """Eq. 8: ``Y' = T · Y`` (``steps`` times): (N, K) float32 refined class distributions."""
    if probs.ndim != 2 or probs.shape[0] != features.shape[0]:
        raise ValueError(f'probs must be (N, K) with N = {features.shape[0]}, got {tuple(probs.shape)}')
    if features.shape[0] == 0:
        return probs.float().clone()
    t = transition_matrix(features, scale, beta)
    y = probs.double()
    for _ in range(int(steps)):
        y = t @ y
    return y.float()


@dataclass
class QueuedBatch:
    """Instances of one frame (or any unit) waiting in the queue."""

    key: Any
    features: torch.Tensor     # (n, C)
    probs: torch.Tensor        # (n, K)


@dataclass
class RefinedBatch:
    """A batch leaving the queue: its key, initial and refined distributions, refined labels."""

    key: Any
    probs: torch.Tensor        # (n, K) Eq. 4
    refined: torch.Tensor      # (n, K) Eq. 8
    labels: torch.Tensor       # (n,) int64 argmax of ``refined``


@dataclass
class AffinityQueue:
    """Temporal queue of instances (Affinity3D Sec. 3.4): refine jointly when full, flush at the end.

    ``push`` adds one frame's instances and returns the batches popped by it (all queued batches, in push
    order, once the queue holds at least ``config.queue_size`` instances; otherwise nothing). ``flush``
    pops whatever is left (call it after the last frame). With ``config.enabled = False`` every batch
    leaves at once with ``refined = probs`` (the "CI without affinity" rows of Tables 3-4).
    """

    config: AffinityConfig = field(default_factory=AffinityConfig)
    _batches: list[QueuedBatch] = field(default_factory=list)

    @property
    def num_instances(self) -> int:
        return sum(b.features.shape[0] for b in self._batches)

    def push(self, key: Any, features: torch.Tensor, probs: torch.Tensor) -> list[RefinedBatch]:
        """Queue one batch; returns the batches refined now (possibly none)."""
        if features.ndim != 2 or probs.ndim != 2 or features.shape[0] != probs.shape[0]:
            raise ValueError(f'features (n, C) and probs (n, K) must have the same n, got '
                             f'{tuple(features.shape)} and {tuple(probs.shape)}')
        if self._batches:
            if features.shape[1] != self._batches[0].features.shape[1] or \
                    probs.shape[1] != self._batches[0].probs.shape[1]:
                raise ValueError('every batch in the queue must have the same feature width and classes')
        self._batches.append(QueuedBatch(key, features.detach().float().cpu(), probs.detach().float().cpu()))
        if not self.config.enabled or self.num_instances >= self.config.queue_size:
            return self.flush()
        return []

    def flush(self) -> list[RefinedBatch]:
        """Refine and pop every queued batch (Eq. 8 over all of them at once)."""
        batches, self._batches = self._batches, []
        if not batches:
            return []
        feats = torch.cat([b.features for b in batches])
        probs = torch.cat([b.probs for b in batches])
        if self.config.enabled and feats.shape[0] > 0:
            refined = propagate(feats, probs, self.config.scale, self.config.beta, self.config.steps)
        else:
            refined = probs.clone()
        out, start = [], 0
        for b in batches:
            n = b.features.shape[0]
            r = refined[start:start + n]
            labels = r.argmax(dim=1) if n else torch.zeros(0, dtype=torch.int64)
            out.append(RefinedBatch(b.key, b.probs, r, labels))
            start += n
        return out
