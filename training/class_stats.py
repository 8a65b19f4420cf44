"""Class statistics from training labels: point counts, weighted-CE weights, focal α, head/common/tail.

Affinity3D Eq. 19 weights (the paper: "point frequency statistics"; formula of 2DPASS [EXT], whose
MSFSKD Affinity3D adopts):   f_c = n_c / Σ_j n_j,   w_c = (max_j f_j / f_c) ** (1/3).
Our choice for classes with n_c = 0 (never a target, only robustness matters): the largest weight.

ScanNet200 Eq. 5 focal α:    α_i = log n_i / Σ_j log n_j   (``direction='paper'``, as printed: grows
with frequency), or the inverse-frequency reading α_i = (1 / log n_i) / Σ_j (1 / log n_j)
(``direction='inverse'``; DIGEST notes that the printed form up-weights frequent classes). n_i is the
number of labelled training points of class i (the paper does not define it; we follow its
point-count split); our choice: counts below 2 are raised to 2 so that every log is positive.

ScanNet200 head / common / tail: classes sorted by training point count, split 66 / 68 / 66 of 200
[P]; for another class count the same fractions are used (our choice), rounded, tail last.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

IGNORE_INDEX = -1
CLASS_WEIGHT_POWER = 1.0 / 3.0          # 2DPASS [EXT]
ALPHA_DIRECTIONS = ('paper', 'inverse')
SCANNET200_SPLIT = (66, 68, 66)         # head, common, tail of 200 classes [P]
ALPHA_MIN_COUNT = 2                      # our choice: log(n) > 0 for every class


def class_counts(labels: Tensor, num_classes: int, ignore_index: int | None = IGNORE_INDEX) -> Tensor:
    """Point-frequency histogram (C,) int64 of integer labels; ``ignore_index`` entries are skipped."""
    labels = torch.as_tensor(labels).reshape(-1).long()
    if ignore_index is not None:
        labels = labels[labels != ignore_index]
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f'class_counts: labels outside [0, {num_classes}) '
                         f'(min {int(labels.min())}, max {int(labels.max())})')
    return torch.bincount(labels, minlength=num_classes)


def _as_counts(counts: Tensor | list) -> Tensor:
    counts = torch.as_tensor(counts, dtype=torch.float64).reshape(-1)
    if counts.numel() == 0 or bool((counts < 0).any()) or not bool(torch.isfinite(counts).all()):
        raise ValueError(f'class counts must be a non-empty vector of finite non-negative values, '
                         f'got {counts.tolist()}')
    return counts


def class_weights_from_counts(counts: Tensor | list, power: float = CLASS_WEIGHT_POWER) -> Tensor:
    """Weighted-CE class weights w_c = (max_j f_j / f_c) ** power, f_c = n_c / Σ n; float32 (C,)."""
    counts = _as_counts(counts)
    if float(counts.sum()) <= 0:
        raise ValueError('class counts are all zero: no labelled points to weight the classes by')
    freq = counts / counts.sum()
    seen = freq > 0
    weights = torch.zeros_like(freq)
    weights[seen] = (freq[seen].max() / freq[seen]) ** power
    weights[~seen] = weights[seen].max()
    return weights.float()


def class_balanced_alpha(counts: Tensor | list, direction: str = 'paper',
                         min_count: float = ALPHA_MIN_COUNT) -> Tensor:
    """ScanNet200 Eq. 5 α (C,), summing to 1: ∝ log n_i ('paper') or ∝ 1 / log n_i ('inverse')."""
    if direction not in ALPHA_DIRECTIONS:
        raise ValueError(f'alpha direction must be one of {ALPHA_DIRECTIONS}, got {direction!r}')
    if min_count <= 1:
        raise ValueError(f'min_count must exceed 1 (log must be positive), got {min_count}')
    logs = torch.log(_as_counts(counts).clamp(min=float(min_count)))
    raw = logs if direction == 'paper' else 1.0 / logs
    return (raw / raw.sum()).float()


def long_tail_split(counts: Tensor | list, sizes: tuple[int, ...] = SCANNET200_SPLIT) -> dict[str, Tensor]:
    """Head / common / tail class ids (most to least frequent) by training point count.

    ``sizes`` are read as fractions of their sum when the class count differs from sum(sizes).
    Ties are broken by class id (stable sort).
    """
    counts = _as_counts(counts)
    c = counts.numel()
    if len(sizes) != 3 or any(s < 0 for s in sizes) or sum(sizes) <= 0:
        raise ValueError(f'sizes must be three non-negative numbers, got {sizes}')
    if c == sum(sizes):
        n_head, n_common = sizes[0], sizes[1]
    else:
        total = float(sum(sizes))
        n_head = int(math.floor(c * sizes[0] / total + 0.5))
        n_common = int(math.floor(c * (sizes[0] + sizes[1]) / total + 0.5)) - n_head
    order = torch.sort(-counts, stable=True).indices
    return {'head': order[:n_head], 'common': order[n_head:n_head + n_common],
            'tail': order[n_head + n_common:]}
