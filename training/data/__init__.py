"""Training data: the sample / batch interface, the synthetic test set, and opening a data source."""
from __future__ import annotations

import importlib
from pathlib import Path

from training.data.sample import (IGNORE, OPTIONAL_FIELDS, Batch, FrameDataset, FrameSample, SampleError,
                                  StoreInfo, check_expected, collate, teacher_meaningful, vocabulary_hash)

#: ``module:function`` that opens a pseudo-label store directory: ``function(path, split) -> FrameDataset``
#: (issue 11's store implements it; ``data.reader`` in a training config overrides it).
DEFAULT_STORE_READER = 'training.store.reader:open_dataset'


def open_source(spec: str, split: str = 'train', reader: str = DEFAULT_STORE_READER) -> FrameDataset:
    """Open a training data source: ``sim:key=value,...`` (synthetic world) or a pseudo-label store folder.

    Errors say what is missing: no such folder, no reader for stores installed, an empty data set.
    """
    spec = str(spec)
    if spec == 'sim' or spec.startswith('sim:'):
        from training.data.synthetic import synthetic_dataset
        dataset: FrameDataset = synthetic_dataset(spec)
    else:
        path = Path(spec)
        if not path.exists():
            raise SampleError(f'data source {spec!r}: no such store folder (or give sim:... for the '
                              'synthetic world)')
        module_name, _, func = reader.partition(':')
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise SampleError(f'cannot open the pseudo-label store {spec}: its reader {reader!r} is not '
                              f'importable ({exc}); build stores with `ovp pseudo-label`') from exc
        dataset = getattr(module, func)(str(path), split)
    if not isinstance(dataset, FrameDataset):
        raise SampleError(f'{spec}: the reader returned {type(dataset).__name__}, which lacks len / '
                          '__getitem__ / info')
    if len(dataset) == 0:
        missing = dataset.info.missing
        raise SampleError(f'data source {spec} ({split}) has no frames: nothing to train on'
                          + (f' (missing: {", ".join(missing)})' if missing else ''))
    return dataset


__all__ = ['DEFAULT_STORE_READER', 'IGNORE', 'OPTIONAL_FIELDS', 'Batch', 'FrameDataset', 'FrameSample',
           'SampleError', 'StoreInfo', 'check_expected', 'collate', 'open_source', 'teacher_meaningful',
           'vocabulary_hash']
