"""UnScene3D masked NCut (Sec. 3.1, Alg. 1): eigenproblem, bipartition, separation, masking."""
from __future__ import annotations

import numpy as np
import pytest

from training.pseudo.quality import mask_quality
from training.pseudo.unscene3d import (NCutConfig, cosine_affinity, geometric_descriptors, masked_ncut,
                                       ncut_vector, segment_mean, segments_as_masks, unscene3d_pseudo_masks)


def test_ncut_vector_solves_the_generalised_problem_and_splits_cliques():
    w = np.full((7, 7), 1e-3)
    w[:3, :3] = 1.0
    w[3:, 3:] = 1.0
    v = ncut_vector(w)
    d = np.diag(w.sum(1))
    lam = (v @ (d - w) @ v) / (v @ d @ v)
    np.testing.assert_allclose((d - w) @ v, lam * d @ v, atol=1e-9)      # (D - W) v = λ D v
    assert lam > 1e-9                                                     # not the trivial λ = 0 vector
    fg = v >= v.mean()
    assert len(set(fg[:3])) == 1 and len(set(fg[3:])) == 1 and fg[0] != fg[3]


def chain_adjacency(ids):
    ids = list(ids)
    return np.array([[a, b] for a, b in zip(ids[:-1], ids[1:])])


def test_masked_ncut_finds_groups_in_confidence_order():
    rng = np.random.default_rng(0)
    dirs = np.eye(6)[:3] * 3
    groups = [np.arange(0, 10), np.arange(10, 22), np.arange(22, 60)]   # 10, 12 and 38 segments
    feats = np.concatenate([dirs[g] + 0.1 * rng.normal(size=(len(idx), 6)) for g, idx in enumerate(groups)])
    adjacency = np.concatenate([chain_adjacency(g) for g in groups])      # each group contiguous
    masks, scores = masked_ncut([feats], adjacency, NCutConfig(max_iterations=5))
    found = {tuple(m) for m in masks}
    assert tuple(groups[0]) in found and tuple(groups[1]) in found
    assert scores == sorted(scores, reverse=True) and len(scores) == len(masks)
    for i, a in enumerate(masks):                                         # masks are disjoint
        for b in masks[i + 1:]:
            assert not set(a) & set(b)


def test_connectivity_split_keeps_the_max_activation_component():
    rng = np.random.default_rng(1)
    # foreground features in two spatially separate parts: A (12 segments) also resembles the background
    # (cosine >= 0.55 with it), B (8 segments) does not, so B's eigenvector activation is the higher one
    a = np.array([1.0, 0.9, 0, 0]) + 0.02 * rng.normal(size=(12, 4))
    b = np.array([1.0, 0, 0, 0]) + 0.02 * rng.normal(size=(8, 4))
    bg = np.array([0, 1.0, 0, 0]) + 0.02 * rng.normal(size=(40, 4))
    feats = np.concatenate([a, b, bg])
    adjacency = np.concatenate([chain_adjacency(range(0, 12)), chain_adjacency(range(12, 20)),
                                chain_adjacency(range(20, 60))])

    def first(separation: str, min_fg: int = 1):
        cfg = NCutConfig(max_iterations=1, min_foreground_segments=min_fg, separation=separation)
        masks, _ = masked_ncut([feats], adjacency, cfg)
        return masks[0] if masks else None

    np.testing.assert_array_equal(first('max'), np.arange(12, 20))       # the part holding max(v)
    np.testing.assert_array_equal(first('avg'), np.arange(12, 20))
    np.testing.assert_array_equal(first('largest'), np.arange(0, 12))
    np.testing.assert_array_equal(first('none'), np.arange(0, 20))        # without separation: both parts
    assert first('max', min_fg=9) is None                                 # 8 < 9 segments: rejected
    # a rejected component is still removed from the graph: no later mask contains it
    masks, _ = masked_ncut([feats], adjacency, NCutConfig(max_iterations=4, min_foreground_segments=9))
    assert all(not set(range(12, 20)) & set(m.tolist()) for m in masks)


def test_thresholds_and_modalities():
    assert NCutConfig().threshold(1) == 0.55 and NCutConfig().threshold(2) == 0.65
    assert NCutConfig(tau_cut=0.4).threshold(2) == 0.4
    with pytest.raises(ValueError, match='separation'):
        NCutConfig(separation='mean')
    with pytest.raises(ValueError, match='at least one'):
        masked_ncut([], np.zeros((0, 2)))
    f = np.array([[1.0, 0], [0, 2.0], [0, 0]])
    np.testing.assert_allclose(cosine_affinity(f), [[1, 0, 0], [0, 1, 0], [0, 0, 0]])
    feats = np.array([[1.0, 2.0], [3.0, 4.0], [0.0, 0.0], [5.0, 6.0]])
    np.testing.assert_allclose(segment_mean(feats, np.array([0, 0, 1, 1]), 3),
                               [[2, 3], [5, 6], [0, 0]])                  # zero rows do not vote


def test_geometric_descriptors_known_values_and_standardised():
    # two segments: a floor patch (z = 0, normal up) and a wall patch (x = 0, normal along x, 0..2 m)
    g = np.linspace(0, 1, 11)
    u, v = np.meshgrid(g, g)
    floor = np.column_stack([u.ravel(), v.ravel(), np.zeros(u.size)])
    wall = np.column_stack([np.zeros(u.size), u.ravel(), 2 * v.ravel()])
    pts = np.concatenate([floor, wall])
    normals = np.concatenate([np.tile([0, 0, 1.0], (u.size, 1)), np.tile([-1.0, 0, 0], (u.size, 1))])
    seg = np.repeat([0, 1], u.size)
    d = geometric_descriptors(pts, normals, seg, 2)
    # z-scored over two segments: every varying column is +-1, the floor's |n_z| high, its heights low
    np.testing.assert_allclose(d[0], [-1, 0, 1, -1, 0, -1, 0], atol=1e-9)
    np.testing.assert_allclose(cosine_affinity(d)[0, 1], -1, atol=1e-9)


def test_geometric_descriptors_are_standardised():
    rng = np.random.default_rng(2)
    pts = rng.uniform(0, 3, (500, 3))
    normals = rng.normal(size=(500, 3))
    seg = rng.integers(0, 20, 500)
    d = geometric_descriptors(pts, normals, seg, 20)
    assert d.shape == (20, 7)
    np.testing.assert_allclose(d.mean(0), 0, atol=1e-9)
    np.testing.assert_allclose(d.std(0)[d.std(0) > 0], 1, atol=1e-9)


def test_pseudo_masks_on_a_synthetic_room():
    from perception_nodes.geometry.sim.room import make_room
    room = make_room(0, n_objects=6, rays=(360, 180), voxel_size=0.05)
    base = segments_as_masks(unscene3d_pseudo_masks(room.points).segment_ids)
    pm = unscene3d_pseudo_masks(room.points, segments=None)
    assert pm.instance_ids.shape == (len(room.points),) and pm.num_masks == len(pm.scores)
    assert pm.num_masks >= 1 and pm.masks().shape == (pm.num_masks, len(room.points))
    for m in pm.segment_masks:
        assert len(m) >= 8                                                # min foreground segments
    q = mask_quality(pm.instance_ids, room.instances, room.object_mask)
    fh = mask_quality(base.instance_ids, room.instances, room.object_mask)
    assert 0 <= q['mean_best_iou'] <= 1 and fh['masks'] > pm.num_masks
    assert np.isfinite(q['recall_25'])
