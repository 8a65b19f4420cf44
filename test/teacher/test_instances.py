"""Instance features (Affinity3D Sec. 3.2–3.3): segments, 30×30 box rules, crops, Eq. 4."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from perception_nodes.teacher.clip_models import ClipSpec, load_clip
from perception_nodes.teacher.instances import (crop_pixels, encode_crops, fit_ground_plane, segment_boxes,
                                                segment_crop_features,
                                                segment_pseudo_labels, segment_scan)


def box_points(rng: np.random.Generator, centre: tuple[float, float, float], size: float,
               n: int) -> np.ndarray:
    return np.asarray(centre) + rng.uniform(-size / 2, size / 2, (n, 3))


def scene(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Tilted ground (z = -1.7 + 0.02 x), two 1 m boxes 4 m apart standing on it, one isolated point."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(-10, 10, (3000, 2))
    ground = np.column_stack([xy, -1.7 + 0.02 * xy[:, 0] + rng.normal(0, 0.02, len(xy))])
    a = box_points(rng, (3.0, 0.0, -0.6), 1.0, 400)
    b = box_points(rng, (3.0, 4.0, -0.6), 1.0, 400)
    lone = np.array([[-8.0, -8.0, 1.5]])
    points = np.concatenate([ground, a, b, lone])
    truth = np.concatenate([np.full(len(ground), -1), np.zeros(400), np.ones(400), [-1]]).astype(np.int64)
    return points, truth


def test_ground_plane_recovers_tilt() -> None:
    points, _ = scene()
    plane = fit_ground_plane(points)
    assert plane is not None
    expected = np.array([-0.02, 0.0, 1.0]) / math.hypot(0.02, 1.0)
    np.testing.assert_allclose(plane.normal, expected, atol=5e-3)
    np.testing.assert_allclose(plane.distance(np.array([[0.0, 0.0, -1.7]])), [0.0], atol=0.02)


@pytest.mark.parametrize('ground, voxel', [('plane', 0.1), ('plane', None), ('height', 0.1)])
def test_segment_scan_finds_objects(ground: str, voxel: float | None) -> None:
    points, truth = scene()
    labels = segment_scan(points, ground=ground, ground_height=-1.4, eps=0.5, min_samples=5, voxel_size=voxel)
    assert labels.shape == (len(points),) and labels.dtype == np.int64
    assert (labels[truth == -1] == -1).all()            # ground and the isolated point
    seg_a, seg_b = np.unique(labels[truth == 0]), np.unique(labels[truth == 1])
    assert len(seg_a) == 1 and len(seg_b) == 1 and seg_a[0] != seg_b[0] and min(seg_a[0], seg_b[0]) >= 0
    assert set(np.unique(labels)) == {-1, 0, 1}


def test_segment_scan_bad_input() -> None:
    points, _ = scene()
    with pytest.raises(ValueError, match='ground_height'):
        segment_scan(points, ground='height')
    with pytest.raises(ValueError, match="ground must be"):
        segment_scan(points, ground='magic')
    assert (segment_scan(np.zeros((0, 3))) == -1).all()
    with_nan = points.copy()
    with_nan[0] = np.nan
    assert segment_scan(with_nan)[0] == -1


def test_segment_boxes_known_answers() -> None:
    uv = np.array([
        [100, 50], [110, 60],          # seg 0: 11x11 px -> grown to 30x30 about (105, 55)
        [200, 100],                    # seg 1: a single point -> invalid
        [2, 3], [5, 4],                # seg 2: at the top-left corner -> grown, shifted inside
        [300, 150], [399, 160],        # seg 3: 100 px wide, 11 high -> only the height grows
        [50, 50], [52, 52],            # seg 4: outside the image mask -> invalid
        [120, 90], [125, 80],          # seg 5 at index 9, 10 (index 10 is off-image) -> 1 point -> invalid
    ], dtype=np.float64)
    seg = np.array([0, 0, 1, 2, 2, 3, 3, 4, 4, 5, 5])
    in_image = np.array([1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 0], dtype=bool)
    out = segment_boxes(uv, in_image, seg, image_size=(200, 400), min_size=30)
    np.testing.assert_array_equal(out.valid, [True, False, True, True, False, False])
    np.testing.assert_array_equal(out.counts, [2, 1, 2, 2, 0, 1])
    np.testing.assert_allclose(out.boxes[0], [90.0, 40.0, 120.0, 70.0])
    np.testing.assert_allclose(out.boxes[2], [-0.5, -0.5, 29.5, 29.5])
    np.testing.assert_allclose(out.boxes[3], [299.5, 140.0, 399.5, 170.0])
    np.testing.assert_allclose(out.boxes[[1, 4, 5]], 0.0)
    assert crop_pixels(out.boxes[0], (200, 400)) == (40, 70, 90, 120)     # exactly 30x30 pixels
    assert crop_pixels(out.boxes[2], (200, 400)) == (0, 30, 0, 30)
    # an image smaller than 30 px: the box is the whole image
    small = segment_boxes(np.array([[3.0, 3.0], [5.0, 6.0]]), np.ones(2, bool), np.zeros(2, int), (20, 16))
    np.testing.assert_allclose(small.boxes[0], [-0.5, -0.5, 15.5, 19.5])
    with pytest.raises(ValueError, match='differ in length'):
        segment_boxes(uv, in_image[:3], seg, (200, 400))


def test_encode_crops_matches_manual_crop() -> None:
    clip = load_clip(ClipSpec('ovp-tiny', 'none', seed=7))
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (120, 200, 3), dtype=np.uint8)
    boxes = np.array([[89.5, 39.5, 119.5, 69.5], [-0.5, -0.5, 29.5, 29.5], [89.5, 39.5, 119.5, 69.5]])
    feats = encode_crops(clip, image, boxes, batch_size=2)
    assert feats.shape == (3, 32)
    torch.testing.assert_close(feats.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(feats[0], feats[2])
    crop = torch.from_numpy(image[40:70, 90:120]).permute(2, 0, 1).float()[None] / 255
    crop = F.interpolate(crop, size=(224, 224), mode='bilinear', align_corners=False, antialias=True)
    mean = torch.tensor(clip.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(clip.image_std).view(1, 3, 1, 1)
    with torch.inference_mode():
        ref = F.normalize(clip.model.encode_image((crop - mean) / std), dim=-1)[0]
    torch.testing.assert_close(feats[0], ref, atol=1e-5, rtol=1e-5)
    assert encode_crops(clip, image, np.zeros((0, 4))).shape == (0, 32)


def test_segment_pseudo_labels_eq4() -> None:
    e = torch.eye(3, 4)
    text = torch.stack([e[0], e[1], -e[0]])                 # class 2 is the opposite of class 0
    crops = torch.stack([e[0] * 5.0, (e[0] + e[1])])        # unnormalised on purpose
    probs = segment_pseudo_labels(crops, text, logit_scale=1.0)
    z = math.exp(1) + 1 + math.exp(-1)
    torch.testing.assert_close(probs[0], torch.tensor([math.e / z, 1 / z, math.exp(-1) / z]))
    c = 1 / math.sqrt(2)                                    # cosines (c, c, -c)
    z2 = 2 * math.exp(c) + math.exp(-c)
    expected = torch.tensor([math.exp(c) / z2, math.exp(c) / z2, math.exp(-c) / z2])
    torch.testing.assert_close(probs[1], expected)
    sharp = segment_pseudo_labels(crops[:1], text, logit_scale=100.0)
    z3 = 1 + math.exp(-100) + math.exp(-200)               # CLIP's logit scale: softmax([100, 0, -100])
    torch.testing.assert_close(sharp[0], torch.tensor([1 / z3, math.exp(-100) / z3, math.exp(-200) / z3]))
    with pytest.raises(ValueError, match='K >= 1'):
        segment_pseudo_labels(crops, torch.zeros(0, 4))
    with pytest.raises(ValueError, match='do not match'):
        segment_pseudo_labels(torch.zeros(2, 5), text)


def test_segments_of_the_synthetic_world_are_pure(sim_frame) -> None:
    """On the synthetic world, segments split objects from the ground and rarely mix instances."""
    labels = segment_scan(sim_frame.points, eps=0.5, min_samples=5)
    ground = sim_frame.instances == 0
    assert (labels[ground] == -1).mean() > 0.98
    assert (labels[~ground] >= 0).mean() > 0.6
    majority = 0
    for s in range(labels.max() + 1):
        majority += np.unique(sim_frame.instances[labels == s], return_counts=True)[1].max()
    assert majority / (labels >= 0).sum() > 0.95


def test_segments_on_semantickitti(semantic_kitti_dir) -> None:
    """Real scan: the ground classes are removed, objects (cars, people, ...) are kept in segments."""
    from perception_nodes.io.kitti import read_semantic_labels, read_velodyne
    scan = sorted(semantic_kitti_dir.rglob('velodyne/*.bin'))[0]
    points = read_velodyne(scan)[:, :3]
    semantic, _ = read_semantic_labels(scan.parent.parent / 'labels' / f'{scan.stem}.label', len(points))
    labels = segment_scan(points, eps=0.5, min_samples=5, voxel_size=0.1)
    ground = np.isin(semantic, [40, 44, 48, 49, 60, 72])       # road, parking, sidewalk, other-ground, ...
    things = np.isin(semantic, [10, 11, 13, 15, 18, 20, 30, 31, 32, 252, 253, 254, 255, 256, 257, 258, 259])
    assert ground.mean() > 0.2 and things.sum() > 1000
    assert (labels[ground] == -1).mean() > 0.9
    assert (labels[things] >= 0).mean() > 0.85
    assert labels.max() + 1 > 50                                  # many separate segments


def test_segment_crop_features_over_cameras() -> None:
    clip = load_clip(ClipSpec('ovp-tiny', 'none', seed=7))
    rng = np.random.default_rng(2)
    images = [rng.integers(0, 256, (120, 200, 3), dtype=np.uint8) for _ in range(2)]
    seg = np.array([0, 0, 1, 1, 2, 3])                   # segment 3 has one point: never valid
    uv_a = np.array([[100, 50], [110, 60], [10, 10], [20, 20], [0, 0], [5, 5]], dtype=float)
    uv_b = np.array([[30, 30], [40, 40], [0, 0], [0, 0], [150, 100], [5, 5]], dtype=float)
    in_a = np.array([1, 1, 1, 1, 0, 1], dtype=bool)       # camera a sees segments 0 and 1
    in_b = np.array([1, 1, 0, 0, 1, 1], dtype=bool)       # camera b sees segment 0 (and one point of 2)
    feats, valid = segment_crop_features(clip, images, [uv_a, uv_b], [in_a, in_b], seg)
    np.testing.assert_array_equal(valid, [True, True, False, False])
    box_a = segment_boxes(uv_a, in_a, seg, (120, 200)).boxes
    box_b = segment_boxes(uv_b, in_b, seg, (120, 200)).boxes
    a0, a1 = encode_crops(clip, images[0], box_a[[0, 1]])
    (b0,) = encode_crops(clip, images[1], box_b[[0]])
    torch.testing.assert_close(feats[0], F.normalize(a0 + b0, dim=0), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(feats[1], a1, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(feats[2:], torch.zeros(2, 32))


@pytest.mark.parametrize('eps', [1.0, 1.5, 2.5])
def test_radius_connected_components_equals_dbscan_with_min_samples_1(eps: float) -> None:
    """The hashing fast path partitions lattice points exactly as scikit-learn's DBSCAN(min_samples=1)."""
    from sklearn.cluster import DBSCAN
    from perception_nodes.teacher.instances import radius_connected_components
    rng = np.random.default_rng(int(eps * 10))
    cells = np.unique(rng.integers(-12, 12, size=(900, 3)), axis=0)
    fast = radius_connected_components(cells, eps)
    slow = DBSCAN(eps=eps + 1e-9, min_samples=1).fit_predict(cells.astype(np.float64))
    # Same partition: the label pairs map one-to-one.
    pairs = np.unique(np.stack([fast, slow], axis=1), axis=0)
    assert len(pairs) == len(np.unique(fast)) == len(np.unique(slow))
    assert len(np.unique(slow)) > 5  # a non-trivial partition


def test_connected_components_segments_match_dbscan_on_kitti(semantic_kitti_dir) -> None:
    """On a real scan, Euclidean cluster extraction finds the same objects as DBSCAN (high agreement)."""
    from sklearn.metrics import adjusted_rand_score
    from perception_nodes.io.kitti import read_velodyne
    points = read_velodyne(semantic_kitti_dir / 'sequences/00/velodyne/000000.bin')[:, :3]
    fast = segment_scan(points, eps=0.5, min_samples=5, voxel_size=0.2, cluster='connected_components')
    slow = segment_scan(points, eps=0.5, min_samples=5, voxel_size=0.2, cluster='dbscan')
    both = (fast >= 0) & (slow >= 0)
    assert ((fast >= 0) == (slow >= 0)).mean() > 0.95  # the same points are clustered vs ground/noise
    assert both.sum() > 20000
    assert adjusted_rand_score(fast[both], slow[both]) > 0.95
    with pytest.raises(ValueError, match='voxel_size'):
        segment_scan(points[:100], cluster='connected_components', voxel_size=None)


def _sklearn_ground_plane(points: np.ndarray, threshold: float = 0.2, seed: int = 0,
                          max_points: int = 20000):
    """The former fit_ground_plane (scikit-learn RANSACRegressor), as the slow reference."""
    from sklearn.linear_model import LinearRegression, RANSACRegressor

    from perception_nodes.teacher.instances import GroundPlane
    pts = np.asarray(points, dtype=np.float64)
    cand = pts[pts[:, 2] <= np.median(pts[:, 2])]
    rng = np.random.default_rng(seed)
    if len(cand) > max_points:
        cand = cand[rng.choice(len(cand), max_points, replace=False)]
    ransac = RANSACRegressor(LinearRegression(), residual_threshold=threshold, random_state=seed,
                             max_trials=100)
    ransac.fit(cand[:, :2], cand[:, 2])
    a, b = ransac.estimator_.coef_
    normal = np.array([-a, -b, 1.0])
    norm = float(np.linalg.norm(normal))
    return GroundPlane(normal=normal / norm, offset=-float(ransac.estimator_.intercept_) / norm)


def test_vectorised_ransac_matches_sklearn_on_kitti(kitti_raw_dir) -> None:
    """Issue 14: the one-matmul RANSAC finds the plane scikit-learn's RANSACRegressor found."""
    from perception_nodes.io.kitti import find_kitti_frames, load_kitti_frame
    for files in find_kitti_frames(kitti_raw_dir)[::3]:
        points = load_kitti_frame(files).points
        fast, slow = fit_ground_plane(points), _sklearn_ground_plane(points)
        assert fast is not None and fast.normal[2] > 0.99
        angle = np.degrees(np.arccos(np.clip(fast.normal @ slow.normal, -1.0, 1.0)))
        assert angle < 1.0 and abs(fast.offset - slow.offset) < 0.03, (angle, fast.offset, slow.offset)
        # the ground removed by segment_scan (within 0.2 m of the plane) is the same points
        same = (fast.distance(points) > 0.2) == (slow.distance(points) > 0.2)
        assert same.mean() > 0.97   # scikit-learn's own seeds 0 and 1 differ by up to 3 % here


def test_ground_plane_degenerate_input() -> None:
    assert fit_ground_plane(np.zeros((2, 3))) is None
    assert fit_ground_plane(np.zeros((100, 3))) is None                      # all one point
    wall = np.stack([np.zeros(200), np.linspace(0, 5, 200), np.linspace(-2, 2, 200)], axis=1)
    assert fit_ground_plane(wall) is None                                    # vertical: no ground
    rng = np.random.default_rng(0)
    steep = rng.uniform(-5, 5, (500, 3))
    steep[:, 2] = 0.8 * steep[:, 0]                                          # 39 degrees
    assert fit_ground_plane(steep) is None


def test_segment_scan_imports_neither_sklearn_nor_open_clip() -> None:
    """The live settings (connected components) must not import scikit-learn in the first frame."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import perception_nodes
    code = ('import sys, numpy as np\n'
            'from perception_nodes.teacher.instances import segment_scan\n'
            'pts = np.random.default_rng(0).normal(size=(5000, 3))\n'
            'segment_scan(pts, voxel_size=0.2, cluster="connected_components")\n'
            'print(sorted(m for m in ("sklearn", "open_clip") if m in sys.modules))\n')
    root = str(Path(perception_nodes.__file__).resolve().parents[1])
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, 'PYTHONPATH': root})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == '[]'


@pytest.mark.parametrize('eps', [1.0, 1.8, 2.5, 3.2])
def test_radius_connected_components_labels_equal_the_all_pairs_reference(eps: float) -> None:
    """Issue 14 (the column walk): the same labels, numbered alike, as scipy on the all-pairs graph."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    from perception_nodes.teacher.instances import radius_connected_components
    rng = np.random.default_rng(int(eps * 10))
    cells = np.unique(rng.integers(-9, 9, size=(700, 3)), axis=0)
    cells = np.concatenate([cells, cells[:5] + [40, 0, 0]])           # far, separate copies
    for shuffled in (False, True):
        pts = cells[rng.permutation(len(cells))] if shuffled else cells
        d2 = ((pts[:, None, :] - pts[None, :, :]) ** 2).sum(-1)
        _, slow = connected_components(csr_matrix(d2 <= eps * eps + 1e-9), directed=False)
        assert np.array_equal(radius_connected_components(pts, eps), slow)
