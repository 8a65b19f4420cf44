from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from perception_nodes.student.heads import (LinearSoftplusLinear, PointLanguageHead, block_stack, softplus,
                                            unit)


def test_softplus_matches_torch_including_extremes():
    x = torch.cat([torch.linspace(-50, 50, 1001), torch.tensor([-1e4, 1e4, 0.0])])
    torch.testing.assert_close(softplus(x), F.softplus(x), rtol=1e-6, atol=1e-6)
    assert softplus(torch.tensor([0.0])).item() == pytest.approx(math.log(2.0))


def test_unit_rows_have_norm_one():
    x = torch.randn(50, 7) * 10
    torch.testing.assert_close(unit(x).norm(dim=1), torch.ones(50))
    torch.testing.assert_close(unit(x), F.normalize(x, dim=1))


def test_block_stack_is_n_linear_softplus_linear_blocks():
    """POP-3D Eq. 2-3: N blocks, two logits out for occupancy."""
    stack = block_stack(9, 16, 2, blocks=3)
    blocks = [m for m in stack if isinstance(m, LinearSoftplusLinear)]
    assert len(blocks) == 3
    assert blocks[0].fc1.in_features == 9 and blocks[-1].fc2.out_features == 2
    x = torch.randn(5, 9)
    # Slow reference: the same algebra written out.
    h = x
    for i, b in enumerate(blocks):
        h = b.fc2(F.softplus(b.fc1(h)))
        if i < 2:
            h = F.softplus(h)
    torch.testing.assert_close(stack(x), h, rtol=1e-5, atol=1e-5)


def test_projection_maps_text_into_the_k_dim_space(tiny):
    cfg = tiny.config(proj_dim=8)
    head = PointLanguageHead(16, cfg)
    text = torch.randn(3, cfg.embed_dim)
    projected = head.project_text(text)
    assert projected.shape == (3, 8)
    torch.testing.assert_close(projected, F.normalize(text @ head.text_projection.weight.T, dim=1))
    assert head(torch.randn(10, 16)).shape == (10, 8)
    plain = PointLanguageHead(16, tiny.config())
    torch.testing.assert_close(plain.project_text(text), F.normalize(text, dim=1))
