"""Choose and load a student backend for a model file: TensorRT on GPU, ONNX Runtime as the fallback."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Callable

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


def backend_plan(model: str, backend: str, device: str, cuda: bool, tensorrt: bool) -> list[dict[str, Any]]:
    """Return the BackendConfig keyword sets to try in order (the first that loads wins), with checkpoints.

    ``model``: ``.engine`` (TensorRT engine), ``.onnx`` (exported student) or a checkpoint (``.safetensors``
    file or its folder; ONNX / engine are built on demand into the engine cache). ``backend`` 'auto':
    TensorRT when ``device`` is CUDA and TensorRT is installed, then ONNX Runtime (CUDA EP on GPU, else CPU).
    """
    if not model:
        raise ValueError('the student labeller needs a model (labeller.student: .engine, .onnx or '
                         '.safetensors)')
    suffix = Path(model).suffix.lower()
    on_gpu = device.startswith('cuda')
    if on_gpu and not cuda:
        raise ValueError(f'runtime.device is {device} but no CUDA device is available')
    files: dict[str, Any] = {'checkpoint': None}
    if suffix == '.engine':
        files['engine_path'] = model
    elif suffix == '.onnx':
        files['onnx_path'] = model
    else:
        files['checkpoint'] = model
    kinds = [backend]
    if backend == 'auto':
        kinds = (['tensorrt'] if on_gpu and tensorrt else []) + ['onnxruntime']
    if suffix == '.engine' and 'tensorrt' not in kinds:
        raise ValueError(f'{model} is a TensorRT engine: it needs backend tensorrt on a CUDA machine')
    if backend == 'torch' and suffix in ('.onnx', '.engine'):
        raise ValueError(f'backend torch needs a .safetensors checkpoint, got {model}')
    plan = []
    for kind in kinds:
        entry = dict(files)
        if kind == 'tensorrt':
            entry.update(kind='tensorrt', device='cuda')
        elif kind == 'onnxruntime':
            if suffix == '.engine':
                continue
            entry.pop('engine_path', None)
            entry.update(kind='onnxruntime', device='cuda' if on_gpu else 'cpu',
                         providers=CUDA_PROVIDERS if on_gpu else CPU_PROVIDERS)
        else:
            entry.update(kind='torch', device=device)
        plan.append(entry)
    return plan


def load_student_backend(model: str, backend: str = 'auto', device: str = 'cpu',
                         loader: Callable[[Any, Any], Any] | None = None, cuda: bool | None = None,
                         tensorrt: bool | None = None, threads: int | None = None,
                         warn: Callable[[str], None] = lambda text: None) -> tuple[Any, str]:
    """(backend, name): the first entry of :func:`backend_plan` that loads; each failure goes to ``warn``."""
    from perception_nodes.student.backends import BackendConfig, load_backend
    loader = loader or load_backend
    plan = backend_plan(model, backend, device, cuda_available() if cuda is None else cuda,
                        tensorrt_available() if tensorrt is None else tensorrt)
    errors = []
    for i, entry in enumerate(plan):
        entry = dict(entry)
        checkpoint = entry.pop('checkpoint')
        if threads:
            entry['threads'] = threads
        try:
            loaded = loader(BackendConfig(**entry), checkpoint)
        except Exception as exc:  # noqa: BLE001  (ImportError, missing engine, CUDA errors: try the next)
            errors.append(f'{entry["kind"]}: {type(exc).__name__}: {exc}')
            if i < len(plan) - 1:
                warn(f'backend {entry["kind"]} unavailable ({type(exc).__name__}: {exc}); falling back')
            continue
        return loaded, str(getattr(loaded, 'name', entry['kind']))
    raise ValueError('no student backend could be loaded: ' + '; '.join(errors))
