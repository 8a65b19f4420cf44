"""The five recipes on the real students: terms, phases, supported students, self-training state."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from training.data import open_source
from training.engine.checks import StopAfter
from training.engine.config import config_from_tree
from training.engine.hooks import CheckpointHook
from training.engine.trainer import Trainer
from training.recipes import RecipeError
from training.recipes.scannet200 import CopyPaste, instance_bank
from training.augment import CopyPasteConfig

SIM3 = 'sim:frames=4,beams=8,azimuth=128,image=32x96,embed_dim=16,cameras=3'


def _fit(tree, data, out, **kw):
    trainer = Trainer(config_from_tree(tree), open_source(data), out, log_to_stdout=False, **kw)
    trainer.fit()
    return trainer


@pytest.mark.parametrize('recipe, arch, extra, terms', [
    ('affinity3d', 'range_unet', ['recipe.image_stages=[0, 1]'], {'lovasz', 'ce', 'kt_kl', 'fused_ce'}),
    ('affinity3d', 'range_unet', ['recipe.knowledge_transfer=false'], {'lovasz', 'ce'}),
    ('pop3d', 'sparse_unet', [],
     {'occupancy', 'occupancy/ce', 'occupancy/lovasz', 'feature', 'point_feature'}),
    ('cns', 'range_unet', ['recipe.backbone_2d=mobilenet_v3_large'],
     {'ce_3d', 'ce_2d', 'prediction_consistency', 'latent_consistency', 'latent_consistency/2d',
      'latent_consistency/3d'}),
])
def test_single_phase_recipes_train_their_terms(tmp_path, tiny_tree, sim, recipe, arch, extra, terms):
    trainer = _fit(tiny_tree(recipe, arch, 2, *extra), sim, tmp_path)
    last = trainer.history[-1]
    assert set(last.terms) == terms
    assert all(math.isfinite(v) for v in last.terms.values()) and last.loss > 0
    names = {n for n, _ in trainer.recipe.trainable_modules()}
    expected = {'affinity3d': {'student', 'kt_branch'} if 'kt_kl' in terms else {'student'},
                'pop3d': {'student'}, 'cns': {'student', 'net2d', 'latents'}}[recipe]
    assert names == expected


def test_scannet200_pretrains_contrastively_then_finetunes_with_focal_and_copy_paste(tmp_path, tiny_tree):
    tree = tiny_tree('scannet200', 'sparse_unet', 2, 'recipe.bank_min_points=3',
                     phases=[{'name': 'pretrain', 'steps': 2, 'recipe': {'stage': 'pretrain'}},
                             {'name': 'finetune', 'steps': 2,
                              'recipe': {'stage': 'finetune', 'copy_paste': True}}])
    trainer = _fit(tree, SIM3, tmp_path)
    contrastive = {'contrastive', 'contrastive/pos', 'contrastive/neg'}
    assert [set(h.terms) for h in trainer.history] == [contrastive] * 2 + [{'focal'}] * 2
    assert trainer.recipe.bank, 'no tail-class instance in the bank'
    tail = set(trainer.recipe.splits['tail'])
    assert {b.label for b in trainer.recipe.bank} <= tail
    assert 'rare-instance bank of' in (tmp_path / 'train.log').read_text()


def test_scene_recipes_refuse_the_range_student_with_the_reason(tmp_path, tiny_tree, sim):
    for recipe in ('scannet200', 'unscene3d'):
        with pytest.raises(RecipeError, match='scene clouds'):
            Trainer(config_from_tree(tiny_tree(recipe, 'range_unet', 1)), open_source(sim), tmp_path / recipe,
                    log_to_stdout=False)
    trainer = _fit(tiny_tree('unscene3d', 'range_unet', 1, 'recipe.allow_range_student=true'), sim,
                   tmp_path / 'allowed')
    assert trainer.student_config.arch == 'range_unet'


def test_unscene3d_cycles_add_masks_that_survive_a_resume(tmp_path, tiny_tree, sim, sim_val):
    phases = [{'name': 'c1', 'steps': 3}, {'name': 'c2', 'steps': 3, 'action': 'mask_addition'}]
    tree = tiny_tree('unscene3d', 'sparse_unet', 1, 'recipe.min_score=0.0', 'recipe.min_size=2',
                     'train.checkpoint_every=4', 'recipe.eval_min_region_size=5', phases=phases)
    full = _fit(tree, sim, tmp_path / 'full', val_set=open_source(sim_val))
    assert full.recipe.cycles_done == 1 and full.recipe.added
    assert set(full.history[-1].terms) == {'instance', 'instance/mask_bce', 'instance/mask_dice',
                                           'instance/objectness'}
    assert full.validations[-1]['instances']['num_gt'] > 0
    first = Trainer(config_from_tree(tree), open_source(sim), tmp_path / 'killed', log_to_stdout=False)
    first.hooks = [CheckpointHook(), StopAfter(4)]
    with pytest.raises(KeyboardInterrupt):
        first.fit()
    resumed = Trainer(config_from_tree(tree), open_source(sim), tmp_path / 'killed', resume=True,
                      log_to_stdout=False)
    assert resumed.recipe.cycles_done == 1
    assert sorted(resumed.recipe.added) == sorted(full.recipe.added)
    assert all(torch.equal(resumed.recipe.added[i], full.recipe.added[i]) for i in full.recipe.added)
    resumed.fit()
    assert [h.loss for h in resumed.history] == pytest.approx([h.loss for h in full.history[4:]], rel=1e-6)


def test_copy_paste_places_tail_instances_on_the_floor_without_camera_data():
    data = open_source(SIM3)
    road = data.info.class_names.index('road')
    tail = [data.info.class_names.index('car')]
    bank = instance_bank(data, tail, per_class=3, min_points=3)
    assert bank and all(b.label == tail[0] for b in bank)
    sample = data[1]
    out = CopyPaste(bank, tail, [road], CopyPasteConfig(num_instances=2))(sample, np.random.default_rng(0))
    k = out.num_points - sample.num_points
    assert k > 0
    assert torch.equal(out.points[:sample.num_points], sample.points)
    assert set(out.labels[-k:].tolist()) <= set(tail) and not bool(out.visible[-k:].any())
    assert bool((out.image_index[-k:] == -1).all()) and bool((out.regions[-k:] == -1).all())
    assert out.pseudo_masks.shape[1] == out.num_points and not bool(out.pseudo_masks[:, -k:].any())
    assert int(out.instances[-k:].min()) > int(sample.instances.max())       # new instance ids
