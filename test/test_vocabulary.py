"""Vocabularies, prompt templates and the per-class text-embedding cache (Affinity3D Eq. 2–3)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from perception_nodes.teacher.clip_models import ClipSpec, LoadedClip, load_clip
from perception_nodes.vocabulary import (DEFAULT_TEMPLATES, TextEmbedder, VocabClass, Vocabulary, config_dir,
                                         distinct_colors, load_templates, load_vocabulary)

SIM_CLASSES = ['road', 'car', 'building', 'pole', 'vegetation', 'trunk', 'person']


@pytest.mark.parametrize('name, count', [('semantickitti', 19), ('nuscenes', 16), ('scannet20', 20),
                                         ('scannet200', 200), ('sim', 7)])
def test_builtin_vocabularies(name: str, count: int) -> None:
    vocab = load_vocabulary(name)
    assert len(vocab) == count == len(vocab.names) == len(set(vocab.names))
    assert all(cls.phrases for cls in vocab.classes)
    assert len(set(vocab.colors)) == count                     # every class has its own colour
    assert load_vocabulary(config_dir() / 'vocabularies' / f'{name}.yaml').names == vocab.names


def test_semantickitti_details() -> None:
    vocab = load_vocabulary('semantickitti')
    assert vocab.names[:3] == ['car', 'bicycle', 'motorcycle'] and vocab.names[-1] == 'traffic-sign'
    road = vocab.classes[vocab.index('road')]
    assert len(road.phrases) >= 3 and 'street' in road.phrases
    assert vocab.colors[vocab.index('car')] == (100, 150, 245)        # color_map 10: [245, 150, 100] (BGR)
    assert vocab.colors[vocab.index('vegetation')] == (0, 175, 0)
    lut = vocab.label_map()
    assert lut[10] == lut[252] == vocab.index('car')                   # moving car -> car
    assert lut[40] == lut[60] == vocab.index('road')                   # lane marking -> road
    assert 52 not in lut and 0 not in lut                              # other-structure, unlabeled: ignored


def test_sim_vocabulary_matches_sim_classes() -> None:
    try:
        from perception_nodes.geometry.sim import SIM_CLASSES as sim_classes
    except ImportError:
        sim_classes = SIM_CLASSES
    assert load_vocabulary('sim').names == list(sim_classes)


def test_user_typed_names() -> None:
    vocab = load_vocabulary(['fire hydrant', 'traffic cone', 'dog'])
    assert vocab.names == ['fire hydrant', 'traffic cone', 'dog']
    assert [c.phrases for c in vocab.classes] == [['fire hydrant'], ['traffic cone'], ['dog']]
    assert vocab.colors == distinct_colors(3) and len(set(vocab.colors)) == 3
    assert load_vocabulary('fire hydrant, traffic cone,dog').names == vocab.names
    assert len(set(distinct_colors(300))) == 300


def test_bad_vocabularies(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match='empty'):
        load_vocabulary([])
    with pytest.raises(ValueError, match='empty'):
        load_vocabulary('')
    with pytest.raises(ValueError, match="'tree' has no phrases"):
        VocabClass('tree', [], (0, 0, 0))
    bad = tmp_path / 'bad.yaml'
    bad.write_text('classes:\n  - name: road\n    phrases: [road]\n  - name: tree\n    phrases: []\n')
    with pytest.raises(ValueError, match="'tree' has no phrases"):
        load_vocabulary(bad)
    bad.write_text('classes: []\n')
    with pytest.raises(ValueError, match='empty'):
        load_vocabulary(bad)
    bad.write_text('classes:\n  - name: a\n  - name: a\n')
    with pytest.raises(ValueError, match='appears twice'):
        load_vocabulary(bad)
    bad.write_text('- just a list\n')
    with pytest.raises(ValueError, match='"classes"'):
        load_vocabulary(bad)
    with pytest.raises(ValueError, match='unknown vocabulary'):
        load_vocabulary('no-such-vocabulary')
    with pytest.raises(FileNotFoundError):
        load_vocabulary(tmp_path / 'missing.yaml')


def test_templates(tmp_path: Path) -> None:
    assert len(DEFAULT_TEMPLATES) == 80 == len(set(DEFAULT_TEMPLATES))
    assert all(t.count('{}') == 1 for t in DEFAULT_TEMPLATES)
    assert load_templates(config_dir() / 'prompt_templates.yaml') == DEFAULT_TEMPLATES
    path = tmp_path / 't.yaml'
    path.write_text("- 'a photo of a {}.'\n- 'a {} on the road.'\n")
    assert load_templates(path) == ('a photo of a {}.', 'a {} on the road.')
    path.write_text("templates: ['no placeholder']\n")
    with pytest.raises(ValueError, match='exactly one'):
        load_templates(path)
    with pytest.raises(ValueError, match='no prompt templates'):
        load_templates([])


@pytest.fixture(scope='module')
def clip() -> LoadedClip:
    return load_clip(ClipSpec('ovp-tiny', 'none'))


TEMPLATES = ('a photo of a {}.', 'a blurry photo of the {}.', 'itap of a {}.')


def test_class_embedding_is_normalised_mean(clip: LoadedClip, tmp_path: Path) -> None:
    vocab = Vocabulary('v', [VocabClass('road', ['road', 'street'], (1, 1, 1)),
                             VocabClass('car', ['car'], (2, 2, 2))])
    emb = TextEmbedder(clip, tmp_path).embed(vocab, TEMPLATES)
    assert emb.shape == (2, clip.embed_dim)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(2))
    with torch.inference_mode():                              # slow reference: one prompt at a time
        for row, cls in zip(emb, vocab.classes):
            feats = [F.normalize(clip.model.encode_text(clip.tokenizer([t.format(p)]))[0], dim=0)
                     for p in cls.phrases for t in TEMPLATES]
            expected = F.normalize(torch.stack(feats).mean(0), dim=0)
            torch.testing.assert_close(row, expected, atol=1e-5, rtol=1e-5)


def test_cache_hits_and_invalidation(clip: LoadedClip, tmp_path: Path) -> None:
    vocab = load_vocabulary('sim')
    k = len(vocab)
    n_prompts = sum(len(c.phrases) for c in vocab.classes) * len(TEMPLATES)
    embedder = TextEmbedder(clip, tmp_path)
    first = embedder.embed(vocab, TEMPLATES)
    assert embedder.encoded_prompts == n_prompts and embedder.encoded_classes == k
    # same vocabulary again, and a fresh embedder (a new process) reading the disk cache: no encoding
    torch.testing.assert_close(embedder.embed(vocab, TEMPLATES), first)
    fresh = TextEmbedder(clip, tmp_path)
    torch.testing.assert_close(fresh.embed('sim', TEMPLATES), first)
    assert fresh.encoded_prompts == 0 and embedder.encoded_prompts == n_prompts
    # renaming/recolouring a class does not matter; changing one class's phrases re-encodes only it
    edited = Vocabulary('sim2', [VocabClass(c.name.upper(), list(c.phrases), (0, 0, 0))
                                 for c in vocab.classes])
    edited.classes[1].phrases = ['automobile']
    fresh.embed(edited, TEMPLATES)
    assert fresh.encoded_classes == 1 and fresh.encoded_prompts == len(TEMPLATES)
    # changing the templates recomputes every class
    fresh.embed(vocab, TEMPLATES[:2])
    assert fresh.encoded_classes == 1 + k
    # other weights (a different identity) recompute every class, and give different embeddings
    other = TextEmbedder(load_clip(ClipSpec('ovp-tiny', 'none', seed=1)), tmp_path)
    assert not torch.allclose(other.embed(vocab, TEMPLATES), first)
    assert other.encoded_classes == k
    assert not list(tmp_path.rglob('*.tmp'))                   # atomic writes leave no temporaries


def test_corrupt_cache_entry_is_recomputed(clip: LoadedClip, tmp_path: Path) -> None:
    embedder = TextEmbedder(clip, tmp_path)
    first = embedder.embed(['tree'], TEMPLATES)
    (entry,) = list(tmp_path.rglob('*.safetensors'))
    entry.write_bytes(b'garbage')
    again = TextEmbedder(clip, tmp_path)
    torch.testing.assert_close(again.embed(['tree'], TEMPLATES), first)
    assert again.encoded_classes == 1


def test_embed_bad_input(clip: LoadedClip, tmp_path: Path) -> None:
    embedder = TextEmbedder(clip, tmp_path)
    with pytest.raises(ValueError, match='empty'):
        embedder.embed([], TEMPLATES)
    with pytest.raises(ValueError, match='exactly one'):
        embedder.embed(['car'], ['a photo'])


def _entry(tmp_path: Path) -> Path:
    (entry,) = list(tmp_path.rglob('*.safetensors'))
    return entry


@pytest.mark.parametrize('bad', ['nan', 'float64', 'not_unit', 'shape', 'extra_key', 'identity'])
def test_invalid_cache_entries_are_misses_and_replaced(clip: LoadedClip, tmp_path: Path, bad: str) -> None:
    """Issue 15 item 16: an entry that is not a finite unit float32 (C,) vector of this model: recomputed."""
    from safetensors.torch import load_file, save_file
    first = TextEmbedder(clip, tmp_path).embed(['tree'], TEMPLATES)
    entry = _entry(tmp_path)
    emb = load_file(str(entry))['embedding']
    meta = {'identity': clip.identity}
    tensors = {'embedding': emb}
    if bad == 'nan':
        tensors['embedding'] = emb.clone()
        tensors['embedding'][3] = float('nan')
    elif bad == 'float64':
        tensors['embedding'] = emb.double()
    elif bad == 'not_unit':
        tensors['embedding'] = emb * 2
    elif bad == 'shape':
        tensors['embedding'] = emb[:-1].contiguous()
    elif bad == 'extra_key':
        tensors['other'] = emb.clone()
    elif bad == 'identity':
        meta = {'identity': 'some other model'}
    save_file(tensors, str(entry), metadata=meta)
    again = TextEmbedder(clip, tmp_path)
    out = again.embed(['tree'], TEMPLATES)
    assert again.encoded_classes == 1 and bool(torch.isfinite(out).all())
    torch.testing.assert_close(out, first)
    # the entry was atomically replaced by a valid one: a third embedder reads it without encoding
    third = TextEmbedder(clip, tmp_path)
    torch.testing.assert_close(third.embed(['tree'], TEMPLATES), first)
    assert third.encoded_classes == 0


def test_directory_at_a_cache_entry_never_crashes(clip: LoadedClip, tmp_path: Path) -> None:
    first = TextEmbedder(clip, tmp_path).embed(['tree'], TEMPLATES)
    entry = _entry(tmp_path)
    entry.unlink()
    entry.mkdir()                                         # an empty directory: replaced by the entry
    empty = TextEmbedder(clip, tmp_path)
    torch.testing.assert_close(empty.embed(['tree'], TEMPLATES), first)
    assert entry.is_file() and empty.encoded_classes == 1
    entry.unlink()
    entry.mkdir()
    (entry / 'keep.txt').write_text('not ours')           # a non-empty one is left alone, with a warning
    full = TextEmbedder(clip, tmp_path)
    with pytest.warns(RuntimeWarning, match='not written'):
        torch.testing.assert_close(full.embed(['tree'], TEMPLATES), first)
    with pytest.warns(RuntimeWarning):
        full.embed(['tree'], TEMPLATES)
    assert full.encoded_classes == 2 and (entry / 'keep.txt').read_text() == 'not ours'


def test_long_comma_list_is_names_not_a_path() -> None:
    """Issue 15 item 7: 32 class names used to raise OSError: File name too long."""
    names = [f'some rather long class name number {i}' for i in range(32)]
    assert load_vocabulary(', '.join(names)).names == names


def test_vocabulary_yaml_with_aliases_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / 'v.yaml'
    bad.write_text('classes:\n  - &c {name: a}\n  - *c\n')
    with pytest.raises(ValueError, match='anchor'):
        load_vocabulary(bad)
    bad.write_text("- &t 'a {}.'\n- *t\n")
    with pytest.raises(ValueError, match='anchor'):
        load_templates(bad)
