"""The method config: shipped files, strict keys, nested defaults, and what the config hash covers."""
from __future__ import annotations

import pytest

from perception_nodes.config import PerceptionConfig, with_overrides
from perception_nodes.config.schema import iter_keys
from perception_nodes.vocabulary import config_dir
from training.store.config import (METHODS, PseudoLabelConfig, config_hash, load_pseudo_label_config,
                                   pseudo_label_config)

SHIPPED = ('affinity3d_gzs', 'affinity3d_af', 'pop3d', 'cns', 'unscene3d')


def test_every_key_is_documented_and_the_shipped_files_load():
    keys = list(iter_keys(PseudoLabelConfig))
    assert len(keys) > 50 and all(k.doc for k in keys)
    assert {p.stem for p in (config_dir() / 'pseudo_label').glob('*.yaml')} == set(SHIPPED)
    loaded = {name: load_pseudo_label_config(name) for name in SHIPPED}
    assert loaded['affinity3d_gzs'].affinity3d.setting == 'gzs'
    assert loaded['affinity3d_af'].affinity3d.setting == 'af'
    assert loaded['pop3d'].pop3d.grids == ('pop3d', 'fine') and loaded['cns'].label_source == 'cns'
    assert loaded['unscene3d'].scene.sweeps == 30 and 'unscene3d' in loaded['unscene3d'].methods
    assert set().union(*(c.methods for c in loaded.values())) == set(METHODS)


def test_a_file_is_merged_onto_the_defaults(tmp_path):
    path = tmp_path / 'm.yaml'
    path.write_text('affinity3d:\n  superpoints:\n    fh:\n      k: 0.2\n')
    cfg = load_pseudo_label_config(path, {'methods': 'dense,cns'})
    fh = cfg.affinity3d.superpoints.fh
    assert (fh.k, fh.min_size, fh.voxel_size) == (0.2, 20, 0.15)          # Affinity3D's own FH defaults kept
    assert cfg.methods == ['dense', 'cns']
    assert cfg.affinity3d.setting == 'af' and cfg.pop3d.grids == ('pop3d',)


@pytest.mark.parametrize('text, match', [
    ('affinity3d:\n  nope: 1\n', r"unknown config key\(s\) \['affinity3d.nope'\]"),
    ('store:\n  shard_units: 0\n', 'store.shard_units must be >= 1'),
    ('pop3d:\n  grids: [coarse]\n', r"\['coarse'\] not in"),
    ('a: &x [1]\nb: *x\n', 'aliases'),
    ('- 1\n', 'mapping'),
])
def test_bad_files_are_one_line_errors_naming_the_key(tmp_path, text, match):
    path = tmp_path / 'bad.yaml'
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        load_pseudo_label_config(path)
    with pytest.raises(ValueError, match='not found'):
        load_pseudo_label_config(tmp_path / 'missing.yaml')


def test_the_hash_covers_what_changes_the_store_and_nothing_else():
    base, perception = pseudo_label_config(), PerceptionConfig()
    h = config_hash(base, perception)
    assert h == config_hash(pseudo_label_config(), PerceptionConfig())
    changed_method = pseudo_label_config({'affinity3d.affinity.scale': 5.0})
    assert config_hash(changed_method, perception) != h
    for key, value in (('fusion.visibility', 'superpixel'), ('vocabulary.classes', ['car', 'road']),
                       ('teacher.clip_model', 'ovp-tiny'), ('inputs.fixed_frame', 'odom'),
                       ('teacher.source', 'synthetic')):
        assert config_hash(base, with_overrides(perception, {key: value})) != h, key
    for key, value in (('runtime.device', 'cuda'), ('replay.max_frames', 5), ('teacher.cache_dir', '/x'),
                       ('runtime.torch_threads', 4), ('overlay.enabled', False),
                       ('teacher.synthetic_noise_seed', 7)):          # the synthetic teacher's key, unused
        assert config_hash(base, with_overrides(perception, {key: value})) == h, key
    # with the synthetic teacher its own keys count and CLIP's do not
    synthetic = with_overrides(perception, {'teacher.source': 'synthetic'})
    hs = config_hash(base, synthetic)
    assert config_hash(base, with_overrides(synthetic, {'teacher.synthetic_noise_seed': 7})) != hs
    assert config_hash(base, with_overrides(synthetic, {'teacher.clip_model': 'ovp-tiny'})) == hs
