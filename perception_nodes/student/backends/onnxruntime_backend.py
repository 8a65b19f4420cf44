"""ONNX Runtime backend: execution providers tried in the configured order (TensorRT EP, CUDA EP, CPU)."""
from __future__ import annotations

import os
import warnings

import numpy as np

from perception_nodes.student.backends.base import BackendConfig, StudentBackend
from perception_nodes.student.backends.onnx_cache import cache_dir, ensure_onnx
from perception_nodes.student.export import read_onnx_metadata
from perception_nodes.student.padding import PaddedPoints


def resolve_providers(config: BackendConfig, available: list[str]) -> list:
    """Return the configured providers that this onnxruntime build has, in order, with their options."""
    chosen: list = []
    for name in config.providers:
        if name not in available:
            warnings.warn(f'ONNX Runtime provider {name} is not available here (have {available}); skipped')
            continue
        if name == 'TensorrtExecutionProvider':
            chosen.append((name, {'trt_fp16_enable': config.fp16, 'trt_engine_cache_enable': True,
                                  'trt_engine_cache_path': str(cache_dir(config) / 'ort_trt'),
                                  'trt_max_workspace_size': config.workspace_mb << 20}))
        else:
            chosen.append(name)
    if not chosen:
        raise ValueError(f'none of the ONNX Runtime providers {config.providers} is available '
                         f'(this build has {available})')
    return chosen


class OnnxRuntimeBackend(StudentBackend):
    def __init__(self, config: BackendConfig, checkpoint: str | os.PathLike | None) -> None:
        import onnxruntime as ort

        path = ensure_onnx(config, checkpoint)
        student, count, projection = read_onnx_metadata(path)
        if config.max_points is not None and config.max_points != count:
            raise ValueError(f'{path} was exported for {count} points, the backend config asks for '
                             f'{config.max_points}; re-export with --max-points {config.max_points}')
        options = ort.SessionOptions()
        if config.threads:
            options.intra_op_num_threads = config.threads
        # Idle intra-op threads sleep instead of spinning: on a robot's shared CPU (and the 2-core test
        # machine) spinning threads steal the cores the other nodes need; measured ~20% faster here.
        options.add_session_config_entry('session.intra_op.allow_spinning', '0')
        providers = resolve_providers(config, ort.get_available_providers())
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        self.outputs = [o.name for o in self.session.get_outputs()]
        if config.voxel_features and 'voxel_features' not in self.outputs:
            raise ValueError(f'{path} has no voxel_features output; export it with --voxel-features')
        super().__init__(config, student, count, projection)
        self.onnx_path = path
        self.name = f'onnxruntime[{",".join(self.session.get_providers())}]'

    def _run(self, padded: PaddedPoints) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        feeds = {'points': padded.points, 'mask': padded.mask}
        values = dict(zip(self.outputs, self.session.run(None, feeds)))
        voxel = values.get('voxel_features') if self.config.voxel_features else None
        return values['point_embeddings'], values['occupancy_logits'], voxel
