"""ONNX export: checker, opset, static shapes, metadata, and ORT-PyTorch parity on real KITTI scans.

Tolerance: ONNX Runtime reorders float32 reductions (convolutions, GEMMs, scatter sums), so outputs
differ from PyTorch by rounding only: |embedding difference| <= 1e-4 per component and
|occupancy logit difference| <= 1e-3, and the cosine classification agrees on >= 99.9% of points.
"""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from perception_nodes.io.kitti import read_velodyne
from perception_nodes.student.export import MIN_OPSET, export_onnx, read_onnx_metadata
from perception_nodes.classify import classify
from perception_nodes.student.padding import pad_points

EMB_ATOL = 1e-4
OCC_ATOL = 1e-3


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    from types import SimpleNamespace

    from perception_nodes.geometry.voxels import GridSpec
    from perception_nodes.student.config import StudentConfig
    from perception_nodes.student.model import build_student
    torch.manual_seed(0)
    cfg = StudentConfig(widths=(8, 16), depths=(1, 1), embed_dim=32, proj_dim=8, point_width=16,
                        head_hidden=16, voxel_width=4, range_height=64, range_width=512, max_points=32768,
                        grid=GridSpec((-40.0, -40.0, -3.0), (40.0, 40.0, 3.0), (32, 32, 4)))
    model = build_student(cfg).eval()
    path = export_onnx(model, tmp_path_factory.mktemp('onnx') / 'student.onnx', voxel_features=True)
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    return SimpleNamespace(model=model, path=path, session=session, config=cfg)


def test_checker_opset_and_static_shapes(exported):
    proto = onnx.load(str(exported.path))
    onnx.checker.check_model(proto, full_check=True)
    opset = max(o.version for o in proto.opset_import if o.domain in ('', 'ai.onnx'))
    assert opset >= MIN_OPSET
    shapes = {v.name: [d.dim_value if d.HasField('dim_value') else None for d in v.type.tensor_type.shape.dim]
              for v in list(proto.graph.input) + list(proto.graph.output)}
    assert shapes == {'points': [32768, 4], 'mask': [32768], 'point_embeddings': [32768, 8],
                      'occupancy_logits': [32, 32, 4, 2], 'voxel_features': [32, 32, 4, 32]}
    # Standard operators only (no custom domains).
    assert {n.domain for n in proto.graph.node} <= {''}


def test_metadata_round_trip(exported):
    config, count, projection = read_onnx_metadata(exported.path)
    assert config == exported.config and count == 32768
    np.testing.assert_array_equal(projection, exported.model.language.text_projection.weight.detach().numpy())


def test_sparse_student_is_not_exportable(tiny, tmp_path):
    with pytest.raises(ValueError, match='spconv'):
        export_onnx(tiny.model('sparse_unet'), tmp_path / 'x.onnx')
    assert not (tmp_path / 'x.onnx').exists() and not list(tmp_path.iterdir())


def _parity(exported, scan: np.ndarray) -> None:
    padded = pad_points(scan, exported.config.max_points)
    emb, occ, vox = exported.session.run(None, {'points': padded.points, 'mask': padded.mask})
    with torch.no_grad():
        ref = exported.model(torch.from_numpy(padded.points), torch.from_numpy(padded.mask))
    n = padded.num_used
    np.testing.assert_allclose(emb[:n], ref.point_embeddings[:n].numpy(), atol=EMB_ATOL, rtol=0)
    np.testing.assert_allclose(occ, ref.occupancy_logits.numpy(), atol=OCC_ATOL, rtol=0)
    np.testing.assert_allclose(vox, ref.voxel_features.numpy(), atol=OCC_ATOL, rtol=0)
    text = exported.model.project_text(torch.randn(10, 32, generator=torch.Generator().manual_seed(0)))
    a = classify(torch.from_numpy(emb[:n]), text).labels
    b = classify(ref.point_embeddings[:n], text).labels
    assert (a == b).float().mean().item() >= 0.999


def test_ort_matches_pytorch_on_kitti_raw(exported, kitti_raw_dir):
    scans = sorted(kitti_raw_dir.rglob('*.bin'))[:2]
    assert scans, f'no .bin scans under {kitti_raw_dir}'
    for path in scans:
        _parity(exported, read_velodyne(path))


def test_ort_matches_pytorch_on_semantic_kitti(exported, semantic_kitti_dir):
    scans = sorted(semantic_kitti_dir.rglob('velodyne/*.bin'))[:1]
    assert scans, f'no velodyne scans under {semantic_kitti_dir}'
    _parity(exported, read_velodyne(scans[0]))
