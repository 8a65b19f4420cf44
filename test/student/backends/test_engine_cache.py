"""TensorRT engine cache bookkeeping (runs without TensorRT)."""
from __future__ import annotations

import json

from perception_nodes.student.backends.engine_cache import (EngineMeta, cached_engine_path, read_meta,
                                                            sidecar, stale_reason, write_engine)

META = EngineMeta(onnx_sha256='a' * 64, trt_version='10.3.0', gpu_name='NVIDIA H200', fp16=False)


def test_key_depends_on_onnx_trt_version_gpu_and_precision(tmp_path):
    variants = [META, EngineMeta('b' * 64, '10.3.0', 'NVIDIA H200', False),
                EngineMeta('a' * 64, '10.7.0', 'NVIDIA H200', False),
                EngineMeta('a' * 64, '10.3.0', 'Orin', False),
                EngineMeta('a' * 64, '10.3.0', 'NVIDIA H200', True)]
    keys = {m.key() for m in variants}
    assert len(keys) == len(variants)
    assert META.key() == EngineMeta('a' * 64, '10.3.0', 'NVIDIA H200', False).key()
    assert cached_engine_path(tmp_path, META).name == f'student-{META.key()}.engine'


def test_write_and_read_back(tmp_path):
    path = write_engine(tmp_path / 'sub' / 'x.engine', b'\x00engine', META)
    assert path.read_bytes() == b'\x00engine'
    assert json.loads(sidecar(path).read_text())['gpu_name'] == 'NVIDIA H200'
    assert read_meta(path) == META
    assert sorted(p.name for p in path.parent.iterdir()) == ['x.engine', 'x.engine.json']
    assert stale_reason(path, META) is None


def test_stale_engines_are_explained(tmp_path):
    assert 'does not exist' in stale_reason(tmp_path / 'none.engine', META)
    bare = tmp_path / 'bare.engine'
    bare.write_bytes(b'x')
    assert 'no readable' in stale_reason(bare, META)
    write_engine(tmp_path / 'old.engine', b'x', EngineMeta('a' * 64, '8.6.1', 'Tesla T4', False))
    reason = stale_reason(tmp_path / 'old.engine', META)
    assert "trt_version: engine '8.6.1' != here '10.3.0'" in reason
    assert "gpu_name: engine 'Tesla T4' != here 'NVIDIA H200'" in reason
    sidecar(tmp_path / 'old.engine').write_text('{broken')
    assert read_meta(tmp_path / 'old.engine') is None
