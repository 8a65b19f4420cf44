"""Bird's-eye renders of a frame: predicted classes | ground truth, side by side (matplotlib Agg, atomic PNG).

:func:`bev_raster` draws points top-down into an RGB raster, each cell coloured by the class of its highest
point (what one sees from above); :func:`render_bev` puts the prediction and the ground truth next to each
other with a legend of the classes present, and writes the PNG atomically.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from perception_nodes.metrics.plots import save_figure

UNKNOWN_RGB = (128, 128, 128)     # predicted "unknown"
IGNORE_RGB = (205, 205, 205)      # ground truth not evaluated
BACKGROUND_RGB = (255, 255, 255)  # no point


def bev_extent(points: np.ndarray, quantile: float = 0.98,
               max_half: float = 60.0) -> tuple[float, float, float, float]:
    """(x_min, x_max, y_min, y_max) around the points' robust extent, at most ``max_half`` metres each way."""
    xy = np.asarray(points, np.float64)[:, :2]
    xy = xy[np.isfinite(xy).all(axis=1)]
    if xy.size == 0:
        return -1.0, 1.0, -1.0, 1.0
    lo = np.quantile(xy, 1 - quantile, axis=0)
    hi = np.quantile(xy, quantile, axis=0)
    centre = (lo + hi) / 2
    half = min(max(float((hi - lo).max()) / 2 * 1.05, 1.0), max_half)
    return centre[0] - half, centre[0] + half, centre[1] - half, centre[1] + half


def bev_raster(points: np.ndarray, labels: np.ndarray, palette: np.ndarray,
               extent: tuple[float, float, float, float], pixels: int = 400,
               special: dict[int, tuple[int, int, int]] | None = None) -> np.ndarray:
    """(pixels, pixels, 3) uint8 top-down raster; row 0 = largest y (x right, y up as on a map).

    ``labels`` index ``palette``; values in ``special`` (e.g. unknown, ignore) get those colours; any other
    out-of-palette value is drawn as unknown. A cell shows the label of its highest point.
    """
    pts = np.asarray(points, np.float64).reshape(-1, 3)
    lab = np.asarray(labels).astype(np.int64).reshape(-1)
    if lab.size != len(pts):
        raise ValueError(f'{lab.size} labels for {len(pts)} points')
    pal = np.asarray(palette, np.uint8).reshape(-1, 3)
    x0, x1, y0, y1 = extent
    image = np.empty((pixels, pixels, 3), np.uint8)
    image[:] = BACKGROUND_RGB
    col = np.floor((pts[:, 0] - x0) / (x1 - x0) * pixels).astype(np.int64)
    row = pixels - 1 - np.floor((pts[:, 1] - y0) / (y1 - y0) * pixels).astype(np.int64)
    ok = (col >= 0) & (col < pixels) & (row >= 0) & (row < pixels) & np.isfinite(pts).all(axis=1)
    if not ok.any():
        return image
    col, row, z, lab = col[ok], row[ok], pts[ok, 2], lab[ok]
    cell = row * pixels + col
    order = np.lexsort((z, cell))                       # by cell, then height: the last of a cell is the top
    last = np.ones(order.size, bool)
    last[:-1] = cell[order][1:] != cell[order][:-1]
    top = order[last]
    colours = np.empty((top.size, 3), np.uint8)
    colours[:] = UNKNOWN_RGB
    in_pal = (lab[top] >= 0) & (lab[top] < len(pal))
    colours[in_pal] = pal[lab[top][in_pal]]
    for value, rgb in (special or {}).items():
        colours[lab[top] == value] = rgb
    image.reshape(-1, 3)[cell[top]] = colours
    return image


def render_bev(path: str | os.PathLike, points: np.ndarray, pred: np.ndarray, truth: np.ndarray,
               class_names: Sequence[str], palette: np.ndarray, title: str = '', unknown_label: int = 65535,
               pixels: int = 400, dpi: int = 100) -> Path:
    """Write ``prediction | ground truth`` BEV panels (truth: class index or -1 = not evaluated) as a PNG."""
    extent = bev_extent(points)
    pal = np.asarray(palette, np.uint8).reshape(-1, 3)
    left = bev_raster(points, pred, pal, extent, pixels, {unknown_label: UNKNOWN_RGB})
    right = bev_raster(points, truth, pal, extent, pixels, {-1: IGNORE_RGB})
    fig = Figure(figsize=(11.0, 5.6))
    for i, (image, name) in enumerate(((left, 'prediction'), (right, 'ground truth'))):
        ax = fig.add_subplot(1, 2, i + 1)
        ax.imshow(image, extent=extent, interpolation='nearest')
        ax.set_title(name)
        ax.set_xlabel('x (m)')
        ax.set_ylabel('y (m)')
    present = sorted({int(v) for v in np.unique(np.concatenate([np.asarray(pred).reshape(-1),
                                                                np.asarray(truth).reshape(-1)]))
                      if 0 <= v < len(class_names)})
    handles = [Patch(color=pal[k] / 255.0, label=class_names[k]) for k in present if k < len(pal)]
    handles += [Patch(color=np.array(UNKNOWN_RGB) / 255.0, label='unknown (prediction)'),
                Patch(color=np.array(IGNORE_RGB) / 255.0, label='not evaluated (truth)')]
    fig.legend(handles=handles, loc='lower center', ncol=min(8, len(handles)), fontsize=7)
    fig.suptitle(title or 'bird\'s-eye view')
    fig.tight_layout(rect=(0, 0.08, 1, 0.95))
    return save_figure(fig, path, dpi)


__all__ = ['BACKGROUND_RGB', 'IGNORE_RGB', 'UNKNOWN_RGB', 'bev_extent', 'bev_raster', 'render_bev']
