"""Resumable training checkpoints without pickle: safetensors for tensors, JSON for everything else.

Layout of ``RUN/checkpoints/step_00000123/``::

    student/model.safetensors, student/config.yaml   the student alone (``ovp export`` accepts it)
    state.safetensors   'model.<key>' every trained module (student + training-only branches),
                        'optim.<group>.<param>.<key>' optimizer tensors, 'rng.<rank>.torch' / '.cuda'
                        per-rank torch generator states, 'extra.<key>' recipe state (e.g. added masks)
    state.json          step, phase, data position, optimizer scalars and param groups, grad-scaler
                        state, per-rank python / numpy RNG states, recipe state, config hash

The folder is filled under a temporary name and renamed into place, then ``checkpoints/latest.json`` is
replaced atomically (perception_nodes.atomic): a crash leaves the previous checkpoint and pointer intact.
Loading never unpickles (``safetensors.torch.load_file``; no torch.load anywhere).
"""
from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from perception_nodes.atomic import atomic_write_text

FORMAT = 'ovp-train-state'
VERSION = 1
LATEST = 'latest.json'


class CheckpointError(ValueError):
    """A training checkpoint that is missing, incomplete or for another run."""


# ------------------------------------------------------------------------------------------- RNG states

def rng_state(device: torch.device | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Return this process's RNG states: (tensors, JSON-able) for torch (CPU, CUDA), python and numpy."""
    tensors = {'torch': torch.get_rng_state()}
    if device is not None and device.type == 'cuda':
        tensors['cuda'] = torch.cuda.get_rng_state(device)
    version, internal, gauss = random.getstate()
    np_state = np.random.get_state(legacy=False)
    state = {'python': [version, list(internal), gauss],
             'numpy': {'bit_generator': np_state['bit_generator'],
                       'state': {'key': np_state['state']['key'].tolist(),
                                 'pos': int(np_state['state']['pos'])},
                       'has_gauss': int(np_state['has_gauss']), 'gauss': float(np_state['gauss'])}}
    return tensors, state


def set_rng_state(tensors: dict[str, torch.Tensor], state: dict[str, Any],
                  device: torch.device | None = None) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(tensors['torch'].to(torch.uint8).cpu())
    if 'cuda' in tensors and device is not None and device.type == 'cuda':
        torch.cuda.set_rng_state(tensors['cuda'].to(torch.uint8).cpu(), device)
    version, internal, gauss = state['python']
    random.setstate((version, tuple(internal), gauss))
    np_state = dict(state['numpy'])
    np_state['state'] = {'key': np.asarray(np_state['state']['key'], dtype=np.uint32),
                         'pos': np_state['state']['pos']}
    np.random.set_state(np_state)


# ----------------------------------------------------------------------------------------- optimizer

def optimizer_to_flat(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Optimizer state as (tensors keyed 'optim.<param index>.<key>', JSON: param groups + scalars)."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, entry in sd['state'].items():
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f'optim.{pid}.{key}'] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[key] = value
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd['param_groups']]
    return tensors, {'param_groups': groups, 'scalars': scalars}


def optimizer_from_flat(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                        meta: dict[str, Any]) -> None:
    """Load what :func:`optimizer_to_flat` produced into ``optimizer`` (same parameter layout)."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if not name.startswith('optim.'):
            continue
        _, pid, key = name.split('.', 2)
        state.setdefault(int(pid), {})[key] = value
    for pid, entry in meta['scalars'].items():
        state.setdefault(int(pid), {}).update(entry)
    groups = []
    for g in meta['param_groups']:
        g = dict(g)
        if 'betas' in g:
            g['betas'] = tuple(g['betas'])
        groups.append(g)
    own = optimizer.state_dict()['param_groups']
    if [len(g['params']) for g in own] != [len(g['params']) for g in groups]:
        raise CheckpointError('the optimizer in the checkpoint has another parameter layout than this run '
                              f'({[len(g["params"]) for g in groups]} vs {[len(g["params"]) for g in own]} '
                              'parameters per group): was it made with another recipe or student?')
    optimizer.load_state_dict({'state': state, 'param_groups': groups})


# ------------------------------------------------------------------------------------------ the state

@dataclass
class TrainState:
    """Everything a checkpoint holds besides the module weights."""

    step: int
    position: dict[str, int]
    phase_step: int
    config_hash: str
    world_size: int
    scaler: dict[str, Any] = field(default_factory=dict)
    rng: list[dict[str, Any]] = field(default_factory=list)          # per rank (JSON part)
    recipe: dict[str, Any] = field(default_factory=dict)             # recipe JSON state
    optimizer: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)              # e.g. best validation

    def to_json(self) -> dict[str, Any]:
        return {'format': FORMAT, 'version': VERSION, 'step': self.step, 'position': self.position,
                'phase_step': self.phase_step, 'config_hash': self.config_hash, 'world_size': self.world_size,
                'scaler': self.scaler, 'rng': self.rng, 'recipe': self.recipe, 'optimizer': self.optimizer,
                'extra': self.extra}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainState:
        if data.get('format') != FORMAT or data.get('version') != VERSION:
            raise CheckpointError(f'not an {FORMAT} v{VERSION} state (format {data.get("format")!r}, '
                                  f'version {data.get("version")!r})')
        return cls(**{k: data[k] for k in ('step', 'position', 'phase_step', 'config_hash', 'world_size',
                                           'scaler', 'rng', 'recipe', 'optimizer', 'extra')})


def checkpoint_name(step: int) -> str:
    return f'step_{step:08d}'


def write_checkpoint(root: Path, step: int, tensors: dict[str, torch.Tensor], state: TrainState,
                     write_student: Any, keep: int = 2) -> Path:
    """Write one checkpoint folder atomically, point ``latest.json`` at it, prune to the ``keep`` newest.

    ``write_student(folder)`` saves the student checkpoint into ``folder/student``.
    """
    root.mkdir(parents=True, exist_ok=True)
    final = root / checkpoint_name(step)
    tmp = Path(tempfile.mkdtemp(prefix=f'.{final.name}.', dir=root))
    try:
        write_student(tmp / 'student')
        tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        save_file(tensors, str(tmp / 'state.safetensors'), metadata={'format': FORMAT})
        (tmp / 'state.json').write_text(json.dumps(state.to_json(), indent=1), encoding='utf-8')
        if final.exists():
            old = root / f'.{final.name}.replaced'
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    atomic_write_text(root / LATEST, json.dumps({'path': final.name, 'step': step}))
    done = sorted((p for p in root.glob('step_*') if p.is_dir()), key=lambda p: p.name)
    for old in done[:-keep] if keep > 0 else []:
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(root: Path) -> Path | None:
    """Return the folder ``latest.json`` points at, or None when the run has no checkpoint yet."""
    pointer = root / LATEST
    if not pointer.is_file():
        return None
    try:
        name = json.loads(pointer.read_text(encoding='utf-8'))['path']
    except (ValueError, KeyError) as exc:
        raise CheckpointError(f'{pointer} is damaged ({exc}); delete it to restart from the newest folder') \
            from exc
    folder = root / name
    if not (folder / 'state.json').is_file() or not (folder / 'state.safetensors').is_file():
        raise CheckpointError(f'{pointer} points at {folder}, which is incomplete or missing')
    return folder


def read_checkpoint(folder: Path) -> tuple[dict[str, torch.Tensor], TrainState]:
    """(tensors, TrainState) of a checkpoint folder; never unpickles."""
    try:
        data = json.loads((folder / 'state.json').read_text(encoding='utf-8'))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f'{folder}/state.json unreadable: {exc}') from exc
    state = TrainState.from_json(data)
    try:
        tensors = load_file(str(folder / 'state.safetensors'))
    except Exception as exc:   # safetensors raises its own error types
        raise CheckpointError(f'{folder}/state.safetensors is not a valid safetensors file: {exc}') from exc
    return tensors, state
