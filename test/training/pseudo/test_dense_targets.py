"""DenseTargets: compact storage that regenerates the pipeline's fused teacher features."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from training.pseudo.dense_targets import DenseTargets, fused_reference


def random_case(seed: int = 0, n: int = 3000, m: int = 3, c: int = 32):
    g = torch.Generator().manual_seed(seed)
    sizes = [(90, 300), (90, 300), (120, 160)][:m]
    maps = [F.normalize(torch.randn(c, 6 + i, 13 + i, generator=g), dim=0) for i in range(m)]
    uv = torch.stack([torch.rand(n, 2, generator=g) * torch.tensor([w + 4.0, h + 4.0]) - 2.5
                      for h, w in sizes])
    used = torch.rand(m, n, generator=g) < 0.5
    used &= (uv[..., 0] >= -0.5) & (uv[..., 1] >= -0.5)
    return maps, uv, used, sizes


@pytest.mark.parametrize('mode', ['bilinear', 'nearest'])
def test_regeneration_equals_the_pipeline_fusion(mode):
    torch.set_num_threads(1)
    maps, uv, used, sizes = random_case()
    idx, ref = fused_reference(maps, uv, used, sizes, mode)
    exact = DenseTargets.encode(maps, uv, used, sizes, mode, map_dtype=torch.float32)
    got = exact.features(idx.numpy())
    np.testing.assert_allclose(got.numpy(), ref.numpy(), atol=1e-6)          # fp32 maps: exact up to rounding
    half = DenseTargets.encode(maps, uv, used, sizes, mode)
    assert half.feature_maps[0].dtype == torch.float16
    np.testing.assert_allclose(half.features(idx.numpy()).numpy(), ref.numpy(), atol=2e-3)   # fp16 tolerance
    seen = half.seen
    np.testing.assert_array_equal(np.flatnonzero(seen), np.sort(idx.numpy()))
    unseen = np.flatnonzero(~seen)[:10]
    assert (half.features(unseen) == 0).all()
    # arbitrary order and repeats of the requested points
    pick = np.array([idx[5].item(), idx[0].item(), idx[5].item()])
    np.testing.assert_allclose(half.features(pick).numpy(),
                               half.features()[torch.from_numpy(pick)].numpy(), atol=1e-7)


def test_single_view_and_roundtrip():
    maps, uv, used, sizes = random_case(1, m=1)
    t = DenseTargets.encode(maps, uv, used, sizes)
    idx, ref = fused_reference(maps, uv, used, sizes)
    np.testing.assert_allclose(t.features(idx.numpy()).numpy(), ref.numpy(), atol=2e-3)
    back = DenseTargets.from_arrays({k: v.copy() for k, v in t.to_arrays().items()})
    assert back.mode == 'bilinear' and back.num_points == t.num_points and back.image_sizes == t.image_sizes
    np.testing.assert_array_equal(back.features().numpy(), t.features().numpy())
    with pytest.raises(ValueError, match='mode'):
        DenseTargets.encode(maps, uv, used, sizes, mode='cubic')
    with pytest.raises(ValueError, match='one uv'):
        DenseTargets.encode(maps + maps, uv, used, sizes)


def test_bytes_per_kitti_size_frame():
    # 120k points, one camera seeing 20k of them, ViT-B/32 MaskCLIP at 224x416 -> 7x13 cells of 512 features
    n, seen = 120_000, 20_000
    maps = [torch.zeros(512, 7, 13)]
    uv = torch.zeros(1, n, 2)
    used = torch.zeros(1, n, dtype=torch.bool)
    used[0, :seen] = True
    t = DenseTargets.encode(maps, uv, used, [(375, 1242)])
    expected = 512 * 7 * 13 * 2 + n // 8 + seen * 8
    assert t.nbytes == expected
    assert t.nbytes < 0.5e6 and n * 512 * 2 / t.nbytes > 400      # vs 123 MB of per-point fp16 features
