"""The training loop: exact resume, NaN stop, refused stores, memory guard, exported student, `ovp train`."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from perception_nodes.cli.main import main as ovp
from training.data import open_source
from training.data.sampler import GlobalBatchPlan
from training.data.synthetic import InMemoryDataset
from training.engine.checks import resume_losses
from training.engine.config import config_from_tree
from training.engine.trainer import NonFiniteLossStop, Trainer, TrainingError


def test_resume_after_a_kill_gives_the_losses_of_an_uninterrupted_run(tmp_path, tiny_tree, sim):
    # pop3d with point augmentation: 4 frames, batch 2 -> 2 steps per epoch; the kill is mid-epoch 2
    tree = tiny_tree('pop3d', 'range_unet', 6, 'augment.points=true')
    full = Trainer(config_from_tree(tree), open_source(sim), tmp_path / 'full', log_to_stdout=False)
    full.fit()
    before, after = resume_losses(tree, sim, tmp_path / 'killed', stop_after=3)
    assert len(before) == 3 and len(after) == 3
    expected = [h.loss for h in full.history]
    assert before + after == pytest.approx(expected, rel=1e-6, abs=1e-7)
    assert len(set(expected)) == 6                       # the losses do change: the check can fail
    w_full = full.recipe.student.state_dict()
    resumed = Trainer(config_from_tree(tree), open_source(sim), tmp_path / 'killed', resume=True,
                      log_to_stdout=False)
    for k, v in resumed.recipe.student.state_dict().items():
        assert torch.allclose(v.float(), w_full[k].float(), atol=1e-6), k
    log = [json.loads(x) for x in (tmp_path / 'killed' / 'log.jsonl').read_text().splitlines()]
    assert [r['step'] for r in log] == [1, 2, 3, 4, 5, 6]                 # nothing logged twice


class _PoisonedFrame(InMemoryDataset):
    """Frame ``poisoned`` carries a NaN teacher feature (a corrupted store row)."""

    poisoned = -1

    def __getitem__(self, index):
        s = self.samples[index]
        if index == self.poisoned:
            bad = s.teacher_features.clone()
            bad[0, 0] = float('nan')
            s = replace(s, teacher_features=bad)
        return s


def test_nan_loss_stops_naming_step_frame_and_term_and_keeps_the_last_good_checkpoint(
        tmp_path, tiny_tree, sim):
    base = open_source(sim)
    data = _PoisonedFrame(base.samples, base.info)
    data.poisoned = GlobalBatchPlan(4, 2, 1, seed=0).rank_batch(0, 0, 1, 0)[0][0]    # in the 2nd batch
    tree = tiny_tree('pop3d', 'range_unet', 8, 'train.checkpoint_every=1')
    trainer = Trainer(config_from_tree(tree), data, tmp_path, log_to_stdout=False)
    with pytest.raises(NonFiniteLossStop) as err:
        trainer.fit()
    e = err.value
    frame = f'sim0:{data.poisoned}'
    assert e.term == 'feature' and e.frames == [frame] and e.step == 2
    assert 'step 2' in str(e) and "'feature'" in str(e) and frame in str(e)
    latest = json.loads((tmp_path / 'checkpoints' / 'latest.json').read_text())
    assert latest['step'] == 1
    assert json.loads((tmp_path / 'error.json').read_text())['term'] == 'feature'
    assert not (tmp_path / 'summary.json').exists()


def test_store_from_another_teacher_is_refused_naming_the_difference(tmp_path, tiny_tree, sim):
    tree = tiny_tree('pop3d', 'range_unet', 2, 'data.expect={teacher.model: ViT-B-16, teacher.kind: clip}')
    with pytest.raises(TrainingError, match="teacher.kind: expected 'clip', store has 'oracle'.*"
                                            "teacher.model: expected 'ViT-B-16', store has "
                                            "'sim-noisy-oracle'"):
        Trainer(config_from_tree(tree), open_source(sim), tmp_path, log_to_stdout=False)


def test_store_without_the_recipes_fields_empty_or_partial_is_refused(tmp_path, tiny_tree, sim):
    tree = config_from_tree(tiny_tree('pop3d', 'range_unet', 2))
    bare = open_source(sim + ',fields=gt_labels')
    with pytest.raises(TrainingError,
                       match=r"needs the store field\(s\) \['teacher_features', 'teacher_index'\]"):
        Trainer(tree, bare, tmp_path / 'a', log_to_stdout=False)
    full = open_source(sim)
    with pytest.raises(TrainingError, match='has no frames'):
        Trainer(tree, InMemoryDataset([], full.info), tmp_path / 'b', log_to_stdout=False)
    partial = InMemoryDataset(full.samples,
                              replace(full.info, complete=False, missing=['bag 3 frames 40-80']))
    with pytest.raises(TrainingError, match='incomplete: bag 3 frames 40-80 missing'):
        Trainer(tree, partial, tmp_path / 'c', log_to_stdout=False)


def test_a_batch_over_the_memory_budget_is_refused_with_the_numbers(tmp_path, tiny_tree, sim):
    tree = tiny_tree('pop3d', 'range_unet', 2, 'limits.memory_bytes=100000')
    trainer = Trainer(config_from_tree(tree), open_source(sim), tmp_path, log_to_stdout=False)
    with pytest.raises(TrainingError, match=r'step 1: a batch of 2 frame\(s\) \(\d+ points\) needs about '
                                            r'[\d.]+ MiB \(.*dense grid.*\) but only 0.1 MiB is available'):
        trainer.fit()
    assert trainer.step == 0


def test_trained_student_carries_vocabulary_and_provenance_and_exports(tmp_path, tiny_tree, sim, sim_val):
    tree = tiny_tree('affinity3d', 'range_unet', 4, 'student.proj_dim=8', 'recipe.image_stages=[0, 1]')
    summary = Trainer(config_from_tree(tree), open_source(sim), tmp_path / 'run',
                      val_set=open_source(sim_val), log_to_stdout=False).fit()
    from perception_nodes.student.checkpoint import load_checkpoint
    from perception_nodes.student.export import read_onnx_metadata
    model, cfg = load_checkpoint(tmp_path / 'run' / 'student')
    assert cfg.vocabulary['classes'] == open_source(sim).info.class_names
    assert cfg.provenance['labels_meaningful'] is True and cfg.provenance['recipe'] == 'affinity3d'
    assert cfg.provenance['store_hash'] == open_source(sim).info.store_hash
    assert not any('encoder' in k or 'branch' in k for k in model.state_dict())   # no image branch
    from perception_nodes.student.model import build_student
    torch.manual_seed(0)                                     # the trainer's init seed: the untrained student
    fresh = build_student(cfg).language.text_projection.weight
    trained = model.language.text_projection.weight
    assert trained.shape == fresh.shape == (8, 16) and not torch.allclose(trained, fresh)   # it was learned
    val = summary['validation']
    assert val['student']['miou'] is not None and val['teacher']['miou'] > 0
    # the pseudo-labels exist only where a camera sees: none on the invisible points, the student's 360
    assert val['teacher_invisible']['miou'] == 0.0 and val['teacher_invisible']['coverage'] == 0.0
    assert val['student_invisible']['coverage'] > 0.9
    names, emb = cfg.trained_text()
    assert names == open_source(sim).info.class_names
    assert torch.equal(emb, open_source(sim).info.text_embeddings.float())
    assert ovp(['export', '--checkpoint', str(tmp_path / 'run' / 'student'), '--onnx',
                str(tmp_path / 's.onnx'), '--max-points', '2048']) == 0
    onnx_cfg, points, projection = read_onnx_metadata(tmp_path / 's.onnx')
    assert onnx_cfg.provenance['run_id'] == summary['run_id'] and points == 2048
    assert onnx_cfg.trained_text()[0] == names and torch.equal(onnx_cfg.trained_text()[1], emb)  # ovp export
    assert projection.shape == (8, 16)
    assert torch.allclose(torch.from_numpy(projection), model.language.text_projection.weight, atol=1e-6)
    for name in ('log.jsonl', 'validation.jsonl', 'summary.json', 'config.yaml', 'run.json'):
        assert (tmp_path / 'run' / name).is_file(), name


def test_random_teacher_store_gives_a_student_whose_labels_are_not_meaningful(tmp_path, tiny_tree, sim):
    data = open_source(sim)
    random_teacher = InMemoryDataset(data.samples, replace(
        data.info, teacher={'kind': 'clip', 'model': 'ViT-B-32', 'pretrained': None, 'random_weights': True}))
    Trainer(config_from_tree(tiny_tree('pop3d', 'range_unet', 1)), random_teacher, tmp_path,
            log_to_stdout=False).fit()
    from perception_nodes.student.checkpoint import load_checkpoint
    _, cfg = load_checkpoint(tmp_path / 'student')
    assert cfg.provenance['labels_meaningful'] is False and 'random weights' in cfg.provenance['note']


def test_ovp_train_cli_trains_and_refuses_to_overwrite_a_run(tmp_path, sim, capsys):
    args = ['train', '--config', 'pop3d', '--data', sim, '--out', str(tmp_path / 'run'), '--no-progress',
            '--set', 'phases=[{name: train, steps: 2}]', '--set', 'data.num_workers=0',
            '--set', 'train.plots=false', '--set', 'train.device=cpu',
            '--set', 'student={preset: deployable, range_height: 16, range_width: 128, widths: [8, 16], '
                     'depths: [1, 1], grid: {lower: [-40, -40, -3], upper: [40, 40, 3], shape: [16, 16, 4]}}']
    assert ovp(args) == 0
    summary = json.loads((tmp_path / 'run' / 'summary.json').read_text())
    assert summary['steps'] == 2 and summary['student']['exportable'] is True
    assert ovp(args) == 2
    assert 'already holds a run' in capsys.readouterr().err
    assert ovp(args + ['--resume']) == 0                              # nothing left to do: finishes again


def test_training_lowers_the_loss_and_lifts_the_student_above_its_untrained_self(
        tmp_path, tiny_tree, sim, sim_val):
    tree = tiny_tree('affinity3d', 'range_unet', 24, 'recipe.knowledge_transfer=false', 'optim.lr=0.01')
    trainer = Trainer(config_from_tree(tree), open_source(sim), tmp_path, val_set=open_source(sim_val),
                      log_to_stdout=False)
    untrained = trainer.validate()['student']['miou']
    trainer.fit()
    losses = [h.loss for h in trainer.history]
    assert sum(losses[-4:]) / 4 < 0.7 * sum(losses[:4]) / 4
    assert trainer.validations[-1]['student']['miou'] > untrained + 0.05


def test_loader_workers_give_the_losses_of_the_main_process(tmp_path, tiny_tree, sim):
    tree = tiny_tree('pop3d', 'range_unet', 2, 'augment.points=true')
    here = Trainer(config_from_tree(tree), open_source(sim), tmp_path / 'a', log_to_stdout=False)
    here.fit()
    tree['data']['num_workers'] = 2
    workers = Trainer(config_from_tree(tree), open_source(sim), tmp_path / 'b', log_to_stdout=False)
    workers.fit()
    assert [h.loss for h in workers.history] == pytest.approx([h.loss for h in here.history], rel=1e-6)
