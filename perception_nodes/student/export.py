"""Export a range-view student to a static-shape ONNX graph (opset >= 17) and check it."""
from __future__ import annotations

import base64
import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from perception_nodes.atomic import atomic_write
from perception_nodes.student.config import StudentConfig
from perception_nodes.student.model import Student

MIN_OPSET = 17
INPUT_NAMES = ('points', 'mask')
META_CONFIG = 'ovp.student_config'
META_MAX_POINTS = 'ovp.max_points'
META_TEXT_PROJECTION = 'ovp.text_projection'   # base64 float32 (K, C), only with proj_dim


class _ExportWrapper(nn.Module):
    """Tensor-only signature for the exporter: (points (P, F), mask (P,) float 0/1) -> outputs."""

    def __init__(self, model: Student, voxel_features: bool) -> None:
        super().__init__()
        self.model = model
        self.voxel_features = voxel_features

    def forward(self, points: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(points, mask, voxel_features=self.voxel_features)
        if self.voxel_features:
            return out.point_embeddings, out.occupancy_logits, out.voxel_features
        return out.point_embeddings, out.occupancy_logits


def output_names(voxel_features: bool) -> list[str]:
    names = ['point_embeddings', 'occupancy_logits']
    return names + ['voxel_features'] if voxel_features else names


def check_exportable(config: StudentConfig) -> None:
    if config.arch != 'range_unet':
        raise ValueError(f'arch {config.arch!r} uses spconv sparse convolutions, which have no standard '
                         'ONNX operators (TensorRT would need custom plugins); export a range_unet student '
                         'or run this one with the torch backend')


def export_onnx(model: Student, path: str | os.PathLike, *, max_points: int | None = None,
                voxel_features: bool = False, opset: int = MIN_OPSET) -> Path:
    """Write ``model`` as ONNX with inputs points (P, F) float32 and mask (P,) float32 (1 = valid).

    P = ``max_points`` (default ``config.max_points``) is fixed: every tensor in the graph has a static
    shape. The student config (and the text projection, if any) is stored in the model metadata so an
    ONNX file alone is enough to run and classify. Written atomically; ``onnx.checker`` must pass.
    """
    import onnx

    config = model.config
    check_exportable(config)
    if opset < MIN_OPSET:
        raise ValueError(f'opset {opset} < {MIN_OPSET}')
    count = int(max_points or config.max_points)
    if count <= 0:
        raise ValueError(f'max_points must be positive, got {count}')
    wrapper = _ExportWrapper(model, voxel_features).eval()
    points = torch.zeros(count, config.in_columns)
    mask = torch.zeros(count)

    def write(tmp: str) -> None:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter('ignore')
            torch.onnx.export(wrapper, (points, mask), tmp, opset_version=opset, dynamo=False,
                              input_names=list(INPUT_NAMES), output_names=output_names(voxel_features),
                              do_constant_folding=True)
        proto = onnx.load(tmp)
        meta = {META_CONFIG: json.dumps(config.to_dict()), META_MAX_POINTS: str(count)}
        if config.proj_dim:
            weight = model.language.text_projection.weight.detach().cpu().numpy().astype('<f4')
            meta[META_TEXT_PROJECTION] = json.dumps({'shape': list(weight.shape),
                                                     'data': base64.b64encode(weight.tobytes()).decode()})
        for key, value in meta.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.checker.check_model(proto, full_check=True)
        onnx.save(proto, tmp)

    was_training = model.training
    model.eval()
    try:
        path = atomic_write(path, write, suffix='.onnx')
    finally:
        model.train(was_training)
    return path


def read_onnx_metadata(path: str | os.PathLike) -> tuple[StudentConfig, int, np.ndarray | None]:
    """(student config, padded point count, text projection (K, C) or None) stored by ``export_onnx``."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    meta = {p.key: p.value for p in proto.metadata_props}
    if META_CONFIG not in meta:
        raise ValueError(f'{path}: not an ovp student ONNX file (no {META_CONFIG} metadata)')
    config = StudentConfig.from_dict(json.loads(meta[META_CONFIG]))
    projection = None
    if META_TEXT_PROJECTION in meta:
        blob = json.loads(meta[META_TEXT_PROJECTION])
        projection = np.frombuffer(base64.b64decode(blob['data']), dtype='<f4').reshape(blob['shape']).copy()
    return config, int(meta[META_MAX_POINTS]), projection
