"""Training augmentations: Affinity3D point / image augmentations, ScanNet200 rare-instance copy-paste.

All randomness comes from an explicit ``torch.Generator`` (points, images) or ``numpy.random.Generator``
(copy-paste), so a seed fixes the result.

Affinity3D Sec. 4.2 [P]: global random translation in [-0.5, 0.5], global random scaling in [0.95, 1.05],
"70% global random downsampling" of the point cloud; random crop, horizontal flip and colour jitter of
the image. Our choices where it is silent: the translation is drawn per axis (x, y, z); downsampling
KEEPS 70% of the points (the phrase is ambiguous); the crop is 320 x 480 at the bottom of the image with a
random horizontal offset and the jitter is brightness / contrast / saturation 0.4, as 2DPASS [EXT]
(applied in that fixed order). Point augmentations are rigid-plus-scale transforms and subsets, so
point <-> pixel correspondences computed on the original cloud stay valid through ``index``; image
augmentations move the pixels, so they return the transformed ``uv`` and the updated in-image mask.

ScanNet200 Sec. 3 [P]: instances of tail classes are placed into a scene using a height map, rejecting
candidates whose bounding box collides with existing objects, updating the map after each placement.
Our choices: the height map is the lowest point per ``cell_size`` = 0.1 m cell (the floor), optionally
from floor-labelled points only; an instance rests on the highest floor cell under its footprint, which
must be at least half supported; a random yaw; collision = axis-aligned boxes overlapping in all three
axes; 5 instances and 50 tries per scene [EXT: the authors' code defaults].
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from torch import Tensor
from torchvision.transforms import functional as TF


# --------------------------------------------------------------------------- points (Affinity3D)

@dataclass
class PointAugmentConfig:
    """Affinity3D global point augmentations (constants [P], per-axis translation and keep-70% ours)."""

    translation: float = 0.5
    scale: tuple[float, float] = (0.95, 1.05)
    keep_ratio: float = 0.7

    def __post_init__(self) -> None:
        if not 0.0 < self.keep_ratio <= 1.0:
            raise ValueError(f'keep_ratio must be in (0, 1], got {self.keep_ratio}')
        if self.translation < 0 or not 0 < self.scale[0] <= self.scale[1]:
            raise ValueError(f'bad translation {self.translation} or scale range {self.scale}')


@dataclass
class PointAugmentResult:
    """Augmented points and the rows of the input they came from (index labels, uv, visibility with it)."""

    points: Tensor          # (M, F): xyz scaled then translated, other columns unchanged
    index: Tensor           # (M,) long, increasing
    scale: float
    translation: Tensor     # (3,)


def augment_points(points: Tensor, config: PointAugmentConfig | None = None,
                   generator: torch.Generator | None = None) -> PointAugmentResult:
    """Scale and translate xyz (s · xyz + t) of a random subset of round(keep_ratio · N) points, in order."""
    config = config or PointAugmentConfig()
    if points.ndim != 2 or points.shape[1] < 3:
        raise ValueError(f'points must be (N, >=3), got {tuple(points.shape)}')
    n = points.shape[0]
    lo, hi = config.scale
    s = lo + (hi - lo) * float(torch.rand((), generator=generator))
    t = (torch.rand(3, generator=generator, dtype=torch.float64) * 2 - 1) * config.translation
    keep = min(n, max(1, int(round(config.keep_ratio * n)))) if n else 0
    index = torch.sort(torch.randperm(n, generator=generator)[:keep]).values.to(points.device)
    out = points.index_select(0, index).clone()
    out[:, :3] = out[:, :3] * s + t.to(device=points.device, dtype=points.dtype)
    return PointAugmentResult(points=out, index=index, scale=s, translation=t.to(points.dtype))


# --------------------------------------------------------------------------- images (Affinity3D)

@dataclass
class ImageAugmentConfig:
    """Crop (H, W) at the bottom at a random column, horizontal flip, colour jitter (2DPASS values)."""

    crop_size: tuple[int, int] | None = (320, 480)
    bottom_crop: bool = True
    flip_prob: float = 0.5
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4


@dataclass
class ImageAugmentResult:
    """The augmented image and the points' pixel coordinates in it."""

    image: Tensor           # (3, h, w)
    uv: Tensor              # (N, 2) pixel coordinates in ``image`` (pixel centres at integers)
    in_image: Tensor        # (N,) bool: was in the image and still is after the crop
    crop_offset: tuple[int, int] = (0, 0)     # (column, row) of the crop's top-left pixel
    flipped: bool = False
    jitter: tuple[float, float, float] = (1.0, 1.0, 1.0)   # brightness, contrast, saturation factors


def _factor(strength: float, generator: torch.Generator | None) -> float:
    if strength <= 0:
        return 1.0
    return max(0.0, 1.0 - strength + 2.0 * strength * float(torch.rand((), generator=generator)))


def color_jitter(image: Tensor, factors: tuple[float, float, float]) -> Tensor:
    """Brightness, contrast, saturation adjustments (torchvision's definitions), in that order."""
    b, c, s = factors
    out = TF.adjust_brightness(image, b)
    out = TF.adjust_contrast(out, c)
    return TF.adjust_saturation(out, s)


def augment_image(image: Tensor, uv: Tensor, in_image: Tensor, config: ImageAugmentConfig | None = None,
                  generator: torch.Generator | None = None) -> ImageAugmentResult:
    """Crop, then flip, then jitter ``image`` (3, H, W) in [0, 1], moving the points' ``uv`` (N, 2) with it.

    Pixel convention of ``perception_nodes.geometry.projection``: the pixel (row r, col c) is centred at
    (u, v) = (c, r). A crop at (c0, r0) maps u -> u - c0, v -> v - r0; a flip of width w maps u -> w - 1 - u.
    Points leaving the crop get ``in_image`` False (their uv keep the transformed values).
    """
    config = config or ImageAugmentConfig()
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f'image must be (3, H, W), got {tuple(image.shape)}')
    if uv.ndim != 2 or uv.shape[1] != 2 or in_image.shape != uv.shape[:1]:
        raise ValueError(f'uv {tuple(uv.shape)} and in_image {tuple(in_image.shape)} must be (N, 2) and (N,)')
    h, w = image.shape[1:]
    uv = uv.clone()
    c0 = r0 = 0
    if config.crop_size is not None:
        ch, cw = min(int(config.crop_size[0]), h), min(int(config.crop_size[1]), w)
        r0 = h - ch if config.bottom_crop else int(torch.randint(0, h - ch + 1, (), generator=generator))
        c0 = int(torch.randint(0, w - cw + 1, (), generator=generator))
        image = image[:, r0:r0 + ch, c0:c0 + cw]
        uv[:, 0] -= c0
        uv[:, 1] -= r0
        h, w = ch, cw
    flipped = bool(float(torch.rand((), generator=generator)) < config.flip_prob)
    if flipped:
        image = torch.flip(image, dims=[2])
        uv[:, 0] = (w - 1) - uv[:, 0]
    inside = (uv[:, 0] >= -0.5) & (uv[:, 0] < w - 0.5) & (uv[:, 1] >= -0.5) & (uv[:, 1] < h - 0.5)
    factors = (_factor(config.brightness, generator), _factor(config.contrast, generator),
               _factor(config.saturation, generator))
    image = color_jitter(image.contiguous(), factors)
    return ImageAugmentResult(image=image, uv=uv, in_image=in_image.bool() & inside, crop_offset=(c0, r0),
                              flipped=flipped, jitter=factors)


# --------------------------------------------------------------------------- copy-paste (ScanNet200)

@dataclass
class InstanceSample:
    """One instance of the bank: its points (n, F) (columns 0-2 xyz, others carried) and its class."""

    points: np.ndarray
    label: int


@dataclass
class CopyPasteConfig:
    """Rare-instance sampling settings (module doc for which are the paper's, the code's, or ours)."""

    num_instances: int = 5
    max_tries: int = 50
    cell_size: float = 0.1
    min_support: float = 0.5
    random_yaw: bool = True


@dataclass
class HeightMap:
    """Lowest z per XY cell (NaN where no floor point): the floor the instances are placed on."""

    origin: np.ndarray        # (2,) xy of cell (0, 0)'s corner
    cell_size: float
    height: np.ndarray        # (X, Y) float, NaN = unsupported

    def cells(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Integer cell indices of (n, 2) points (may lie outside the map)."""
        ij = np.floor((xy - self.origin) / self.cell_size).astype(np.int64)
        return ij[:, 0], ij[:, 1]

    def support(self, xy: np.ndarray) -> np.ndarray:
        """Floor height under each (n, 2) point, NaN outside the map or where unsupported."""
        i, j = self.cells(xy)
        ok = (i >= 0) & (j >= 0) & (i < self.height.shape[0]) & (j < self.height.shape[1])
        out = np.full(len(xy), np.nan)
        out[ok] = self.height[i[ok], j[ok]]
        return out


def floor_height_map(xyz: np.ndarray, cell_size: float = 0.1) -> HeightMap:
    """Height map of (n, 3) floor points: the minimum z in every cell_size x cell_size cell."""
    xyz = np.asarray(xyz, dtype=np.float64)
    if xyz.ndim != 2 or xyz.shape[1] < 3 or len(xyz) == 0:
        raise ValueError(f'floor points must be a non-empty (n, 3) array, got {xyz.shape}')
    origin = xyz[:, :2].min(axis=0)
    ij = np.floor((xyz[:, :2] - origin) / cell_size).astype(np.int64)
    shape = ij.max(axis=0) + 1
    height = np.full(tuple(shape), np.inf)
    np.minimum.at(height, (ij[:, 0], ij[:, 1]), xyz[:, 2])
    height[np.isinf(height)] = np.nan
    return HeightMap(origin=origin, cell_size=float(cell_size), height=height)


def aabb(xyz: np.ndarray) -> np.ndarray:
    """(2, 3) axis-aligned bounding box [min, max] of (n, >=3) points."""
    return np.stack([xyz[:, :3].min(axis=0), xyz[:, :3].max(axis=0)])


def boxes_overlap(box: np.ndarray, others: Sequence[np.ndarray]) -> bool:
    """Tell whether ``box`` (2, 3) overlaps any of ``others`` on all three axes (touching is no collision)."""
    return any(bool(np.all(box[0] < o[1]) and np.all(o[0] < box[1])) for o in others)


@dataclass
class CopyPasteResult:
    """The augmented scene and what was placed."""

    points: np.ndarray                 # (N + P, F)
    labels: np.ndarray                 # (N + P,)
    instance_ids: np.ndarray           # (N + P,): new ids for the pasted instances
    placed: list[int] = field(default_factory=list)        # bank index of each placed instance
    boxes: list[np.ndarray] = field(default_factory=list)  # (2, 3) box of each placed instance
    tries: int = 0


def _yaw(points: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    out = points.copy()
    x, y = points[:, 0].copy(), points[:, 1].copy()
    out[:, 0], out[:, 1] = c * x - s * y, s * x + c * y
    return out


def copy_paste_instances(points: np.ndarray, labels: np.ndarray, instance_ids: np.ndarray,
                         bank: Sequence[InstanceSample], tail_classes: Sequence[int],
                         rng: np.random.Generator, config: CopyPasteConfig | None = None,
                         floor_mask: np.ndarray | None = None,
                         ignore_labels: Sequence[int] = ()) -> CopyPasteResult:
    """ScanNet200 rare-instance sampling: paste up to ``num_instances`` tail-class instances onto the floor.

    ``instance_ids`` (N,) of the scene (-1: none) define the existing objects' boxes; instances whose label
    is in ``ignore_labels`` (floor, wall, ...) are not obstacles. ``floor_mask`` (N,) selects the points of
    the height map (default: all). Bank instances are sampled uniformly over the tail classes present in
    the bank, then uniformly within the class.
    """
    config = config or CopyPasteConfig()
    points = np.asarray(points)
    labels = np.asarray(labels)
    instance_ids = np.asarray(instance_ids)
    if points.ndim != 2 or points.shape[1] < 3 or labels.shape != points.shape[:1] \
            or instance_ids.shape != points.shape[:1]:
        raise ValueError(f'points {points.shape}, labels {labels.shape}, instance_ids {instance_ids.shape} '
                         'do not fit')
    floor = points[:, :3] if floor_mask is None else points[np.asarray(floor_mask, dtype=bool), :3]
    hmap = floor_height_map(floor, config.cell_size)
    obstacles = [aabb(points[instance_ids == i]) for i in np.unique(instance_ids[instance_ids >= 0])
                 if int(labels[instance_ids == i][0]) not in set(ignore_labels)]
    tail = set(int(c) for c in tail_classes)
    by_class: dict[int, list[int]] = {}
    for k, inst in enumerate(bank):
        if np.ndim(inst.points) != 2 or np.shape(inst.points)[1] != points.shape[1]:
            raise ValueError(f'bank instance {k} has points of shape {np.shape(inst.points)}; the scene has '
                             f'{points.shape[1]} columns')
        if int(inst.label) in tail and len(inst.points):
            by_class.setdefault(int(inst.label), []).append(k)
    result = CopyPasteResult(points=points, labels=labels, instance_ids=instance_ids)
    classes = sorted(by_class)
    next_id = int(instance_ids.max()) + 1 if len(instance_ids) and instance_ids.max() >= 0 else 0
    new_points, new_labels, new_ids = [], [], []
    while len(result.placed) < config.num_instances and result.tries < config.max_tries and classes:
        result.tries += 1
        cls = classes[int(rng.integers(len(classes)))]
        k = by_class[cls][int(rng.integers(len(by_class[cls])))]
        inst = np.array(bank[k].points, dtype=np.float64)
        inst[:, :2] -= inst[:, :2].mean(axis=0)
        inst[:, 2] -= inst[:, 2].min()
        if config.random_yaw:
            inst = _yaw(inst, float(rng.uniform(0.0, 2 * math.pi)))
        free = np.argwhere(np.isfinite(hmap.height))
        if len(free) == 0:
            break
        cell = free[int(rng.integers(len(free)))]
        centre = hmap.origin + (cell + rng.uniform(0.0, 1.0, 2)) * hmap.cell_size
        footprint = hmap.support(inst[:, :2] + centre)
        supported = np.isfinite(footprint)
        if supported.mean() < config.min_support:
            continue
        placed = inst.copy()
        placed[:, :2] += centre
        placed[:, 2] += np.nanmax(footprint)
        box = aabb(placed)
        if boxes_overlap(box, obstacles):
            continue
        obstacles.append(box)
        i, j = hmap.cells(placed[:, :2])
        ok = (i >= 0) & (j >= 0) & (i < hmap.height.shape[0]) & (j < hmap.height.shape[1])
        hmap.height[i[ok], j[ok]] = np.nan           # update: no further placement on this footprint
        new_points.append(placed.astype(points.dtype))
        new_labels.append(np.full(len(placed), cls, dtype=labels.dtype))
        new_ids.append(np.full(len(placed), next_id, dtype=instance_ids.dtype))
        next_id += 1
        result.placed.append(k)
        result.boxes.append(box)
    if new_points:
        result.points = np.concatenate([points, *new_points])
        result.labels = np.concatenate([labels, *new_labels])
        result.instance_ids = np.concatenate([instance_ids, *new_ids])
    return result
