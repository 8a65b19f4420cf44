"""TensorRT backend: runs where `tensorrt` imports and a CUDA GPU is present; skipped with the reason
elsewhere."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from perception_nodes.student.backends import BackendConfig, load_backend
from perception_nodes.student.backends.engine_cache import EngineMeta, read_meta, write_engine

HAVE_TRT = importlib.util.find_spec('tensorrt') is not None
needs_trt = pytest.mark.skipif(not (HAVE_TRT and torch.cuda.is_available()),
                               reason='tensorrt is not importable or no CUDA GPU here (CPU-only machine)')


@pytest.mark.skipif(HAVE_TRT and torch.cuda.is_available(), reason='TensorRT and a GPU are present')
def test_clear_error_without_tensorrt(range_checkpoint, tmp_path):
    with pytest.raises(ValueError, match='tensorrt'):
        load_backend(BackendConfig(kind='tensorrt', device='cuda', engine_cache_dir=str(tmp_path)),
                     range_checkpoint)


@needs_trt
@pytest.mark.parametrize('fp16, atol', [(False, 2e-3), (True, 5e-2)])
def test_engine_matches_onnxruntime(tiny, range_checkpoint, tmp_path, fp16, atol):
    cache = str(tmp_path / 'cache')
    ort_backend = load_backend(BackendConfig(kind='onnxruntime', engine_cache_dir=cache), range_checkpoint)
    trt_backend = load_backend(BackendConfig(kind='tensorrt', device='cuda', engine_cache_dir=cache,
                                             fp16=fp16, onnx_path=str(ort_backend.onnx_path)))
    assert read_meta(trt_backend.engine_path).fp16 == fp16
    scan = tiny.scan(6000, seed=9)
    a, b = trt_backend.infer(scan), ort_backend.infer(scan)
    np.testing.assert_allclose(a.point_embeddings, b.point_embeddings, atol=atol)
    np.testing.assert_allclose(a.occupancy_logits, b.occupancy_logits, atol=atol * 10)


@needs_trt
def test_engine_for_another_gpu_is_rebuilt(range_checkpoint, tmp_path):
    cache = str(tmp_path / 'cache')
    ort_backend = load_backend(BackendConfig(kind='onnxruntime', engine_cache_dir=cache), range_checkpoint)
    engine = tmp_path / 'student.engine'
    write_engine(engine, b'not an engine', EngineMeta('0' * 64, '8.6.1', 'Tesla T4', False))
    backend = load_backend(BackendConfig(kind='tensorrt', device='cuda', onnx_path=str(ort_backend.onnx_path),
                                         engine_path=str(engine)))
    meta = read_meta(backend.engine_path)
    assert meta.gpu_name == torch.cuda.get_device_name(0) and meta.trt_version != '8.6.1'
    assert engine.read_bytes() != b'not an engine'


@needs_trt
def test_engine_path_alone_finds_its_onnx(range_checkpoint, tmp_path):
    from perception_nodes.cli.main import main
    onnx_path, engine = tmp_path / 'student.onnx', tmp_path / 'student.engine'
    assert main(['export', '--checkpoint', str(range_checkpoint), '--onnx', str(onnx_path),
                 '--engine', str(engine)]) == 0
    backend = load_backend(BackendConfig(kind='tensorrt', device='cuda', engine_path=str(engine)))
    assert backend.engine_path == engine
    onnx_path.unlink()
    with pytest.raises(ValueError, match='needs its ONNX file beside it'):
        load_backend(BackendConfig(kind='tensorrt', device='cuda', engine_path=str(engine)))
