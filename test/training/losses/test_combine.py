"""The weighted-sum combinator: weights from config, named terms, NaN check naming the term, recipes."""
from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from training.losses import recipes
from training.losses.combine import LossSpec, NonFiniteLossError, WeightedSumLoss
from training.losses.lovasz import lovasz_softmax

torch.set_num_threads(1)


def _batch(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {'logits_3d': torch.randn(8, 3, generator=g, requires_grad=True),
            'labels': torch.tensor([0, 1, 2, 0, 1, 2, -1, 0])}


def test_total_is_the_weighted_sum_and_terms_are_logged_unweighted():
    crit = WeightedSumLoss([
        {'name': 'lovasz', 'type': 'lovasz_softmax', 'weight': 2.0,
         'inputs': {'logits': 'logits_3d', 'labels': 'labels'}},
        {'name': 'ce', 'type': 'cross_entropy', 'weight': 0.5, 'inputs': {'logits': 'logits_3d'}},
    ])
    b = _batch()
    out = crit(b)
    lov = lovasz_softmax(torch.softmax(b['logits_3d'], 1), b['labels'])
    ce = F.cross_entropy(b['logits_3d'], b['labels'], ignore_index=-1)
    torch.testing.assert_close(out.total, 2.0 * lov + 0.5 * ce)
    torch.testing.assert_close(out.terms['lovasz'], lov.detach())
    torch.testing.assert_close(out.terms['ce'], ce.detach())
    assert out.weights == {'lovasz': 2.0, 'ce': 0.5}
    assert set(out.scalars()) == {'loss', 'lovasz', 'ce'}
    out.total.backward()
    assert bool(torch.isfinite(b['logits_3d'].grad).all())


def test_nan_names_the_term():
    crit = WeightedSumLoss([LossSpec('ce', 'cross_entropy'), LossSpec('lov', 'lovasz_softmax', 2.0)])
    b = {'logits': torch.randn(4, 3), 'labels': torch.tensor([0, 1, 2, 0])}
    b['logits'][1, 0] = float('nan')
    with pytest.raises(NonFiniteLossError, match="'ce'") as info:
        crit(b)
    assert info.value.term == 'ce'


def test_subterms_are_logged_and_zero_weight_terms_skipped():
    crit = WeightedSumLoss(recipes.pop3d_specs(lam=0.0))
    g = torch.Generator().manual_seed(1)
    batch = {'occupancy_logits': torch.randn(2, 2, 2, 2, generator=g),
             'occupancy_target': torch.rand(2, 2, 2, generator=g) > 0.5}
    out = crit(batch)                      # the feature term (λ = 0) needs no batch keys: it is skipped
    assert set(out.terms) == {'occupancy', 'occupancy/ce', 'occupancy/lovasz'}
    parts = out.terms['occupancy/ce'] + out.terms['occupancy/lovasz']
    torch.testing.assert_close(out.terms['occupancy'], parts)


def test_config_errors_are_named():
    with pytest.raises(ValueError, match="unknown type 'l3'"):
        WeightedSumLoss([{'name': 'x', 'type': 'l3'}])
    with pytest.raises(ValueError, match="'x'.*bad params"):
        WeightedSumLoss([{'name': 'x', 'type': 'focal', 'params': {'gama': 2}}])
    with pytest.raises(ValueError, match='no argument'):
        WeightedSumLoss([{'name': 'x', 'type': 'focal', 'inputs': {'logit': 'a'}}])
    with pytest.raises(ValueError, match='duplicate'):
        WeightedSumLoss([{'name': 'x', 'type': 'focal'}, {'name': 'x', 'type': 'cross_entropy'}])
    with pytest.raises(ValueError, match='weight'):
        WeightedSumLoss([{'name': 'x', 'type': 'focal', 'weight': -1}])
    crit = WeightedSumLoss([{'name': 'x', 'type': 'focal'}])
    with pytest.raises(KeyError, match="batch key 'labels'"):
        crit({'logits': torch.randn(2, 2)})


def test_affinity3d_recipe_runs_and_weighs_alpha_and_gamma():
    specs = recipes.affinity3d_specs(class_counts=[10, 5, 1])
    assert {s.name: s.weight for s in specs} == {'lovasz': 2.0, 'ce': 1.0, 'kt_kl': 0.05, 'fused_ce': 1.0}
    crit = WeightedSumLoss(specs)
    g = torch.Generator().manual_seed(2)
    vis = torch.tensor([True, False, True, True, False, True])
    labels = torch.tensor([0, 1, 2, 0, 1, -1])
    batch = {'logits_3d': torch.randn(6, 3, generator=g), 'labels': labels,
             'kt_logits_3d': [torch.randn(6, 3, generator=g)],
             'kt_logits_fused': [torch.randn(6, 3, generator=g)],
             'visible': vis, 'labels_visible': torch.where(vis, labels, torch.full_like(labels, -1))}
    out = crit(batch)
    expected = sum(out.weights[k] * out.terms[k] for k in out.weights)
    torch.testing.assert_close(out.total, expected)


@pytest.mark.parametrize('factory', [
    recipes.cns_specs, recipes.scannet200_pretrain_specs, recipes.unscene3d_specs,
    lambda: recipes.scannet200_finetune_specs([5, 3, 2], direction='inverse')])
def test_recipe_specs_build(factory):
    crit = WeightedSumLoss(factory())
    assert len(crit.terms) >= 1
