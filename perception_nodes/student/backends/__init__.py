"""Inference backends for students, one interface selected by ``BackendConfig.kind``."""
from __future__ import annotations

import os

from perception_nodes.student.backends.base import (BACKEND_KINDS, BackendConfig, BackendResult,
                                                    StudentBackend)


def load_backend(config: BackendConfig, checkpoint: str | os.PathLike | None = None) -> StudentBackend:
    """Load the backend ``config.kind`` for a checkpoint (torch) or an ONNX file / TensorRT engine."""
    if config.kind == 'torch':
        from perception_nodes.student.backends.torch_backend import TorchBackend
        return TorchBackend(config, checkpoint)
    if config.kind == 'onnxruntime':
        from perception_nodes.student.backends.onnxruntime_backend import OnnxRuntimeBackend
        return OnnxRuntimeBackend(config, checkpoint)
    if config.kind == 'tensorrt':
        from perception_nodes.student.backends.tensorrt_backend import TensorRTBackend
        return TensorRTBackend(config, checkpoint)
    raise ValueError(f'unknown backend kind {config.kind!r}; expected one of {BACKEND_KINDS}')


__all__ = ['BACKEND_KINDS', 'BackendConfig', 'BackendResult', 'StudentBackend', 'load_backend']
