"""Load local pretrained weights (e.g. an ImageNet ResNet) without unpickling arbitrary objects.

``.safetensors`` files are read with safetensors; anything else with ``torch.load(weights_only=True)``,
which only rebuilds tensors and plain containers. Nothing is ever downloaded.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import torch
from torch import nn


class WeightsError(ValueError):
    """A weights file is missing, unreadable, or does not fit the module; the message names the file."""


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a local weights file (safetensors, or a torch state dict read with weights_only=True)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f'pretrained weights file {path} not found (no weights are downloaded: place a '
                           'local ImageNet checkpoint there, .safetensors or a torch state dict)')
    try:
        if path.suffix == '.safetensors':
            from safetensors.torch import load_file
            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location='cpu', weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any reader failure becomes one clear error naming the file
        raise WeightsError(f'cannot read pretrained weights {path}: {exc}') from exc
    if isinstance(state, Mapping) and 'state_dict' in state and isinstance(state['state_dict'], Mapping):
        state = state['state_dict']
    if not isinstance(state, Mapping) or not all(torch.is_tensor(v) for v in state.values()):
        raise WeightsError(f'{path} does not hold a flat name -> tensor state dict')
    return dict(state)


def load_pretrained(module: nn.Module, path: str | os.PathLike, drop_prefixes: Sequence[str] = (),
                    strip_prefix: str = '') -> None:
    """Copy a local state dict into ``module``: every module weight must be present with the right shape.

    Keys starting with one of ``drop_prefixes`` (e.g. a classifier ``fc.``) are ignored; ``strip_prefix``
    is removed from the file's keys first (e.g. ``module.`` of a DDP checkpoint).
    """
    state = load_state_dict_file(path)
    if strip_prefix:
        state = {k[len(strip_prefix):] if k.startswith(strip_prefix) else k: v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not any(k.startswith(p) for p in drop_prefixes)}
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or shapes:
        raise WeightsError(f'{path} does not fit {type(module).__name__}: missing {missing[:5]}'
                           f'{"..." if len(missing) > 5 else ""}, unexpected {unexpected[:5]}'
                           f'{"..." if len(unexpected) > 5 else ""}, shape mismatch {shapes[:5]}')
    module.load_state_dict(state, strict=True)
