from __future__ import annotations

import numpy as np
import pytest

from perception_nodes.student.backends import BackendConfig, load_backend
from perception_nodes.student.backends.onnxruntime_backend import resolve_providers


def test_parity_with_the_torch_backend_and_export_cache(tiny, range_checkpoint, tmp_path):
    cfg = BackendConfig(kind='onnxruntime', engine_cache_dir=str(tmp_path / 'cache'), max_points=2048)
    ort_backend = load_backend(cfg, range_checkpoint)
    torch_backend = load_backend(BackendConfig(kind='torch', max_points=2048), range_checkpoint)
    scan = tiny.scan(3000, seed=5)
    a, b = ort_backend.infer(scan), torch_backend.infer(scan)
    assert a.subsampled and a.num_used == 2048
    np.testing.assert_allclose(a.point_embeddings, b.point_embeddings, atol=1e-4)
    np.testing.assert_allclose(a.occupancy_logits, b.occupancy_logits, atol=1e-3)
    np.testing.assert_array_equal(a.text_projection, b.text_projection)
    # The export is cached by checkpoint hash: a second backend reuses the same file.
    again = load_backend(cfg, range_checkpoint)
    assert again.onnx_path == ort_backend.onnx_path and len(list((tmp_path / 'cache').iterdir())) == 1
    # An explicit ONNX file runs without the checkpoint.
    alone = load_backend(BackendConfig(kind='onnxruntime', onnx_path=str(ort_backend.onnx_path)))
    np.testing.assert_array_equal(alone.infer(scan).point_embeddings, a.point_embeddings)


def test_provider_order_and_availability():
    order = ['TensorrtExecutionProvider', 'CUDAExecutionProvider', 'CPUExecutionProvider']
    cfg = BackendConfig(kind='onnxruntime', providers=order)
    with pytest.warns(UserWarning, match='not available'):
        chosen = resolve_providers(cfg, ['CUDAExecutionProvider', 'CPUExecutionProvider'])
    assert chosen == ['CUDAExecutionProvider', 'CPUExecutionProvider']
    trt = resolve_providers(cfg, ['TensorrtExecutionProvider', 'CPUExecutionProvider'])
    assert trt[0][0] == 'TensorrtExecutionProvider' and trt[0][1]['trt_engine_cache_enable']
    with pytest.warns(UserWarning), pytest.raises(ValueError, match='none of the ONNX Runtime providers'):
        resolve_providers(BackendConfig(kind='onnxruntime', providers=['CUDAExecutionProvider']),
                          ['CPUExecutionProvider'])


def test_bad_configurations_are_named(range_checkpoint, sparse_checkpoint, tmp_path):
    cache = str(tmp_path / 'cache')
    with pytest.raises(ValueError, match='no checkpoint to export from'):
        load_backend(BackendConfig(kind='onnxruntime', onnx_path=str(tmp_path / 'missing.onnx')))
    with pytest.raises(ValueError, match='spconv'):
        load_backend(BackendConfig(kind='onnxruntime', engine_cache_dir=cache), sparse_checkpoint)
    backend = load_backend(BackendConfig(kind='onnxruntime', engine_cache_dir=cache), range_checkpoint)
    with pytest.raises(ValueError, match='exported for 8192 points'):
        load_backend(BackendConfig(kind='onnxruntime', onnx_path=str(backend.onnx_path), max_points=100))
    with pytest.raises(ValueError, match='voxel_features'):
        load_backend(BackendConfig(kind='onnxruntime', onnx_path=str(backend.onnx_path), voxel_features=True))
    not_ours = tmp_path / 'plain.onnx'
    import onnx
    proto = onnx.load(str(backend.onnx_path))
    del proto.metadata_props[:]
    onnx.save(proto, str(not_ours))
    with pytest.raises(ValueError, match='not an ovp student ONNX'):
        load_backend(BackendConfig(kind='onnxruntime', onnx_path=str(not_ours)))
