"""TensorRT backend: build a serialized engine from the ONNX graph, cache it, run it (TensorRT 10 API).

Build: ``trt.Builder`` -> network from ``trt.OnnxParser`` -> builder config with a workspace memory-pool
limit and optional FP16 -> ``build_serialized_network``. Run: ``deserialize_cuda_engine``, one execution
context, named I/O tensors bound with ``set_input_shape`` / ``set_tensor_address`` on torch CUDA buffers,
``execute_async_v3`` on the current torch stream. Engines are cached keyed by ONNX sha256 + TensorRT
version + GPU name (engine_cache.py); an engine for another GPU/TensorRT version is rebuilt when the ONNX
is at hand, otherwise refused with a ValueError naming the mismatch.
"""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from perception_nodes.student.backends.base import BackendConfig, StudentBackend
from perception_nodes.student.backends.engine_cache import (EngineMeta, cached_engine_path, stale_reason,
                                                            write_engine)
from perception_nodes.hashing import file_sha256
from perception_nodes.student.backends.onnx_cache import cache_dir, ensure_onnx
from perception_nodes.student.export import read_onnx_metadata
from perception_nodes.student.padding import PaddedPoints


def import_tensorrt():
    """``tensorrt`` and ``torch`` with CUDA, or a ValueError saying what is missing."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise ValueError(f'the tensorrt backend needs the tensorrt Python package ({exc}); '
                         'install perception_nodes[gpu] on a CUDA machine') from exc
    import torch
    if not torch.cuda.is_available():
        raise ValueError('the tensorrt backend needs a CUDA GPU, and torch sees none')
    return trt


def current_meta(onnx_path: str | os.PathLike, fp16: bool, device: int = 0) -> EngineMeta:
    import torch
    trt = import_tensorrt()
    return EngineMeta(onnx_sha256=file_sha256(onnx_path), trt_version=trt.__version__,
                      gpu_name=torch.cuda.get_device_name(device), fp16=bool(fp16))


def build_engine(onnx_path: str | os.PathLike, engine_path: str | os.PathLike, *, fp16: bool = False,
                 workspace_mb: int = 2048) -> Path:
    """Build a serialized TensorRT engine from ``onnx_path`` and write it (with sidecar) atomically."""
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    trt.init_libnvinfer_plugins(logger, '')      # ScatterElements(reduction=add) is a shipped plugin
    builder = trt.Builder(logger)
    network = builder.create_network(0)          # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = '; '.join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ValueError(f'TensorRT could not parse {onnx_path}: {errors}')
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    if fp16:
        if not builder.platform_has_fast_fp16:
            raise ValueError('FP16 requested but this GPU has no fast FP16')
        config.set_flag(trt.BuilderFlag.FP16)
    blob = builder.build_serialized_network(network, config)
    if blob is None:
        raise ValueError(f'TensorRT failed to build an engine from {onnx_path} (see the log above)')
    return write_engine(engine_path, bytes(blob), current_meta(onnx_path, fp16))


def ensure_engine(config: BackendConfig, onnx_path: str | os.PathLike) -> Path:
    """Return the engine for ``config``: explicit ``engine_path`` or the cache.

    (Re)built when stale (missing, no sidecar, or built from another ONNX / TensorRT version / GPU /
    precision).
    """
    wanted = current_meta(onnx_path, config.fp16)
    target = Path(config.engine_path) if config.engine_path else cached_engine_path(cache_dir(config), wanted)
    if stale_reason(target, wanted) is not None:
        build_engine(onnx_path, target, fp16=config.fp16, workspace_mb=config.workspace_mb)
    return target


class TensorRTBackend(StudentBackend):
    def __init__(self, config: BackendConfig, checkpoint: str | os.PathLike | None) -> None:
        import torch
        trt = import_tensorrt()
        # The ONNX carries the student config and is what a stale engine is rebuilt from; an engine
        # given alone finds it beside itself (ovp export writes OUT.onnx next to OUT.engine).
        if checkpoint is None and not config.onnx_path and config.engine_path:
            sibling = Path(config.engine_path).with_suffix('.onnx')
            if not sibling.is_file():
                raise ValueError(f'TensorRT engine {config.engine_path} needs its ONNX file beside it '
                                 f'({sibling}) for the student config; give onnx_path')
            config = replace(config, onnx_path=str(sibling))
        onnx_path = ensure_onnx(config, checkpoint)
        engine_path = ensure_engine(config, onnx_path)
        student, count, projection = read_onnx_metadata(onnx_path)
        self.device = torch.device(config.device if config.device.startswith('cuda') else 'cuda')
        self.logger = trt.Logger(trt.Logger.WARNING)
        trt.init_libnvinfer_plugins(self.logger, '')
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise ValueError(f'TensorRT could not deserialize {engine_path} (built for another TensorRT '
                             'version or GPU?); delete it or rebuild with ovp export')
        self.context = self.engine.create_execution_context()
        self.buffers: dict[str, torch.Tensor] = {}
        self.inputs: list[str] = []
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            shape = tuple(self.engine.get_tensor_shape(name))
            dtype = torch.from_numpy(np.empty(0, dtype=trt.nptype(self.engine.get_tensor_dtype(name)))).dtype
            if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                self.inputs.append(name)
                self.context.set_input_shape(name, shape)
            self.buffers[name] = torch.empty(shape, dtype=dtype, device=self.device)
            self.context.set_tensor_address(name, self.buffers[name].data_ptr())
        if config.voxel_features and 'voxel_features' not in self.buffers:
            raise ValueError(f'{onnx_path} has no voxel_features output; export it with --voxel-features')
        super().__init__(config, student, count, projection)
        self.engine_path = engine_path
        self.name = f'tensorrt[{torch.cuda.get_device_name(self.device)}{",fp16" if config.fp16 else ""}]'

    def _run(self, padded: PaddedPoints) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        import torch
        stream = torch.cuda.current_stream(self.device)
        for name, array in (('points', padded.points), ('mask', padded.mask)):
            self.buffers[name].copy_(torch.from_numpy(array).to(self.buffers[name].dtype), non_blocking=False)
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError('TensorRT execute_async_v3 failed')
        stream.synchronize()
        get = (lambda n: self.buffers[n].float().cpu().numpy())
        voxel = get('voxel_features') if self.config.voxel_features else None
        return get('point_embeddings'), get('occupancy_logits'), voxel
