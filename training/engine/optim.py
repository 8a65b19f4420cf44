"""Optimizers and learning-rate schedules (a pure function of the step, so a resume needs only the step).

POP-3D: Adam 2e-4, cosine to 1e-6 with a linear warm-up from 1e-5 over 500 iterations (``type: cosine``,
``warmup_steps: 500``, ``warmup_start_lr: 1e-5``, ``min_lr: 1e-6``). ScanNet200: SGD momentum 0.9, lr 0.05,
× 0.3 at epochs 150 and 250 (``type: multistep``). CNS: lr 0.1 (optimizer not given).
"""
from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import nn

from training.engine.config import OptimConfig, ScheduleConfig


def param_groups(named_modules: Iterable[tuple[str, nn.Module]], config: OptimConfig) -> list[dict]:
    """One group per named top-level module with trainable parameters; lr × ``lr_scale[name]``."""
    groups = []
    names = []
    for name, module in named_modules:
        params = [p for p in module.parameters() if p.requires_grad]
        if params:
            groups.append({'params': params, 'lr': config.lr * float(config.lr_scale.get(name, 1.0)),
                           'name': name})
            names.append(name)
    unknown = sorted(set(config.lr_scale) - set(names))
    if unknown:
        raise ValueError(f'optim.lr_scale names module(s) {unknown}; trainable modules are {names}')
    return groups


def build_optimizer(groups: list[dict], config: OptimConfig) -> torch.optim.Optimizer:
    """SGD (momentum, nesterov), Adam or AdamW over ``groups``."""
    if config.type == 'sgd':
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov,
                               weight_decay=config.weight_decay)
    cls = torch.optim.Adam if config.type == 'adam' else torch.optim.AdamW
    return cls(groups, lr=config.lr, betas=config.betas, eps=config.eps, weight_decay=config.weight_decay)


def lr_factor(step: int, total_steps: int, steps_per_epoch: int, base_lr: float,
              config: ScheduleConfig) -> float:
    """Multiplier of the base lr at phase step ``step`` (0-based) of ``total_steps``."""
    if config.warmup_steps and step < config.warmup_steps:
        start = config.warmup_start_lr / base_lr
        return start + (1.0 - start) * step / config.warmup_steps
    floor = config.min_lr / base_lr
    if config.type == 'constant':
        return 1.0
    if config.type == 'multistep':
        scale = steps_per_epoch if config.milestone_unit == 'epoch' else 1
        passed = sum(1 for m in config.milestones if step >= round(float(m) * scale))
        return config.gamma ** passed
    span = max(1, total_steps - config.warmup_steps)
    t = min(1.0, max(0.0, (step - config.warmup_steps) / span))
    if config.type == 'cosine':
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t))
    return floor + (1.0 - floor) * (1.0 - t) ** config.power   # poly


def set_learning_rates(optimizer: torch.optim.Optimizer, base_lrs: list[float], step: int, total_steps: int,
                       steps_per_epoch: int, config: ScheduleConfig) -> float:
    """Set every group's lr for ``step``; returns the first group's lr."""
    for group, base in zip(optimizer.param_groups, base_lrs):
        group['lr'] = base * lr_factor(step, total_steps, steps_per_epoch, base, config)
    return float(optimizer.param_groups[0]['lr'])
