"""Overlays and legends: drawing against a per-pixel reference, PNG files."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from perception_nodes.outputs import UNKNOWN_LABEL
from perception_nodes.overlay import (default_palette, draw_label_overlay, draw_points, label_colors,
                                      save_legend, save_png)


def test_palette_distinct():
    for k in (3, 20, 45):
        pal = default_palette(k)
        assert pal.shape == (k, 3) and pal.dtype == np.uint8
        assert len({tuple(c) for c in pal}) == k


def test_tab20_constant_is_matplotlibs():
    import matplotlib

    from perception_nodes.overlay import TAB20
    want = (np.asarray(matplotlib.colormaps['tab20'].colors) * 255).round().astype(np.uint8)
    assert np.array_equal(TAB20, want)


def test_label_colors_unknown_and_out_of_range():
    pal = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.uint8)
    got = label_colors(np.array([1, 0, UNKNOWN_LABEL, 7]), pal, unknown_color=(9, 9, 9))
    assert got.tolist() == [[4, 5, 6], [1, 2, 3], [9, 9, 9], [9, 9, 9]]


def test_draw_points_matches_per_pixel_reference():
    img = np.zeros((6, 8, 3), dtype=np.uint8)
    uv = np.array([[1.2, 1.4], [6.6, 4.5], [7.0, 0.0], [np.nan, 1], [20, 20]])
    colors = np.array([[10, 0, 0], [0, 20, 0], [0, 0, 30], [5, 5, 5], [6, 6, 6]], dtype=np.uint8)
    depth = np.array([5.0, 1.0, 3.0, 1.0, 1.0])
    out = draw_points(img, uv, colors, depth, radius=1)
    ref = img.copy()
    for i in np.argsort(-depth, kind='stable'):
        if not np.isfinite(uv[i]).all():
            continue
        c, r = int(np.floor(uv[i, 0] + 0.5)), int(np.floor(uv[i, 1] + 0.5))
        for rr in range(r - 1, r + 2):
            for cc in range(c - 1, c + 2):
                if 0 <= rr < 6 and 0 <= cc < 8:
                    ref[rr, cc] = colors[i]
    assert np.array_equal(out, ref)
    assert out[1, 1].tolist() == [10, 0, 0] and out[5, 7].tolist() == [0, 20, 0]
    assert img.sum() == 0          # input untouched


def _painter_reference(img, uv, colors, depth, radius):
    """Point after point in painter's order (far first, ties in input order), square by square."""
    ref = img.copy()
    h, w = img.shape[:2]
    for i in np.argsort(-depth, kind='stable'):
        if not np.isfinite(uv[i]).all():
            continue
        c, r = int(np.floor(uv[i, 0] + 0.5)), int(np.floor(uv[i, 1] + 0.5))
        ref[max(r - radius, 0):max(r + radius + 1, 0), max(c - radius, 0):max(c + radius + 1, 0)] = colors[i]
    return ref


def test_draw_points_equals_the_painter_reference_on_crowded_images():
    """Issue 14 (rank image + max filter): overlapping squares, ties, centres outside the image."""
    rng = np.random.default_rng(3)
    for trial in range(40):
        h, w = (int(v) for v in rng.integers(1, 30, 2))
        n = int(rng.integers(0, 250))
        uv = rng.uniform(-4, max(h, w) + 4, (n, 2))
        uv[rng.random(n) < 0.05] = np.nan
        depth = rng.integers(0, 4, n).astype(float)              # many ties
        colors = rng.integers(0, 255, (n, 3)).astype(np.uint8)
        img = rng.integers(0, 255, (h, w, 3)).astype(np.uint8)
        for radius in range(4):
            assert np.array_equal(draw_points(img, uv, colors, depth, radius),
                                  _painter_reference(img, uv, colors, depth, radius)), (trial, radius)


def test_max_filter_paths_agree():
    from perception_nodes.overlay import _max_filter
    values = np.random.default_rng(0).integers(-1, 1000, (23, 37)).astype(np.float32)
    for r in range(4):
        assert np.array_equal(_max_filter(values, r), _max_filter(values.astype(np.float64), r))


def test_draw_points_nearest_on_top():
    img = np.zeros((3, 3, 3), dtype=np.uint8)
    uv = np.array([[1, 1], [1, 1]])
    near_first = draw_points(img, uv, np.array([[1, 1, 1], [2, 2, 2]]), np.array([1.0, 9.0]), radius=0)
    assert near_first[1, 1].tolist() == [1, 1, 1]


def test_draw_label_overlay_mask_and_subsample():
    img = np.zeros((10, 10, 3), dtype=np.uint8)
    uv = np.stack(np.meshgrid(np.arange(10), np.arange(10)), -1).reshape(-1, 2).astype(np.float32)
    mask = np.zeros(100, bool)
    mask[:50] = True
    labels = np.zeros(100, np.int64)
    out = draw_label_overlay(img, uv, np.ones(100), mask, labels, np.array([[200, 0, 0]], np.uint8),
                             radius=0, max_points=10)
    painted = (out.sum(-1) > 0)
    assert painted.sum() == 10 and not painted[5:].any()


def test_bad_image():
    with pytest.raises(ValueError, match='uint8'):
        draw_points(np.zeros((4, 4), np.uint8), np.zeros((0, 2)), np.zeros((0, 3)))


def test_png_files(tmp_path):
    img = np.zeros((4, 5, 3), np.uint8)
    img[..., 0] = 255
    path = save_png(tmp_path / 'sub' / 'o.png', img)
    back = cv2.imread(str(path))[..., ::-1]
    assert np.array_equal(back, img)
    legend = save_legend(tmp_path / 'legend.png', ['road', 'car'], default_palette(2), title='classes')
    data = cv2.imread(str(legend))
    assert data is not None and data.shape[0] > 20
    red = np.array(default_palette(2)[0][::-1])
    assert (np.abs(data.astype(int) - red).sum(-1) == 0).any()      # the road swatch is drawn
    assert sorted(p.name for p in tmp_path.iterdir()) == ['legend.png', 'sub']   # no temp files left
