from __future__ import annotations

import pytest
import torch

ARCHS = ['range_unet', 'sparse_unet']


@pytest.mark.parametrize('arch', ARCHS)
def test_output_shapes_and_unit_embeddings(tiny, arch):
    model = tiny.model(arch)
    points = torch.from_numpy(tiny.scan(3000))
    with torch.no_grad():
        out = model(points)
    cfg = model.config
    assert out.point_embeddings.shape == (3000, cfg.embed_dim)
    assert out.occupancy_logits.shape == (*cfg.grid.shape, 2)
    assert out.voxel_features.shape == (*cfg.grid.shape, cfg.embed_dim)
    assert out.valid.all()
    torch.testing.assert_close(out.point_embeddings.norm(dim=1), torch.ones(3000), rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        assert model(points, voxel_features=False).voxel_features is None


@pytest.mark.parametrize('arch', ARCHS)
def test_projected_embeddings_have_k_dims(tiny, arch):
    model = tiny.model(arch, proj_dim=8)
    with torch.no_grad():
        out = model(torch.from_numpy(tiny.scan(500)), voxel_features=False)
    assert out.point_embeddings.shape == (500, 8)
    assert model.project_text(torch.randn(3, 32)).shape == (3, 8)


@pytest.mark.parametrize('arch', ARCHS)
def test_deterministic(tiny, arch):
    points = torch.from_numpy(tiny.scan(2000, seed=3))
    a, b = tiny.model(arch, seed=7), tiny.model(arch, seed=7)
    with torch.no_grad():
        out_a, out_a2, out_b = a(points), a(points), b(points)
    # spconv's CPU gather-GEMM-scatter sums features in a thread-dependent order, so the sparse U-Net is
    # deterministic up to float32 rounding (seen: 7.6e-6 on unit embeddings); the range student is exact.
    atol = 1e-4 if arch == 'sparse_unet' else 1e-6
    for x, y in ((out_a, out_a2), (out_a, out_b)):
        torch.testing.assert_close(x.point_embeddings, y.point_embeddings, rtol=0, atol=atol)
        torch.testing.assert_close(x.occupancy_logits, y.occupancy_logits, rtol=0, atol=atol)
        assert (x.point_embeddings.argmax(1) == y.point_embeddings.argmax(1)).float().mean() > 0.999


@pytest.mark.parametrize('arch', ARCHS)
def test_padding_and_nan_points_do_not_change_valid_outputs(tiny, arch):
    """The padded graph: masked rows and NaN rows are ignored by every valid output."""
    model = tiny.model(arch)
    points = torch.from_numpy(tiny.scan(1500, seed=1))
    padded = torch.cat([points, torch.randn(500, 4) * 30, torch.full((20, 4), float('nan'))])
    mask = torch.cat([torch.ones(1500), torch.zeros(500), torch.ones(20)])
    with torch.no_grad():
        ref = model(points)
        out = model(padded, mask)
    assert out.valid.tolist() == [True] * 1500 + [False] * 520
    torch.testing.assert_close(out.point_embeddings[:1500], ref.point_embeddings, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out.occupancy_logits, ref.occupancy_logits, rtol=1e-4, atol=1e-5)
    assert torch.isfinite(out.point_embeddings).all() and torch.isfinite(out.occupancy_logits).all()


@pytest.mark.parametrize('arch', ARCHS)
def test_empty_scan_gives_finite_outputs(tiny, arch):
    model = tiny.model(arch)
    with torch.no_grad():
        out = model(torch.zeros(0, 4))
        masked = model(torch.randn(64, 4), torch.zeros(64))
    assert out.point_embeddings.shape == (0, 32)
    assert torch.isfinite(out.occupancy_logits).all()
    # An empty scan and a fully masked one see the same (empty) world.
    torch.testing.assert_close(out.occupancy_logits, masked.occupancy_logits)


def test_bad_point_shapes_are_named(tiny):
    model = tiny.model()
    with pytest.raises(ValueError, match=r'points \(N, >=4\)'):
        model(torch.zeros(10, 3))
    with pytest.raises(ValueError, match='mask shape'):
        model(torch.zeros(10, 4), torch.ones(9))


def test_points_outside_the_grid_still_get_embeddings(tiny):
    model = tiny.model()
    far = torch.tensor([[200.0, 0.0, 0.0, 0.5]])
    with torch.no_grad():
        out = model(torch.cat([torch.from_numpy(tiny.scan(100)), far]))
    assert out.valid[-1] and out.point_embeddings[-1].norm().item() == pytest.approx(1.0, abs=1e-4)
