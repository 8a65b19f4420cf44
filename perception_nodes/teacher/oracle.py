"""Ground-truth oracle teacher for the synthetic world (tests and benchmarks only).

Each pixel's feature is the text embedding of its true class (from ``CameraView.truth['class']``),
optionally corrupted by a noise model, so that fusion accuracy can be measured against known truth:
- instance-level label flips: each object (a connected (instance id, class) region) is given another
  class, uniformly at random, with probability ``flip_prob`` — like CLIP confusing a whole object;
- boundary bleeding: every pixel takes the label of a random pixel at most ``boundary_bleed_px`` away
  (per-axis offsets), so labels leak across object boundaries — like coarse CLIP patches.
Pixels whose class is not in the vocabulary (``class_map`` gives no index, or the id is out of range)
carry the zero vector — no evidence: its cosine with every class is 0 — unless a ``background``
embedding is given.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from perception_nodes.frame import CameraView


@dataclass
class OracleNoise:
    """Noise of the oracle teacher (see module docstring)."""

    flip_prob: float = 0.0
    boundary_bleed_px: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.flip_prob <= 1.0:
            raise ValueError(f'flip_prob must be in [0, 1], got {self.flip_prob}')
        if self.boundary_bleed_px < 0:
            raise ValueError(f'boundary_bleed_px must be >= 0, got {self.boundary_bleed_px}')


class OracleTeacher:
    """Teacher returning the (noisy) true class's text embedding at every pixel.

    Feature maps are (H / downsample, W / downsample), or ``output_size`` (h, w) when given (e.g. the
    14×26 patch grid of a ViT-B/16 MaskCLIP at 224×416), sampled at the feature cells' centres.
    """

    meaningful = True

    def __init__(self, text_embeddings: torch.Tensor, class_map: dict[int, int] | None = None,
                 noise: OracleNoise | None = None, downsample: int = 1,
                 background: torch.Tensor | None = None, output_size: tuple[int, int] | None = None) -> None:
        if text_embeddings.ndim != 2 or text_embeddings.shape[0] == 0:
            raise ValueError(f'text_embeddings must be (K, C) with K >= 1, '
                             f'got {tuple(text_embeddings.shape)}')
        self.text_embeddings = F.normalize(text_embeddings.float(), dim=1)
        self.num_classes, self.embed_dim = self.text_embeddings.shape
        self.class_map = dict(class_map) if class_map is not None else None
        if self.class_map is not None:
            bad = {k: v for k, v in self.class_map.items() if not -1 <= v < self.num_classes}
            if bad:
                raise ValueError(f'class_map targets outside 0..{self.num_classes - 1}: {bad}')
        self.noise = noise or OracleNoise()
        self.downsample = max(1, int(downsample))
        self.output_size = None if output_size is None else (int(output_size[0]), int(output_size[1]))
        if self.output_size is not None and min(self.output_size) < 1:
            raise ValueError(f'output_size must be positive (h, w), got {output_size}')
        bg = torch.zeros(self.embed_dim)
        if background is not None:
            bg = F.normalize(background.float().reshape(-1), dim=0)
        if bg.shape != (self.embed_dim,):
            raise ValueError(f'background embedding must have {self.embed_dim} values, got {tuple(bg.shape)}')
        self._table = torch.cat([self.text_embeddings, bg.to(self.text_embeddings)[None]])  # row K = unknown

    def _rng(self, view: CameraView) -> np.random.Generator:
        name = zlib.crc32(view.name.encode())
        return np.random.default_rng([self.noise.seed, name, int(view.stamp_ns) & 0xFFFFFFFF])

    def vocabulary_raster(self, truth_class: np.ndarray) -> np.ndarray:
        """(H, W) true class ids -> vocabulary indices, -1 where the class is not in the vocabulary."""
        ids = np.asarray(truth_class).astype(np.int64)
        if self.class_map is None:
            return np.where((ids >= 0) & (ids < self.num_classes), ids, -1)
        keys = np.unique(ids)
        lut = np.array([self.class_map.get(int(k), -1) for k in keys], dtype=np.int64)
        return lut[np.searchsorted(keys, ids)]

    def _flip_instances(self, labels: np.ndarray, instance: np.ndarray | None,
                        rng: np.random.Generator) -> np.ndarray:
        from scipy import ndimage
        if self.num_classes < 2 or self.noise.flip_prob <= 0:
            return labels
        known = labels >= 0
        if instance is None:  # objects = connected regions of one class
            regions = np.full(labels.shape, -1, dtype=np.int64)
            offset = 0
            for c in np.unique(labels[known]):
                lab, n = ndimage.label(labels == c)
                regions[lab > 0] = lab[lab > 0] - 1 + offset
                offset += n
        else:
            inst = np.asarray(instance).astype(np.int64)
            if inst.shape != labels.shape:
                raise ValueError(f"truth['instance'] shape {inst.shape} != "
                                 f"truth['class'] shape {labels.shape}")
            regions = np.full(labels.shape, -1, dtype=np.int64)
            pair_key = inst[known] * (self.num_classes + 1) + labels[known]   # one id per (instance, class)
            _, inverse = np.unique(pair_key, return_inverse=True)
            regions[known] = inverse.reshape(-1)
        n_regions = int(regions.max(initial=-1)) + 1
        if n_regions == 0:
            return labels
        flip = rng.random(n_regions) < self.noise.flip_prob
        shift = rng.integers(1, self.num_classes, size=n_regions)   # another class, uniformly
        out = labels.copy()
        sel = known & flip[np.maximum(regions, 0)] & (regions >= 0)
        out[sel] = (labels[sel] + shift[regions[sel]]) % self.num_classes
        return out

    def _bleed(self, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        b = int(self.noise.boundary_bleed_px)
        if b <= 0:
            return labels
        h, w = labels.shape
        rows = np.clip(np.arange(h)[:, None] + rng.integers(-b, b + 1, size=(h, w)), 0, h - 1)
        cols = np.clip(np.arange(w)[None, :] + rng.integers(-b, b + 1, size=(h, w)), 0, w - 1)
        return labels[rows, cols]

    def class_raster(self, view: CameraView) -> np.ndarray:
        """(h, w) noisy vocabulary indices (-1 unknown) at the feature-map resolution."""
        if 'class' not in view.truth:
            raise ValueError(f"camera {view.name!r} has no truth['class'] raster (the oracle needs the "
                             f"synthetic world's ground truth)")
        truth = np.asarray(view.truth['class'])
        if truth.ndim != 2:
            raise ValueError(f"camera {view.name!r}: truth['class'] must be (H, W), got {truth.shape}")
        rng = self._rng(view)
        labels = self._flip_instances(self.vocabulary_raster(truth), view.truth.get('instance'), rng)
        labels = self._bleed(labels, rng)
        h, w = labels.shape
        d = self.downsample
        fh, fw = self.output_size or (max(1, h // d), max(1, w // d))
        if (fh, fw) != (h, w):  # nearest: the label at each feature cell's centre
            rows = np.minimum(((np.arange(fh) + 0.5) * h / fh).astype(np.int64), h - 1)
            cols = np.minimum(((np.arange(fw) + 0.5) * w / fw).astype(np.int64), w - 1)
            labels = labels[np.ix_(rows, cols)]
        return labels

    def dense_features(self, views: Sequence[CameraView]) -> list[torch.Tensor]:
        """One (C, h, w) map per view: the embedding of each pixel's (noisy) class; unknown -> background."""
        out = []
        for view in views:
            labels = torch.from_numpy(self.class_raster(view)).to(self._table.device)
            labels = torch.where(labels < 0, torch.full_like(labels, self.num_classes), labels)
            out.append(self._table[labels].permute(2, 0, 1).contiguous())
        return out
