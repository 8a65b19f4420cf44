"""Checkpoints without pickle: optimizer / RNG round trips, atomic latest pointer, pruning."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from training.engine import checkpoint as ckpt


def _adam_after_steps(steps: int) -> tuple[torch.nn.Linear, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam([{'params': [model.weight], 'lr': 0.1, 'name': 'w'},
                            {'params': [model.bias], 'lr': 0.01, 'name': 'b'}], betas=(0.8, 0.99))
    for _ in range(steps):
        model(torch.ones(4, 3)).pow(2).sum().backward()
        opt.step()
        opt.zero_grad()
    return model, opt


def test_optimizer_round_trip_continues_exactly(tmp_path):
    model, opt = _adam_after_steps(3)
    tensors, meta = ckpt.optimizer_to_flat(opt)
    json.dumps(meta)                                               # JSON-able, no pickle
    state = {f'model.{k}': v for k, v in model.state_dict().items()}
    ckpt.write_checkpoint(tmp_path, 3, {**tensors, **state},
                          ckpt.TrainState(3, {'phase': 0, 'phase_step': 3}, 3, 'h', 1, optimizer=meta),
                          lambda folder: folder.mkdir(parents=True))
    loaded, st = ckpt.read_checkpoint(ckpt.latest_checkpoint(tmp_path))
    model2, opt2 = _adam_after_steps(0)
    model2.load_state_dict({k[6:]: v for k, v in loaded.items() if k.startswith('model.')})
    ckpt.optimizer_from_flat(opt2, loaded, st.optimizer)
    assert opt2.param_groups[0]['betas'] == (0.8, 0.99) and opt2.param_groups[1]['name'] == 'b'
    for m, o in ((model, opt), (model2, opt2)):
        m(torch.ones(4, 3)).pow(2).sum().backward()
        o.step()
    assert torch.equal(model.weight, model2.weight) and torch.equal(model.bias, model2.bias)


def test_optimizer_of_another_layout_is_refused():
    _, opt = _adam_after_steps(1)
    tensors, meta = ckpt.optimizer_to_flat(opt)
    other = torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))])
    with pytest.raises(ckpt.CheckpointError, match='another parameter layout'):
        ckpt.optimizer_from_flat(other, tensors, meta)


def test_rng_states_round_trip():
    tensors, state = ckpt.rng_state()
    state = json.loads(json.dumps(state))
    expected = (torch.rand(3), np.random.rand(3), random.random())
    ckpt.set_rng_state(tensors, state)
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1])
    assert expected[2] == again[2]


def test_latest_pointer_moves_only_after_a_complete_write_and_old_ones_are_pruned(tmp_path):
    def state(step: int) -> ckpt.TrainState:
        return ckpt.TrainState(step, {'phase': 0, 'phase_step': step}, step, 'h', 1)

    for step in (1, 2, 3):
        ckpt.write_checkpoint(tmp_path, step, {'model.w': torch.full((2,), float(step))}, state(step),
                              lambda folder: folder.mkdir(parents=True), keep=2)
    assert sorted(p.name for p in tmp_path.glob('step_*')) == ['step_00000002', 'step_00000003']

    def broken(folder):
        raise OSError('disk full')
    with pytest.raises(OSError):
        ckpt.write_checkpoint(tmp_path, 4, {'model.w': torch.zeros(2)}, state(4), broken)
    latest = ckpt.latest_checkpoint(tmp_path)
    assert latest.name == 'step_00000003'
    assert not [p for p in tmp_path.iterdir() if p.name.startswith('.')]        # no temporary left
    tensors, st = ckpt.read_checkpoint(latest)
    assert st.step == 3 and tensors['model.w'].tolist() == [3.0, 3.0]


def test_a_pickle_in_place_of_the_state_is_refused_not_loaded(tmp_path):
    ckpt.write_checkpoint(tmp_path, 1, {'model.w': torch.zeros(1)},
                          ckpt.TrainState(1, {'phase': 0, 'phase_step': 1}, 1, 'h', 1),
                          lambda folder: folder.mkdir(parents=True))
    folder = ckpt.latest_checkpoint(tmp_path)
    import pickle
    (folder / 'state.safetensors').write_bytes(pickle.dumps({'w': 1}))
    with pytest.raises(ckpt.CheckpointError, match='not a valid safetensors file'):
        ckpt.read_checkpoint(folder)
