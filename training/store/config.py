"""The pseudo-label method configuration (``ovp pseudo-label --method-config FILE``), declared with ``key``.

One dataclass tree, declared like the perception config (``perception_nodes.config.schema.key``: type,
default, unit, bounds, description) and loaded the same way (``perception_nodes.safe_yaml.load_yaml``:
safe, no anchors or aliases, size-bounded; unknown keys and bad values are one-line errors naming the
key). The method sections are the config dataclasses of :mod:`training.pseudo` themselves (Affinity3D, CNS
regions, POP-3D, UnScene3D), so a key means the same in a YAML file and in code. The files under
``config/pseudo_label/`` are examples (one per paper setting).

A file holds only keys that differ from the defaults; it is merged onto the full default tree (so a nested
section keeps the defaults of its parent, e.g. Affinity3D's own FH settings when only ``k`` is given).

:func:`config_hash` is the method part of a store's key: it hashes this config and the perception keys
that change what is stored (inputs, the teacher (``teacher.source`` and that teacher's keys) and its
sampling, vocabulary, fusion / visibility, segments, labeller), not where or how fast the run happens
(devices, threads, caches, max_frames, workers).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from perception_nodes.config import PerceptionConfig, config_to_dict
from perception_nodes.config.schema import flatten, key, to_dict, with_changes
from training.pseudo.affinity3d import Affinity3DConfig
from training.pseudo.pop3d import Pop3DConfig
from training.pseudo.regions import RegionConfig
from training.pseudo.unscene3d import UnScene3DConfig

METHODS = ('dense', 'affinity3d', 'cns', 'pop3d', 'unscene3d')
LABEL_METHODS = ('affinity3d', 'cns', 'dense')           # methods that give point-wise class labels
# Perception config sections / keys that do not change what the store holds (excluded from the hash).
_UNHASHED_SECTIONS = ('grids', 'overlay', 'outputs', 'runtime', 'node', 'replay')
_UNHASHED_KEYS = ('teacher.cache_dir', 'teacher.offline')


@dataclass
class SceneConfig:
    """Scenes: K consecutive sweeps accumulated with their tf poses (indoor methods run on scenes)."""

    sweeps: int = key(1, 'Consecutive sweeps accumulated into one scene cloud in the first sweep\'s frame '
                      'using the poses in tf through inputs.fixed_frame (1: one sample per sweep)',
                      min=1, max=100000, scope='offline')
    voxel_size: float = key(0.05, 'A scene cloud keeps the first point of every voxel of this edge (0: every '
                            'point)', unit='m', min=0.0, max=10.0, scope='offline')


@dataclass
class StoreConfig:
    """What the store keeps and how it is cut into shards."""

    shard_units: int = key(8, 'Frames (scenes) per shard: the unit of resuming, of the split between '
                           'workers, and the span of the Affinity3D instance queue (it never crosses a '
                           'shard, so the result does not depend on the number of workers)', min=1,
                           max=100000, scope='offline')
    labels: str = key('auto', 'The method whose labels the Dataset yields as "labels" by default (auto: '
                      'affinity3d, else cns, else dense)', choices=('auto',) + LABEL_METHODS, scope='offline')
    map_dtype: str = key('float16', 'Precision of the stored teacher feature maps (float32: the regenerated '
                         'features equal the pipeline\'s exactly)', choices=('float16', 'float32'),
                         scope='offline')
    images: bool = key(True, 'Keep the camera images (knowledge-transfer branch, CNS 2D network)',
                       scope='offline')
    image_format: str = key('jpeg', 'Encoding of the kept images (png: lossless)', choices=('jpeg', 'png'),
                            scope='offline')
    jpeg_quality: int = key(90, 'JPEG quality of the kept images', min=1, max=100, scope='offline')


def _default_pop3d() -> Pop3DConfig:
    return Pop3DConfig(grids=('pop3d',))


def _default_affinity3d() -> Affinity3DConfig:
    return Affinity3DConfig(setting='af')


@dataclass
class PseudoLabelConfig:
    """Everything ``ovp pseudo-label`` computes besides the perception path (module docstring)."""

    methods: list[str] = key(['dense', 'affinity3d', 'cns', 'pop3d'], 'Methods to run: dense (MaskCLIP "MC" '
                             'labels and the dense feature targets), affinity3d (Eq. 4-10 PL\'), cns '
                             '(region-voted labels and regions), pop3d (occupancy and ray-cast targets), '
                             'unscene3d (class-agnostic pseudo masks; meant for scenes)',
                             item_choices=METHODS, scope='offline')
    seed: int = key(0, 'Seed of numpy / torch for the run (recorded in the provenance)', min=0,
                    max=2**31 - 1, scope='offline')
    scene: SceneConfig = field(default_factory=SceneConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    affinity3d: Affinity3DConfig = field(default_factory=_default_affinity3d)   # annotation-free unless set
    cns: RegionConfig = field(default_factory=RegionConfig)
    pop3d: Pop3DConfig = field(default_factory=_default_pop3d)
    unscene3d: UnScene3DConfig = field(default_factory=UnScene3DConfig)

    def __post_init__(self) -> None:
        if not self.methods:
            raise ValueError('pseudo_label methods: give at least one of ' + ', '.join(METHODS))
        if len(set(self.methods)) != len(self.methods):
            raise ValueError(f'pseudo_label methods repeat: {self.methods}')

    @property
    def label_source(self) -> str:
        """The method whose labels are the default ``labels`` (``store.labels``; auto: see its doc)."""
        if self.store.labels != 'auto':
            return self.store.labels
        return next((m for m in LABEL_METHODS if m in self.methods), '')


def pseudo_label_config(changes: Mapping[str, Any] | None = None) -> PseudoLabelConfig:
    """Return the defaults with dotted ``changes`` applied (validated; None values are skipped)."""
    return with_changes(PseudoLabelConfig(), dict(changes or {}))


def method_config_path(source: str | os.PathLike) -> Path:
    """Return a method config file: a path, or the name of a shipped one (``affinity3d_gzs`` ...)."""
    from perception_nodes.vocabulary import config_dir
    p = Path(source).expanduser()
    if p.is_file() or p.suffix or '/' in str(source):
        return p
    return config_dir() / 'pseudo_label' / f'{source}.yaml'


def load_pseudo_label_config(path: str | os.PathLike | None = None,
                             changes: Mapping[str, Any] | None = None) -> PseudoLabelConfig:
    """Load a method config file (merged onto the defaults), then apply dotted ``changes``.

    ``path``: a YAML file or the name of a shipped config (``config/pseudo_label/<name>.yaml``).
    """
    from perception_nodes.safe_yaml import load_yaml

    data: dict[str, Any] = {}
    if path is not None:
        p = method_config_path(path)
        if not p.is_file():
            raise ValueError(f'pseudo-label config file not found: {p}')
        loaded = load_yaml(p)          # one-line ValueError: not YAML, anchors / aliases, too large
        if loaded is not None and not isinstance(loaded, Mapping):
            raise ValueError(f'pseudo-label config file {p}: expected a mapping at the top level')
        data = flatten(loaded or {})
    data.update(changes or {})
    try:
        return pseudo_label_config(data)
    except ValueError as exc:
        where = f'pseudo-label config file {path}: ' if path is not None else ''
        raise ValueError(f'{where}{exc}') from None


def hashed_perception(config: PerceptionConfig) -> dict[str, Any]:
    """Return the perception keys that change what the store holds (see the module docstring)."""
    data = config_to_dict(config)
    for section in _UNHASHED_SECTIONS:
        data.pop(section, None)
    for name in _UNHASHED_KEYS:
        head, leaf = name.split('.')
        data.get(head, {}).pop(leaf, None)
    teacher = data.get('teacher', {})
    synthetic = teacher.get('source') == 'synthetic'
    for leaf in list(teacher):          # the other teacher's settings do not change what is stored
        if leaf.startswith('synthetic_') != synthetic and leaf not in ('source', 'sampling'):
            teacher.pop(leaf)
    return data


def config_hash(config: PseudoLabelConfig, perception: PerceptionConfig) -> str:
    """sha256 of the method config and the hashed perception keys (canonical JSON)."""
    payload = {'pseudo_label': to_dict(config), 'perception': hashed_perception(perception)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode('utf-8')).hexdigest()
