"""Atomic file writes: a crash never leaves a half-written file under the final name.

Temporaries are hidden siblings of their target named after their owner,
``.<name>.<host>-<pid>.<random><suffix>`` (:func:`owner_tag`), so that what a killed process left behind
(SIGKILL, power loss: no ``finally`` runs) can be told apart from what a live one is writing:
:func:`stale_temporaries` lists the leftovers of processes of this host that no longer exist, and
:func:`atomic_write` removes those of its own target before writing. A temporary of another host, or of
a process that still exists (or whose PID was reused), is never touched.
"""
from __future__ import annotations

import os
import re
import socket
import stat
import tempfile
import threading
from pathlib import Path
from typing import Callable

__all__ = ['atomic_write', 'atomic_write_bytes', 'atomic_write_text', 'current_umask', 'new_file_mode',
           'owner_tag', 'owner_is_dead', 'stale_temporaries', 'remove_stale_temporaries']

_UMASK_LOCK = threading.Lock()
_TAG = re.compile(r'(?P<host>[A-Za-z0-9_-]+)-(?P<pid>\d+)')


def current_umask() -> int:
    """Return the process umask, read without changing it where the OS allows (Linux ``/proc``)."""
    try:
        with open('/proc/self/status', encoding='ascii') as f:
            for line in f:
                if line.startswith('Umask:'):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:          # elsewhere: set and restore it (briefly visible to other threads)
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def new_file_mode(path: str | os.PathLike | None = None) -> int:
    """Mode a plain ``open(path, 'w')`` would leave: the existing file's, else ``0o666 & ~umask``."""
    if path is not None:
        try:
            st = os.stat(path)
        except OSError:
            pass
        else:
            if stat.S_ISREG(st.st_mode):
                return stat.S_IMODE(st.st_mode)
    return 0o666 & ~current_umask()


def _host() -> str:
    return (re.sub(r'[^A-Za-z0-9_]', '_', socket.gethostname()) or 'host')[:40]


def owner_tag() -> str:
    """``<host>-<pid>`` of this process, as it appears in the names of its temporaries."""
    return f'{_host()}-{os.getpid()}'


def _pid_exists(pid: int) -> bool:
    if pid <= 0 or os.name == 'nt':
        return True                 # not a real owner / no signal 0 on Windows: never treat it as gone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True                 # exists (another user's), or cannot tell: keep its files
    return True


def owner_is_dead(tag: str) -> bool:
    """Return True when ``tag`` (:func:`owner_tag`) names a process of this host that no longer exists."""
    m = _TAG.fullmatch(tag)
    if m is None or m['host'] != _host():
        return False
    pid = int(m['pid'])
    return pid != os.getpid() and not _pid_exists(pid)


def stale_temporaries(path: str | os.PathLike, suffix: str) -> list[Path]:
    """Temporaries of ``path`` (``.<name>.<owner>.<random><suffix>`` beside it) whose owner is dead."""
    path = Path(path)
    pattern = re.compile(rf'\.{re.escape(path.name)}\.(?P<tag>[A-Za-z0-9_-]+-\d+)\.[A-Za-z0-9_]+'
                         rf'{re.escape(suffix)}')
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return []
    out = []
    for entry in entries:
        m = pattern.fullmatch(entry.name)
        if m is not None and owner_is_dead(m['tag']):
            out.append(Path(entry.path))
    return sorted(out)


def remove_stale_temporaries(path: str | os.PathLike, suffix: str) -> list[Path]:
    """Delete the plain-file temporaries :func:`stale_temporaries` finds; returns what was removed."""
    removed = []
    for tmp in stale_temporaries(path, suffix):
        try:
            if tmp.is_file() and not tmp.is_symlink():
                tmp.unlink()
                removed.append(tmp)
        except OSError:
            pass
    return removed


def atomic_write(path: str | os.PathLike, write: Callable[[str], object], suffix: str = '.tmp') -> Path:
    """Call ``write(tmp)`` to fill a temporary sibling of ``path``, then rename it onto ``path``.

    The temporary file lives in the same folder (so the rename is atomic), is named after its owner
    (module docstring) and ends in ``suffix`` (some writers pick the format from the extension, e.g.
    ``'.png'``). Temporaries of ``path`` left by dead processes (a SIGKILLed earlier run) are removed
    first. On any error the temporary is removed and the error propagates; an existing file at ``path``
    is left untouched. The published file gets the mode a plain ``open()`` would give it
    (:func:`new_file_mode`: an existing file's mode, else ``0o666 & ~umask``), not the 0600 of the
    temporary.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path, suffix)
    mode = new_file_mode(path)
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.{owner_tag()}.', suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write bytes to ``path`` atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 text to ``path`` atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding='utf-8'))
