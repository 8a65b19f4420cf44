"""The losses and training-only modules on the real students: shapes fit and gradients reach the backbone."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from perception_nodes.classify import cosine_logits
from perception_nodes.geometry.voxels import GridSpec, dense_occupancy
from perception_nodes.student.config import StudentConfig
from perception_nodes.student.model import build_student
from training.class_stats import class_counts
from training.losses import WeightedSumLoss, gather_voxel_features, recipes
from training.models import KnowledgeTransferBranch, KnowledgeTransferConfig, QueryMaskDecoder
from training.models.instance_head import InstanceHeadConfig
from training.models.taps import PointFeatureTap
from training.self_training import mask_addition

torch.set_num_threads(1)
GRID = GridSpec(lower=(-20.0, -20.0, -3.0), upper=(20.0, 20.0, 3.0), shape=(16, 16, 4))


def _student(arch: str, seed: int = 0):
    torch.manual_seed(seed)
    cfg = StudentConfig(arch=arch, widths=(8, 16), depths=(1, 1), embed_dim=16, point_width=16,
                        head_hidden=16, voxel_width=4, range_height=16, range_width=128, grid=GRID,
                        max_points=4096, voxel_size=0.5)
    return build_student(cfg).train()


def _scan(n: int = 600, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    r, yaw = rng.uniform(2, 18, n), rng.uniform(-np.pi, np.pi, n)
    pts = np.stack([r * np.cos(yaw), r * np.sin(yaw), rng.uniform(-1.5, 1.5, n), rng.uniform(0, 1, n)], 1)
    return torch.tensor(pts, dtype=torch.float32)


@pytest.mark.parametrize('arch', ['range_unet', 'sparse_unet'])
def test_affinity3d_recipe_trains_student_and_branch(arch):
    student = _student(arch)
    pts = _scan()
    g = torch.Generator().manual_seed(1)
    text = torch.randn(5, 16, generator=g)
    labels = torch.randint(-1, 5, (len(pts),), generator=g)
    visible = torch.rand(len(pts), generator=g) < 0.4
    uv = torch.rand(len(pts), 2, generator=g) * torch.tensor([95.0, 63.0])
    index = torch.where(visible, 0, -1)
    branch = KnowledgeTransferBranch(KnowledgeTransferConfig(point_channels=(16, 16), image_stages=(2, 3),
                                                             embed_dim=16, project_3d=False))
    with PointFeatureTap(student) as tap:
        out = student(pts)
    emb = out.point_embeddings
    kt = branch(torch.rand(2, 3, 64, 96, generator=g), [emb, emb], uv, index, student.project_text(text))
    crit = WeightedSumLoss(recipes.affinity3d_specs(class_counts(labels, 5)))
    batch = {'logits_3d': cosine_logits(emb, student.project_text(text)), 'labels': labels,
             'kt_logits_3d': kt.logits_3d, 'kt_logits_fused': kt.logits_fused, 'visible': visible,
             'labels_visible': torch.where(visible, labels, torch.full_like(labels, -1))}
    loss = crit(batch)
    loss.total.backward()
    assert tap.features is not None and tap.features.shape == (len(pts), 16)
    grads = [p.grad for p in student.backbone.parameters() if p.grad is not None]
    assert grads and all(bool(torch.isfinite(gr).all()) for gr in grads)
    assert branch.encoder.layer3[0].conv1.weight.grad is not None
    assert set(loss.terms) == {'lovasz', 'ce', 'kt_kl', 'fused_ce'}


def test_pop3d_recipe_on_the_student_grid():
    student = _student('range_unet', 2)
    pts = _scan(seed=3)
    out = student(pts)
    feats, inside = gather_voxel_features(out.voxel_features, pts[:, :3], GRID)
    cam = inside & (pts[:, 0] > 0)
    teacher = torch.randn(len(pts), 16, generator=torch.Generator().manual_seed(4))
    crit = WeightedSumLoss(recipes.pop3d_specs())
    loss = crit({'occupancy_logits': out.occupancy_logits,
                 'occupancy_target': dense_occupancy(pts[:, :3], GRID),
                 'point_features': feats, 'teacher_features': teacher, 'camera_mask': cam})
    loss.total.backward()
    assert student.voxel_heads.language[0].fc1.weight.grad is not None
    assert student.voxel_heads.occupancy[0].fc1.weight.grad is not None
    assert float(loss.terms['feature']) > 0


def test_unscene3d_head_losses_and_mask_addition_on_student_features():
    student = _student('range_unet', 5)
    pts = _scan(seed=6)
    head = QueryMaskDecoder(InstanceHeadConfig(in_dim=16, num_queries=6))
    with PointFeatureTap(student) as tap:
        student(pts)
    pred = head(tap.features)
    pseudo = torch.stack([pts[:, 0] > 5, pts[:, 1] > 5])
    crit = WeightedSumLoss(recipes.unscene3d_specs())
    loss = crit({'mask_logits': [pred.mask_logits], 'objectness_logits': [pred.objectness_logits],
                 'pseudo_masks': [pseudo]})
    loss.total.backward()
    assert any(p.grad is not None for p in student.backbone.parameters())
    added = mask_addition(pseudo, pred.mask_logits, pred.objectness_logits)
    assert torch.equal(added.masks[:2], pseudo)


def test_cns_recipe_co_trains_the_2d_net_and_the_student():
    from training.losses.consistency import pool_by_region, region_ids_from_masks
    from training.models import CNS2DNet, LatentConfig, LatentProjections
    from training.models.cns_2d import pixel_rows, pixels_at

    student = _student('range_unet', 7)
    net2d = CNS2DNet(out_dim=16, backbone='mobilenet_v3_large')
    latents = LatentProjections(LatentConfig(dim_2d=16, dim_3d=16, dim_region=8, latent_dim=4))
    g = torch.Generator().manual_seed(8)
    pts = _scan(seed=8)
    text = torch.randn(5, 16, generator=g)
    images = torch.rand(2, 3, 32, 48, generator=g)
    sam = torch.rand(3, 2, 32, 48, generator=g) > 0.6                 # 3 SAM masks over the 2 images
    regions_px = region_ids_from_masks(sam)                            # (2, 32, 48)
    n = len(pts)
    img, rows, cols = (torch.randint(0, 2, (n,), generator=g), torch.randint(0, 32, (n,), generator=g),
                       torch.randint(0, 48, (n,), generator=g))
    feats2d = net2d(images)
    out = student(pts)
    t = student.project_text(text)
    z2d, z3d, zr = latents(pixel_rows(feats2d), out.point_embeddings, torch.randn(3, 8, generator=g))
    batch = {'logits_3d': cosine_logits(out.point_embeddings, t),
             'labels': torch.randint(0, 5, (n,), generator=g),
             'logits_2d': cosine_logits(pixel_rows(feats2d), t),
             'labels_2d': torch.randint(0, 5, (2 * 32 * 48,), generator=g),
             'pair_logits_2d': cosine_logits(pixels_at(feats2d, img, rows, cols), t),
             'pair_logits_3d': cosine_logits(out.point_embeddings, t),
             'latents_2d': z2d, 'regions_2d': regions_px.reshape(-1), 'latents_3d': z3d,
             'regions_3d': regions_px[img, rows, cols], 'region_latents': zr}
    loss = WeightedSumLoss(recipes.cns_specs())(batch)
    loss.total.backward()
    assert set(loss.terms) >= {'ce_3d', 'ce_2d', 'prediction_consistency', 'latent_consistency'}
    assert net2d.net.classifier[-1].weight.grad is not None and latents.varphi.weight.grad is not None
    assert any(p.grad is not None for p in student.backbone.parameters())
    assert pool_by_region(z3d, batch['regions_3d'], 3)[0].shape == (3, 4)
