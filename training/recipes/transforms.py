"""Per-frame training transforms, run in the data loader: augmentations and image preparation.

A transform gets the frame and its augmentation key (:class:`training.data.sampler.GlobalBatchPlan`), so
the result depends on neither the rank, the loader worker nor the resume point. Order: recipe extra
(ScanNet200 copy-paste) -> point augmentation (Affinity3D: translation, scaling, keep 70 %) -> images
(uint8 (M, H, W, 3) -> crop / flip / jitter -> ImageNet-normalised float (M, 3, h, w), uv moved with
them; points leaving a crop get ``image_index`` -1). Fields the recipe does not use are dropped.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
import torch

from training.augment import ImageAugmentConfig, PointAugmentConfig, augment_image, augment_points
from training.data.sample import IGNORE, OPTIONAL_FIELDS, FrameSample

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class AugmentConfig:
    """The ``augment:`` section: point and image augmentations (Affinity3D Sec. 4.2 constants)."""

    points: bool = False
    translation: float = 0.5
    scale: tuple[float, float] = (0.95, 1.05)
    keep_ratio: float = 0.7
    images: bool = False
    crop_size: tuple[int, int] | None = (320, 480)
    bottom_crop: bool = True
    flip_prob: float = 0.5
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    image_mean: tuple[float, float, float] = IMAGENET_MEAN
    image_std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        self.scale = tuple(float(s) for s in self.scale)
        if self.crop_size is not None:
            self.crop_size = tuple(int(c) for c in self.crop_size)
        self.point_config()          # validates
        self.image_mean = tuple(float(v) for v in self.image_mean)
        self.image_std = tuple(float(v) for v in self.image_std)

    def point_config(self) -> PointAugmentConfig:
        return PointAugmentConfig(translation=self.translation, scale=self.scale, keep_ratio=self.keep_ratio)

    def image_config(self) -> ImageAugmentConfig:
        return ImageAugmentConfig(crop_size=self.crop_size, bottom_crop=self.bottom_crop,
                                  flip_prob=self.flip_prob, brightness=self.brightness,
                                  contrast=self.contrast, saturation=self.saturation)


def prepare_images(sample: FrameSample, config: AugmentConfig,
                   generator: torch.Generator | None) -> FrameSample:
    """Augment (when ``config.images``) and normalise the frame's images; uv / image_index follow."""
    images = sample.images.permute(0, 3, 1, 2).float() / 255.0
    uv = sample.uv.clone()
    image_index = sample.image_index.clone()
    out = []
    for m in range(images.shape[0]):
        sel = image_index == m
        if config.images:
            res = augment_image(images[m], uv[sel], torch.ones(int(sel.sum()), dtype=torch.bool),
                                config.image_config(), generator)
            uv[sel] = res.uv
            lost = torch.zeros_like(sel)
            lost[sel] = ~res.in_image
            image_index[lost] = IGNORE
            out.append(res.image)
        else:
            out.append(images[m])
    sizes = {tuple(im.shape[1:]) for im in out}
    if len(sizes) != 1:
        raise ValueError(f'frame {sample.frame_id}: the cameras give images of different sizes '
                         f'{sorted(sizes)} after cropping; set augment.crop_size to a size every camera '
                         'reaches')
    mean = torch.tensor(config.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(config.image_std).view(1, 3, 1, 1)
    sample.images = (torch.stack(out) - mean) / std
    sample.uv, sample.image_index = uv, image_index
    return sample


@dataclass
class FrameTransform:
    """Callable ``(sample, key) -> sample`` for the loader (picklable: config and numpy data only)."""

    augment: AugmentConfig
    keep_fields: frozenset[str]
    extra: Callable[[FrameSample, np.random.Generator], FrameSample] | None = None
    extra_indexed: Callable[[FrameSample, np.random.Generator, int], FrameSample] | None = None

    def __call__(self, sample: FrameSample, key: int, index: int = -1) -> FrameSample:
        g = torch.Generator().manual_seed(int(key))
        sample = replace(sample)            # never modify the data source's own object
        for name in OPTIONAL_FIELDS:
            if name not in self.keep_fields and getattr(sample, name) is not None:
                setattr(sample, name, None)
                if name == 'images':
                    sample.uv = sample.image_index = None
        rng = np.random.default_rng(int(key))
        if self.extra_indexed is not None:
            sample = self.extra_indexed(sample, rng, index)
        if self.extra is not None:
            sample = self.extra(sample, rng)
        if self.augment.points:
            res = augment_points(sample.points, self.augment.point_config(), g)
            sample = sample.select(res.index)
            sample.points = res.points
        if sample.images is not None:
            sample = prepare_images(sample, self.augment, g)
        return sample
