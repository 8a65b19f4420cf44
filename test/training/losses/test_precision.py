"""AMP outputs (bfloat16 / float16) are upcast: every loss computes in float32 on the same values."""
from __future__ import annotations

import pytest
import torch

from training.losses.consistency import latent_consistency, prediction_consistency
from training.losses.instance import instance_losses
from training.losses.knowledge_transfer import visible_kl
from training.losses.language import class_balanced_focal, text_anchored_contrastive
from training.losses.occupancy import feature_mse, occupancy_loss
from training.losses.segmentation import weighted_cross_entropy

torch.set_num_threads(1)
G = torch.Generator().manual_seed(0)
A, B = torch.randn(12, 4, generator=G), torch.randn(12, 4, generator=G)
LAB = torch.randint(0, 4, (12,), generator=G)
VIS = torch.rand(12, generator=G) > 0.3
REG = torch.randint(-1, 3, (12,), generator=G)
NEG = (LAB[:, None] + torch.randint(1, 4, (12, 3), generator=G)) % 4
MASKS = torch.rand(3, 12, generator=G) > 0.5

CASES = {
    'ce': lambda a, b: weighted_cross_entropy(a, LAB, torch.tensor([1.0, 2.0, 0.5, 1.5])),
    'kl': lambda a, b: visible_kl(a, b, VIS),
    'mse': lambda a, b: feature_mse(a, b, VIS),
    'occupancy': lambda a, b: occupancy_loss(a[:, :2].reshape(3, 4, 2), LAB[:12].reshape(3, 4) % 2)['total'],
    'focal': lambda a, b: class_balanced_focal(a, LAB, torch.tensor([0.1, 0.2, 0.3, 0.4])),
    'contrastive': lambda a, b: text_anchored_contrastive(a, LAB, b[:4], negatives=NEG)['total'],
    'prediction': lambda a, b: prediction_consistency(a, b),
    'latent': lambda a, b: latent_consistency(a, REG, b, REG, a[:3])['total'],
    'instance': lambda a, b: instance_losses(a[:, :3].T, b[:3, 0], MASKS[:2]).terms['total'],
}


@pytest.mark.parametrize('name', sorted(CASES))
@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_low_precision_inputs_give_the_float32_result(name, dtype):
    a, b = A.to(dtype), B.to(dtype)
    got = CASES[name](a, b)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, CASES[name](a.float(), b.float()))
