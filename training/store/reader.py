"""The store as the trainer reads it: ``open_dataset(path, split)`` -> a ``training.data.FrameDataset``.

The trainer (``training.data.open_source``) opens a store folder through ``module:function(path, split)``;
this is that function. :class:`StoreFrameDataset` wraps :class:`~training.store.dataset.PseudoLabelDataset`
and gives each unit as a :class:`training.data.sample.FrameSample` with a ``training.data.sample.StoreInfo``:

    FrameSample field    from the store sample (training.store.dataset)
    points / labels / visible / gt_labels / gt_instances / teacher_index / teacher_features / regions /
    images / uv / pseudo_masks / instances       the same (``instances``: Affinity3D superpoints)
    frame_id                                     frame_key
    image_index                                  camera_index
    occupancy_target                             occupancy_target != 0 (bool)
    (not in FrameSample)                         mask_scores, sweep

``StoreInfo.class_counts`` are the labelled points per class of the label source over the whole store;
``teacher`` is the store's teacher identity (kind ``clip`` or ``oracle`` for the synthetic teacher). A store
folder is one split: ``split`` is recorded in ``info.extra`` and every unit is returned.
"""
from __future__ import annotations

import os
from typing import Any

from torch.utils.data import Dataset

from training.data.sample import OPTIONAL_FIELDS, FrameSample, StoreInfo
from training.store.dataset import PseudoLabelDataset

RENAMED = {'camera_index': 'image_index'}                 # store sample name -> FrameSample name
SAME = ('gt_labels', 'gt_instances', 'instances', 'teacher_index', 'teacher_features', 'regions',
        'images', 'uv', 'pseudo_masks')


def trainer_info(store: PseudoLabelDataset, split: str) -> StoreInfo:
    """Return the trainer's StoreInfo of a store (FrameSample field names; class counts of the labels)."""
    info = store.info
    fields = {RENAMED.get(f, f) for f in info.fields} & set(OPTIONAL_FIELDS)
    counts = info.class_counts.get(store.label_source)
    return StoreInfo(class_names=list(info.class_names), text_embeddings=info.text_embeddings,
                     vocabulary_name=info.vocabulary_name, teacher=dict(info.teacher),
                     config_hash=info.config_hash, store_hash=info.store_hash, fields=frozenset(fields),
                     class_counts=list(counts) if counts is not None else None, grid=info.grid,
                     extra={'split': split, 'unit': info.unit, 'label_source': store.label_source,
                            'package_version': info.package_version, 'bags': info.bags, 'seeds': info.seeds,
                            'teacher_id': info.teacher_id, 'config': info.config})


def to_frame_sample(sample: dict[str, Any]) -> FrameSample:
    """Return a store sample (dict) as a :class:`FrameSample`."""
    kw: dict[str, Any] = {name: sample[name] for name in SAME if name in sample}
    for ours, theirs in RENAMED.items():
        if ours in sample:
            kw[theirs] = sample[ours]
    if 'occupancy_target' in sample:
        kw['occupancy_target'] = sample['occupancy_target'] != 0
    return FrameSample(points=sample['points'], labels=sample['labels'], visible=sample['visible'],
                       frame_id=sample['frame_key'], **kw)


class StoreFrameDataset(Dataset):
    """``len``, ``dataset[i] -> FrameSample`` and ``.info`` (the trainer's ``FrameDataset``) over a store."""

    def __init__(self, root: str | os.PathLike, split: str = 'train', label_source: str | None = None,
                 **kwargs: Any) -> None:
        self.store = PseudoLabelDataset(root, label_source=label_source, **kwargs)
        self.info = trainer_info(self.store, split)

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, index: int) -> FrameSample:
        return to_frame_sample(self.store[index])


def open_dataset(path: str | os.PathLike, split: str = 'train') -> StoreFrameDataset:
    """Open a store folder for the trainer (``training.data.open_source``'s store reader)."""
    return StoreFrameDataset(path, split)
