"""bench/train_ablations.py: every ablation is a valid config override; the table compares with the paper."""
from __future__ import annotations

import importlib.util
import shlex
from pathlib import Path

import pytest

from training.engine.config import load_config
from training.recipes import recipe_class

_spec = importlib.util.spec_from_file_location(
    'train_ablations', Path(__file__).resolve().parents[2] / 'bench' / 'train_ablations.py')
ablations = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ablations)


@pytest.mark.parametrize('recipe', sorted(ablations.ABLATIONS))
def test_every_ablation_run_is_a_valid_config(recipe, tmp_path):
    user = ['train.batch_size=1']
    for name, overrides, *_ in ablations.ABLATIONS[recipe]:
        resolved = ablations.resolve(recipe, overrides, user)
        cmd = ablations.command(recipe, 'sim:frames=4', None, tmp_path / name, user + resolved, 2)
        assert cmd[1:5] == ['-m', 'torch.distributed.run', '--nproc-per-node', '2']
        sets = [cmd[i + 1] for i, c in enumerate(cmd) if c == '--set']
        config = load_config(recipe, sets)
        recipe_class(recipe).make_params(config.recipe)
        for phase in config.phases:
            recipe_class(recipe).make_params({**config.recipe, **phase.recipe})
        assert config.train.batch_size == 1, shlex.join(cmd)
    one = ablations.resolve('unscene3d', [ablations.FIRST_PHASE_ONLY], ['phases.0.epochs=3'])
    assert [p.name for p in load_config('unscene3d', one + ['phases.0.epochs=3']).phases] == ['cycle1']


def test_table_reports_the_difference_beside_the_paper_direction():
    def summary(kt_visible: float) -> dict:
        return {'validation': {'student': {'miou': 0.5}, 'student_visible': {'miou': kt_visible},
                               'teacher': {'miou': 0.4}}}
    out = ablations.table('affinity3d', {'full': summary(0.6), 'no_knowledge_transfer': summary(0.55),
                                         'no_lovasz': None})
    kt = out['ablations'][0]
    assert kt['full_minus_ablated'] == pytest.approx(0.05) and kt['same_direction'] is True
    assert out['ablations'][1]['same_direction'] is None                       # a run that did not finish
    versus = out['student_vs_teacher']
    assert versus['student_miou'] == 0.5 and versus['teacher_miou'] == 0.4
