"""Helpers shared by the metric accumulators: input conversion and JSON-able state encoding."""
from __future__ import annotations

import base64
import math
from typing import Any

import numpy as np


def as_numpy(x: Any) -> np.ndarray:
    """Return ``x`` as a numpy array; torch tensors (any device) are detached and copied to the CPU."""
    if hasattr(x, 'detach') and hasattr(x, 'cpu'):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def as_int_labels(x: Any, what: str) -> np.ndarray:
    """Flatten integer labels to int64 (uint16 / uint32 inputs keep their values)."""
    arr = as_numpy(x)
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f'{what} must be integer labels, got dtype {arr.dtype}')
    return arr.astype(np.int64, copy=False).reshape(-1)


def as_mask(x: Any, size: int, what: str = 'mask') -> np.ndarray:
    """Flatten a boolean mask of ``size`` elements."""
    arr = as_numpy(x)
    if arr.dtype != bool:
        raise ValueError(f'{what} must be boolean, got dtype {arr.dtype}')
    arr = arr.reshape(-1)
    if arr.size != size:
        raise ValueError(f'{what} has {arr.size} elements for {size} points')
    return arr


def encode_array(a: np.ndarray) -> dict[str, Any]:
    """Encode an array as a JSON-able dict (dtype, shape, little-endian bytes in base64)."""
    a = np.ascontiguousarray(a)
    le = a.astype(a.dtype.newbyteorder('<'), copy=False)
    return {'dtype': le.dtype.str, 'shape': list(a.shape),
            'data': base64.b64encode(le.tobytes()).decode('ascii')}


def decode_array(d: dict[str, Any]) -> np.ndarray:
    """Inverse of :func:`encode_array`."""
    raw = base64.b64decode(d['data'].encode('ascii'))
    arr = np.frombuffer(raw, dtype=np.dtype(d['dtype'])).reshape(d['shape'])
    return arr.astype(arr.dtype.newbyteorder('='), copy=True)


def json_float(v: float) -> float | None:
    """Plain float, or None for NaN (JSON has no NaN)."""
    v = float(v)
    return None if math.isnan(v) else v


def json_floats(a: np.ndarray) -> list[float | None]:
    """List of plain floats with NaN as None."""
    return [json_float(v) for v in np.asarray(a, dtype=np.float64).reshape(-1)]


def check_state(state: dict[str, Any], kind: str, version: int) -> None:
    """Raise ValueError unless ``state`` is a state dict of ``kind`` at ``version``."""
    found = state.get('kind') if isinstance(state, dict) else None
    if found != kind:
        raise ValueError(f'not a {kind!r} metric state (kind={found!r})')
    if state.get('version') != version:
        raise ValueError(f'{kind!r} state version {state.get("version")!r} is not supported '
                         f'(expected {version})')


def nanmean(a: np.ndarray) -> float:
    """Mean of the finite entries, NaN when there are none (no RuntimeWarning)."""
    a = np.asarray(a, dtype=np.float64)
    a = a[~np.isnan(a)]
    return float(a.mean()) if a.size else float('nan')
