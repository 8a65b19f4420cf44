"""Validation of raw message fields shared by the decoders (PointCloud2, Image, CompressedImage)."""
from __future__ import annotations

from typing import Any

import numpy as np


def byte_buffer(data: Any, what: str = 'data') -> np.ndarray:
    """``msg.data`` (numpy uint8 array, bytes, array.array('B'), list of ints) as a 1-D uint8 array.

    Buffers are viewed, not copied; anything that is not bytes raises ValueError naming ``what``.
    """
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8:
            raise ValueError(f'{what} has dtype {data.dtype}, expected uint8')
        return data.reshape(-1)
    try:
        return np.frombuffer(memoryview(data).cast('B'), dtype=np.uint8)
    except TypeError:
        pass
    try:
        arr = np.asarray(data)
        if arr.ndim != 1 or arr.size and (arr.dtype.kind not in 'iu' or arr.min() < 0 or arr.max() > 255):
            raise ValueError
        return arr.astype(np.uint8)
    except (TypeError, ValueError):
        raise ValueError(f'{what} of type {type(data).__name__} is not a byte buffer') from None


def non_negative_int(msg: Any, name: str, what: str = '') -> int:
    """Integer field ``name`` of ``msg``; ValueError unless it is an int >= 0 (bools refused)."""
    value = getattr(msg, name)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f'{what}{name} {value!r} is not a non-negative integer')
    return int(value)
