"""Sample dense per-pixel feature maps at projected points (Affinity3D Eq. 1; POP-3D Eq. 5).

Conventions: ``uv`` are IMAGE pixel coordinates with pixel centres at integers (OpenCV); the image covers
``[-0.5, W - 0.5) x [-0.5, H - 0.5)``. A feature map of size (h, w) covers the whole image, so feature
cell ``(i, j)`` covers image ``u`` in ``[j W/w - 0.5, (j + 1) W/w - 0.5)`` and its centre sits at
``u = (j + 0.5) W/w - 0.5`` (likewise for ``v``). This is ``grid_sample(..., align_corners=False)`` with
``x_norm = 2 (u + 0.5) / W - 1``.

- ``nearest``: the feature cell holding the point: ``j = floor((u + 0.5) w / W)``, clamped into the map.
- ``bilinear``: interpolation between the four nearest cell centres; outside the outermost centres the
  border value is used (``padding_mode='border'``), so points near the image edge never blend with zeros.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _normalised_grid(uv: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    h, w = float(image_size[0]), float(image_size[1])
    gx = 2.0 * (uv[..., 0] + 0.5) / w - 1.0
    gy = 2.0 * (uv[..., 1] + 0.5) / h - 1.0
    return torch.stack([gx, gy], dim=-1)


def sample_features(feature_map: torch.Tensor, uv: torch.Tensor, image_size: tuple[int, int],
                    mode: str = 'bilinear') -> torch.Tensor:
    """Features at image points: (C, h, w) map + (N, 2) uv -> (N, C).

    Batched: (M, C, h, w) maps + (M, N, 2) uv -> (M, N, C).

    Non-finite ``uv`` give zeros. The result has the feature map's dtype and may be a non-contiguous
    view (a (N, C) copy costs more than the sampling for CLIP-sized C; call ``.contiguous()`` if needed).
    """
    if mode not in ('bilinear', 'nearest'):
        raise ValueError(f"mode must be 'bilinear' or 'nearest', got {mode!r}")
    if int(image_size[0]) <= 0 or int(image_size[1]) <= 0:
        raise ValueError(f'image_size must be positive, got {tuple(image_size)}')
    batched = feature_map.ndim == 4
    if not batched:
        if feature_map.ndim != 3 or uv.ndim != 2:
            raise ValueError(f'expected (C, h, w) features and (N, 2) uv, got {tuple(feature_map.shape)} and '
                             f'{tuple(uv.shape)}')
        feature_map, uv = feature_map[None], uv[None]
    if uv.ndim != 3 or uv.shape[-1] != 2 or uv.shape[0] != feature_map.shape[0]:
        raise ValueError(f'uv must be (M, N, 2) for {feature_map.shape[0]} maps, got {tuple(uv.shape)}')
    m, c, fh, fw = feature_map.shape
    n = uv.shape[1]
    if fh <= 0 or fw <= 0:
        raise ValueError(f'feature map has zero size {fh}x{fw}')
    uv = uv.to(device=feature_map.device)
    finite = torch.isfinite(uv).all(dim=-1)                       # (M, N)
    uv = torch.nan_to_num(uv, nan=0.0, posinf=0.0, neginf=0.0)
    if n == 0:
        out = feature_map.new_zeros(m, 0, c)
    elif mode == 'nearest':
        col = torch.floor((uv[..., 0].double() + 0.5) * fw / float(image_size[1])).long().clamp(0, fw - 1)
        row = torch.floor((uv[..., 1].double() + 0.5) * fh / float(image_size[0])).long().clamp(0, fh - 1)
        flat = feature_map.reshape(m, c, fh * fw)
        lin = (row * fw + col)[:, None, :].expand(m, c, n)
        out = torch.gather(flat, 2, lin).transpose(1, 2)
    else:
        fmap = feature_map if feature_map.is_floating_point() else feature_map.float()
        grid = _normalised_grid(uv.to(fmap.dtype), image_size)[:, None]    # (M, 1, N, 2)
        out = F.grid_sample(fmap, grid.to(fmap.dtype), mode='bilinear', padding_mode='border',
                            align_corners=False)[:, :, 0].transpose(1, 2)
    if not bool(finite.all()):
        out = torch.where(finite[..., None], out, torch.zeros_like(out))
    return out if batched else out[0]
