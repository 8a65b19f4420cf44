"""Felzenszwalb-Huttenlocher on graphs and point clouds; PCA normals; superpoints (Affinity3D Sec. 3.2)."""
from __future__ import annotations

import numpy as np
import pytest

from training.pseudo.oversegment import (FHConfig, estimate_normals, felzenszwalb_graph, fh_oversegment,
                                         knn_edges, segment_adjacency)
from training.pseudo.superpoints import (SuperpointConfig, annotation_free_superpoints, drop_small,
                                         gzs_superpoints, tile_segments)


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    _, ia = np.unique(np.ravel(a), return_inverse=True)
    _, ib = np.unique(np.ravel(b), return_inverse=True)
    return len(np.unique(np.stack([ia, ib], 1), axis=0)) == ia.max() + 1 == ib.max() + 1


def grid_graph(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """scikit-image's 8-connected image graph: right, down, down-right, up-right edges; colour distances."""
    h, w = img.shape[:2]
    ids = np.arange(h * w).reshape(h, w)
    pairs = [(ids[:, 1:], ids[:, :-1]), (ids[1:, :], ids[:-1, :]), (ids[1:, 1:], ids[:-1, :-1]),
             (ids[:-1, 1:], ids[1:, :-1])]
    edges = np.concatenate([np.stack([a.ravel(), b.ravel()], 1) for a, b in pairs])
    f = img.reshape(h * w, -1)
    return edges, np.linalg.norm(f[edges[:, 0]] - f[edges[:, 1]], axis=1)


def test_fh_matches_scikit_image_on_images():
    from skimage.segmentation import felzenszwalb
    rng = np.random.default_rng(0)
    for t in range(8):
        img = rng.random((24, 32, 3))
        img[:12] += t % 2                                  # a strong edge half of the time
        scale, min_size = rng.uniform(1, 200), int(rng.integers(1, 25))
        ref = felzenszwalb(img, scale=scale, sigma=0, min_size=min_size)
        edges, weights = grid_graph(img)
        got = felzenszwalb_graph(24 * 32, edges, weights, scale / 255.0, min_size)   # skimage divides by 255
        assert same_partition(ref, got), t


def fh_reference(n: int, edges: np.ndarray, weights: np.ndarray, k: float, min_size: int) -> np.ndarray:
    """FH with explicit component sets (no union-find), straight from the paper's definition."""
    comp = [{i} for i in range(n)]
    owner = list(range(n))
    internal = [0.0] * n
    order = np.argsort(weights, kind='stable')
    for e in order:
        a, b = owner[edges[e, 0]], owner[edges[e, 1]]
        w = weights[e]
        if a != b and w <= min(internal[a] + k / len(comp[a]), internal[b] + k / len(comp[b])):
            comp[a] |= comp[b]
            for x in comp[b]:
                owner[x] = a
            comp[b] = set()
            internal[a] = w
    for e in order:
        a, b = owner[edges[e, 0]], owner[edges[e, 1]]
        if a != b and (len(comp[a]) < min_size or len(comp[b]) < min_size):
            comp[a] |= comp[b]
            for x in comp[b]:
                owner[x] = a
            comp[b] = set()
    return np.array(owner)


def test_fh_matches_set_reference_on_random_graphs():
    rng = np.random.default_rng(1)
    for t in range(30):
        n = int(rng.integers(2, 40))
        m = int(rng.integers(1, 3 * n))
        edges = rng.integers(0, n, size=(m, 2))
        edges = edges[edges[:, 0] != edges[:, 1]]
        weights = rng.random(len(edges)) ** 2
        k, min_size = rng.uniform(0.01, 2.0), int(rng.integers(1, 6))
        got = felzenszwalb_graph(n, edges, weights, k, min_size)
        assert same_partition(got, fh_reference(n, edges, weights, k, min_size)), t
        assert got.min() == 0 and got[0] == 0           # dense ids numbered by first node


def test_fh_known_answer_chain():
    # 0-1-2 strongly linked, 3-4 strongly linked, weak bridge 2-3: two segments with small k
    edges = np.array([[0, 1], [1, 2], [2, 3], [3, 4]])
    w = np.array([0.01, 0.02, 0.9, 0.01])
    np.testing.assert_array_equal(felzenszwalb_graph(5, edges, w, k=0.1), [0, 0, 0, 1, 1])
    np.testing.assert_array_equal(felzenszwalb_graph(5, edges, w, k=10.0), [0] * 5)        # huge k merges all
    np.testing.assert_array_equal(felzenszwalb_graph(5, edges, w, k=0.1, min_size=3), [0] * 5)  # {3,4} small
    with pytest.raises(ValueError, match='endpoints'):
        felzenszwalb_graph(3, np.array([[0, 3]]), np.array([0.1]), 1.0)


def test_normals_known_answers():
    rng = np.random.default_rng(2)
    plane = np.column_stack([rng.uniform(-1, 1, 400), rng.uniform(-1, 1, 400), np.zeros(400)])
    n = estimate_normals(plane, k=12)
    np.testing.assert_allclose(np.abs(n[:, 2]), 1.0, atol=1e-9)
    assert (n[:, 2] > 0).all()                                              # canonical: z >= 0
    down = estimate_normals(plane, k=12, viewpoint=np.array([0.0, 0.0, -5.0]))
    assert (down[:, 2] < 0).all()                                           # faces the viewpoint
    d = rng.normal(size=(2000, 3))
    sphere = d / np.linalg.norm(d, axis=1, keepdims=True)
    ns = estimate_normals(sphere, k=16, viewpoint=np.zeros(3))
    np.testing.assert_allclose((ns * -sphere).sum(1), 1.0, atol=0.02)       # inward radial normals


def test_knn_edges_and_adjacency():
    pts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [10, 0, 0], [11, 0, 0]], dtype=float)
    e = knn_edges(pts, k=1)
    assert (e[:, 0] < e[:, 1]).all() and len(np.unique(e, axis=0)) == len(e)
    assert {tuple(x) for x in e} == {(0, 1), (0, 2), (3, 4)}
    adj = segment_adjacency(np.array([0, 0, 1, 2, 2]), np.array([[0, 2], [1, 2], [2, 3], [3, 4]]))
    np.testing.assert_array_equal(adj, [[0, 1], [1, 2]])


def two_boxes(spacing: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Surfaces of two unit cubes 1 m apart, sampled on a grid: points and cube id."""
    g = np.arange(0, 1 + 1e-9, spacing)
    u, v = np.meshgrid(g, g)
    faces = []
    for axis in range(3):
        for side in (0.0, 1.0):
            f = np.zeros((u.size, 3))
            f[:, axis] = side
            f[:, (axis + 1) % 3], f[:, (axis + 2) % 3] = u.ravel(), v.ravel()
            faces.append(f)
    cube = np.unique(np.round(np.concatenate(faces), 6), axis=0)
    pts = np.concatenate([cube, cube + [2.0, 0, 0]])
    return pts, np.repeat([0, 1], len(cube))


def test_fh_oversegment_separates_objects_and_faces():
    pts, cube = two_boxes()
    over = fh_oversegment(pts, FHConfig(k=0.01, min_size=20, voxel_size=0.0, knn=8))
    seg = over.segment_ids
    assert len(seg) == len(pts) and seg.min() == 0
    for s in np.unique(seg):                                 # no segment spans both cubes
        assert len(np.unique(cube[seg == s])) == 1
    assert 6 <= over.num_segments <= 24                       # about one segment per face
    assert len(over.adjacency) > 0 and (over.adjacency[:, 0] < over.adjacency[:, 1]).all()
    vox = fh_oversegment(pts, FHConfig(k=0.01, min_size=5, voxel_size=0.1))
    for s in np.unique(vox.segment_ids):
        assert len(np.unique(cube[vox.segment_ids == s])) == 1


def test_gzs_superpoints_cluster_only_points_without_seen_labels():
    rng = np.random.default_rng(3)
    a = rng.normal([0, 0, 0], 0.2, (100, 3))
    b = rng.normal([5, 0, 0], 0.2, (100, 3))
    c = rng.normal([10, 0, 0], 0.2, (100, 3))
    pts = np.concatenate([a, b, c])
    labels = np.repeat([0, 1, -1], 100)                     # class 0 seen, class 1 unseen, last unlabelled
    seen = np.array([True, False])
    seg = gzs_superpoints(pts, labels, seen)
    assert (seg[:100] == -1).all()                           # seen points are never clustered
    assert len(np.unique(seg[100:200])) == 1 and len(np.unique(seg[200:])) == 1 and seg[100] != seg[200]
    seg2 = gzs_superpoints(pts, labels, seen, SuperpointConfig(cluster_unlabelled=False))
    assert (seg2[200:] == -1).all() and (seg2[100:200] >= 0).all()


def test_drop_small_and_af_superpoints():
    np.testing.assert_array_equal(drop_small(np.array([3, 3, 5, -1, 7, 7, 7]), 2), [0, 0, -1, -1, 1, 1, 1])
    pts, cube = two_boxes(0.1)
    seg = annotation_free_superpoints(pts, SuperpointConfig(fh=FHConfig(k=0.01, min_size=5, voxel_size=0.0),
                                                            tile_size=0))
    assert (seg >= 0).all()                                  # FH: every point in a superpoint
    for s in np.unique(seg):
        assert len(np.unique(cube[seg == s])) == 1
    with pytest.raises(ValueError, match='af_method'):
        SuperpointConfig(af_method='bpss')
    # tiles: a flat 10 m x 10 m ground is one FH segment, cut into 4 m tiles (3 x 3 cells)
    g = np.arange(0, 10, 0.2)
    x, y = np.meshgrid(g, g)
    ground = np.column_stack([x.ravel(), y.ravel(), np.zeros(x.size)])
    fh_only = annotation_free_superpoints(ground, SuperpointConfig(tile_size=0))
    tiled = annotation_free_superpoints(ground, SuperpointConfig(tile_size=4.0))
    assert len(np.unique(fh_only)) == 1 and len(np.unique(tiled)) == 9
    np.testing.assert_array_equal(tile_segments(ground, np.zeros(len(ground), int), 4.0), tiled)
