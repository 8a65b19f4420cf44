"""Feature sampling at image points against a slow per-point reference."""
from __future__ import annotations

import math

import pytest
import torch

from perception_nodes.geometry.sampling import sample_features


def _reference(fmap: torch.Tensor, uv: torch.Tensor, image_size, mode: str) -> torch.Tensor:
    """Per-point loop: feature (i, j) is centred at image ((j + 0.5) W/w - 0.5, (i + 0.5) H/h - 0.5)."""
    c, h, w = fmap.shape
    H, W = image_size
    out = torch.zeros(len(uv), c, dtype=torch.float64)
    for n, (u, v) in enumerate(uv.tolist()):
        if mode == 'nearest':
            j = min(max(math.floor((u + 0.5) * w / W), 0), w - 1)
            i = min(max(math.floor((v + 0.5) * h / H), 0), h - 1)
            out[n] = fmap[:, i, j].double()
            continue
        x = min(max((u + 0.5) * w / W - 0.5, 0.0), w - 1.0)   # feature-map coordinates, border-clamped
        y = min(max((v + 0.5) * h / H - 0.5, 0.0), h - 1.0)
        x0, y0 = math.floor(x), math.floor(y)
        x1, y1 = min(x0 + 1, w - 1), min(y0 + 1, h - 1)
        ax, ay = x - x0, y - y0
        out[n] = ((1 - ax) * (1 - ay) * fmap[:, y0, x0].double() + ax * (1 - ay) * fmap[:, y0, x1].double()
                  + (1 - ax) * ay * fmap[:, y1, x0].double() + ax * ay * fmap[:, y1, x1].double())
    return out


@pytest.mark.parametrize('mode', ['bilinear', 'nearest'])
@pytest.mark.parametrize('image_size, map_size',
                         [((375, 1242), (24, 78)), ((100, 64), (7, 4)), ((32, 32), (1, 1))])
def test_matches_loop_reference(mode, image_size, map_size):
    g = torch.Generator().manual_seed(0)
    fmap = torch.randn(5, *map_size, generator=g, dtype=torch.float64)
    H, W = image_size
    uv = torch.rand(400, 2, generator=g, dtype=torch.float64) * torch.tensor([W + 4.0, H + 4.0]) - 2.5
    got = sample_features(fmap, uv, image_size, mode=mode)
    assert got.shape == (400, 5)
    torch.testing.assert_close(got, _reference(fmap, uv, image_size, mode), atol=1e-9, rtol=1e-9)


def test_known_values_and_cell_centres():
    # 2x2 map over a 4x4 image: cell centres at u, v = 0.5 and 2.5
    fmap = torch.tensor([[[0.0, 1.0], [2.0, 3.0]]])
    uv = torch.tensor([[0.5, 0.5], [2.5, 2.5], [1.5, 0.5], [1.5, 1.5], [-0.5, -0.5], [1.49, 1.51]])
    bil = sample_features(fmap, uv, (4, 4))[:, 0]
    # the map is x + 2 y in feature-cell coordinates
    torch.testing.assert_close(bil, torch.tensor([0.0, 3.0, 0.5, 1.5, 0.0, 0.495 + 2 * 0.505]))
    near = sample_features(fmap, uv, (4, 4), mode='nearest')[:, 0]
    assert near.tolist() == [0.0, 3.0, 1.0, 3.0, 0.0, 2.0]


def test_batched_and_non_finite():
    g = torch.Generator().manual_seed(1)
    fmaps = torch.randn(3, 4, 6, 8, generator=g)
    uv = torch.rand(3, 50, 2, generator=g) * 60
    uv[1, 7] = float('nan')
    out = sample_features(fmaps, uv, (48, 64))
    assert out.shape == (3, 50, 4)
    for m in range(3):
        single = sample_features(fmaps[m], uv[m], (48, 64))
        torch.testing.assert_close(out[m], single)
    assert (out[1, 7] == 0).all()


def test_bad_input():
    with pytest.raises(ValueError, match='mode'):
        sample_features(torch.zeros(1, 2, 2), torch.zeros(1, 2), (4, 4), mode='cubic')
    with pytest.raises(ValueError, match='image_size'):
        sample_features(torch.zeros(1, 2, 2), torch.zeros(1, 2), (0, 4))
    with pytest.raises(ValueError, match='uv'):
        sample_features(torch.zeros(2, 1, 2, 2), torch.zeros(3, 1, 2), (4, 4))
    assert sample_features(torch.zeros(3, 2, 2), torch.zeros(0, 2), (4, 4)).shape == (0, 3)
