"""Atomic writes: the final name holds either the old content or the complete new one."""
from __future__ import annotations

import pytest

from perception_nodes.atomic import atomic_write, atomic_write_bytes, atomic_write_text


def test_writes_and_replaces(tmp_path):
    target = tmp_path / 'sub' / 'f.txt'
    atomic_write_text(target, 'one')
    atomic_write_bytes(target, b'two')
    assert target.read_bytes() == b'two'
    assert sorted(p.name for p in target.parent.iterdir()) == ['f.txt']


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / 'f.bin'
    target.write_bytes(b'old')

    def half_then_crash(tmp: str) -> None:
        with open(tmp, 'wb') as f:
            f.write(b'half')
        raise RuntimeError('crash mid-write')

    with pytest.raises(RuntimeError, match='crash mid-write'):
        atomic_write(target, half_then_crash)
    assert target.read_bytes() == b'old'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['f.bin']


def test_suffix_reaches_the_writer(tmp_path):
    seen = []
    atomic_write(tmp_path / 'x.png', lambda tmp: (seen.append(tmp), open(tmp, 'wb').close()), suffix='.png')
    assert seen[0].endswith('.png') and (tmp_path / 'x.png').exists()
