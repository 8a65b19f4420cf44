"""The trainer's default store reader (``training.data.DEFAULT_STORE_READER``): training.store.reader."""
from __future__ import annotations

from training.store.reader import StoreFrameDataset, open_dataset

__all__ = ['StoreFrameDataset', 'open_dataset']
