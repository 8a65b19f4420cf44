"""DistributedDataParallel: 2 gloo ranks with half the per-rank batch train exactly like 1 rank."""
from __future__ import annotations

import pytest

from training.engine.checks import ddp_losses


def test_two_gloo_ranks_with_half_the_batch_give_the_losses_of_one_rank(tmp_path, tiny_tree, sim, sim_val):
    # point augmentation on: each frame's augmentation must not depend on which rank reads it
    tree = tiny_tree('pop3d', 'range_unet', 4, 'augment.points=true', 'train.checkpoint_every=2')
    one = ddp_losses(tree, sim, 1, tmp_path / 'one', batch_size=2)
    two = ddp_losses(tree, sim, 2, tmp_path / 'two', batch_size=1, val=sim_val)   # evaluation hooks too
    assert len(one) == len(two) == 4
    assert [loss for loss, _ in two] == pytest.approx([loss for loss, _ in one], rel=1e-5, abs=1e-6)
    for (_, t1), (_, t2) in zip(one, two):
        assert set(t1) == set(t2) and all(t2[k] == pytest.approx(t1[k], rel=1e-5, abs=1e-6) for k in t1)
    assert len({round(loss, 6) for loss, _ in one}) == 4                 # the steps differ: a real check
    assert (tmp_path / 'two' / 'checkpoints' / 'step_00000004' / 'state.json').is_file()
    assert (tmp_path / 'two' / 'summary.json').is_file() and (tmp_path / 'two' / 'validation.jsonl').is_file()
