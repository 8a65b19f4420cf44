"""Camera visibility of LiDAR points (Affinity3D Sec. 3.5, Eq. 9-10).

The LiDAR sits higher than (and elsewhere from) the camera, so it sees surfaces the camera does not;
projecting those points wrongly matches them to the occluder's pixels. Two tests remove them:

- :func:`superpixel_depth_visibility` (the paper, exactly): each in-image point gets the id ``S_p`` of the
  superpixel it projects into (-1 outside); the superpixel depth is the minimum point depth in it,
  ``D_sp = min_{p: S_p = s} D_p`` (Eq. 9); a point is visible when ``D_p - D_sp[S_p] < T_D`` and
  ``S_p > -1`` (Eq. 10), ``T_D = 0.5`` m.
- :func:`depth_buffer_visibility` (fast, no image needed): the image is cut into ``block x block`` pixel
  cells, each holding the minimum depth of the points projecting into it, then min-pooled over
  ``(2 dilation + 1)^2`` cells; a point is visible when ``D_p - D_buf < T_D (+ relative_threshold D_p)``.

How they differ: the superpixel test compares a point with the nearest point of the same image region, and
regions follow colour edges, so an occluder and what it hides share a region only where they overlap in
the image; regions are large (hundreds of pixels), so slanted surfaces seen at grazing angles (the road)
can span more than ``T_D`` inside one region and lose far points. The depth buffer compares with the
nearest point in a fixed square neighbourhood whatever the image shows: no segmentation cost and no image
needed, but it also flags points right next to (not behind) a nearer object's silhouette, and its
neighbourhood must be larger than the gap between LiDAR rows in the image for thin or sparse occluders to
be seen. ``relative_threshold`` grows the tolerance with depth to keep grazing surfaces (the road, whose
LiDAR rows a few pixels apart differ by metres in depth far away) visible; the function's default 0 is
the paper's test, :class:`VisibilityConfig` defaults to 0.1 with 4-pixel blocks dilated by one block
(chosen on the synthetic world, see ``bench/visibility_bench.py``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from perception_nodes.geometry.projection import Projection, pixel_indices


def superpixel_depth_visibility(depth: torch.Tensor, segment_ids: torch.Tensor,
                                threshold: float = 0.5) -> torch.Tensor:
    """Affinity3D Eq. 9-10: ``(D - D_sp[S_p] < T_D) & (S_p > -1)`` with ``D_sp`` a scatter-min per segment.

    depth (N,) float, segment_ids (N,) long (-1 outside the image) -> (N,) bool. Points with non-finite
    depth are invisible and do not contribute to ``D_sp``.
    """
    depth = torch.as_tensor(depth)
    segment_ids = torch.as_tensor(segment_ids, device=depth.device).long()
    if depth.ndim != 1 or segment_ids.shape != depth.shape:
        raise ValueError(f'depth and segment_ids must both be (N,), got {tuple(depth.shape)} and '
                         f'{tuple(segment_ids.shape)}')
    if not depth.is_floating_point():
        depth = depth.float()
    valid = (segment_ids > -1) & torch.isfinite(depth)
    if not bool(valid.any()):
        return torch.zeros_like(valid)
    seg = segment_ids[valid]
    d = depth[valid]
    d_sp = torch.full((int(seg.max()) + 1,), float('inf'), dtype=depth.dtype, device=depth.device)
    d_sp = d_sp.scatter_reduce(0, seg, d, reduce='amin', include_self=True)          # Eq. 9
    ref = d_sp[segment_ids.clamp(min=0)]
    return valid & (depth - ref < threshold)                                          # Eq. 10


def superpixels(image_rgb: np.ndarray, method: str = 'slic', **params: Any) -> np.ndarray:
    """(H, W) int64 superpixel ids from 0 (scikit-image SLIC or Felzenszwalb).

    Defaults: SLIC ``n_segments=4000, compactness=10, start_label=0`` (~120-pixel regions on a KITTI image;
    fewer, larger regions lose more far road points to the grazing-angle effect described above);
    Felzenszwalb ``scale=100, sigma=0.5, min_size=50``. Extra keyword arguments go to the scikit-image
    function.
    """
    from skimage.segmentation import felzenszwalb, slic

    image = np.asarray(image_rgb)
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f'superpixels need an (H, W, 3) image, got shape {image.shape}')
    if method == 'slic':
        kwargs = {'n_segments': 4000, 'compactness': 10.0, 'start_label': 0}
        kwargs.update(params)
        seg = slic(image, **kwargs)
    elif method == 'felzenszwalb':
        kwargs = {'scale': 100.0, 'sigma': 0.5, 'min_size': 50}
        kwargs.update(params)
        seg = felzenszwalb(image, **kwargs)
    else:
        raise ValueError(f"superpixel method must be 'slic' or 'felzenszwalb', got {method!r}")
    return np.asarray(seg, dtype=np.int64)


def segment_ids_at(uv: torch.Tensor, in_image: torch.Tensor, superpixel_map) -> torch.Tensor:
    """(N,) long superpixel id of each point's pixel, -1 where ``in_image`` is False."""
    if not torch.is_tensor(superpixel_map):
        superpixel_map = np.asarray(superpixel_map)
    seg = torch.as_tensor(superpixel_map, device=uv.device).long()
    if seg.ndim != 2 or seg.shape[0] == 0 or seg.shape[1] == 0:
        raise ValueError(f'superpixel_map must be a non-empty (H, W) array, got {tuple(seg.shape)}')
    rows, cols = pixel_indices(uv, (seg.shape[0], seg.shape[1]))
    ids = seg[rows, cols]
    return torch.where(in_image.to(uv.device), ids, torch.full_like(ids, -1))


def depth_buffer(uv: torch.Tensor, depth: torch.Tensor, in_image: torch.Tensor, image_size: tuple[int, int],
                 block: int = 8, dilation: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Min depth per ``block``-pixel cell, min-pooled over ``2 dilation + 1`` cells.

    Returns the (Hb, Wb) buffer and each point's (N,) flat cell index.
    """
    if block < 1 or dilation < 0:
        raise ValueError(f'block must be >= 1 and dilation >= 0, got {block}, {dilation}')
    h, w = int(image_size[0]), int(image_size[1])
    if h <= 0 or w <= 0:
        raise ValueError(f'image_size must be positive, got {tuple(image_size)}')
    hb, wb = -(-h // block), -(-w // block)
    rows, cols = pixel_indices(uv, (h, w))
    cell = (rows // block) * wb + cols // block
    ok = in_image & torch.isfinite(depth)
    buf = torch.full((hb * wb,), float('inf'), dtype=depth.dtype, device=depth.device)
    buf = buf.scatter_reduce(0, cell[ok], depth[ok], reduce='amin', include_self=True).view(1, 1, hb, wb)
    if dilation > 0:
        k = 2 * dilation + 1
        buf = -F.max_pool2d(-buf, kernel_size=k, stride=1, padding=dilation)  # min-pool (pads with +inf)
    return buf.view(hb, wb), cell


def depth_buffer_visibility(uv: torch.Tensor, depth: torch.Tensor, in_image: torch.Tensor,
                            image_size: tuple[int, int], block: int = 8, dilation: int = 1,
                            threshold: float = 0.5, relative_threshold: float = 0.0) -> torch.Tensor:
    """Fast visibility: ``in_image & (D - D_buf < threshold + relative_threshold * D)`` (see module doc).

    uv (N, 2), depth (N,), in_image (N,) -> (N,) bool.
    """
    if uv.ndim != 2 or depth.ndim != 1 or in_image.shape != depth.shape or uv.shape[0] != depth.shape[0]:
        raise ValueError(f'expected uv (N, 2), depth (N,), in_image (N,), got {tuple(uv.shape)}, '
                         f'{tuple(depth.shape)}, {tuple(in_image.shape)}')
    out = torch.zeros(depth.shape, dtype=torch.bool, device=depth.device)
    sel = torch.nonzero(in_image & torch.isfinite(depth)).squeeze(1)   # work on in-image points only
    if sel.numel() == 0:
        if int(image_size[0]) <= 0 or int(image_size[1]) <= 0:
            raise ValueError(f'image_size must be positive, got {tuple(image_size)}')
        return out
    d = depth[sel]
    buf, cell = depth_buffer(uv[sel], d, torch.ones_like(d, dtype=torch.bool), image_size, block, dilation)
    out[sel] = d - buf.view(-1)[cell] < threshold + relative_threshold * d
    return out


@dataclass
class VisibilityConfig:
    """Which visibility test the pipeline applies (``none`` keeps every in-image point)."""

    variant: str = 'depth_buffer'          # 'depth_buffer' | 'superpixel' | 'none'
    threshold: float = 0.5                 # T_D, metres (Affinity3D Eq. 10)
    block: int = 4                         # depth buffer cell size, pixels
    dilation: int = 1                      # depth buffer min-pool radius, cells
    relative_threshold: float = 0.1        # depth buffer only: extra tolerance per metre of depth
    superpixel_method: str = 'slic'        # 'slic' | 'felzenszwalb'
    superpixel_params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.variant not in ('depth_buffer', 'superpixel', 'none'):
            raise ValueError(f"visibility variant must be 'depth_buffer', 'superpixel' or 'none', "
                             f'got {self.variant!r}')
        if not self.threshold > 0:
            raise ValueError(f'visibility threshold must be positive, got {self.threshold}')


def visible_mask(projection: Projection, images: Sequence[np.ndarray] | None = None,
                 config: VisibilityConfig | None = None) -> torch.Tensor:
    """(M, N) bool: in the image of camera m and passing the configured visibility test there.

    ``images`` (RGB, one per camera) are needed only for the superpixel variant.
    """
    config = config or VisibilityConfig()
    m = projection.num_cameras
    out = projection.in_image.clone()
    if config.variant == 'none' or projection.num_points == 0:
        return out
    if config.variant == 'superpixel' and (images is None or len(images) != m):
        raise ValueError(f'the superpixel variant needs one image per camera ({m}), got '
                         f'{0 if images is None else len(images)}')
    for i in range(m):
        uv, depth, inside = projection.uv[i], projection.depth[i], projection.in_image[i]
        size = projection.image_sizes[i]
        if config.variant == 'depth_buffer':
            out[i] = depth_buffer_visibility(uv, depth, inside, size, config.block, config.dilation,
                                             config.threshold, config.relative_threshold)
        else:
            image = images[i]
            if image.shape[:2] != tuple(size):
                raise ValueError(f'camera {i}: image is {image.shape[:2]}, projection expects {tuple(size)}')
            seg = superpixels(image, config.superpixel_method, **config.superpixel_params)
            ids = segment_ids_at(uv, inside, seg)
            out[i] = superpixel_depth_visibility(depth, ids, config.threshold)
    return out
