"""Test and benchmark data: frames of the synthetic world with simple, CLIP-like label noise.

This is NOT a pseudo-labeller (that is ``training/pseudo``, issue 11): it stands in for a pseudo-label
store in tests, benches and smoke runs (``ovp train --data sim:frames=8``), with the ground truth known.
Each frame is :func:`perception_nodes.geometry.sim.make_sim_frame` (a LiDAR sweep, cameras, truth), and

- ``labels``: the ground truth, where each object instance is relabelled with probability ``noise`` to a
  class CLIP confuses it with (:data:`CONFUSABLE`: person <-> car, pole <-> trunk, ...; per-instance, as
  crop classification errs), and -1 at points no camera sees (Affinity3D's PL');
- ``teacher_features``: at visible points, the text embedding of the (noisy) label plus Gaussian noise of
  standard deviation ``feature_noise`` per dimension, unit-normalised (a fused "CLIP-like" feature);
- ``regions``: the instance id of visible points (perfect 2D regions); ``pseudo_masks``: one mask per
  instance with at least ``min_mask_points`` points, a ``mask_drop`` fraction of them dropped (so that
  self-training has objects to add); ``instances``: ground-truth instance ids;
- text embeddings: random unit vectors of width ``embed_dim`` (seeded), one per class of SIM_CLASSES.
The teacher identity is the "synthetic oracle" (``StoreInfo.teacher['kind'] == 'oracle'``).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch
from torch import Tensor

from perception_nodes.geometry.projection import project_points
from perception_nodes.geometry.sim import SIM_CLASSES, LidarBeamModel, make_scene, make_sim_frame
from training.data.sample import IGNORE, OPTIONAL_FIELDS, FrameSample, SampleError, StoreInfo

# Class confused with each sim class by a CLIP-like crop classifier (road is never an instance).
CONFUSABLE = {'car': 'person', 'person': 'car', 'building': 'vegetation', 'vegetation': 'building',
              'pole': 'trunk', 'trunk': 'pole', 'road': 'road'}


@dataclass
class SyntheticConfig:
    """Size and noise of a synthetic data set (``sim:key=value,...`` on the command line)."""

    frames: int = 8
    seed: int = 0
    noise: float = 0.2
    feature_noise: float = 0.05
    beams: int = 16
    azimuth: int = 256
    cameras: int = 1
    image: str = '48x160'
    embed_dim: int = 32
    mask_drop: float = 0.3
    min_mask_points: int = 8
    fields: str = 'all'              # 'all' or '+'-separated optional field names to provide

    def __post_init__(self) -> None:
        if self.frames < 1:
            raise SampleError(f'sim data needs frames >= 1, got {self.frames}')
        if not 0.0 <= self.noise <= 1.0 or not 0.0 <= self.mask_drop < 1.0:
            raise SampleError('sim noise must be in [0, 1] and mask_drop in [0, 1)')

    @property
    def image_size(self) -> tuple[int, int]:
        h, w = (int(v) for v in str(self.image).lower().split('x'))
        return h, w

    @property
    def provided(self) -> frozenset[str]:
        if self.fields == 'all':
            return frozenset(f for f in OPTIONAL_FIELDS if f not in ('region_features', 'occupancy_target'))
        return frozenset(f for f in self.fields.split('+') if f)


def parse_sim_spec(spec: str) -> SyntheticConfig:
    """``sim:frames=8,seed=1,noise=0.2`` (or ``sim:``) -> SyntheticConfig; unknown keys are errors."""
    body = spec.split(':', 1)[1] if ':' in spec else ''
    kw: dict[str, Any] = {}
    types = {f.name: f.type for f in fields(SyntheticConfig)}
    for part in filter(None, body.split(',')):
        if '=' not in part:
            raise SampleError(f'sim spec {spec!r}: expected key=value, got {part!r}')
        key, value = part.split('=', 1)
        if key not in types:
            raise SampleError(f'sim spec {spec!r}: unknown key {key!r}; known {sorted(types)}')
        default = getattr(SyntheticConfig, key)
        kw[key] = type(default)(value)
    return SyntheticConfig(**kw)


def text_embeddings(num_classes: int, dim: int, seed: int) -> Tensor:
    """(K, dim) random unit vectors, a fixed function of ``seed``."""
    g = torch.Generator().manual_seed(10_007 + seed)
    t = torch.randn(num_classes, dim, generator=g)
    return t / t.norm(dim=1, keepdim=True)


def make_synthetic_frame(config: SyntheticConfig, index: int, text: Tensor) -> FrameSample:
    """Frame ``index`` of the data set (a pure function of the config and the index)."""
    frame_seed = config.seed * 100_003 + index
    beam = LidarBeamModel(n_beams=config.beams, n_azimuth=config.azimuth)
    frame = make_sim_frame(frame_seed, num_cameras=config.cameras, image_size=config.image_size,
                           beam_model=beam, scene=make_scene(frame_seed))
    rng = np.random.default_rng(frame_seed)
    n = len(frame.points)
    gt = frame.labels.astype(np.int64)
    inst = frame.instances.astype(np.int64)
    visible = np.zeros(n, dtype=bool)
    for cam in frame.cameras:
        visible |= cam.truth['visible']
    noisy = gt.copy()
    index_of = {c: k for k, c in enumerate(SIM_CLASSES)}
    for i in np.unique(inst[inst > 0]):
        sel = inst == i
        if rng.random() < config.noise:
            noisy[sel] = index_of[CONFUSABLE[SIM_CLASSES[int(gt[sel][0])]]]
    labels = np.where(visible, noisy, IGNORE)
    points = np.concatenate([frame.points, frame.intensity[:, None]], axis=1).astype(np.float32)
    want = config.provided
    sample = FrameSample(points=torch.from_numpy(points), labels=torch.from_numpy(labels),
                         visible=torch.from_numpy(visible), frame_id=f'sim{config.seed}:{index}')
    if 'gt_labels' in want:
        sample.gt_labels = torch.from_numpy(gt)
    if 'gt_instances' in want:
        sample.gt_instances = torch.from_numpy(inst)
    if 'instances' in want:
        sample.instances = torch.from_numpy(inst)
    vis_idx = torch.from_numpy(np.flatnonzero(visible))
    if 'teacher_index' in want:
        g = torch.Generator().manual_seed(frame_seed)
        feats = text[torch.from_numpy(noisy)[vis_idx]]
        feats = feats + config.feature_noise * torch.randn(feats.shape, generator=g)
        sample.teacher_index = vis_idx
        sample.teacher_features = (feats / feats.norm(dim=1, keepdim=True)).half()
    if 'regions' in want:
        _, compact = np.unique(inst, return_inverse=True)
        sample.regions = torch.from_numpy(np.where(visible, compact, IGNORE).astype(np.int64))
    if 'images' in want:
        sample.images = torch.from_numpy(np.stack([c.image for c in frame.cameras]))
        proj = project_points(torch.from_numpy(frame.points), [c.model for c in frame.cameras],
                              torch.from_numpy(np.stack([c.T_cam_lidar for c in frame.cameras])))
        uv = torch.zeros(n, 2)
        image_index = torch.full((n,), IGNORE, dtype=torch.long)
        for m in reversed(range(len(frame.cameras))):       # the first camera that sees a point wins
            sel = torch.from_numpy(frame.cameras[m].truth['visible']) & proj.in_image[m]
            uv[sel] = proj.uv[m, sel].float()
            image_index[sel] = m
        sample.uv, sample.image_index = uv, image_index
    if 'pseudo_masks' in want:
        ids = [i for i in np.unique(inst[inst > 0]) if (inst == i).sum() >= config.min_mask_points]
        kept = [i for i in ids if rng.random() >= config.mask_drop]
        masks = np.stack([inst == i for i in kept]) if kept else np.zeros((0, n), dtype=bool)
        sample.pseudo_masks = torch.from_numpy(masks)
    return sample.validate(len(SIM_CLASSES))


class InMemoryDataset(torch.utils.data.Dataset):
    """A list of :class:`FrameSample` with its :class:`StoreInfo` (implements the trainer's interface)."""

    def __init__(self, samples: list[FrameSample], info: StoreInfo) -> None:
        self.samples = samples
        self.info = info

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> FrameSample:
        return self.samples[index]


def synthetic_dataset(config: SyntheticConfig | str | None = None, **overrides: Any) -> InMemoryDataset:
    """Build the synthetic data set (a spec string, a config, or keyword overrides of the defaults)."""
    if isinstance(config, str):
        config = parse_sim_spec(config)
    config = config or SyntheticConfig()
    if overrides:
        config = SyntheticConfig(**{**asdict(config), **overrides})
    text = text_embeddings(len(SIM_CLASSES), config.embed_dim, config.seed)
    samples = [make_synthetic_frame(config, i, text) for i in range(config.frames)]
    blob = json.dumps({k: v for k, v in asdict(config).items() if k not in ('frames', 'seed')},
                      sort_keys=True)
    info = StoreInfo(class_names=list(SIM_CLASSES), text_embeddings=text, vocabulary_name='sim',
                     teacher={'kind': 'oracle', 'model': 'sim-noisy-oracle', 'pretrained': None,
                              'random_weights': False},
                     config_hash=hashlib.sha256(blob.encode()).hexdigest()[:16],
                     store_hash=hashlib.sha256(f'{blob}|{config.frames}|{config.seed}'.encode()
                                               ).hexdigest()[:16],
                     fields=config.provided)
    return InMemoryDataset(samples, info)
