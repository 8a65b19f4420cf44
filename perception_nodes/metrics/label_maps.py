"""Dataset label ids -> vocabulary class indices, for ground truth (``config/label_maps/*.yaml``).

A label-map file names the vocabulary it targets and lists, per class *name*, the raw dataset ids that
map to it; class index k is the k-th class of that vocabulary (``config/vocabularies/<name>.yaml``), so a
ground-truth label k and a predicted label k mean the same class. ``ignore`` lists raw ids that are
deliberately not evaluated; any raw id listed nowhere is ignored as well (-1). Built in:

- ``semantickitti``: SemanticKITTI raw ids -> 19 classes (the benchmark's learning_map; moving classes
  merged into their static class).
- ``scannet20``: NYU40 ids -> the 20 ScanNet benchmark classes.
- ``scannet200``: ScanNet raw category ids -> the 200 ScanNet200 classes, with the official head /
  common / tail splits.
- ``nuscenes``: nuScenes-lidarseg 32 class indices -> the 16 challenge classes.

``instance_classes`` (optional) names the classes whose points form instances (the "thing" classes:
SemanticKITTI / nuScenes panoptic things, ScanNet's instance classes without wall and floor); class-agnostic
instance ground truth keeps only points of those classes (empty: every class); ``stuff_classes`` says the
same the other way round (every class but those; ScanNet200: wall and floor).

Files are read with ``yaml.safe_load`` and validated: every target is a class of the vocabulary, every
raw id is a non-negative integer listed once (across classes and ``ignore``), splits name vocabulary
classes and do not overlap.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import yaml

from perception_nodes.metrics._common import as_int_labels
from perception_nodes.vocabulary import Vocabulary, config_dir, load_vocabulary

BUILTIN_LABEL_MAPS = ('semantickitti', 'scannet20', 'scannet200', 'nuscenes')
IGNORE = -1


@dataclass
class LabelMap:
    """Raw id -> class index of ``class_names`` (the vocabulary's order); unlisted ids -> -1."""

    name: str
    vocabulary: str
    class_names: list[str]
    mapping: dict[int, int]                       # raw id -> class index
    ignored: tuple[int, ...] = ()                 # raw ids listed as deliberately ignored
    splits: dict[str, list[str]] = field(default_factory=dict)
    source: str = ''
    instance_classes: list[str] = field(default_factory=list)   # "thing" classes; empty = every class

    def __post_init__(self) -> None:
        self._lut = lookup_table(self.mapping)

    @property
    def lut(self) -> np.ndarray:
        """Lookup table: ``lut[raw] = class index`` or -1, for raw ids 0..max listed id."""
        return self._lut

    @property
    def unmapped_classes(self) -> list[str]:
        """Classes no raw id maps to (they can never appear in the ground truth)."""
        used = set(self.mapping.values())
        return [n for k, n in enumerate(self.class_names) if k not in used]

    def apply(self, raw_ids: Any) -> np.ndarray:
        """Map raw ids to class indices (int64, -1 = ignore), same shape as the input."""
        return apply_label_map(raw_ids, self)

    def split_indices(self) -> dict[str, list[int]]:
        """Return the file's splits as class indices (e.g. for ``semantic.head_common_tail(splits=...)``)."""
        return {k: [self.class_names.index(n) for n in v] for k, v in self.splits.items()}

    def instance_class_indices(self) -> list[int]:
        """Class indices whose points form instances (every class when ``instance_classes`` is empty)."""
        if not self.instance_classes:
            return list(range(len(self.class_names)))
        return [self.class_names.index(n) for n in self.instance_classes]


def lookup_table(mapping: Mapping[int, int]) -> np.ndarray:
    """Dense int64 table over raw ids 0..max(mapping); unlisted entries -1."""
    if not mapping:
        return np.full(1, IGNORE, dtype=np.int64)
    keys = np.fromiter((int(k) for k in mapping), dtype=np.int64)
    if keys.min() < 0:
        raise ValueError('raw ids must be >= 0')
    lut = np.full(int(keys.max()) + 1, IGNORE, dtype=np.int64)
    lut[keys] = np.fromiter((int(mapping[k]) for k in mapping), dtype=np.int64)
    return lut


def apply_label_map(raw_ids: Any, label_map: LabelMap | Mapping[int, int] | np.ndarray) -> np.ndarray:
    """Vectorised lookup: raw ids (numpy / torch, any integer dtype and shape) -> class index, -1 if unknown.

    ``label_map``: a :class:`LabelMap`, a dict raw id -> class index, or a lookup table array.
    """
    if isinstance(label_map, LabelMap):
        lut = label_map.lut
    elif isinstance(label_map, np.ndarray):
        lut = label_map.astype(np.int64, copy=False).reshape(-1)
    else:
        lut = lookup_table(label_map)
    shape = np.shape(raw_ids) if not hasattr(raw_ids, 'shape') else tuple(raw_ids.shape)
    raw = as_int_labels(raw_ids, 'raw_ids')
    out = np.full(raw.shape, IGNORE, dtype=np.int64)
    inside = (raw >= 0) & (raw < lut.size)
    out[inside] = lut[raw[inside]]
    return out.reshape(shape)


def _id_list(value: Any, where: str) -> list[int]:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list):
        raise ValueError(f'{where}: expected a list of raw ids, got {value!r}')
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f'{where}: raw ids must be non-negative integers, got {v!r}')
        out.append(int(v))
    return out


def label_map_from_dict(data: Any, source: str = '<dict>', vocabulary: Vocabulary | None = None) -> LabelMap:
    """Build and validate a :class:`LabelMap` from parsed YAML (see the module docstring)."""
    if not isinstance(data, dict):
        raise ValueError(f'{source}: a label map must be a mapping')
    unknown_keys = set(data) - {'name', 'vocabulary', 'raw_ids', 'ignore', 'classes', 'splits',
                                'instance_classes', 'stuff_classes'}
    if unknown_keys:
        raise ValueError(f'{source}: unknown keys {sorted(unknown_keys)}')
    if 'vocabulary' not in data or not isinstance(data.get('classes'), dict):
        raise ValueError(f'{source}: needs "vocabulary" and a "classes" mapping (class name -> raw ids)')
    vocab = vocabulary if vocabulary is not None else load_vocabulary(str(data['vocabulary']))
    names = list(vocab.names)
    owner: dict[int, str] = {}
    mapping: dict[int, int] = {}
    for cls, ids in data['classes'].items():
        if not isinstance(cls, str) or cls not in names:
            raise ValueError(f'{source}: target {cls!r} is not a class of vocabulary {vocab.name!r}')
        for i in _id_list(ids, f'{source}: class {cls!r}'):
            if i in owner:
                raise ValueError(f'{source}: raw id {i} is listed twice ({owner[i]!r} and {cls!r})')
            owner[i] = cls
            mapping[i] = names.index(cls)
    ignored = _id_list(data.get('ignore') or [], f'{source}: ignore')
    for i in ignored:
        if i in owner:
            raise ValueError(f'{source}: raw id {i} is listed twice ({owner[i]!r} and ignore)')
        owner[i] = 'ignore'
    splits: dict[str, list[str]] = {}
    seen: dict[str, str] = {}
    for split, members in (data.get('splits') or {}).items():
        if not isinstance(members, list):
            raise ValueError(f'{source}: split {split!r} must be a list of class names')
        for m in members:
            if m not in names:
                raise ValueError(f'{source}: split {split!r}: {m!r} is not a class of {vocab.name!r}')
            if m in seen:
                raise ValueError(f'{source}: class {m!r} is in splits {seen[m]!r} and {split!r}')
            seen[m] = str(split)
        splits[str(split)] = [str(m) for m in members]
    things = _class_list(data, 'instance_classes', names, source, vocab.name)
    stuff = _class_list(data, 'stuff_classes', names, source, vocab.name)
    if things and stuff:
        raise ValueError(f'{source}: give instance_classes or stuff_classes, not both')
    if stuff:
        things = [n for n in names if n not in stuff]
    return LabelMap(name=str(data.get('name', Path(source).stem)), vocabulary=vocab.name, class_names=names,
                    mapping=mapping, ignored=tuple(sorted(ignored)), splits=splits, source=source,
                    instance_classes=[str(t) for t in things])


def _class_list(data: dict, key: str, names: list[str], source: str, vocab: str) -> list[str]:
    value = data.get(key) or []
    if not isinstance(value, list) or len(set(map(str, value))) != len(value):
        raise ValueError(f'{source}: {key} must be a list of distinct class names')
    bad = [v for v in value if v not in names]
    if bad:
        raise ValueError(f'{source}: {key}: {bad} are not classes of {vocab!r}')
    return [str(v) for v in value]


def label_map_path(name: str) -> Path:
    """Path of a built-in label map."""
    return config_dir() / 'label_maps' / f'{name}.yaml'


def load_label_map(source: str | Path) -> LabelMap:
    """Load a built-in label map by name (:data:`BUILTIN_LABEL_MAPS`) or a YAML file."""
    text = str(source)
    path = label_map_path(text.lower()) if text.lower() in BUILTIN_LABEL_MAPS else Path(text).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f'label map not found: {path} (built in: {BUILTIN_LABEL_MAPS})')
    with open(path, encoding='utf-8') as f:
        data = yaml.safe_load(f)
    return label_map_from_dict(data, str(path))


__all__ = ['BUILTIN_LABEL_MAPS', 'IGNORE', 'LabelMap', 'apply_label_map', 'label_map_from_dict',
           'label_map_path', 'load_label_map', 'lookup_table']
