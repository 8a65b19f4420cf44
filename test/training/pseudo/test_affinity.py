"""Affinity3D Eq. 5-8 and the temporal queue: hand-computed answers and properties."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from training.pseudo.affinity import (AffinityConfig, AffinityQueue, affinity_matrix, propagate,
                                      transition_matrix)


def test_known_answer_two_instances():
    # F = [e1, (e1 + e2)/sqrt2]: cosines [[1, c], [c, 1]] with c = 1/sqrt2
    f = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    c = 1 / math.sqrt(2)
    s = 2.0
    w = affinity_matrix(f, s)
    e1, ec = math.exp(s), math.exp(s * c)
    p, q = e1 / (e1 + ec), ec / (e1 + ec)
    np.testing.assert_allclose(w.numpy(), [[p, q], [q, p]], rtol=1e-12)
    t = transition_matrix(f, s, beta=2.0)
    a, b = (e1 / (e1 + ec)) ** 2, (ec / (e1 + ec)) ** 2     # W^2 row 0, renormalised (Eq. 7)
    np.testing.assert_allclose(t.numpy(), [[a / (a + b), b / (a + b)], [b / (a + b), a / (a + b)]],
                               rtol=1e-12)
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    y2 = propagate(f, y, s, 2.0)                             # Eq. 8: T · Y = T here
    np.testing.assert_allclose(y2.numpy(), t.numpy(), rtol=1e-6)


def test_three_instances_hand_computed():
    # two identical features and an orthogonal one, scale ln(2): exp(s * 1) = 2, exp(s * 0) = 1
    f = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    s = math.log(2.0)
    w = affinity_matrix(f, s).numpy()
    np.testing.assert_allclose(w[0], [2 / 5, 2 / 5, 1 / 5])
    np.testing.assert_allclose(w[2], [1 / 4, 1 / 4, 2 / 4])
    t = transition_matrix(f, s, 2.0).numpy()
    np.testing.assert_allclose(t[0], [4 / 9, 4 / 9, 1 / 9])    # (2/5)^2, (2/5)^2, (1/5)^2 renormalised
    np.testing.assert_allclose(t[2], [1 / 6, 1 / 6, 4 / 6])
    y = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]])
    np.testing.assert_allclose(propagate(f, y, s).numpy(), t @ y.numpy(), rtol=1e-6)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 12), st.integers(2, 8), st.floats(0.1, 50.0), st.floats(0.5, 4.0),
       st.integers(0, 10_000))
def test_rows_sum_to_one_and_refined_is_a_distribution(n, c, scale, beta, seed):
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(n, c, generator=g)
    t = transition_matrix(f, scale, beta)
    assert (t >= 0).all()
    np.testing.assert_allclose(t.sum(dim=1).numpy(), 1.0, atol=1e-12)
    y = torch.softmax(torch.randn(n, 5, generator=g), dim=1)
    y2 = propagate(f, y, scale, beta)
    np.testing.assert_allclose(y2.sum(dim=1).numpy(), 1.0, atol=1e-5)


def test_large_beta_or_scale_concentrates_on_self():
    g = torch.Generator().manual_seed(0)
    f = torch.randn(6, 8, generator=g)
    for beta in (1.0, 4.0, 64.0):
        t = transition_matrix(f, 5.0, beta)
        if beta == 64.0:
            np.testing.assert_allclose(t.numpy(), np.eye(6), atol=1e-6)
    diag = [float(transition_matrix(f, 5.0, b).diagonal().min()) for b in (1.0, 2.0, 4.0, 8.0)]
    assert diag == sorted(diag) and diag[-1] > diag[0]          # monotone in beta
    np.testing.assert_allclose(transition_matrix(f, 1e4, 2.0).numpy(), np.eye(6), atol=1e-9)
    y = torch.softmax(torch.randn(6, 3, generator=g), dim=1)
    np.testing.assert_allclose(propagate(f, y, 1e4).numpy(), y.numpy(), atol=1e-6)   # no change


def test_identical_features_give_identical_rows():
    g = torch.Generator().manual_seed(1)
    f = torch.randn(5, 4, generator=g)
    f[3] = f[1] * 2.5                                     # same direction (features are normalised)
    y = torch.softmax(torch.randn(5, 3, generator=g), dim=1)
    y2 = propagate(f, y, 7.0)
    np.testing.assert_allclose(y2[1].numpy(), y2[3].numpy(), rtol=1e-6)


def test_confused_instance_is_corrected_by_similar_instances():
    # five instances of one object class; one crop is confused (initial argmax class 1); features similar
    g = torch.Generator().manual_seed(2)
    base = torch.randn(8, generator=g)
    f = base + 0.1 * torch.randn(5, 8, generator=g)
    y = torch.tensor([[0.9, 0.1]] * 4 + [[0.3, 0.7]])
    assert y.argmax(1).tolist() == [0, 0, 0, 0, 1]
    refined = propagate(f, y, scale=10.0)
    assert refined.argmax(1).tolist() == [0] * 5
    assert propagate(f, y, scale=1e4).argmax(1).tolist() == [0, 0, 0, 0, 1]   # no propagation at huge scale


def test_queue_pops_when_full_and_flushes():
    cfg = AffinityConfig(scale=10.0, queue_size=5)
    q = AffinityQueue(cfg)
    g = torch.Generator().manual_seed(3)
    batches = [(torch.randn(n, 4, generator=g), torch.softmax(torch.randn(n, 3, generator=g), 1))
               for n in (2, 2, 3, 1)]
    assert q.push('a', *batches[0]) == [] and q.num_instances == 2
    assert q.push('b', *batches[1]) == [] and q.num_instances == 4
    out = q.push('c', *batches[2])                       # 7 >= 5: all three popped, refined jointly
    assert [o.key for o in out] == ['a', 'b', 'c'] and q.num_instances == 0
    feats = torch.cat([b[0] for b in batches[:3]])
    probs = torch.cat([b[1] for b in batches[:3]])
    joint = propagate(feats, probs, 10.0)
    np.testing.assert_allclose(torch.cat([o.refined for o in out]).numpy(), joint.numpy(), rtol=1e-6)
    assert out[2].labels.tolist() == joint[4:].argmax(1).tolist()
    assert q.push('d', *batches[3]) == []
    rest = q.flush()
    assert [o.key for o in rest] == ['d'] and q.flush() == []
    # a single instance refines to itself
    np.testing.assert_allclose(rest[0].refined.numpy(), batches[3][1].numpy(), rtol=1e-6)


def test_queue_disabled_passes_through_and_validates():
    q = AffinityQueue(AffinityConfig(enabled=False, queue_size=100))
    f, y = torch.randn(3, 4), torch.softmax(torch.randn(3, 2), 1)
    out = q.push(0, f, y)
    assert len(out) == 1 and torch.equal(out[0].refined, y) and out[0].labels.tolist() == y.argmax(1).tolist()
    with pytest.raises(ValueError, match='same n'):
        q.push(1, torch.randn(2, 4), torch.randn(3, 2))
    q2 = AffinityQueue(AffinityConfig(queue_size=10))
    q2.push(0, torch.randn(2, 4), torch.softmax(torch.randn(2, 2), 1))
    with pytest.raises(ValueError, match='same feature width'):
        q2.push(1, torch.randn(2, 5), torch.softmax(torch.randn(2, 2), 1))
    with pytest.raises(ValueError):
        AffinityConfig(queue_size=0)
    q3 = AffinityQueue(AffinityConfig(queue_size=1))
    assert q3.push('e', torch.zeros(0, 4), torch.zeros(0, 2)) == []     # a frame without instances waits
    out = q3.push('f', torch.randn(1, 4), torch.softmax(torch.randn(1, 2), 1))
    assert [o.key for o in out] == ['e', 'f'] and out[0].labels.numel() == 0
