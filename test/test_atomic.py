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


@pytest.mark.parametrize('umask', [0o022, 0o077, 0o002])
def test_published_files_get_the_umask_mode_like_open(tmp_path, umask):
    """Issue 15 item 21: atomic writes used to publish 0600 files (mkstemp) while bags were 0644."""
    import os
    import stat

    from perception_nodes.atomic import current_umask
    old = os.umask(umask)
    try:
        assert current_umask() == umask
        atomic_write_text(tmp_path / 'a.json', '{}')
        atomic_write(tmp_path / 'b.png', lambda tmp: open(tmp, 'wb').close(), suffix='.png')
        with open(tmp_path / 'plain.txt', 'w') as f:
            f.write('x')
    finally:
        os.umask(old)
    want = 0o666 & ~umask
    for name in ('a.json', 'b.png', 'plain.txt'):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == want, name


def test_replacing_keeps_the_existing_mode(tmp_path):
    import os
    import stat

    target = tmp_path / 'f.txt'
    target.write_text('old')
    os.chmod(target, 0o640)
    atomic_write_text(target, 'new')
    assert target.read_text() == 'new' and stat.S_IMODE(target.stat().st_mode) == 0o640
