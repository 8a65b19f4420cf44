"""Augmentations: Affinity3D points / images (correspondences kept), ScanNet200 copy-paste."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from perception_nodes.geometry.sampling import sample_features
from training.augment import (CopyPasteConfig, ImageAugmentConfig, InstanceSample, PointAugmentConfig, aabb,
                              augment_image, augment_points, boxes_overlap, color_jitter,
                              copy_paste_instances, floor_height_map)

torch.set_num_threads(1)


# ----------------------------------------------------------------------------- points

def test_point_augment_ranges_subset_and_mapping():
    g = torch.Generator().manual_seed(0)
    pts = torch.randn(1000, 4, generator=g, dtype=torch.float64)
    out = augment_points(pts, generator=torch.Generator().manual_seed(1))
    assert out.points.shape == (700, 4) and len(set(out.index.tolist())) == 700
    assert bool((out.index[1:] > out.index[:-1]).all())
    assert 0.95 <= out.scale <= 1.05 and bool((out.translation.abs() <= 0.5).all())
    torch.testing.assert_close(out.points[:, :3], pts[out.index, :3] * out.scale + out.translation)
    torch.testing.assert_close(out.points[:, 3], pts[out.index, 3])
    again = augment_points(pts, generator=torch.Generator().manual_seed(1))
    assert torch.equal(again.points, out.points)
    other = augment_points(pts, generator=torch.Generator().manual_seed(2))
    assert not torch.equal(other.index, out.index)
    cfg = PointAugmentConfig(keep_ratio=1.0)
    scales = [augment_points(pts[:5], cfg, torch.Generator().manual_seed(s)).scale for s in range(50)]
    assert min(scales) >= 0.95 and max(scales) <= 1.05 and max(scales) - min(scales) > 0.05
    with pytest.raises(ValueError, match='keep_ratio'):
        PointAugmentConfig(keep_ratio=0.0)


# ----------------------------------------------------------------------------- images

def _scene(seed: int = 0, h: int = 40, w: int = 60, n: int = 300):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(3, h, w, generator=g)
    cols = torch.randint(0, w, (n,), generator=g)
    rows = torch.randint(0, h, (n,), generator=g)
    uv = torch.stack([cols, rows], 1).double()
    return image, uv, torch.ones(n, dtype=torch.bool)


@pytest.mark.parametrize('seed', range(4))
def test_crop_and_flip_keep_point_pixel_correspondences(seed):
    image, uv, inside = _scene(seed)
    cfg = ImageAugmentConfig(crop_size=(24, 32), bottom_crop=False, flip_prob=0.5, brightness=0, contrast=0,
                             saturation=0)
    out = augment_image(image, uv, inside, cfg, torch.Generator().manual_seed(seed))
    assert out.image.shape == (3, 24, 32)
    before = image[:, uv[:, 1].long(), uv[:, 0].long()].T
    kept = out.in_image
    assert 0 < int(kept.sum()) < len(uv)
    after = out.image[:, out.uv[kept, 1].long(), out.uv[kept, 0].long()].T
    torch.testing.assert_close(after, before[kept])
    c0, r0 = out.crop_offset
    expected_in = (uv[:, 0] >= c0) & (uv[:, 0] < c0 + 32) & (uv[:, 1] >= r0) & (uv[:, 1] < r0 + 24)
    assert torch.equal(kept, expected_in)


def test_flip_agrees_with_bilinear_sampling_at_subpixel_points():
    image, _, _ = _scene(5)
    g = torch.Generator().manual_seed(6)
    uv = torch.rand(50, 2, generator=g) * torch.tensor([59.0, 39.0])
    cfg = ImageAugmentConfig(crop_size=None, flip_prob=1.0, brightness=0, contrast=0, saturation=0)
    out = augment_image(image, uv, torch.ones(50, dtype=torch.bool), cfg)
    assert out.flipped
    torch.testing.assert_close(sample_features(out.image, out.uv, (40, 60)),
                               sample_features(image, uv, (40, 60)))


def test_bottom_crop_keeps_the_lower_rows_and_jitter_is_pixelwise_and_seeded():
    image, uv, inside = _scene(7)
    cfg = ImageAugmentConfig(crop_size=(16, 60), flip_prob=0.0)
    out = augment_image(image, uv, inside, cfg, torch.Generator().manual_seed(3))
    assert out.crop_offset == (0, 24)
    assert out.jitter != (1.0, 1.0, 1.0) and all(0.6 <= f <= 1.4 for f in out.jitter)
    torch.testing.assert_close(out.image, color_jitter(image[:, 24:], out.jitter))
    again = augment_image(image, uv, inside, cfg, torch.Generator().manual_seed(3))
    assert torch.equal(again.image, out.image)
    # Points above the crop are no longer in the image.
    assert torch.equal(out.in_image, uv[:, 1] >= 24)


# ----------------------------------------------------------------------------- copy-paste

def _room(step: bool = False):
    """A 4 m x 4 m floor grid (z = 0, or 0.5 for x >= 2 with ``step``) plus one box object."""
    xs = np.arange(0.02, 4.0, 0.05)
    fx, fy = np.meshgrid(xs, xs, indexing='ij')
    floor = np.stack([fx.ravel(), fy.ravel(), np.where(step & (fx.ravel() >= 2.0), 0.5, 0.0)], 1)
    obj = np.stack(np.meshgrid(np.linspace(0.0, 2.0, 9), np.linspace(0.0, 4.0, 9), np.linspace(0, 1, 5),
                               indexing='ij'), -1).reshape(-1, 3)
    points = np.concatenate([floor, obj])
    labels = np.concatenate([np.zeros(len(floor), np.int64), np.full(len(obj), 1)])
    ids = np.concatenate([np.zeros(len(floor), np.int64), np.full(len(obj), 1)])
    return points, labels, ids


def _bank():
    cube = np.stack(np.meshgrid(*[np.linspace(0, 0.3, 4)] * 3, indexing='ij'), -1).reshape(-1, 3) + [5, 5, 2]
    return [InstanceSample(cube, 7), InstanceSample(cube * 0.8, 8), InstanceSample(cube, 2)]


def test_copy_paste_places_tail_instances_on_the_floor_without_collisions():
    points, labels, ids = _room()
    res = copy_paste_instances(points, labels, ids, _bank(), tail_classes=[7, 8],
                               rng=np.random.default_rng(0), ignore_labels=[0])
    assert len(res.placed) == 5 and set(res.placed) <= {0, 1}          # only tail classes
    new = res.instance_ids >= 2
    assert set(np.unique(res.labels[new]).tolist()) <= {7, 8}
    obstacle = aabb(points[ids == 1])
    for k, box in enumerate(res.boxes):
        inst = res.points[res.instance_ids == 2 + k]
        assert inst[:, 2].min() == pytest.approx(0.0, abs=1e-9)       # resting on the floor
        assert not boxes_overlap(box, [obstacle] + res.boxes[:k])
        assert box[0, 0] >= 2.0 - 1e-9                                  # only the free half of the room
    assert len(res.points) == len(points) + sum(len(_bank()[k].points) for k in res.placed)


def test_copy_paste_sits_on_the_highest_floor_cell_under_the_footprint():
    points, labels, ids = _room(step=True)
    res = copy_paste_instances(points, labels, ids[:] * 0 - 1, _bank(), [7], np.random.default_rng(3),
                               CopyPasteConfig(num_instances=8, max_tries=200), floor_mask=labels == 0)
    assert res.placed
    floor = floor_height_map(points[labels == 0], 0.1)
    for k in range(len(res.placed)):
        inst = res.points[res.instance_ids == k]
        under = floor.support(inst[:, :2])
        assert inst[:, 2].min() == pytest.approx(np.nanmax(under), abs=1e-9)


def test_copy_paste_rejects_every_candidate_when_the_room_is_full_and_is_seeded():
    points, labels, ids = _room()
    table = np.array([[-1.0, -1.0, -1.0], [5.0, 5.0, 3.0]])
    pts = np.concatenate([points, table])
    res = copy_paste_instances(pts, np.concatenate([labels, [3, 3]]), np.concatenate([ids, [9, 9]]), _bank(),
                               [7, 8], np.random.default_rng(1), ignore_labels=[0])
    assert res.placed == [] and res.tries == 50 and len(res.points) == len(pts)
    a, b = (copy_paste_instances(points, labels, ids, _bank(), [7, 8], np.random.default_rng(4),
                                 ignore_labels=[0]) for _ in range(2))
    assert np.array_equal(a.points, b.points) and a.placed == b.placed


def test_boxes_overlap():
    a = np.array([[0, 0, 0], [1, 1, 1]], dtype=float)
    assert boxes_overlap(a, [a + 0.5])
    assert not boxes_overlap(a, [a + np.array([1.0, 0, 0])])          # touching faces
    assert not boxes_overlap(a, [a + np.array([0, 0, 2.0])])
