"""Content hashes, frame-key labels and the chunk check that decides what a rerun reuses."""
from __future__ import annotations

import numpy as np
import pytest

from training.store.shards import (ChunkRecord, StorePaths, UnitMeta, bag_content_hash, chunk_done,
                                   file_sha256, safe_label, write_record, write_shard)


def test_bag_content_hash_of_files_and_folders(tmp_path):
    (tmp_path / 'b').mkdir()
    (tmp_path / 'b' / 'x.mcap').write_bytes(b'abc')
    (tmp_path / 'b' / 'metadata.yaml').write_text('m')
    h = bag_content_hash(tmp_path / 'b')
    assert h == bag_content_hash(tmp_path / 'b') and len(h) == 64
    (tmp_path / 'b' / 'x.mcap').write_bytes(b'abd')
    assert bag_content_hash(tmp_path / 'b') != h
    assert bag_content_hash(tmp_path / 'b' / 'x.mcap') == file_sha256(tmp_path / 'b' / 'x.mcap')
    with pytest.raises(ValueError, match='not found'):
        bag_content_hash(tmp_path / 'none')


def test_safe_labels_and_hash_named_folders(tmp_path):
    assert safe_label('../../etc/passwd') == '_.._etc_passwd'
    assert safe_label('kitti 2011/09') == 'kitti_2011_09'
    assert safe_label('') == 'bag' and len(safe_label('x' * 300)) == 64
    paths = StorePaths(tmp_path)
    folder = paths.shard_dir('a' * 64, 'b' * 64, 'c' * 64)
    assert folder == tmp_path / 'shards' / ('a' * 16) / f'{"b" * 16}-{"c" * 16}'
    with pytest.raises(ValueError, match='hex'):
        paths.shard_dir('../x', 'b' * 64, 'c' * 64)


def test_chunk_done_reuses_only_verified_shards(tmp_path):
    assert chunk_done(tmp_path, 0) == (None, 'missing')
    shard = tmp_path / StorePaths.shard_name(0)
    sha, size = write_shard(shard, {'u0/points': np.zeros((3, 4), np.float32)}, {'units': ['k']})
    unit = UnitMeta('bag:000000', 0, [0], 1, 'velo', 3, [])
    record = ChunkRecord(0, 'a' * 64, shard.name, sha, size, [unit], [], {}, {}, {})
    write_record(tmp_path / StorePaths.record_name(0), record)
    got, why = chunk_done(tmp_path, 0)
    assert why == '' and got.units[0].key == 'bag:000000' and got.sha256 == sha
    assert write_shard(tmp_path / 'again.safetensors', {'u0/points': np.zeros((3, 4), np.float32)},
                       {'units': ['k']})[0] == sha                   # byte-identical for equal content
    data = bytearray(shard.read_bytes())
    data[-1] ^= 1
    shard.write_bytes(bytes(data))
    assert chunk_done(tmp_path, 0) == (None, 'checksum mismatch')
    shard.write_bytes(bytes(data[:-4]))
    assert chunk_done(tmp_path, 0) == (None, 'checksum mismatch')
    shard.unlink()
    assert chunk_done(tmp_path, 0) == (None, 'shard missing')
    (tmp_path / StorePaths.record_name(0)).write_text('{not json')
    assert chunk_done(tmp_path, 0) == (None, 'unreadable record')
