from __future__ import annotations

import numpy as np
import pytest

from perception_nodes.student.padding import pad_points, subsample_indices


def test_small_scan_is_padded_with_a_mask():
    pts = np.arange(40, dtype=np.float32).reshape(10, 4)
    out = pad_points(pts, 16)
    assert out.points.shape == (16, 4) and out.mask.tolist() == [1.0] * 10 + [0.0] * 6
    assert np.array_equal(out.points[:10], pts) and not out.points[10:].any()
    assert out.num_input == out.num_used == 10 and not out.subsampled


def test_large_scan_is_subsampled_deterministically_and_evenly():
    pts = np.random.default_rng(0).normal(size=(1000, 4)).astype(np.float32)
    a, b = pad_points(pts, 300), pad_points(pts, 300)
    assert a.subsampled and a.num_used == 300 and a.num_input == 1000
    assert np.array_equal(a.kept, b.kept) and np.array_equal(a.points, b.points)
    gaps = np.diff(a.kept)
    assert gaps.min() >= 3 and gaps.max() <= 4            # every ~3.33rd point, in scan order
    assert np.array_equal(subsample_indices(10, 5), [0, 2, 4, 6, 8])


def test_nonfinite_points_are_dropped_and_counted():
    pts = np.ones((6, 4), dtype=np.float32)
    pts[1, 0] = np.nan
    pts[4, 3] = np.inf
    out = pad_points(pts, 8)
    assert out.num_nonfinite == 2 and out.num_used == 4
    assert out.kept.tolist() == [0, 2, 3, 5] and out.finite.tolist() == [True, False, True, True, False, True]
    assert np.isfinite(out.points).all()


@pytest.mark.parametrize('empty', [np.zeros((0, 4), np.float32), np.zeros(0), np.zeros((0, 3))])
def test_empty_scans(empty):
    out = pad_points(empty, 8)
    assert out.num_input == 0 and out.num_used == 0 and not out.mask.any()


@pytest.mark.parametrize('bad', [np.zeros((5, 3)), np.zeros((2, 3, 4)), np.array([['a'] * 4])])
def test_bad_shapes_are_named(bad):
    with pytest.raises(ValueError, match='points must be'):
        pad_points(bad, 8)


def test_bad_max_points():
    with pytest.raises(ValueError, match='max_points'):
        pad_points(np.zeros((3, 4)), 0)


def _reference_pad(points, max_points, columns=4):
    """The former pad_points body (isfinite over rows, zeros, fancy-index copy)."""
    pts = np.asarray(points)[:, :columns].astype(np.float32, copy=False)
    finite = np.isfinite(pts).all(axis=1)
    good = np.flatnonzero(finite)
    kept = good[subsample_indices(len(good), max_points)]
    out = np.zeros((max_points, columns), dtype=np.float32)
    out[:len(kept)] = pts[kept]
    return out, kept, finite


CASES = [(50, 64, 0), (64, 64, 0), (80, 64, 0), (50, 64, 5), (90, 64, 7), (0, 8, 0)]


@pytest.mark.parametrize('n, max_points, bad', CASES)
def test_pad_points_equals_the_reference(n, max_points, bad):
    """Issue 14 (contiguous copy when every point is used, short-axis finite test): same arrays."""
    rng = np.random.default_rng(n + bad)
    pts = rng.normal(size=(n, 5)).astype(np.float64)
    pts[rng.choice(n, bad, replace=False) if n else [], rng.integers(0, 4)] = np.nan
    got = pad_points(pts, max_points)
    out, kept, finite = _reference_pad(pts, max_points)
    assert np.array_equal(got.points, out) and np.array_equal(got.kept, kept)
    assert np.array_equal(got.finite, finite) and got.mask.sum() == len(kept)
