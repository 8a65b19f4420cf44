from __future__ import annotations

import os
import pickle

import pytest
import torch
import yaml

from perception_nodes.student.checkpoint import checkpoint_paths, load_checkpoint, save_checkpoint


@pytest.mark.parametrize('arch', ['range_unet', 'sparse_unet'])
def test_round_trip_reproduces_outputs(tiny, tmp_path, arch):
    model = tiny.model(arch, proj_dim=8, vocabulary={'name': 'sim', 'sha256': 'ab'},
                       provenance={'run': 'unit-test'})
    weights = save_checkpoint(tmp_path / 'ckpt', model)
    assert weights.suffix == '.safetensors' and weights.with_suffix('.yaml').is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ['ckpt.safetensors', 'ckpt.yaml']  # no temp files
    loaded, config = load_checkpoint(tmp_path / 'ckpt')
    assert config == model.config and config.vocabulary['name'] == 'sim'
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    points = torch.from_numpy(tiny.scan(800))
    with torch.no_grad():
        a, b = model(points), loaded(points)
    # spconv's CPU gather-scatter may sum in a different order between calls: rounding only.
    torch.testing.assert_close(a.point_embeddings, b.point_embeddings, rtol=0, atol=1e-5)
    torch.testing.assert_close(a.occupancy_logits, b.occupancy_logits, rtol=0, atol=1e-5)


def test_path_forms(tmp_path):
    assert checkpoint_paths(tmp_path) == (tmp_path / 'model.safetensors', tmp_path / 'config.yaml')
    assert checkpoint_paths(tmp_path / 'a.safetensors') == (tmp_path / 'a.safetensors', tmp_path / 'a.yaml')
    assert checkpoint_paths(tmp_path / 'a.yaml') == (tmp_path / 'a.safetensors', tmp_path / 'a.yaml')
    assert checkpoint_paths(tmp_path / 'a') == (tmp_path / 'a.safetensors', tmp_path / 'a.yaml')


def test_folder_checkpoint(tiny, tmp_path):
    save_checkpoint(tmp_path, tiny.model())
    model, _ = load_checkpoint(tmp_path)
    assert not model.training


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, 'w'))     # unpickling would create the marker file


@pytest.mark.parametrize('with_torch_save', [False, True])
def test_malicious_pickle_is_refused_and_not_executed(tiny, tmp_path, with_torch_save):
    save_checkpoint(tmp_path / 'ckpt', tiny.model())
    marker = tmp_path / 'pwned'
    weights = tmp_path / 'ckpt.safetensors'
    if with_torch_save:
        torch.save({'state': _Payload(str(marker))}, weights)
    else:
        weights.write_bytes(pickle.dumps(_Payload(str(marker))))
    with pytest.raises(ValueError, match='refusing to unpickle'):
        load_checkpoint(tmp_path / 'ckpt')
    assert not marker.exists()


def test_garbage_weights_are_a_clear_error(tiny, tmp_path):
    save_checkpoint(tmp_path / 'ckpt', tiny.model())
    (tmp_path / 'ckpt.safetensors').write_bytes(b'\x10\x00\x00\x00\x00\x00\x00\x00{not json at all')
    with pytest.raises(ValueError, match='not a valid safetensors'):
        load_checkpoint(tmp_path / 'ckpt')


def test_missing_files(tmp_path):
    with pytest.raises(ValueError, match='not found'):
        load_checkpoint(tmp_path / 'nothing')


def test_config_that_does_not_match_the_weights(tiny, tmp_path):
    save_checkpoint(tmp_path / 'ckpt', tiny.model())
    cfg_path = tmp_path / 'ckpt.yaml'
    data = yaml.safe_load(cfg_path.read_text())
    data['widths'] = [12, 24]
    cfg_path.write_text(yaml.safe_dump(data))
    with pytest.raises(ValueError, match='does not match the network'):
        load_checkpoint(tmp_path / 'ckpt')


def test_expected_config_mismatch_names_the_fields(tiny, tmp_path):
    save_checkpoint(tmp_path / 'ckpt', tiny.model())
    with pytest.raises(ValueError, match=r"\['embed_dim'\]"):
        load_checkpoint(tmp_path / 'ckpt', expected=tiny.config(embed_dim=64))


def test_bad_yaml(tiny, tmp_path):
    save_checkpoint(tmp_path / 'ckpt', tiny.model())
    (tmp_path / 'ckpt.yaml').write_text('arch: [unclosed')
    with pytest.raises(ValueError, match='invalid YAML'):
        load_checkpoint(tmp_path / 'ckpt')
    (tmp_path / 'ckpt.yaml').write_text('arch: range_unet\nlayers: 3\n')
    with pytest.raises(ValueError, match='unknown student config keys'):
        load_checkpoint(tmp_path / 'ckpt')


def test_save_is_atomic_on_failure(tiny, tmp_path, monkeypatch):
    save_checkpoint(tmp_path / 'ckpt', tiny.model())
    before = (tmp_path / 'ckpt.safetensors').read_bytes()

    def boom(*args, **kwargs):
        raise OSError('disk full')
    monkeypatch.setattr('perception_nodes.student.checkpoint.save_file', boom)
    with pytest.raises(OSError):
        save_checkpoint(tmp_path / 'ckpt', tiny.model(seed=5))
    assert (tmp_path / 'ckpt.safetensors').read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ['ckpt.safetensors', 'ckpt.yaml']
