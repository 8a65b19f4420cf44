"""Training configs: `extends:` inheritance, overrides, errors naming the key, the five recipe files."""
from __future__ import annotations

import pytest

from training.engine.config import (ConfigError, apply_overrides, config_dir, config_from_tree, load_config,
                                    load_yaml_tree)
from training.recipes import RECIPES, recipe_class


def test_extends_merges_mappings_and_replaces_lists(tmp_path):
    (tmp_path / 'base.yaml').write_text('a: {x: 1, y: [1, 2]}\nb: 3\n')
    (tmp_path / 'mid.yaml').write_text('extends: base.yaml\na: {y: [9]}\n')
    (tmp_path / 'top.yaml').write_text('extends: mid.yaml\na: {z: 2}\nb: 4\n')
    assert load_yaml_tree(tmp_path / 'top.yaml') == {'a': {'x': 1, 'y': [9], 'z': 2}, 'b': 4}


def test_extends_cycle_is_an_error(tmp_path):
    (tmp_path / 'a.yaml').write_text('extends: b.yaml\n')
    (tmp_path / 'b.yaml').write_text('extends: a.yaml\n')
    with pytest.raises(ConfigError, match='extends itself'):
        load_yaml_tree(tmp_path / 'a.yaml')


def test_overrides_parse_yaml_values_and_index_lists():
    tree = {'phases': [{'name': 'a', 'steps': 3}], 'train': {'amp': 'auto'}}
    out = apply_overrides(tree, ['phases.0.steps=7', 'train.amp=off', 'optim={type: sgd, lr: 0.1}'])
    assert out['phases'][0]['steps'] == 7 and out['train']['amp'] is False      # YAML 1.1 'off'
    from training.engine.config import LoopConfig
    assert LoopConfig(amp=out['train']['amp']).amp == 'off'
    assert out['optim'] == {'type': 'sgd', 'lr': 0.1}
    with pytest.raises(ConfigError, match='has 1 entries'):
        apply_overrides(tree, ['phases.3.steps=1'])


def test_unknown_keys_are_errors_naming_the_section():
    base = load_yaml_tree(config_dir() / 'pop3d.yaml')
    with pytest.raises(ConfigError, match=r"train: unknown key\(s\) \['batchsize'\]"):
        config_from_tree(apply_overrides(base, ['train.batchsize=4']))
    with pytest.raises(ConfigError, match='give exactly one of epochs or steps'):
        config_from_tree(apply_overrides(base, ['phases.0.steps=4']))
    with pytest.raises(Exception, match=r"unknown key\(s\) \['alpah'\] for recipe affinity3d"):
        recipe_class('affinity3d').make_params({'name': 'affinity3d', 'alpah': 2.0})


def test_every_recipe_file_loads_with_the_papers_constants():
    configs = {name: load_config(name) for name in ('affinity3d', 'pop3d', 'cns', 'scannet200', 'unscene3d')}
    assert set(configs) == set(RECIPES)
    params = {n: recipe_class(n).make_params(c.recipe) for n, c in configs.items()}
    a = params['affinity3d']
    assert (a.alpha, a.gamma, a.knowledge_transfer) == (2.0, 0.05, True)
    aug = configs['affinity3d'].augment
    assert (aug['translation'], aug['scale'], aug['keep_ratio']) == (0.5, [0.95, 1.05], 0.7)
    p = configs['pop3d']
    assert params['pop3d'].lam == 1.0
    assert (p.optim.type, p.optim.lr) == ('adam', 2e-4)
    assert (p.schedule.type, p.schedule.min_lr, p.schedule.warmup_steps, p.schedule.warmup_start_lr) == \
        ('cosine', 1e-6, 500, 1e-5)
    c = configs['cns']
    assert (c.optim.lr, params['cns'].latent_dim) == (0.1, 64)
    s = configs['scannet200']
    assert [ph.name for ph in s.phases] == ['pretrain', 'finetune']
    assert (params['scannet200'].t_pos, params['scannet200'].t_neg, params['scannet200'].num_negatives,
            params['scannet200'].gamma) == (0.0, 0.6, 3, 2.0)
    assert s.phases[0].schedule['milestones'] == [150, 250] and s.schedule.gamma == 0.3
    assert s.phases[1].recipe == {'stage': 'finetune', 'copy_paste': True}
    u = configs['unscene3d']
    assert [ph.action for ph in u.phases] == [None, 'mask_addition', 'mask_addition', 'mask_addition']
    assert params['unscene3d'].drop_loss and params['unscene3d'].tau_drop == 0.01
    assert all(cfg.student.get('embed_dim') == 'auto' for cfg in configs.values())


def test_yaml_anchors_are_refused(tmp_path):
    (tmp_path / 'bomb.yaml').write_text('a: &x [1, 2]\nb: *x\n')
    with pytest.raises(ConfigError, match='anchor'):
        load_yaml_tree(tmp_path / 'bomb.yaml')
