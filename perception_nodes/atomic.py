"""Atomic file writes: a crash never leaves a half-written file under the final name."""
from __future__ import annotations

import os
import stat
import tempfile
import threading
from pathlib import Path
from typing import Callable

_UMASK_LOCK = threading.Lock()


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


def atomic_write(path: str | os.PathLike, write: Callable[[str], object], suffix: str = '.tmp') -> Path:
    """Call ``write(tmp)`` to fill a temporary sibling of ``path``, then rename it onto ``path``.

    The temporary file lives in the same folder (so the rename is atomic) and ends in ``suffix`` (some
    writers pick the format from the extension, e.g. ``'.png'``). On any error it is removed and the
    error propagates; an existing file at ``path`` is left untouched. The published file gets the mode
    a plain ``open()`` would give it (:func:`new_file_mode`: an existing file's mode, else
    ``0o666 & ~umask``), not the 0600 of the temporary.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = new_file_mode(path)
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix=suffix, dir=path.parent)
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
