"""Find or produce the ONNX file a backend runs: given explicitly, or exported from a checkpoint."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from perception_nodes.hashing import file_sha256
from perception_nodes.student.backends.base import BackendConfig

DEFAULT_CACHE = Path(os.environ.get('OVP_CACHE', Path.home() / '.cache' / 'ovp')) / 'student'


def cache_dir(config: BackendConfig) -> Path:
    return Path(config.engine_cache_dir) if config.engine_cache_dir else DEFAULT_CACHE


def ensure_onnx(config: BackendConfig, checkpoint: str | os.PathLike | None) -> Path:
    """Return the ONNX file for ``config``: ``onnx_path`` if it exists, else exported from ``checkpoint``."""
    if config.onnx_path and Path(config.onnx_path).is_file():
        return Path(config.onnx_path)
    if checkpoint is None:
        where = f'{config.onnx_path} does not exist' if config.onnx_path else 'no onnx_path given'
        raise ValueError(f'{config.kind} backend: {where} and no checkpoint to export from')
    from perception_nodes.student.checkpoint import checkpoint_paths, load_checkpoint
    from perception_nodes.student.export import check_exportable, export_onnx

    model, student = load_checkpoint(checkpoint)
    check_exportable(student)
    count = config.max_points or student.max_points
    if config.onnx_path:
        target = Path(config.onnx_path)
    else:
        key = hashlib.sha256(f'{file_sha256(checkpoint_paths(checkpoint)[0])}|{count}|'
                             f'{config.voxel_features}'.encode()).hexdigest()[:16]
        target = cache_dir(config) / f'student-{key}.onnx'
        if target.is_file():
            return target
    return export_onnx(model, target, max_points=count, voxel_features=config.voxel_features)
