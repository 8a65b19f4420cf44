"""CNS region consistency: regions per image, max-vote, per-point regions; SAM error paths."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from perception_nodes.geometry.sampling import sample_features
from training.pseudo.regions import (RegionConfig, SamUnavailableError, image_regions, masks_to_regions,
                                     point_regions, region_point_labels, region_vote, sam_regions,
                                     upsample_labels)


def test_region_vote_known_answer():
    regions = np.array([[0, 0, 0, 1],
                        [0, 0, 1, 1],
                        [2, 2, -1, 1]])
    labels = np.array([[3, 3, 1, 2],
                       [1, 3, 2, -1],
                       [-1, -1, 4, 0]])
    voted = region_vote(regions, labels, num_classes=5)
    np.testing.assert_array_equal(voted, [[3, 3, 3, 2],
                                          [3, 3, 2, 2],
                                          [-1, -1, 4, 2]])   # region 2: no labelled pixel; -1: own label
    tie = region_vote(np.zeros((1, 2), int), np.array([[4, 1]]), 5)
    np.testing.assert_array_equal(tie, [[1, 1]])             # ties: smaller class index
    with pytest.raises(ValueError, match='shape'):
        region_vote(regions, labels[:2], 5)


def test_masks_to_regions_smallest_on_top():
    big = np.zeros((4, 4), bool)
    big[:, :3] = True
    small = np.zeros((4, 4), bool)
    small[1:3, 1:3] = True
    np.testing.assert_array_equal(masks_to_regions([small, big], (4, 4)),
                                  [[1, 1, 1, -1], [1, 0, 0, -1], [1, 0, 0, -1], [1, 1, 1, -1]])


def test_superpixel_regions_default_and_sam_errors(tmp_path):
    rng = np.random.default_rng(0)
    img = np.zeros((60, 80, 3), np.uint8)
    img[:, 40:] = 200
    img = np.clip(img + rng.integers(0, 10, img.shape), 0, 255).astype(np.uint8)
    reg = image_regions(img, RegionConfig(params={'n_segments': 20}))
    assert reg.shape == (60, 80) and reg.min() == 0
    for r in np.unique(reg):                                   # SLIC respects the strong colour edge
        cols = np.nonzero(reg == r)[1]
        assert cols.max() < 40 or cols.min() >= 40
    fz = image_regions(img, RegionConfig(method='felzenszwalb'))
    assert fz.shape == (60, 80)
    missing = tmp_path / 'sam_vit_b.pth'
    with pytest.raises(SamUnavailableError, match='sam_vit_b.pth'):
        image_regions(img, RegionConfig(method='sam', sam_checkpoint=str(missing)))
    with pytest.raises(SamUnavailableError, match='none given'):
        sam_regions(img, '')
    missing.write_bytes(b'not weights')
    try:
        import segment_anything  # noqa: F401
    except ImportError:
        with pytest.raises(SamUnavailableError, match='segment_anything package'):
            sam_regions(img, missing)
    with pytest.raises(ValueError, match='region method'):
        RegionConfig(method='watershed')


def test_point_regions_and_labels():
    maps = [np.array([[0, 0, 1], [2, 2, 1]]), np.array([[5, 5, 5], [6, 6, 6]])]
    uv = torch.tensor([[[0.0, 0.0], [2.0, 1.0], [1.0, 1.0], [2.0, 0.0]],
                       [[0.0, 1.0], [0.0, 0.0], [2.0, 1.0], [1.0, 0.0]]])
    visible = torch.tensor([[True, True, False, False], [True, False, True, False]])
    pr = point_regions(maps, uv, visible)
    np.testing.assert_array_equal(pr.offsets, [0, 3])
    np.testing.assert_array_equal(pr.point_index, [0, 1, 0, 2])
    np.testing.assert_array_equal(pr.camera_index, [0, 0, 1, 1])
    np.testing.assert_array_equal(pr.region, [0, 1, 6 + 3, 6 + 3])
    np.testing.assert_array_equal(pr.primary(), [0, 1, 9, -1])
    voted = [np.array([[1, 1, 2], [3, 3, 2]]), np.array([[4, 4, 4], [0, 0, 0]])]
    np.testing.assert_array_equal(region_point_labels(voted, uv, visible), [1, 2, 0, -1])


def test_upsample_labels_matches_nearest_sampling():
    cells = np.arange(12).reshape(3, 4)
    up = upsample_labels(cells, (30, 50))
    v, u = np.meshgrid(np.arange(30.0), np.arange(50.0), indexing='ij')
    uv = torch.from_numpy(np.stack([u.ravel(), v.ravel()], 1)).float()
    ref = sample_features(torch.from_numpy(cells).float()[None], uv, (30, 50), 'nearest')[:, 0]
    np.testing.assert_array_equal(up.ravel(), ref.numpy().astype(int))


def test_region_voting_cleans_noisy_clip_labels_on_the_synthetic_world():
    """CNS direction: max-voting per-pixel CLIP labels inside image regions removes patch noise."""
    from perception_nodes.geometry.projection import project_frame
    from perception_nodes.geometry.sim import SIM_CLASSES, SMALL_BEAM_MODEL, make_sim_frame
    from perception_nodes.teacher.oracle import ClipLikeNoise, ClipLikeTeacher, clip_like_text_embeddings
    from training.pseudo.regions import frame_region_targets
    torch.set_num_threads(1)
    frame = make_sim_frame(5, image_size='small', beam_model=SMALL_BEAM_MODEL)
    emb = clip_like_text_embeddings(SIM_CLASSES, 32, seed=0)
    noise = ClipLikeNoise(seed=3, dense_object_confusion=0.0, dense_cell_confusion=0.3, boundary_bleed_px=2)
    teacher = ClipLikeTeacher(emb, SIM_CLASSES, noise, downsample=4)
    proj = project_frame(frame)
    visible = proj.in_image & torch.from_numpy(frame.cameras[0].truth['visible'])[None]
    t = frame_region_targets([frame.cameras[0].image], teacher.dense_features(frame.cameras), emb, proj.uv,
                             visible, RegionConfig(params={'n_segments': 1500}))
    vis = visible[0].numpy()
    raw_acc = (t.raw_point_labels[vis] == frame.labels[vis]).mean()
    voted_acc = (t.point_labels[vis] == frame.labels[vis]).mean()
    assert voted_acc > raw_acc + 0.1 and raw_acc < 0.8
    assert (t.point_labels[~vis] == -1).all() and (t.regions.primary()[vis] >= 0).all()
    assert len(t.region_maps) == 1 and t.region_maps[0].shape == frame.cameras[0].image.shape[:2]
