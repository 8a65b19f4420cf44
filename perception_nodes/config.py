"""Pipeline configuration: dataclasses loaded from YAML (``yaml.safe_load``), strict about unknown keys.

``config/pipeline.yaml`` documents every key with its default. Every ``ovp replay`` flag has a key here
(see ``CLI_KEYS``), so a run can be reproduced from a config file alone.
"""
from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

TEACHER_KINDS = ('clip', 'none')
VISIBILITY_VARIANTS = ('depth_buffer', 'superpixel', 'none')
VOTING_MODES = ('majority', 'mean_feature')
STORAGES = ('mcap', 'sqlite3')


@dataclass
class TeacherConfig:
    """The 2D teacher: open_clip MaskCLIP dense features, or none (geometry only, no labels)."""

    kind: str = 'clip'                 # 'clip' | 'none' (geometry-only outputs: visibility, instances, grids)
    clip_model: str = 'ViT-B-32'       # any open_clip model name, or 'ovp-tiny' (tiny random, tests)
    clip_pretrained: str = 'openai'    # pretrained tag | path to a weights file | 'none' (random weights)
    cache_dir: str = ''                # weights + text-embedding cache; '' = ~/.cache/ovp
    offline: bool = True               # never download; missing weights raise with instructions
    input_size: tuple[int, int] = (224, 416)   # (height, width) every camera image is resized to
    sampling: str = 'bilinear'         # feature-map sampling at projected points: 'bilinear' | 'nearest'

    def __post_init__(self) -> None:
        if self.kind not in TEACHER_KINDS:
            raise ValueError(f'teacher.kind must be one of {TEACHER_KINDS}, got {self.kind!r}')
        if self.sampling not in ('bilinear', 'nearest'):
            raise ValueError(f"teacher.sampling must be 'bilinear' or 'nearest', got {self.sampling!r}")
        if len(self.input_size) != 2 or min(self.input_size) <= 0:
            raise ValueError(f'teacher.input_size must be two positive ints (h, w), got {self.input_size}')


@dataclass
class VocabularyConfig:
    """What the user can name: a vocabulary file name, a YAML path, or a comma-separated list of classes."""

    name: str = 'semantickitti'
    templates: str | list[str] = 'default'   # 'default' (the CLIP zero-shot ensemble) or a list


@dataclass
class FusionConfig:
    visibility: str = 'depth_buffer'   # 'depth_buffer' | 'superpixel' | 'none'
    # extra VisibilityConfig fields; the default depth buffer (4 px cells, 1 cell dilation, +10% of depth
    # tolerance) suits KITTI-size images (~1242 px wide); use block 2 for ~600 px wide images.
    visibility_options: dict[str, Any] = field(
        default_factory=lambda: {'block': 4, 'dilation': 1, 'relative_threshold': 0.1})
    logit_scale: float = 100.0         # CLIP temperature on cosine similarities
    unknown_threshold: float = 0.0     # winning softmax probability below this -> "unknown"
    instance_voting: bool = True       # points of one class-agnostic segment share a label
    voting: str = 'majority'           # 'majority' | 'mean_feature'
    keep_embeddings: bool = False      # put fused (N, C) features in Outputs.embeddings (grounding queries)
    # teacher.instances.segment_scan arguments: Euclidean cluster extraction on 0.2 m voxels (connected
    # components within eps; ~2x faster than DBSCAN on the same voxels, same objects on KITTI)
    segment_options: dict[str, Any] = field(
        default_factory=lambda: {'voxel_size': 0.2, 'cluster': 'connected_components'})

    def __post_init__(self) -> None:
        if self.visibility not in VISIBILITY_VARIANTS:
            raise ValueError(
                f'fusion.visibility must be one of {VISIBILITY_VARIANTS}, got {self.visibility!r}')
        if self.voting not in VOTING_MODES:
            raise ValueError(f'fusion.voting must be one of {VOTING_MODES}, got {self.voting!r}')
        if not 0.0 <= self.unknown_threshold <= 1.0:
            raise ValueError(f'fusion.unknown_threshold must be in [0, 1], got {self.unknown_threshold}')
        if self.logit_scale <= 0:
            raise ValueError(f'fusion.logit_scale must be positive, got {self.logit_scale}')


@dataclass
class GridConfig:
    """2D navigation grid and 3D semantic voxels."""

    occupancy: bool = True
    nav_grid: dict[str, Any] = field(default_factory=dict)   # NavGridSpec fields (geometry.occupancy)
    dedupe_rays: bool = True           # one free-space ray per (cell, height band): same grid, ~8x fewer rays
    obstacle_classes: list[str] = field(default_factory=list)  # [] = every non-ground class is an obstacle
    voxels: bool = True
    voxel_lower: tuple[float, float, float] = (-51.2, -51.2, -5.0)
    voxel_upper: tuple[float, float, float] = (51.2, 51.2, 3.0)
    voxel_shape: tuple[int, int, int] = (256, 256, 20)       # 0.4 m voxels


@dataclass
class OverlayConfig:
    enabled: bool = True
    point_radius: int = 2
    max_points: int = 60000            # drawn per camera (subsampled beyond)
    unknown_color: tuple[int, int, int] = (128, 128, 128)


@dataclass
class ReplayConfig:
    lidar_topic: str = ''              # '' = the bag's only PointCloud2 topic
    camera_topics: list[str] = field(default_factory=list)   # [] = every Image topic with a CameraInfo
    max_frames: int = 0                # 0 = all
    allow_partial: bool = True         # process frames with a camera missing (fused from the others)
    sync_slop_ms: float = 50.0         # max |image stamp - LiDAR stamp|
    storage: str = 'mcap'              # output bag storage: 'mcap' | 'sqlite3'
    topic_prefix: str = '/ovp'
    write_overlays: bool = True
    overlay_pngs: int = 3              # overlays of the first N frames also saved as PNG next to the bag

    def __post_init__(self) -> None:
        if self.storage not in STORAGES:
            raise ValueError(f'replay.storage must be one of {STORAGES}, got {self.storage!r}')
        if self.max_frames < 0:
            raise ValueError(f'replay.max_frames must be >= 0, got {self.max_frames}')


@dataclass
class PipelineConfig:
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    vocabulary: VocabularyConfig = field(default_factory=VocabularyConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    grids: GridConfig = field(default_factory=GridConfig)
    overlay: OverlayConfig = field(default_factory=OverlayConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    device: str = 'cpu'
    # > 0: torch.set_num_threads (1 avoids OpenMP oversubscription on small shared CPUs; the teacher then
    # overlaps the 3D work on a second core)
    torch_threads: int = 0
    concurrent_teacher: bool = True    # run the 2D teacher in a worker thread, overlapping the 3D stages


# CLI flag (argparse dest) -> dotted config key.
CLI_KEYS: dict[str, str] = {
    'clip_model': 'teacher.clip_model',
    'clip_pretrained': 'teacher.clip_pretrained',
    'vocabulary': 'vocabulary.name',
    'lidar_topic': 'replay.lidar_topic',
    'camera_topics': 'replay.camera_topics',
    'max_frames': 'replay.max_frames',
    'storage': 'replay.storage',
    'visibility': 'fusion.visibility',
    'device': 'device',
}


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check / convert a YAML value against a dataclass field's type hint."""
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ValueError(f'{where}: expected a mapping, got {type(value).__name__}')
        return _build(hint, value, where)
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f'{where}: expected true/false, got {value!r}')
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f'{where}: expected an integer, got {value!r}')
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f'{where}: expected a number, got {value!r}')
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ValueError(f'{where}: expected a string, got {value!r}')
        return value
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ValueError(f'{where}: expected a list of {len(args)} values, got {value!r}')
        return tuple(_coerce(v, a, f'{where}[{i}]') for i, (v, a) in enumerate(zip(value, args)))
    if origin is list:
        (arg,) = typing.get_args(hint)
        if isinstance(value, str) and arg is str:   # 'a,b' on the command line
            value = [v.strip() for v in value.split(',') if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ValueError(f'{where}: expected a list, got {value!r}')
        return [_coerce(v, arg, f'{where}[{i}]') for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f'{where}: expected a mapping, got {value!r}')
        return dict(value)
    if origin in (typing.Union, getattr(__import__('types'), 'UnionType', None)):
        for arg in typing.get_args(hint):
            try:
                return _coerce(value, arg, where)
            except ValueError:
                continue
        raise ValueError(f'{where}: {value!r} matches none of {hint}')
    return value


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f'{where or "config"}: unknown key(s) {unknown}; known keys: {sorted(names)}')
    kwargs = {k: _coerce(v, hints[k], f'{where}.{k}' if where else k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ValueError(f'{where or "config"}: {exc}') from exc


def config_from_dict(data: dict[str, Any] | None) -> PipelineConfig:
    """Build a PipelineConfig from a nested mapping (missing keys keep their defaults)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f'config must be a mapping at the top level, got {type(data).__name__}')
    return _build(PipelineConfig, data, '')


def config_to_dict(config: PipelineConfig) -> dict[str, Any]:
    """Plain nested dict (tuples as lists), suitable for yaml.safe_dump / JSON."""
    def plain(v: Any) -> Any:
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        if isinstance(v, list):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v
    return plain(dataclasses.asdict(config))


def load_config(path: str | os.PathLike | None = None) -> PipelineConfig:
    """Load a YAML config file (``yaml.safe_load``); ``None`` gives the defaults."""
    if path is None:
        return PipelineConfig()
    path = Path(path)
    if not path.is_file():
        raise ValueError(f'config file not found: {path}')
    try:
        data = yaml.safe_load(path.read_text(encoding='utf-8'))
    except yaml.YAMLError as exc:
        raise ValueError(f'config file {path} is not valid YAML: {exc}') from exc
    try:
        return config_from_dict(data)
    except ValueError as exc:
        raise ValueError(f'config file {path}: {exc}') from exc


def with_overrides(config: PipelineConfig, overrides: dict[str, Any]) -> PipelineConfig:
    """Return a copy of ``config`` with dotted keys replaced.

    E.g. ``{'teacher.clip_model': 'ovp-tiny'}``; None skips.
    """
    data = config_to_dict(config)
    for key, value in overrides.items():
        if value is None:
            continue
        node = data
        *parents, leaf = key.split('.')
        for p in parents:
            if p not in node or not isinstance(node[p], dict):
                raise ValueError(f'unknown config key {key!r}')
            node = node[p]
        if leaf not in node:
            raise ValueError(f'unknown config key {key!r}')
        node[leaf] = value
    return config_from_dict(data)


def default_config_path() -> Path:
    """config/pipeline.yaml of the source tree (or of the installed share directory)."""
    here = Path(__file__).resolve().parents[1] / 'config' / 'pipeline.yaml'
    return here
