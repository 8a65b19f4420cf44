"""CLIP loading: tiny random configs, offline errors, local weights, mismatches, no unpickling."""
from __future__ import annotations

import pickle
import socket
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from perception_nodes.teacher.clip_models import (ClipSpec, WeightsUnavailableError, encode_text, load_clip,
                                                  read_state_dict, resolve_pretrained)


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a network connection fails the test."""
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError('network access attempted')
    monkeypatch.setattr(socket.socket, 'connect', refuse)
    monkeypatch.setattr(socket, 'create_connection', refuse)
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')


def save_state(model: torch.nn.Module, path: Path) -> None:
    save_file({k: v.contiguous().clone() for k, v in model.state_dict().items()}, str(path))


@pytest.mark.parametrize('name, kind', [('ovp-tiny', 'vit'), ('ovp-tiny-rn', 'resnet')])
def test_tiny_random_models(name: str, kind: str) -> None:
    clip = load_clip(ClipSpec(name, 'none'))
    assert clip.kind == kind and clip.embed_dim == 32 and clip.image_size == (224, 224)
    assert not clip.model.training
    assert clip.pretrained_meaningful is False
    assert clip.identity == f'{name}:random-init:seed0'
    again = load_clip(ClipSpec(name, 'none'))
    other = load_clip(ClipSpec(name, 'none', seed=1))
    first = next(clip.model.visual.parameters())
    assert torch.equal(first, next(again.model.visual.parameters()))   # 'random-init:seed0' is honest
    assert not torch.equal(first, next(other.model.visual.parameters()))
    tokens = clip.tokenizer(['a photo of a car.'])
    assert clip.model.encode_text(tokens).shape == (1, 32)


def test_offline_missing_tag_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(WeightsUnavailableError) as err:
        load_clip(ClipSpec('ViT-B-32', 'laion2b_s34b_b79k', cache_dir=tmp_path, offline=True))
    message = str(err.value)
    assert isinstance(err.value, FileNotFoundError)
    assert str(tmp_path / 'ViT-B-32-laion2b_s34b_b79k.safetensors') in message
    assert '--clip-pretrained' in message
    assert 'huggingface.co/laion/CLIP-ViT-B-32-laion2B-s34B-b79K' in message


def test_offline_tag_resolves_placed_file(tmp_path: Path) -> None:
    placed = tmp_path / 'ViT-B-32-openai.safetensors'
    save_file({'x': torch.zeros(1)}, str(placed))
    path, cfg = resolve_pretrained('ViT-B-32', 'openai', tmp_path, offline=True)
    assert path == placed
    assert cfg['quick_gelu'] is True          # openai weights need QuickGELU: load_clip forces it


def test_offline_tag_resolves_hugging_face_cache(tmp_path: Path) -> None:
    """What open_clip downloads online (Hugging Face cache layout) is found again offline."""
    repo = tmp_path / 'models--laion--CLIP-ViT-B-32-laion2B-s34B-b79K'
    snapshot = repo / 'snapshots' / 'abc123'
    snapshot.mkdir(parents=True)
    (repo / 'refs').mkdir()
    (repo / 'refs' / 'main').write_text('abc123')
    save_file({'x': torch.zeros(1)}, str(snapshot / 'open_clip_model.safetensors'))
    path, _ = resolve_pretrained('ViT-B-32', 'laion2b_s34b_b79k', tmp_path, offline=True)
    assert path == snapshot / 'open_clip_model.safetensors'


def test_unknown_model_and_tag(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match='unknown CLIP model'):
        load_clip(ClipSpec('no-such-model', 'none'))
    with pytest.raises(ValueError, match='known tags'):
        load_clip(ClipSpec('ViT-B-32', 'no_such_tag', cache_dir=tmp_path))
    with pytest.raises(WeightsUnavailableError, match='not found'):
        load_clip(ClipSpec('ovp-tiny', str(tmp_path / 'absent.safetensors')))


def test_local_safetensors_roundtrip(tmp_path: Path) -> None:
    source = load_clip(ClipSpec('ovp-tiny', 'none', seed=3))
    path = tmp_path / 'tiny.safetensors'
    save_state(source.model, path)
    loaded = load_clip(ClipSpec('ovp-tiny', str(path)))
    assert loaded.pretrained_meaningful is True
    assert loaded.identity.startswith('ovp-tiny:sha256:')
    assert len(loaded.identity) == len('ovp-tiny:sha256:') + 64
    for (k, a), (_, b) in zip(source.model.state_dict().items(), loaded.model.state_dict().items()):
        assert torch.equal(a, b), k


def test_state_dict_pt_loads_with_weights_only(tmp_path: Path) -> None:
    source = load_clip(ClipSpec('ovp-tiny-rn', 'none', seed=5))
    path = tmp_path / 'rn.pt'
    torch.save({'state_dict': {f'module.{k}': v for k, v in source.model.state_dict().items()}}, path)
    loaded = load_clip(ClipSpec('ovp-tiny-rn', str(path)))
    assert torch.equal(loaded.model.visual.attnpool.v_proj.weight, source.model.visual.attnpool.v_proj.weight)


def test_mismatching_weights_list_keys(tmp_path: Path) -> None:
    rn = load_clip(ClipSpec('ovp-tiny-rn', 'none'))
    path = tmp_path / 'rn.safetensors'
    save_state(rn.model, path)
    with pytest.raises(ValueError) as err:
        load_clip(ClipSpec('ovp-tiny', str(path)))
    message = str(err.value)
    assert 'do not match' in message and 'missing keys' in message and 'unexpected keys' in message
    assert 'visual.attnpool' in message          # an unexpected key is named

    vit = load_clip(ClipSpec('ovp-tiny', 'none'))
    state = {k: v.contiguous().clone() for k, v in vit.model.state_dict().items()}
    state['text_projection'] = torch.zeros(64, 16)
    save_file(state, str(tmp_path / 'shape.safetensors'))
    with pytest.raises(ValueError, match=r'shape mismatches: text_projection \(64, 16\) != \(64, 32\)'):
        load_clip(ClipSpec('ovp-tiny', str(tmp_path / 'shape.safetensors')))


class _Exploit:
    """Unpickling this would create a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


@pytest.mark.filterwarnings('ignore:Detected pickle protocol')
def test_pickle_payload_is_never_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pt'
    with open(path, 'wb') as f:
        pickle.dump({'visual.proj': _Exploit(marker)}, f)
    with pytest.raises(ValueError, match='refusing to unpickle'):
        read_state_dict(path)
    with pytest.raises(ValueError, match='refusing to unpickle'):
        load_clip(ClipSpec('ovp-tiny', str(path)))
    zipped = tmp_path / 'evil_zip.pt'
    torch.save({'visual.proj': _Exploit(marker)}, zipped)
    with pytest.raises(ValueError, match='refusing to unpickle'):
        read_state_dict(zipped)
    assert not marker.exists()


def test_non_weights_files_are_rejected(tmp_path: Path) -> None:
    garbage = tmp_path / 'bad.safetensors'
    garbage.write_bytes(b'not a safetensors file')
    with pytest.raises(ValueError, match='not a readable safetensors'):
        read_state_dict(garbage)
    other = tmp_path / 'weights.onnx'
    other.write_bytes(b'x')
    with pytest.raises(ValueError, match='unsupported weights format'):
        read_state_dict(other)


def test_trimmed_text_encoding_equals_open_clip() -> None:
    clip = load_clip(ClipSpec('ovp-tiny', 'none', seed=4))
    tokens = clip.tokenizer(['a photo of a car.', 'a blurry photo of the traffic light on a rainy day.', 'x'])
    assert int((tokens != 0).sum(1).max()) < 20                     # most of the 77 positions are padding
    with torch.inference_mode():
        expected = clip.model.encode_text(tokens)
        torch.testing.assert_close(encode_text(clip, tokens), expected, atol=1e-5, rtol=1e-5)
