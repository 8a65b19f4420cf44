"""Lovász-softmax against slow references built from the Jaccard set function itself."""
from __future__ import annotations

import itertools

import pytest
import torch

from training.losses.lovasz import lovasz_grad, lovasz_softmax, lovasz_softmax_logits

torch.set_num_threads(1)


def _jaccard_loss(mistakes: set[int], fg: set[int]) -> float:
    """Δ_J(M) = |M| / |F ∪ M| (Berman et al. Eq. 3 for one class); Δ(∅) = 0."""
    return len(mistakes) / len(fg | mistakes) if mistakes else 0.0


def _ref_by_order(probs: torch.Tensor, labels: torch.Tensor, classes: str = 'present') -> float:
    """Σ_k m_(k) (Δ({(1)..(k)}) - Δ({(1)..(k-1)})) with Δ evaluated on explicit Python sets."""
    losses = []
    for c in range(probs.shape[1]):
        fg = {i for i in range(len(labels)) if int(labels[i]) == c}
        if classes == 'present' and not fg:
            continue
        m = [abs((1.0 if i in fg else 0.0) - float(probs[i, c])) for i in range(len(labels))]
        order = sorted(range(len(m)), key=lambda i: -m[i])
        total, prefix = 0.0, set()
        for i in order:
            before = _jaccard_loss(prefix, fg)
            prefix = prefix | {i}
            total += m[i] * (_jaccard_loss(prefix, fg) - before)
        losses.append(total)
    return sum(losses) / len(losses)


def _ref_by_integral(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """Lovász extension as ∫_0^1 Δ({i : m_i >= t}) dt, summed exactly over the sorted error levels."""
    losses = []
    for c in sorted(set(int(v) for v in labels)):
        fg = {i for i in range(len(labels)) if int(labels[i]) == c}
        m = [abs((1.0 if i in fg else 0.0) - float(probs[i, c])) for i in range(len(labels))]
        levels = sorted(set(m), reverse=True) + [0.0]
        total = 0.0
        for hi, lo in zip(levels[:-1], levels[1:]):
            total += (hi - lo) * _jaccard_loss({i for i in range(len(m)) if m[i] >= hi}, fg)
        losses.append(total)
    return sum(losses) / len(losses)


@pytest.mark.parametrize('seed', range(4))
def test_matches_the_set_function_definitions_on_tiny_cases(seed):
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(torch.randn(7, 3, generator=g, dtype=torch.float64) * 2, dim=1)
    labels = torch.randint(0, 3, (7,), generator=g)
    got = float(lovasz_softmax(probs, labels))
    assert got == pytest.approx(_ref_by_order(probs, labels), abs=1e-12)
    assert got == pytest.approx(_ref_by_integral(probs, labels), abs=1e-12)


def test_classes_all_includes_absent_classes():
    g = torch.Generator().manual_seed(5)
    probs = torch.softmax(torch.randn(6, 4, generator=g, dtype=torch.float64), dim=1)
    labels = torch.tensor([0, 0, 1, 1, 1, 0])          # classes 2 and 3 absent
    got = float(lovasz_softmax(probs, labels, classes='all'))
    assert got == pytest.approx(_ref_by_order(probs, labels, 'all'), abs=1e-12)
    # For an absent class Δ(M) = 1 for every non-empty M, so its term is the largest error.
    present = float(lovasz_softmax(probs, labels, classes='present'))
    expected = (2 * present + float(probs[:, 2].max()) + float(probs[:, 3].max())) / 4
    assert got == pytest.approx(expected, abs=1e-12)


def test_hard_predictions_give_one_minus_miou_and_perfect_gives_zero():
    labels = torch.tensor([0, 0, 1, 1, 2])
    pred = torch.tensor([0, 1, 1, 1, 2])
    onehot = torch.nn.functional.one_hot(pred, 3).double()
    # IoU: class 0 = 1/2, class 1 = 2/3, class 2 = 1/1.
    assert float(lovasz_softmax(onehot, labels)) == pytest.approx(1 - (0.5 + 2 / 3 + 1.0) / 3)
    perfect = torch.nn.functional.one_hot(labels, 3).double()
    assert float(lovasz_softmax(perfect, labels)) == 0.0


def test_lovasz_grad_is_the_jaccard_increment():
    gt = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0])
    fg = {0, 2}
    expected = [_jaccard_loss(set(range(k + 1)), fg) - _jaccard_loss(set(range(k)), fg) for k in range(5)]
    torch.testing.assert_close(lovasz_grad(gt), torch.tensor(expected))


def test_ignored_elements_change_nothing():
    g = torch.Generator().manual_seed(1)
    probs = torch.softmax(torch.randn(8, 3, generator=g), dim=1)
    labels = torch.tensor([0, 1, -1, 2, 1, -1, 0, 2])
    keep = labels != -1
    base = lovasz_softmax(probs, labels)
    torch.testing.assert_close(base, lovasz_softmax(probs[keep], labels[keep]))
    other = probs.clone()
    other[~keep] = torch.tensor([1.0, 0.0, 0.0])
    torch.testing.assert_close(base, lovasz_softmax(other, labels))


def test_all_ignored_is_zero_with_zero_gradient():
    logits = torch.randn(4, 3, requires_grad=True)
    loss = lovasz_softmax_logits(logits, torch.full((4,), -1))
    loss.backward()
    assert float(loss.detach()) == 0.0 and torch.equal(logits.grad, torch.zeros(4, 3))


def test_gradcheck_float64():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(6, 3, generator=g, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 1, 0, -1])
    assert torch.autograd.gradcheck(lambda z: lovasz_softmax_logits(z, labels), (logits,))


def test_dense_grid_shape_and_bad_labels():
    logits = torch.randn(3, 4, 2, 2)
    target = torch.randint(0, 2, (3, 4, 2))
    flat = lovasz_softmax_logits(logits.reshape(-1, 2), target.reshape(-1))
    torch.testing.assert_close(lovasz_softmax_logits(logits, target), flat)
    with pytest.raises(ValueError, match='labels outside'):
        lovasz_softmax(torch.rand(3, 2), torch.tensor([0, 1, 5]))
    with pytest.raises(ValueError, match='do not match'):
        lovasz_softmax(torch.rand(3, 2), torch.tensor([0, 1]))


def test_permutation_invariance():
    g = torch.Generator().manual_seed(3)
    probs = torch.softmax(torch.randn(6, 3, generator=g), dim=1)
    labels = torch.tensor([0, 1, 2, 2, 1, 0])
    base = lovasz_softmax(probs, labels)
    for perm in itertools.islice(itertools.permutations(range(6)), 0, 720, 97):
        idx = torch.tensor(perm)
        torch.testing.assert_close(lovasz_softmax(probs[idx], labels[idx]), base)


def test_half_precision_inputs_are_computed_in_float32():
    # 3000 foreground elements: a float16 cumsum could not even count them exactly (> 2048).
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(5000, 2, generator=g).to(torch.bfloat16)
    labels = (torch.rand(5000, generator=g) < 0.6).long()
    probs = torch.softmax(logits.float(), dim=1)
    got = lovasz_softmax(probs.to(torch.bfloat16), labels)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, lovasz_softmax(probs.to(torch.bfloat16).float(), labels))
