"""Learning-rate schedules (a function of the step) and the global batch plan (disjoint rank shares)."""
from __future__ import annotations

import pytest

from training.data.sampler import GlobalBatchPlan
from training.engine.config import ScheduleConfig
from training.engine.optim import lr_factor


def test_pop3d_schedule_warms_up_from_1e5_and_decays_to_1e6():
    cfg = ScheduleConfig(type='cosine', warmup_steps=500, warmup_start_lr=1e-5, min_lr=1e-6)
    lr = [2e-4 * lr_factor(s, 10_000, 100, 2e-4, cfg) for s in (0, 250, 500, 5250, 10_000)]
    assert lr[0] == pytest.approx(1e-5)
    assert lr[1] == pytest.approx(1e-5 + (2e-4 - 1e-5) / 2)
    assert lr[2] == pytest.approx(2e-4)
    assert lr[3] == pytest.approx((2e-4 + 1e-6) / 2)
    assert lr[4] == pytest.approx(1e-6)


def test_multistep_in_epochs():
    cfg = ScheduleConfig(type='multistep', milestones=[150, 250], gamma=0.3, milestone_unit='epoch')
    f = [lr_factor(e * 10, 4000, 10, 0.05, cfg) for e in (149, 150, 249, 250, 399)]
    assert f == pytest.approx([1.0, 0.3, 0.3, 0.09, 0.09])


def test_rank_shares_are_disjoint_and_independent_of_the_world_size():
    one = GlobalBatchPlan(10, batch_size=4, world_size=1, seed=3)
    two = GlobalBatchPlan(10, batch_size=2, world_size=2, seed=3)
    assert one.steps_per_epoch == two.steps_per_epoch == 2        # the last 2 frames are dropped
    for epoch in range(3):
        for b in range(2):
            whole = one.rank_batch(0, epoch, b, 0)
            r0, r1 = two.rank_batch(0, epoch, b, 0), two.rank_batch(0, epoch, b, 1)
            assert not {i for i, _ in r0} & {i for i, _ in r1}
            assert r0 + r1 == whole                                 # same frames, same augmentation keys
    assert one.order(0, 0).tolist() != one.order(0, 1).tolist()     # reshuffled every epoch
    with pytest.raises(ValueError, match='larger than the data set'):
        GlobalBatchPlan(3, batch_size=2, world_size=2, seed=0)
