from __future__ import annotations

import pytest
import yaml

from perception_nodes.geometry.voxels import POP3D_GRID, GridSpec
from perception_nodes.student.config import StudentConfig


def test_defaults_follow_the_contract():
    cfg = StudentConfig()
    assert cfg.embed_dim == 512 and cfg.proj_dim is None and cfg.out_dim == 512
    assert cfg.grid == POP3D_GRID and cfg.max_points == 131072
    assert cfg.input_features == ('x', 'y', 'z', 'intensity') and cfg.in_columns == 4
    dep = StudentConfig.deployable()
    assert dep.arch == 'range_unet' and dep.out_dim == 64 and dep.embed_dim == 512


def test_round_trip_through_yaml():
    cfg = StudentConfig(arch='sparse_unet', widths=(8, 16, 32), depths=(1, 2, 1), proj_dim=16,
                        grid=GridSpec((-10, -10, -2), (10, 10, 2), (20, 20, 4)), vocabulary={'name': 'sim'},
                        provenance={'run': 'test'})
    text = yaml.safe_dump(cfg.to_dict())
    back = StudentConfig.from_dict(yaml.safe_load(text))
    assert back == cfg
    assert back.grid.shape == (20, 20, 4)


@pytest.mark.parametrize('bad, match', [
    (dict(arch='pointnet'), 'arch'),
    (dict(widths=(8, 16), depths=(1,)), 'same non-zero length'),
    (dict(input_features=('x', 'y', 'rgb')), 'input_features'),
    (dict(voxel_size=5.0), 'voxel_size'),
    (dict(embed_dim=0), 'positive'),
    (dict(max_points=0), 'max_points'),
    (dict(range_height=30, widths=(8, 16, 32), depths=(1, 1, 1)), 'divisible'),
])
def test_bad_values_are_named(bad, match):
    with pytest.raises(ValueError, match=match):
        StudentConfig(**bad)


def test_unknown_keys_are_refused():
    with pytest.raises(ValueError, match='unknown student config keys'):
        StudentConfig.from_dict({'arch': 'range_unet', 'dropout': 0.5})
    with pytest.raises(ValueError, match='mapping'):
        StudentConfig.from_dict(['range_unet'])


def test_trained_vocabulary_round_trip_and_bad_records():
    import copy
    import json

    import torch

    from perception_nodes.student.config import vocabulary_hash
    cfg = StudentConfig(embed_dim=6)
    assert cfg.trained_text() is None                                   # an untrained student has none
    emb = torch.randn(3, 6, generator=torch.Generator().manual_seed(0))
    cfg.set_trained_vocabulary('mine', ['road', 'car', 'tree'], emb)
    back = StudentConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))   # as the ONNX metadata holds it
    names, text = back.trained_text()
    assert names == ['road', 'car', 'tree'] and torch.equal(text, emb)       # bit-exact float32
    assert back.vocabulary['hash'] == vocabulary_hash(names, emb)
    with pytest.raises(ValueError, match="embed_dim is 6"):
        cfg.set_trained_vocabulary('mine', ['a', 'b'], torch.zeros(2, 4))
    with pytest.raises(ValueError, match='do not fit 2 class names'):
        cfg.set_trained_vocabulary('mine', ['a', 'b'], torch.zeros(3, 6))
    blob = cfg.vocabulary['text_embeddings']
    cases = [({'base64': '!!!'}, 'not valid base64'), ({'shape': [3, 5]}, 'bytes, shape'),
             ({'shape': [3]}, 'is not \\[K, C\\]'), ({'dtype': 'float64'}, 'dtype: float32')]
    for change, message in cases:
        bad = copy.deepcopy(cfg)
        bad.vocabulary['text_embeddings'] = dict(blob, **change)
        with pytest.raises(ValueError, match=message):
            bad.trained_text()
    edited = copy.deepcopy(cfg)
    edited.vocabulary['classes'] = ['road', 'car', 'bush']
    with pytest.raises(ValueError, match='do not match the vocabulary hash'):
        edited.trained_text()
    nan = copy.deepcopy(cfg)
    nan.set_trained_vocabulary('mine', ['road', 'car', 'tree'], emb)
    nan.vocabulary['text_embeddings'] = encode_nan(emb)
    with pytest.raises(ValueError, match='NaN or inf'):
        nan.trained_text()


def encode_nan(emb):
    from perception_nodes.student.config import encode_text_embeddings
    bad = emb.clone()
    bad[0, 0] = float('nan')
    return encode_text_embeddings(bad)
