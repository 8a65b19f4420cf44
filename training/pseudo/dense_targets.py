"""Compact, exact storage of the dense teacher targets (Affinity3D "MC", POP-3D Eq. 5-6, CNS).

The targets are the teacher's (MaskCLIP) features sampled at each point's visible projections and fused
over cameras exactly as the live pipeline does (``perception_nodes.pipeline.fusion.FeatureAccumulator``):
per view ``sample_features`` (bilinear or nearest, ``geometry/sampling.py``) then L2-normalised, the mean
of a point's views renormalised. Storing them per point costs N x C x 2 bytes (123 MB for 120k points
and C = 512 in fp16); :class:`DenseTargets` instead keeps what regenerates them:

- the low-resolution feature maps, one per camera, float16 (C x h x w: 7 x 13 for ViT-B/32 at 224 x 416);
- per camera a bit-packed mask of the points used (visible) there (N / 8 bytes);
- the float32 image coordinates ``uv`` of those points (8 bytes per visible (point, camera) pair), so the
  bilinear weights are recomputed bit-for-bit from the same inputs the pipeline used.

:meth:`DenseTargets.features` regenerates the fused features of any subset of points; they equal the
pipeline's up to the float16 rounding of the maps (exactly, with ``map_dtype=torch.float32``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from perception_nodes.geometry.sampling import sample_features


@dataclass
class DenseTargets:
    """Low-resolution teacher maps + visible projections; fused per-point features on demand."""

    feature_maps: list[torch.Tensor]     # per camera (C, h, w), float16 by default
    image_sizes: list[tuple[int, int]]   # per camera (H, W) of the image the uv refer to
    used_bits: list[np.ndarray]          # per camera packed (ceil(N / 8),) uint8 mask of the points used
    uv: list[np.ndarray]                 # per camera (n_m, 2) float32 image coords of those points
    num_points: int
    mode: str = 'bilinear'               # sampling mode, as the pipeline's teacher.sampling

    @classmethod
    def encode(cls, feature_maps: Sequence[torch.Tensor], uv: torch.Tensor, used: torch.Tensor,
               image_sizes: Sequence[tuple[int, int]], mode: str = 'bilinear',
               map_dtype: torch.dtype = torch.float16) -> 'DenseTargets':
        """Build from the teacher's maps, the projection ``uv`` (M, N, 2) and the (M, N) visibility mask."""
        if mode not in ('bilinear', 'nearest'):
            raise ValueError(f"mode must be 'bilinear' or 'nearest', got {mode!r}")
        m = len(feature_maps)
        if uv.ndim != 3 or uv.shape[0] != m or used.shape != uv.shape[:2] or len(image_sizes) != m:
            raise ValueError(f'need one uv (N, 2), mask and image size per map: {m} maps, uv '
                             f'{tuple(uv.shape)}, mask {tuple(used.shape)}, {len(image_sizes)} sizes')
        n = int(uv.shape[1])
        maps, bits, uvs = [], [], []
        for i in range(m):
            fmap = torch.as_tensor(feature_maps[i])
            if fmap.ndim != 3:
                raise ValueError(f'feature map {i} must be (C, h, w), got {tuple(fmap.shape)}')
            mask = used[i].cpu().numpy().astype(bool)
            maps.append(fmap.detach().to('cpu', map_dtype).contiguous())
            bits.append(np.packbits(mask))
            uvs.append(uv[i].cpu().numpy()[mask].astype(np.float32))
        return cls(maps, [(int(h), int(w)) for h, w in image_sizes], bits, uvs, n, mode)

    @property
    def num_cameras(self) -> int:
        return len(self.feature_maps)

    @property
    def embed_dim(self) -> int:
        return int(self.feature_maps[0].shape[0]) if self.feature_maps else 0

    def used_mask(self, camera: int) -> np.ndarray:
        """(N,) bool: the points whose camera-``camera`` projection contributes."""
        return np.unpackbits(self.used_bits[camera], count=self.num_points).astype(bool)

    @property
    def seen(self) -> np.ndarray:
        """(N,) bool: points with a target (used by at least one camera)."""
        out = np.zeros(self.num_points, dtype=bool)
        for i in range(self.num_cameras):
            out |= self.used_mask(i)
        return out

    def features(self, point_index: np.ndarray | None = None) -> torch.Tensor:
        """(n, C) float32 fused unit features of ``point_index`` (all points if None); zero rows if unseen."""
        idx = np.arange(self.num_points) if point_index is None else np.asarray(point_index, dtype=np.int64)
        idx = idx.reshape(-1)
        c = self.embed_dim
        total = torch.zeros(len(idx), c)
        count = torch.zeros(len(idx))
        if len(idx) == 0 or c == 0:
            return total
        for i in range(self.num_cameras):
            used_pts = np.flatnonzero(self.used_mask(i))          # ascending: the row order of uv
            pos = np.searchsorted(used_pts, idx)
            pos_c = np.minimum(pos, max(len(used_pts) - 1, 0))
            if len(used_pts) == 0:
                continue
            hit = (pos < len(used_pts)) & (used_pts[pos_c] == idx)
            if not hit.any():
                continue
            uv = torch.from_numpy(self.uv[i][pos_c[hit]])
            feats = sample_features(self.feature_maps[i].float(), uv, self.image_sizes[i], self.mode).float()
            feats = F.normalize(feats, dim=1)                     # per view, as the pipeline
            rows = torch.from_numpy(np.flatnonzero(hit))
            total.index_add_(0, rows, feats)
            count.index_add_(0, rows, torch.ones(len(rows)))
        seen = count > 0
        out = torch.zeros_like(total)
        out[seen] = F.normalize(total[seen] / count[seen, None], dim=1)   # mean of the views, renormalised
        return out

    @property
    def nbytes(self) -> int:
        """Bytes of the stored arrays (maps + masks + uv)."""
        return int(sum(f.numel() * f.element_size() for f in self.feature_maps)
                   + sum(b.nbytes for b in self.used_bits) + sum(u.nbytes for u in self.uv))

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Flat name -> array mapping (e.g. for safetensors); inverse of :meth:`from_arrays`."""
        out: dict[str, np.ndarray] = {
            'num_points': np.array([self.num_points], dtype=np.int64),
            'image_sizes': np.array(self.image_sizes, dtype=np.int64).reshape(-1, 2),
            'mode': np.frombuffer(self.mode.encode(), dtype=np.uint8).copy()}
        for i in range(self.num_cameras):
            fmap = self.feature_maps[i]
            out[f'map_{i}'] = fmap.numpy() if fmap.dtype != torch.bfloat16 else fmap.float().numpy()
            out[f'used_{i}'] = self.used_bits[i]
            out[f'uv_{i}'] = self.uv[i]
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> 'DenseTargets':
        """Rebuild from :meth:`to_arrays`."""
        sizes = [tuple(int(v) for v in s) for s in np.asarray(arrays['image_sizes']).reshape(-1, 2)]
        m = len(sizes)
        return cls([torch.from_numpy(np.asarray(arrays[f'map_{i}'])) for i in range(m)], sizes,
                   [np.asarray(arrays[f'used_{i}'], dtype=np.uint8) for i in range(m)],
                   [np.asarray(arrays[f'uv_{i}'], dtype=np.float32).reshape(-1, 2) for i in range(m)],
                   int(np.asarray(arrays['num_points'])[0]), bytes(np.asarray(arrays['mode'])).decode())


def fused_reference(feature_maps: Sequence[torch.Tensor], uv: torch.Tensor, used: torch.Tensor,
                    image_sizes: Sequence[tuple[int, int]],
                    mode: str = 'bilinear') -> tuple[torch.Tensor, torch.Tensor]:
    """Run the pipeline's own computation (``FeatureAccumulator``): (seen index, (n, C) features)."""
    from perception_nodes.pipeline.fusion import FeatureAccumulator
    acc = FeatureAccumulator(uv.shape[1])
    for m, fmap in enumerate(feature_maps):
        idx = torch.nonzero(used[m]).reshape(-1)
        if idx.numel() == 0:
            continue
        feats = sample_features(torch.as_tensor(fmap).float(), uv[m, idx], image_sizes[m], mode).float()
        acc.add(idx, F.normalize(feats, dim=1), unit=True)
    return acc.fused()
