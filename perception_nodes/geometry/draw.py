"""Pictures people look at: projected points over an image, coloured by depth, hidden points marked."""
from __future__ import annotations

import numpy as np
import torch

from perception_nodes.geometry.projection import pixel_indices


def _turbo(values: np.ndarray) -> np.ndarray:
    from matplotlib import colormaps

    return (colormaps['turbo'](np.clip(values, 0, 1))[:, :3] * 255).astype(np.uint8)


def depth_overlay(image_rgb: np.ndarray, uv: torch.Tensor, depth: torch.Tensor, in_image: torch.Tensor,
                  visible: torch.Tensor | None = None, max_depth: float = 50.0,
                  radius: int = 1) -> np.ndarray:
    """Draw points coloured by depth on a copy of ``image_rgb``.

    Returns an (H, W, 3) uint8 RGB copy of ``image_rgb`` with in-image points drawn as ``(2 radius + 1)^2``
    squares coloured by depth (turbo: near blue, far red); points not ``visible`` are drawn as magenta
    crosses.
    """
    import cv2

    out = np.ascontiguousarray(np.asarray(image_rgb, dtype=np.uint8).copy())
    h, w = out.shape[:2]
    rows, cols = pixel_indices(uv, (h, w))
    inside = in_image.cpu().numpy().astype(bool)
    vis = inside if visible is None else (visible.cpu().numpy().astype(bool) & inside)
    hidden = inside & ~vis
    r, c = rows.cpu().numpy(), cols.cpu().numpy()
    colours = _turbo(depth.detach().cpu().numpy() / max_depth)
    order = np.argsort(-depth.detach().cpu().numpy()[vis])        # far first, near drawn on top
    vr, vc, vcol = r[vis][order], c[vis][order], colours[vis][order]
    for dr in range(-radius, radius + 1):
        for dc in range(-radius, radius + 1):
            out[np.clip(vr + dr, 0, h - 1), np.clip(vc + dc, 0, w - 1)] = vcol
    for y, x in zip(r[hidden], c[hidden]):
        cv2.drawMarker(out, (int(x), int(y)), (255, 0, 255), markerType=cv2.MARKER_TILTED_CROSS, markerSize=5,
                       thickness=1)
    return out
