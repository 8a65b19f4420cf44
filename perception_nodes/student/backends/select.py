"""Pick and load the student backend from node parameters: TensorRT on GPU, ONNX Runtime as fallback."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Callable

from perception_nodes.runtime.params import NodeParams

CUDA_PROVIDERS = ['CUDAExecutionProvider', 'CPUExecutionProvider']
CPU_PROVIDERS = ['CPUExecutionProvider']


def cuda_available() -> bool:
    try:
        import torch
        return bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001  (a broken CUDA install means "no GPU" here)
        return False


def tensorrt_available() -> bool:
    return importlib.util.find_spec('tensorrt') is not None


def backend_plan(params: NodeParams, cuda: bool, tensorrt: bool) -> list[dict[str, Any]]:
    """Return the BackendConfig keyword sets to try in order (the first that loads wins) and the checkpoint.

    ``model_path``: ``.engine`` (TensorRT engine), ``.onnx`` (exported student) or a checkpoint
    (``.safetensors`` file or its folder; ONNX / engine are built on demand into the engine cache).
    ``backend: auto`` -> TensorRT when CUDA and TensorRT are present, then ONNX Runtime (CUDA EP on GPU,
    else CPU) as the fallback.
    """
    if not params.model_path:
        raise ValueError('student_node needs model_path (a .engine, .onnx or .safetensors student)')
    path = params.model_path
    suffix = Path(path).suffix.lower()
    device = params.device if params.device != 'auto' else ('cuda' if cuda else 'cpu')
    if device == 'cuda' and not cuda:
        raise ValueError('device is cuda but no CUDA device is available')
    files: dict[str, Any] = {'checkpoint': None}
    if suffix == '.engine':
        files['engine_path'] = path
    elif suffix == '.onnx':
        files['onnx_path'] = path
    else:
        files['checkpoint'] = path
    kinds = [params.backend]
    if params.backend == 'auto':
        kinds = (['tensorrt'] if cuda and tensorrt and device == 'cuda' else []) + ['onnxruntime']
    if suffix == '.engine' and 'tensorrt' not in kinds:
        raise ValueError(f'{path} is a TensorRT engine: it needs backend tensorrt on a CUDA machine')
    if params.backend == 'torch' and suffix in ('.onnx', '.engine'):
        raise ValueError(f'backend torch needs a .safetensors checkpoint, got {path}')
    plan = []
    for kind in kinds:
        entry = dict(files)
        if kind == 'tensorrt':
            entry.update(kind='tensorrt', device='cuda')
        elif kind == 'onnxruntime':
            if suffix == '.engine':
                continue
            entry.pop('engine_path', None)
            entry.update(kind='onnxruntime', device=device,
                         providers=CUDA_PROVIDERS if device == 'cuda' else CPU_PROVIDERS)
        else:
            entry.update(kind='torch', device=device)
        plan.append(entry)
    return plan


def load_student_backend(params: NodeParams, loader: Callable[[Any, Any], Any] | None = None,
                         cuda: bool | None = None, tensorrt: bool | None = None,
                         warn: Callable[[str], None] = lambda text: None) -> tuple[Any, str]:
    """(backend, name): the first entry of ``backend_plan`` that loads; each failure is passed to ``warn``."""
    from perception_nodes.student.backends import BackendConfig, load_backend
    loader = loader or load_backend
    plan = backend_plan(params, cuda_available() if cuda is None else cuda,
                        tensorrt_available() if tensorrt is None else tensorrt)
    errors = []
    for entry in plan:
        entry = dict(entry)
        checkpoint = entry.pop('checkpoint')
        try:
            backend = loader(BackendConfig(**entry), checkpoint)
        except Exception as exc:  # noqa: BLE001  (ImportError, missing engine, CUDA errors: try the next)
            errors.append(f'{entry["kind"]}: {type(exc).__name__}: {exc}')
            if entry is not plan[-1]:
                warn(f'backend {entry["kind"]} unavailable ({type(exc).__name__}: {exc}); falling back')
            continue
        return backend, str(getattr(backend, 'name', entry['kind']))
    raise ValueError('no student backend could be loaded: ' + '; '.join(errors))
