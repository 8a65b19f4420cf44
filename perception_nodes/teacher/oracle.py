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

:class:`ClipLikeTeacher` (below) makes CLIP's kinds of mistakes instead, for measuring pseudo-label
methods: confusions between look-alike classes (:func:`confusion_matrix`), a dense map noisier than the
per-crop classifier (:meth:`ClipLikeTeacher.crop_features`), crops showing whatever fills their box, and
occlusion parallax; :func:`clip_like_text_embeddings` gives text embeddings with CLIP-like structure.
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


# ---------------------------------------------------------------------------------------------------------
# CLIP-like synthetic teacher
# ---------------------------------------------------------------------------------------------------------

# Pairs of classes CLIP tends to confuse, by class name, with a relative weight (symmetric). Names follow
# config/vocabularies/{sim,semantickitti}.yaml and geometry.sim.street.STREET_CLASSES.
SIMILAR_CLASSES: dict[tuple[str, str], float] = {
    ('car', 'truck'): 1.0, ('car', 'other-vehicle'): 0.6, ('truck', 'other-vehicle'): 1.0,
    ('car', 'motorcycle'): 0.3, ('motorcycle', 'bicycle'): 1.0, ('motorcycle', 'bicyclist'): 0.6,
    ('bicycle', 'bicyclist'): 0.8, ('person', 'bicyclist'): 1.0, ('person', 'motorcyclist'): 0.6,
    ('bicyclist', 'motorcyclist'): 0.8, ('pole', 'trunk'): 1.0, ('pole', 'traffic-sign'): 0.7,
    ('trunk', 'vegetation'): 0.6, ('vegetation', 'terrain'): 0.8, ('building', 'fence'): 0.6,
    ('building', 'truck'): 0.2, ('road', 'sidewalk'): 1.0, ('road', 'parking'): 0.8,
    ('sidewalk', 'parking'): 0.6, ('sidewalk', 'terrain'): 0.4, ('person', 'pole'): 0.2,
}


def confusion_matrix(class_names: Sequence[str], similar: dict[tuple[str, str], float] | None = None,
                     floor: float = 0.05) -> np.ndarray:
    """(K, K) row-stochastic matrix with a zero diagonal: whom class i is taken for when it is confused.

    Row i is proportional to ``similar[(i, j)]`` (symmetric; :data:`SIMILAR_CLASSES` by default) plus
    ``floor`` for every other class, so look-alikes dominate but any confusion is possible.
    """
    names = [str(n) for n in class_names]
    k = len(names)
    pairs = SIMILAR_CLASSES if similar is None else similar
    m = np.full((k, k), float(floor))
    index = {n: i for i, n in enumerate(names)}
    for (a, b), w in pairs.items():
        if a in index and b in index:
            m[index[a], index[b]] += float(w)
            m[index[b], index[a]] += float(w)
    np.fill_diagonal(m, 0.0)
    sums = m.sum(axis=1, keepdims=True)
    return np.divide(m, sums, out=np.zeros_like(m), where=sums > 0)


def clip_like_text_embeddings(class_names: Sequence[str], dim: int = 64, seed: int = 0,
                              common: float = 0.5, similar: float = 0.6) -> torch.Tensor:
    """(K, dim) unit text embeddings with CLIP-like structure, for synthetic teachers.

    ``t_k = normalize(common · g + r_k + similar · Σ_j P_kj r_j)``: a component ``g`` shared by all prompts
    (CLIP's text embeddings of class prompts are far from orthogonal), an independent part ``r_k``, and a
    share of the look-alikes' parts (``P`` = :func:`confusion_matrix` of the names), so that a truck is
    closer to a car than to a person, as CLIP's text embeddings are.
    """
    k = len(class_names)
    gen = torch.Generator().manual_seed(int(seed))
    raw = torch.randn(k + 1, int(dim), generator=gen, dtype=torch.float64)
    raw = raw / raw.norm(dim=1, keepdim=True)
    p = torch.as_tensor(confusion_matrix(class_names, floor=0.0))
    emb = float(common) * raw[k] + raw[:k] + float(similar) * (p @ raw[:k])
    return F.normalize(emb, dim=1).float()


@dataclass
class ClipLikeNoise:
    """Mistakes of :class:`ClipLikeTeacher`, modelled on CLIP's (all choices of this package).

    Confused objects, crops and cells take a class drawn from the row of ``confusion`` (row-stochastic,
    zero diagonal: look-alikes such as car/truck, pole/trunk, person/bicyclist; see :func:`confusion_matrix`;
    ``None`` = uniform over the other classes).

    Dense map (MaskCLIP-like, per pixel, the "MC" labels of Affinity3D Table 3):
    - ``dense_object_confusion``: per object and view, the whole visible object is taken for another class;
    - ``dense_cell_confusion``: per feature cell (patch), an independent confusion;
    - ``boundary_bleed_px``: labels leak up to this many image pixels across boundaries (coarse patches).

    Crops (CLIP on an instance's box crop, the "CI" labels; cleaner than the dense map, as Affinity3D
    reports CI >> MC):
    - ``crop_confusion``: per crop, the crop is taken for another class;
    - the crop shows whatever dominates its box (centre-weighted), so an occluder or a larger object in the
      box wins, as it would for CLIP.

    Both:
    - ``hard_object_fraction``: per object (seeded by its instance id only, so the same across views and
      frames), consistently taken for one fixed other class in the dense map and in every crop;
    - ``feature_noise``: norm of the Gaussian noise added to every feature before normalisation.
    """

    confusion: np.ndarray | None = None
    dense_object_confusion: float = 0.3
    dense_cell_confusion: float = 0.15
    boundary_bleed_px: int = 3
    crop_confusion: float = 0.12
    hard_object_fraction: float = 0.05
    feature_noise: float = 0.3
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ('dense_object_confusion', 'dense_cell_confusion', 'crop_confusion',
                     'hard_object_fraction'):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f'{name} must be in [0, 1], got {value}')
        if self.boundary_bleed_px < 0 or self.feature_noise < 0:
            raise ValueError('boundary_bleed_px and feature_noise must be >= 0')
        if self.confusion is not None:
            c = np.asarray(self.confusion, dtype=np.float64)
            if c.ndim != 2 or c.shape[0] != c.shape[1] or (c < 0).any() or not np.allclose(c.sum(axis=1), 1):
                raise ValueError('confusion must be a square row-stochastic matrix')
            self.confusion = c


class ClipLikeTeacher:
    """Synthetic teacher that makes CLIP-like mistakes on the synthetic world (tests and benchmarks).

    Dense features (:meth:`dense_features`, the :class:`~perception_nodes.teacher.base.Teacher` protocol)
    are ``normalize(t_y + noise)`` with ``y`` the noisy class of each feature cell (see
    :class:`ClipLikeNoise`); pixels of classes outside the vocabulary (sky) are zero vectors. Features come
    from the camera's own truth rasters, so a LiDAR point the camera cannot see (behind an occluder)
    samples the occluder's feature: occlusion parallax, which visibility (Affinity3D Eq. 9-10) removes.

    Crop features (:meth:`crop_features`, what CLIP's image encoder returns for an instance's box crop,
    Affinity3D Sec. 3.2) are ``normalize(w_t t_mix + w_v v_c + w_g g + noise)``:
    ``t_mix = (1 - m) t_c + m t_c'`` is the text-aligned part (``c`` the class the crop shows, ``c'`` a
    confusion partner, ``m > 0.5`` for a confused crop, below 0.35 otherwise), ``v_c`` a per-class visual
    prototype (look-alike classes share part of it) and ``g`` a direction shared by all images (CLIP's
    modality gap). ``v`` and ``g`` are orthogonal to the text embeddings, so the class scores
    ``f · t_k`` depend on ``t_mix`` and noise only, while image-image similarities (Affinity3D Eq. 5-6) are
    high for crops of one true class even when one of them is confused: the situation the affinity
    propagation is meant to exploit. Deterministic per ``noise.seed``, view name, stamp and box.
    """

    meaningful = True

    def __init__(self, text_embeddings: torch.Tensor, class_names: Sequence[str] | None = None,
                 noise: ClipLikeNoise | None = None, class_map: dict[int, int] | None = None,
                 downsample: int = 8, output_size: tuple[int, int] | None = None,
                 text_weight: float = 0.6, visual_weight: float = 1.0, modality_weight: float = 1.2) -> None:
        self.noise = noise or ClipLikeNoise()
        self._labels = OracleTeacher(text_embeddings, class_map=class_map, downsample=downsample,
                                     output_size=output_size)
        self.text_embeddings = self._labels.text_embeddings
        self.num_classes, self.embed_dim = self.text_embeddings.shape
        k, c = self.num_classes, self.embed_dim
        if c < 2 * k + 2:
            raise ValueError(f'ClipLikeTeacher needs embed_dim >= 2 K + 2 = {2 * k + 2} (visual prototypes '
                             f'orthogonal to the text), got {c}')
        if self.noise.confusion is not None:
            conf = self.noise.confusion
            if conf.shape != (k, k):
                raise ValueError(f'confusion is {conf.shape}, the vocabulary has {k} classes')
        elif class_names is not None:
            if len(class_names) != k:
                raise ValueError(f'{len(class_names)} class names for {k} text embeddings')
            conf = confusion_matrix(class_names)
        else:
            conf = confusion_matrix([str(i) for i in range(k)], similar={}, floor=1.0)
        self.confusion = conf
        self.weights = (float(text_weight), float(visual_weight), float(modality_weight))
        # image-only directions: orthogonal to the text embeddings (so they never change class scores)
        gen = torch.Generator().manual_seed(int(self.noise.seed) * 7 + 12345)
        raw = torch.randn(k + 1, c, generator=gen, dtype=torch.float64)
        q, _ = torch.linalg.qr(torch.cat([self.text_embeddings.double().T, raw.T], dim=1))
        basis = q[:, k:]                                   # (C, K + 1) orthonormal, orthogonal to the text
        proto = basis[:, :k].T.clone()                     # (K, C) independent per class
        sim = torch.as_tensor(conf + conf.T)               # look-alikes share part of their prototype
        proto = proto + 0.25 * (sim / sim.sum(dim=1, keepdim=True).clamp_min(1e-12)) @ proto
        self.prototypes = F.normalize(proto, dim=1).float()
        self.modality = basis[:, k].float()

    @property
    def downsample(self) -> int:
        return self._labels.downsample

    def _rng(self, view: CameraView, *extra: int) -> np.random.Generator:
        name = zlib.crc32(view.name.encode())
        return np.random.default_rng([int(self.noise.seed), name, int(view.stamp_ns) & 0xFFFFFFFF, *extra])

    def _partner(self, cls: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One confusion partner per entry of ``cls`` (vocabulary indices >= 0)."""
        cls = np.asarray(cls, dtype=np.int64)
        if cls.size == 0:
            return cls.copy()
        cdf = np.cumsum(self.confusion[cls], axis=1)
        u = rng.random(cls.shape)[..., None]
        return np.minimum((u > cdf).sum(axis=-1), self.num_classes - 1)

    def hard_partner(self, instances: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """Return the fixed confusion partner of each (instance, class) if that object is hard, else -1."""
        inst = np.asarray(instances, dtype=np.int64).reshape(-1)
        cls = np.asarray(classes, dtype=np.int64).reshape(-1)
        out = np.full(inst.shape, -1, dtype=np.int64)
        if self.noise.hard_object_fraction <= 0:
            return out
        for i, (a, c) in enumerate(zip(inst, cls)):
            if c < 0:
                continue
            rng = np.random.default_rng([int(self.noise.seed), 4242, int(a) & 0xFFFFFFFF, int(c)])
            if rng.random() < self.noise.hard_object_fraction:
                out[i] = self._partner(np.array([c]), rng)[0]
        return out

    def _truth(self, view: CameraView) -> tuple[np.ndarray, np.ndarray]:
        if 'class' not in view.truth:
            raise ValueError(f"camera {view.name!r} has no truth['class'] raster (the synthetic teacher "
                             f"needs the synthetic world's ground truth)")
        labels = self._labels.vocabulary_raster(np.asarray(view.truth['class']))
        inst = view.truth.get('instance')
        inst = np.zeros_like(labels) if inst is None else np.asarray(inst).astype(np.int64)
        if inst.shape != labels.shape or labels.ndim != 2:
            raise ValueError(f"camera {view.name!r}: truth rasters must be (H, W) of one shape")
        return labels, inst

    def class_raster(self, view: CameraView) -> np.ndarray:
        """(h, w) noisy vocabulary indices (-1 = no class) of the dense map at feature resolution."""
        labels, inst = self._truth(view)
        rng = self._rng(view, 1)
        known = labels >= 0
        out = labels.copy()
        if known.any():
            pair = inst * (self.num_classes + 1) + labels
            keys, inverse = np.unique(pair[known], return_inverse=True)
            obj_inst, obj_cls = keys // (self.num_classes + 1), keys % (self.num_classes + 1)
            target = self.hard_partner(obj_inst, obj_cls)
            flip = rng.random(len(keys)) < self.noise.dense_object_confusion
            partner = self._partner(obj_cls, rng)
            target = np.where(target >= 0, target, np.where(flip, partner, obj_cls))
            out[known] = target[inverse.reshape(-1)]
        b = int(self.noise.boundary_bleed_px)
        if b > 0:
            h, w = out.shape
            rows = np.clip(np.arange(h)[:, None] + rng.integers(-b, b + 1, size=(h, w)), 0, h - 1)
            cols = np.clip(np.arange(w)[None, :] + rng.integers(-b, b + 1, size=(h, w)), 0, w - 1)
            out = out[rows, cols]
        h, w = out.shape
        d = self._labels.downsample
        fh, fw = self._labels.output_size or (max(1, h // d), max(1, w // d))
        if (fh, fw) != (h, w):
            rows = np.minimum(((np.arange(fh) + 0.5) * h / fh).astype(np.int64), h - 1)
            cols = np.minimum(((np.arange(fw) + 0.5) * w / fw).astype(np.int64), w - 1)
            out = out[np.ix_(rows, cols)]
        cells = out >= 0
        flip = cells & (rng.random(out.shape) < self.noise.dense_cell_confusion)
        if flip.any():
            out[flip] = self._partner(out[flip], rng)
        return out

    def _noise(self, rng: np.random.Generator, n: int) -> torch.Tensor:
        g = torch.from_numpy(rng.standard_normal((n, self.embed_dim))).float()
        return g * (self.noise.feature_noise / np.sqrt(self.embed_dim))

    def dense_features(self, views: Sequence[CameraView]) -> list[torch.Tensor]:
        """One unit (C, h, w) map per view: ``normalize(t_y + noise)``; zero where no class."""
        out = []
        for view in views:
            labels = self.class_raster(view)
            h, w = labels.shape
            rng = self._rng(view, 2)
            flat = torch.from_numpy(labels.reshape(-1))
            feats = self.text_embeddings[flat.clamp(min=0)] + self._noise(rng, h * w)
            feats = F.normalize(feats, dim=1) * (flat >= 0).float()[:, None]
            out.append(feats.T.reshape(self.embed_dim, h, w).contiguous())
        return out

    def crop_classes(self, view: CameraView, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return the class each box crop shows and its dominant instance: (S,) each, -1 if empty.

        Pixels are weighted by a Gaussian centred on the box (sigma = a quarter of each side), so what fills
        the middle of the crop wins; pixels without a vocabulary class (sky) do not vote.
        """
        from perception_nodes.teacher.instances import crop_pixels
        labels, inst = self._truth(view)
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        cls_out = np.full(len(boxes), -1, dtype=np.int64)
        inst_out = np.full(len(boxes), -1, dtype=np.int64)
        for s, box in enumerate(boxes):
            r0, r1, c0, c1 = crop_pixels(box, labels.shape)
            lab, ins = labels[r0:r1, c0:c1], inst[r0:r1, c0:c1]
            rr = (np.arange(r0, r1) - (box[1] + box[3]) / 2) / max((box[3] - box[1]) / 4, 0.5)
            cc = (np.arange(c0, c1) - (box[0] + box[2]) / 2) / max((box[2] - box[0]) / 4, 0.5)
            weight = np.exp(-0.5 * (rr[:, None] ** 2 + cc[None, :] ** 2))
            ok = lab >= 0
            if not ok.any():
                continue
            votes = np.bincount(lab[ok], weights=weight[ok], minlength=self.num_classes)
            cls_out[s] = int(np.argmax(votes))
            sel = ok & (lab == cls_out[s])
            keys, inv = np.unique(ins[sel], return_inverse=True)
            inst_out[s] = int(keys[np.argmax(np.bincount(inv.reshape(-1), weights=weight[sel]))])
        return cls_out, inst_out

    def crop_features(self, view: CameraView, boxes: np.ndarray) -> torch.Tensor:
        """(S, C) unit CLIP-like image embeddings of the box crops of one view (see the class docstring).

        An empty crop (only sky) gets ``normalize(w_g g + noise)``: no class evidence.
        """
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        cls, inst = self.crop_classes(view, boxes)
        hard = self.hard_partner(inst, cls)
        w_t, w_v, w_g = self.weights
        out = torch.zeros(len(boxes), self.embed_dim)
        for s, box in enumerate(boxes):
            rng = self._rng(view, 3, *(np.round(box * 4).astype(np.int64) & 0xFFFFFFFF).tolist())
            f = w_g * self.modality + self._noise(rng, 1)[0]
            c = int(cls[s])
            if c >= 0:
                partner = int(hard[s]) if hard[s] >= 0 else int(self._partner(np.array([c]), rng)[0])
                confused = hard[s] >= 0 or rng.random() < self.noise.crop_confusion
                m = rng.uniform(0.6, 1.0) if confused else rng.uniform(0.0, 0.35)
                t_mix = (1 - m) * self.text_embeddings[c] + m * self.text_embeddings[partner]
                f = f + w_t * F.normalize(t_mix, dim=0) + w_v * self.prototypes[c]
            out[s] = F.normalize(f, dim=0)
        return out
