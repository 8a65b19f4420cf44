"""CNS 2D network (DeepLabV3 shape, 512-d per pixel) and the K_f = 64 latent maps."""
from __future__ import annotations

import pytest
import torch

from training.models.cns_2d import CNS2DNet, LatentProjections, pixel_rows, pixels_at

torch.set_num_threads(1)


def test_deeplab_outputs_512_channels_at_input_resolution():
    torch.manual_seed(0)
    net = CNS2DNet()
    out = net(torch.rand(2, 3, 32, 48))
    assert out.shape == (2, 512, 32, 48) and bool(torch.isfinite(out).all())
    with pytest.raises(ValueError, match='backbone'):
        CNS2DNet(backbone='vgg')


def test_latent_maps_are_64_d_and_pixel_helpers_index_correctly():
    proj = LatentProjections()
    z2, z3, zr = proj(torch.randn(5, 512), torch.randn(4, 512), torch.randn(3, 256))
    assert z2.shape == (5, 64) and z3.shape == (4, 64) and zr.shape == (3, 64)
    feats = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    rows = pixel_rows(feats)
    assert rows.shape == (40, 3)
    torch.testing.assert_close(rows[1 * 20 + 2 * 5 + 3], feats[1, :, 2, 3])
    got = pixels_at(feats, torch.tensor([1, 0]), torch.tensor([2, 0]), torch.tensor([3, 4]))
    torch.testing.assert_close(got, torch.stack([feats[1, :, 2, 3], feats[0, :, 0, 4]]))
