"""file_sha256: the digest of the whole file, across block boundaries."""
from __future__ import annotations

import hashlib

import numpy as np

from perception_nodes.hashing import file_sha256


def test_file_sha256_equals_hashlib_over_several_blocks(tmp_path):
    data = np.random.default_rng(0).integers(0, 256, (1 << 20) * 2 + 12345, dtype=np.uint8).tobytes()
    path = tmp_path / 'blob.bin'
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
    path.write_bytes(b'')
    assert file_sha256(path) == hashlib.sha256(b'').hexdigest()
