"""Configuration: the model (``config.model``), its machinery (``config.schema``) and file loading.

A config file is either a plain nested mapping (``labeller: {kind: student}``) or a ROS 2 parameters file
(``/**: {ros__parameters: {...}}`` and per-node sections), so the file a robot's nodes read is the file
``ovp replay --config`` reads. Loaded with ``yaml.safe_load``; unknown keys, wrong types, non-finite numbers
and out-of-range values are one-line ValueErrors naming the key.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from perception_nodes.config.model import (
    BACKENDS, LABELLERS, MEMORY_LIMITS, FusionConfig, GridsConfig, InputsConfig, LabellerConfig, NodeConfig,
    OutputsConfig, OverlayConfig, PerceptionConfig, ReplayConfig, RuntimeConfig, SegmentsConfig,
    TeacherConfig, VocabularyConfig)
from perception_nodes.config.schema import (KeyInfo, build, flatten, iter_keys, to_dict, unflatten,
                                            with_changes)

__all__ = ['PerceptionConfig', 'InputsConfig', 'LabellerConfig', 'TeacherConfig', 'VocabularyConfig',
           'FusionConfig', 'SegmentsConfig', 'GridsConfig', 'OverlayConfig', 'OutputsConfig', 'RuntimeConfig',
           'NodeConfig', 'ReplayConfig', 'KeyInfo', 'LABELLERS', 'BACKENDS', 'MEMORY_LIMITS', 'CLI_KEYS',
           'config_from_dict', 'config_to_dict', 'load_config', 'with_overrides', 'keys', 'flatten',
           'unflatten', 'default_config_path', 'params_section']

# CLI flag (argparse dest) -> dotted config key: every flag is a config key.
CLI_KEYS: dict[str, str] = {
    'labeller': 'labeller.kind',
    'student': 'labeller.student',
    'backend': 'labeller.backend',
    'clip_model': 'teacher.clip_model',
    'clip_pretrained': 'teacher.clip_pretrained',
    'vocabulary': 'vocabulary.classes',
    'lidar_topic': 'inputs.lidar_topic',
    'camera_topics': 'inputs.camera_topics',
    'max_frames': 'replay.max_frames',
    'storage': 'replay.storage',
    'visibility': 'fusion.visibility',
    'device': 'runtime.device',
    'threads': 'runtime.torch_threads',
}


def keys(scope: str | None = None) -> list[KeyInfo]:
    """Every declared key; ``scope`` 'node' / 'offline' keeps the keys that apply there."""
    out = list(iter_keys(PerceptionConfig))
    if scope is None:
        return out
    return [k for k in out if k.scope in ('both', scope)]


def config_from_dict(data: Mapping[str, Any] | None) -> PerceptionConfig:
    """Return a validated config from a nested mapping (missing keys keep their defaults)."""
    return build(PerceptionConfig, data)


def config_to_dict(config: PerceptionConfig) -> dict[str, Any]:
    """Nested plain dict (tuples as lists), for YAML / JSON."""
    return to_dict(config)


def with_overrides(config: PerceptionConfig, overrides: Mapping[str, Any]) -> PerceptionConfig:
    """Return a validated copy with dotted keys replaced (``{'teacher.clip_model': 'x'}``); None skips."""
    return with_changes(config, overrides)


def params_section(data: Mapping[str, Any], node: str | None = None) -> Mapping[str, Any]:
    """Return the config mapping of a ROS 2 params file: ``/**`` merged with ``node``'s own section.

    A plain (non-ROS) mapping is returned as it is. Without ``node``, a file with a single node section uses
    that one.
    """
    sections = {k: v for k, v in data.items() if isinstance(v, Mapping) and 'ros__parameters' in v}
    if not sections:
        return data
    if len(sections) != len(data):
        other = sorted(set(data) - set(sections))
        raise ValueError(f'a ROS 2 params file holds only <node>: {{ros__parameters: ...}} sections; also '
                         f'found '
                         f'{other}')
    chosen = [s for s in ('/**', node) if s in sections]
    if node is None and '/**' not in sections and len(sections) == 1:
        chosen = list(sections)
    merged: dict[str, Any] = {}
    for name in chosen:
        params = sections[name]['ros__parameters'] or {}
        if not isinstance(params, Mapping):
            raise ValueError(f'{name}: ros__parameters must be a mapping')
        merged.update(flatten(params))
    merged.pop('use_sim_time', None)
    return unflatten(merged)


def load_config(path: str | os.PathLike | None = None, node: str | None = None) -> PerceptionConfig:
    """Load a config file (plain or ROS 2 params layout); ``None`` gives the defaults."""
    from perception_nodes.safe_yaml import load_yaml

    if path is None:
        return PerceptionConfig()
    path = Path(path)
    if not path.is_file():
        raise ValueError(f'config file not found: {path}')
    data = load_yaml(path)            # one-line ValueError: not YAML, aliases, too large, not UTF-8
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ValueError(f'config file {path}: expected a mapping at the top level, '
                         f'got {type(data).__name__}')
    try:
        return config_from_dict(params_section(data, node))
    except ValueError as exc:
        raise ValueError(f'config file {path}: {exc}') from None


def default_config_path() -> Path:
    """config/perception.yaml of the source tree or of the installed share folder."""
    from perception_nodes.vocabulary import config_dir
    return config_dir() / 'perception.yaml'
