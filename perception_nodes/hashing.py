"""Content identity of files: the one sha256 helper (weights, checkpoints, ONNX, store shards, masks)."""
from __future__ import annotations

import hashlib
import os

__all__ = ['file_sha256']

_BLOCK = 1 << 20


def file_sha256(path: str | os.PathLike) -> str:
    """Return the sha256 (hex) of a file's bytes, read in 1 MiB blocks (bounded memory)."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(_BLOCK), b''):
            digest.update(block)
    return digest.hexdigest()
