"""Backend choice for a student model file: TensorRT on GPU, ONNX Runtime fallback, clear errors."""
from __future__ import annotations

import pytest

from perception_nodes.student.backends.select import backend_plan, load_student_backend


def test_auto_prefers_tensorrt_on_gpu_then_onnxruntime():
    plan = backend_plan('student.onnx', 'auto', 'cuda', cuda=True, tensorrt=True)
    assert [p['kind'] for p in plan] == ['tensorrt', 'onnxruntime']
    assert plan[0]['onnx_path'] == 'student.onnx' and plan[1]['providers'][0] == 'CUDAExecutionProvider'
    cpu = backend_plan('ckpt.safetensors', 'auto', 'cpu', cuda=False, tensorrt=False)
    assert cpu == [{'checkpoint': 'ckpt.safetensors', 'kind': 'onnxruntime', 'device': 'cpu',
                    'providers': ['CPUExecutionProvider']}]
    # GPU without TensorRT: ONNX Runtime with the CUDA execution provider
    assert [p['kind'] for p in backend_plan('s.onnx', 'auto', 'cuda', cuda=True, tensorrt=False)] == \
        ['onnxruntime']
    # a CPU device never tries TensorRT, even where it is installed
    assert [p['kind'] for p in backend_plan('s.onnx', 'auto', 'cpu', cuda=True, tensorrt=True)] == \
        ['onnxruntime']


def test_explicit_choices_and_errors():
    assert backend_plan('s.safetensors', 'torch', 'cpu', False, False) == \
        [{'checkpoint': 's.safetensors', 'kind': 'torch', 'device': 'cpu'}]
    with pytest.raises(ValueError, match='needs a model'):
        backend_plan('', 'auto', 'cpu', False, False)
    with pytest.raises(ValueError, match='TensorRT engine'):
        backend_plan('s.engine', 'auto', 'cpu', cuda=False, tensorrt=False)
    with pytest.raises(ValueError, match='no CUDA'):
        backend_plan('s.onnx', 'auto', 'cuda:0', cuda=False, tensorrt=False)
    with pytest.raises(ValueError, match='torch needs'):
        backend_plan('s.onnx', 'torch', 'cpu', False, False)


def test_falls_back_when_tensorrt_fails_to_load():
    tried, warnings = [], []

    def loader(config, checkpoint):
        tried.append(config.kind)
        if config.kind == 'tensorrt':
            raise ImportError('libnvinfer.so.10: cannot open shared object file')
        return type('Backend', (), {'name': 'onnxruntime[CUDAExecutionProvider]'})()

    backend, name = load_student_backend('s.onnx', 'auto', 'cuda', loader, cuda=True, tensorrt=True,
                                         warn=warnings.append)
    assert tried == ['tensorrt', 'onnxruntime'] and name == 'onnxruntime[CUDAExecutionProvider]'
    assert 'libnvinfer' in warnings[0]

    def broken(config, checkpoint):
        raise FileNotFoundError('s.onnx')
    with pytest.raises(ValueError, match='could be loaded: onnxruntime: FileNotFoundError'):
        load_student_backend('s.onnx', 'auto', 'cpu', broken, cuda=False, tensorrt=False)
