"""Issue 15, item 10: what the next run cleans, it cleans safely.

A leftover is removed only when its name carries this host and a PID that no longer exists, and (for a
writer's ``.partial`` folder) its lock is free. Everything else beside an output, a live writer's folder
above all, is left alone.
"""
from __future__ import annotations

import subprocess
import sys

from perception_nodes.atomic import atomic_write_text, owner_tag, stale_temporaries
from perception_nodes.io.bags import _hold_lock, recover_output


def _dead_tag() -> str:
    proc = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'], capture_output=True,
                          text=True, check=True)
    return owner_tag().rsplit('-', 1)[0] + '-' + proc.stdout.strip()    # this host, a finished process


def _folder(parent, name):
    path = parent / name
    (path / 'OUT').mkdir(parents=True)
    (path / 'OUT' / 'summary.json').write_text('{}')
    return path


def test_only_dead_owners_of_this_host_are_cleaned(tmp_path):
    dead, live = _dead_tag(), owner_tag()
    with subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']) as sleeper:
        try:
            other_live = owner_tag().rsplit('-', 1)[0] + f'-{sleeper.pid}'
            keep = [_folder(tmp_path, f'.OUT.{live}.abc.partial'),            # this process
                    _folder(tmp_path, f'.OUT.{other_live}.abc.partial'),      # a live process
                    _folder(tmp_path, f'.OUT.otherhost-{dead.rsplit("-", 1)[1]}.abc.partial'),  # elsewhere
                    _folder(tmp_path, '.OUT.abc123.partial'),                 # an older version's name
                    _folder(tmp_path, f'.OTHER.{dead}.abc.partial'),          # another output's
                    _folder(tmp_path, 'OUT.partial')]                         # the user's own
            gone = _folder(tmp_path, f'.OUT.{dead}.abc.partial')
            notes = recover_output(tmp_path / 'OUT')
            assert notes == [f'removed {gone.name}, the unfinished output of a killed run']
            assert not gone.exists() and all(p.exists() for p in keep)
        finally:
            sleeper.kill()
    sleeper.wait()
    recover_output(tmp_path / 'OUT')
    assert not keep[1].exists() and all(p.exists() for p in keep[:1] + keep[2:])   # once it is gone


def test_a_locked_partial_is_in_use_whatever_its_name_says(tmp_path):
    partial = _folder(tmp_path, f'.OUT.{_dead_tag()}.abc.partial')
    fd = _hold_lock(partial)          # e.g. a writer in another PID namespace with the same host name
    try:
        assert recover_output(tmp_path / 'OUT') == [] and partial.exists()
    finally:
        import os
        os.close(fd)
    assert recover_output(tmp_path / 'OUT') and not partial.exists()


def test_rollback_picks_the_newest_previous_output(tmp_path):
    import os
    dead = _dead_tag()
    older, newer = _folder(tmp_path, f'.OUT.{dead}.aaa.old'), _folder(tmp_path, f'.OUT.{dead}.bbb.old')
    (older / 'OUT').rename(older / 'old')
    (newer / 'OUT').rename(newer / 'old')
    (newer / 'old' / 'summary.json').write_text('{"newer": true}')
    os.utime(older, ns=(1, 1))
    notes = recover_output(tmp_path / 'OUT')
    assert notes[0].startswith(f'restored {tmp_path / "OUT"} from {newer.name}')
    assert (tmp_path / 'OUT' / 'summary.json').read_text() == '{"newer": true}'
    assert sorted(os.listdir(tmp_path)) == ['OUT']


def test_atomic_write_removes_dead_temporaries_of_its_own_target_only(tmp_path):
    dead = _dead_tag()
    mine = tmp_path / f'.report.json.{dead}.x1y2.tmp'
    other = tmp_path / f'.notes.json.{dead}.x1y2.tmp'
    live = tmp_path / f'.report.json.{owner_tag()}.x1y2.tmp'
    for p in (mine, other, live):
        p.write_bytes(b'')
    assert stale_temporaries(tmp_path / 'report.json', '.tmp') == [mine]
    atomic_write_text(tmp_path / 'report.json', '{}')
    assert not mine.exists() and other.exists() and live.exists()
