"""Student checkpoints: safetensors weights + a YAML config, written atomically, never unpickled."""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from perception_nodes.atomic import atomic_write
from perception_nodes.student.config import StudentConfig
from perception_nodes.student.model import Student, build_student

WEIGHTS_NAME = 'model.safetensors'
CONFIG_NAME = 'config.yaml'
# Leading bytes of formats that execute code on load: pickle protocol 2+ and torch.save zip archives.
_PICKLE_MAGIC = (b'\x80', b'PK\x03\x04')


def checkpoint_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """(weights, config) paths of a checkpoint given as a folder, a prefix, or either file."""
    p = Path(path)
    if p.is_dir() or str(path).endswith(os.sep):
        return p / WEIGHTS_NAME, p / CONFIG_NAME
    if p.suffix == '.safetensors':
        return p, p.with_suffix('.yaml')
    if p.suffix in ('.yaml', '.yml'):
        return p.with_suffix('.safetensors'), p
    return p.with_name(p.name + '.safetensors'), p.with_name(p.name + '.yaml')


def save_checkpoint(path: str | os.PathLike, model: Student, config: StudentConfig | None = None) -> Path:
    """Write weights (safetensors, config JSON in its metadata) and config YAML; returns the weights path."""
    config = config or model.config
    weights, cfg_path = checkpoint_paths(path)
    if weights.parent == Path(path) or str(path).endswith(os.sep):
        weights.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {'format': 'ovp-student', 'config': json.dumps(config.to_dict(), sort_keys=True)}
    atomic_write(weights, lambda tmp: save_file(state, tmp, metadata=meta))

    def write_yaml(tmp: str) -> None:
        with open(tmp, 'w', encoding='utf-8') as f:
            yaml.safe_dump(config.to_dict(), f, sort_keys=False)
    atomic_write(cfg_path, write_yaml)
    return weights


def _read_config(cfg_path: Path) -> StudentConfig:
    if not cfg_path.is_file():
        raise ValueError(f'checkpoint config {cfg_path} not found')
    from perception_nodes.safe_yaml import load_yaml
    data = load_yaml(cfg_path)            # no aliases, bounded size: one-line ValueError
    try:
        return StudentConfig.from_dict(data)
    except TypeError as exc:
        raise ValueError(f'{cfg_path}: bad student config: {exc}') from exc


def _read_weights(weights: Path) -> dict[str, torch.Tensor]:
    if not weights.is_file():
        raise ValueError(f'checkpoint weights {weights} not found')
    with open(weights, 'rb') as f:
        head = f.read(9)
    size = weights.stat().st_size
    header_len = int.from_bytes(head[:8], 'little') if len(head) == 9 else -1
    if not (0 < header_len <= size - 8 and head[8:9] == b'{'):
        # Not the safetensors layout (u64 header length + JSON header); name what it is instead.
        if head.startswith(_PICKLE_MAGIC):
            raise ValueError(f'{weights}: looks like a pickle / torch.save file; refusing to unpickle '
                             '(checkpoints must be safetensors)')
        raise ValueError(f'{weights}: not a valid safetensors file (bad header)')
    try:
        return load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(f'{weights}: not a valid safetensors file ({exc})') from exc


def load_checkpoint(path: str | os.PathLike, expected: StudentConfig | None = None,
                    device: str | torch.device = 'cpu') -> tuple[Student, StudentConfig]:
    """(model in eval mode, config) from a checkpoint; ValueError on any mismatch, never unpickles.

    ``expected``: the config the caller's network was built for; a differing saved config is an error.
    """
    weights, cfg_path = checkpoint_paths(path)
    state = _read_weights(weights)
    config = _read_config(cfg_path)
    if expected is not None and expected.to_dict() != config.to_dict():
        diff = sorted(k for k, v in expected.to_dict().items() if config.to_dict().get(k) != v)
        raise ValueError(f'checkpoint {weights} config differs from the expected one in {diff}')
    model = build_student(config)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shape = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or shape:
        raise ValueError(f'checkpoint {weights} does not match the network of its config {cfg_path}: '
                         f'missing {missing[:5]}, unexpected {unexpected[:5]}, shape mismatch {shape[:5]}')
    model.load_state_dict(state, strict=True)
    return model.to(device).eval(), config
