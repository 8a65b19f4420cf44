"""Pictures people look at: projected labels drawn on camera images, and a legend of class colours (PNG)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from perception_nodes.atomic import atomic_write
from perception_nodes.outputs import UNKNOWN_LABEL

UNKNOWN_COLOR = (128, 128, 128)


# matplotlib's tab20, as uint8 (test/test_overlay.py checks it against matplotlib): the palette of up to 20
# classes without importing matplotlib (~0.1 s) in the first frame
TAB20 = np.array([[31, 119, 180], [174, 199, 232], [255, 127, 14], [255, 187, 120], [44, 160, 44],
                  [152, 223, 138], [214, 39, 40], [255, 152, 150], [148, 103, 189], [197, 176, 213],
                  [140, 86, 75], [196, 156, 148], [227, 119, 194], [247, 182, 210], [127, 127, 127],
                  [199, 199, 199], [188, 189, 34], [219, 219, 141], [23, 190, 207], [158, 218, 229]],
                 dtype=np.uint8)


def default_palette(num_classes: int) -> np.ndarray:
    """(K, 3) uint8 distinct colours (matplotlib tab20, then evenly spaced hues)."""
    base = TAB20
    if num_classes <= len(base):
        return base[:num_classes].copy()
    import matplotlib

    hsv = matplotlib.colormaps['hsv'](np.linspace(0, 1, num_classes - len(base), endpoint=False))[:, :3]
    return np.concatenate([base, (hsv * 255).round().astype(np.uint8)])


def label_colors(labels: np.ndarray, palette: np.ndarray,
                 unknown_color: Sequence[int] = UNKNOWN_COLOR) -> np.ndarray:
    """(N, 3) uint8 colour of each label; UNKNOWN_LABEL (and any id outside the palette) -> unknown_color."""
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    palette = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    out = np.empty((labels.size, 3), dtype=np.uint8)
    out[:] = np.asarray(unknown_color, dtype=np.uint8)
    ok = (labels >= 0) & (labels < len(palette)) & (labels != UNKNOWN_LABEL)
    out[ok] = palette[labels[ok]]
    return out


@dataclass
class PainterLayout:
    """Which point shows at each pixel of an overlay: what :func:`draw_points` computes before colouring.

    ``point`` (M,): index into the points given to :func:`painter_layout` of each painted pixel's point;
    ``pixel`` (M,): the painted pixels (flat indices into the (H, W) image).
    """

    shape: tuple[int, int]
    pixel: np.ndarray
    point: np.ndarray


def painter_layout(shape: tuple[int, int], uv: np.ndarray, depth: np.ndarray | None = None,
                   radius: int = 2) -> PainterLayout:
    """Return the pixels each point's ``2 radius + 1`` square paints in painter's order (:func:`draw_points`).

    Needs no colour: the pipeline computes it while the network runs, and colours it once labels exist.
    """
    h, w = int(shape[0]), int(shape[1])
    uv = np.asarray(uv, dtype=np.float64).reshape(-1, 2)
    index = np.arange(len(uv))
    fin = np.isfinite(uv)
    finite = fin[:, 0] & fin[:, 1]
    cols = np.floor(uv[finite, 0] + 0.5).astype(np.int64)
    rows = np.floor(uv[finite, 1] + 0.5).astype(np.int64)
    index = index[finite]
    if depth is not None:
        order = np.argsort(-np.asarray(depth, dtype=np.float64).reshape(-1)[finite], kind='stable')
        rows, cols, index = rows[order], cols[order], index[order]
    r = max(int(radius), 0)
    drawn = np.flatnonzero((rows >= -r) & (rows < h + r) & (cols >= -r) & (cols < w + r))
    none = np.zeros(0, dtype=np.intp)
    if not len(drawn) or h == 0 or w == 0:
        return PainterLayout((h, w), none, none)
    hp, wp = h + 2 * r, w + 2 * r                 # the image plus a margin for centres just outside it
    exact = len(index) < (1 << 24)                # ranks are float32 for the max filter: exact below 2**24
    rank = np.full(hp * wp, -1, dtype=np.float32 if exact else np.float64)
    np.maximum.at(rank, (rows[drawn] + r) * wp + cols[drawn] + r, drawn.astype(rank.dtype))
    rank = _max_filter(rank.reshape(hp, wp), r)[r:r + h, r:r + w].ravel()
    pixel = np.flatnonzero(rank >= 0)
    return PainterLayout((h, w), pixel, index[rank[pixel].astype(np.intp)])


def paint(image: np.ndarray, layout: PainterLayout, colors: np.ndarray) -> np.ndarray:
    """Return a copy of the (H, W, 3) uint8 ``image``, each painted pixel in its point's colour."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f'overlay needs an (H, W, 3) uint8 image, got {image.shape} {image.dtype}')
    if tuple(image.shape[:2]) != tuple(layout.shape):
        raise ValueError(f'the layout is for {layout.shape} images, got {image.shape[:2]}')
    out = image.copy()
    colors = np.ascontiguousarray(colors, dtype=np.uint8).reshape(-1, 3)
    pixels = out.reshape(-1, 3).view(np.dtype((np.void, 3))).reshape(-1)     # one 3-byte item per pixel
    pixels[layout.pixel] = colors.view(np.dtype((np.void, 3))).reshape(-1)[layout.point]
    return out


def draw_points(image: np.ndarray, uv: np.ndarray, colors: np.ndarray, depth: np.ndarray | None = None,
                radius: int = 2) -> np.ndarray:
    """Draw a filled square of side ``2 radius + 1`` at each (u, v) on a copy of the (H, W, 3) uint8 image.

    Far points are drawn first so near ones stay on top (painter's order by ``depth``, ties in input
    order): each pixel shows the last point in that order whose square covers it. Computed as such
    (:func:`painter_layout`): the points' ranks in painter's order are written at their centre pixels
    (the highest per pixel), a ``2 radius + 1`` max filter spreads them over the squares, and the pixels
    with a rank take its colour (:func:`paint`). Points outside the image are ignored (their squares
    still cover the pixels they reach).
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f'overlay needs an (H, W, 3) uint8 image, got {image.shape} {image.dtype}')
    uv = np.asarray(uv, dtype=np.float64).reshape(-1, 2)
    colors = np.asarray(colors, dtype=np.uint8).reshape(-1, 3)
    if len(uv) != len(colors):
        raise ValueError(f'{len(uv)} points but {len(colors)} colours')
    return paint(image, painter_layout(image.shape[:2], uv, depth, radius), colors)


def _max_filter(values: np.ndarray, r: int) -> np.ndarray:
    """Maximum over the ``(2 r + 1)``-square around each element (outside the array counts as -inf)."""
    if r == 0:
        return values
    if values.dtype == np.float32:
        import cv2
        return cv2.dilate(values, np.ones((2 * r + 1, 2 * r + 1), np.uint8), borderType=cv2.BORDER_CONSTANT,
                          borderValue=-np.inf)
    rows = values.copy()
    for d in range(1, r + 1):
        np.maximum(rows[:, :-d], values[:, d:], out=rows[:, :-d])
        np.maximum(rows[:, d:], values[:, :-d], out=rows[:, d:])
    out = rows.copy()
    for d in range(1, r + 1):
        np.maximum(out[:-d], rows[d:], out=out[:-d])
        np.maximum(out[d:], rows[:-d], out=out[d:])
    return out


def overlay_points(mask: torch.Tensor | np.ndarray, max_points: int = 60000) -> np.ndarray:
    """Return the indices of the points an overlay draws: ``mask``'s, evenly subsampled to ``max_points``."""
    to_np = (lambda x: x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x))
    idx = np.nonzero(to_np(mask).astype(bool))[0]
    if max_points > 0 and idx.size > max_points:
        idx = idx[np.linspace(0, idx.size - 1, max_points).round().astype(np.int64)]
    return idx


def label_overlay_layout(shape: tuple[int, int], uv: torch.Tensor | np.ndarray,
                         depth: torch.Tensor | np.ndarray, mask: torch.Tensor | np.ndarray, radius: int = 2,
                         max_points: int = 60000) -> tuple[np.ndarray, PainterLayout]:
    """Return (drawn point indices, their layout): :func:`draw_label_overlay` before labels are known."""
    to_np = (lambda x: x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x))
    idx = overlay_points(mask, max_points)
    return idx, painter_layout(shape, to_np(uv)[idx], to_np(depth)[idx], radius)


def paint_labels(image: np.ndarray, drawn: tuple[np.ndarray, PainterLayout], labels: np.ndarray,
                 palette: np.ndarray, unknown_color: Sequence[int] = UNKNOWN_COLOR) -> np.ndarray:
    """Colour a :func:`label_overlay_layout` with the points' labels (``labels`` (N,), all points)."""
    idx, layout = drawn
    return paint(image, layout, label_colors(np.asarray(labels)[idx], palette, unknown_color))


def draw_label_overlay(image: np.ndarray, uv: torch.Tensor | np.ndarray, depth: torch.Tensor | np.ndarray,
                       mask: torch.Tensor | np.ndarray, labels: np.ndarray, palette: np.ndarray,
                       radius: int = 2, max_points: int = 60000,
                       unknown_color: Sequence[int] = UNKNOWN_COLOR) -> np.ndarray:
    """Draw the labels of the points selected by ``mask`` (N,) at their projections ``uv`` (N, 2).

    More than ``max_points`` points are subsampled evenly (deterministic).
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f'overlay needs an (H, W, 3) uint8 image, got {image.shape} {image.dtype}')
    drawn = label_overlay_layout(image.shape[:2], uv, depth, mask, radius, max_points)
    return paint_labels(image, drawn, labels, palette, unknown_color)


def save_png(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write an (H, W, 3) uint8 RGB image as PNG, atomically."""
    import cv2

    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f'save_png needs an (H, W, 3) uint8 image, got {image.shape} {image.dtype}')

    def write(tmp: str) -> None:
        if not cv2.imwrite(tmp, np.ascontiguousarray(image[..., ::-1])):
            raise OSError(f'could not write {tmp}')
    return atomic_write(path, write, suffix='.png')


def save_legend(path: str | os.PathLike, class_names: Sequence[str], palette: np.ndarray,
                title: str = '', unknown_color: Sequence[int] = UNKNOWN_COLOR) -> Path:
    """Write a PNG legend: one colour swatch per class (plus "unknown"), atomically written."""
    import matplotlib
    matplotlib.use('Agg', force=False)
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    names = list(class_names) + ['unknown']
    colors = np.concatenate([np.asarray(palette, dtype=np.uint8).reshape(-1, 3)[:len(class_names)],
                             np.asarray(unknown_color, dtype=np.uint8).reshape(1, 3)]) / 255.0
    ncol = max(1, int(np.ceil(len(names) / 25)))
    rows = int(np.ceil(len(names) / ncol))
    fig = Figure(figsize=(2.6 * ncol, 0.3 * rows + 0.6))
    ax = fig.add_subplot()
    ax.axis('off')
    handles = [Patch(facecolor=c, edgecolor='black', label=n) for n, c in zip(names, colors)]
    ax.legend(handles=handles, loc='center', ncol=ncol, frameon=False, title=title or None, fontsize=9)
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format='png', dpi=100, bbox_inches='tight'),
                        suffix='.png')
