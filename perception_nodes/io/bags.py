"""Read and write bags with ``rosbags`` (ROS 2 .mcap / .db3 folders or files, ROS 1 .bag).

- :func:`open_bag` opens any bag with ``rosbags.highlevel.AnyReader`` (message definitions from the
  bag, ROS 2 Humble definitions as fallback);
- :func:`iter_messages` streams ``(topic, msgtype, log_time_ns, message)`` in log-time order and turns
  storage failures into :class:`BagError` *after* yielding everything that was readable;
- :func:`bag_summary` (used by ``ovp bag-info``) counts topics, types and rates;
- :class:`BagWriter` writes ROS 2 bags atomically: into a temporary sibling folder renamed to the final
  name only when the ``with`` block ends without an exception. MCAP chunks carry their CRC-32 (rosbags
  writes 0, "no checksum"); a log time or message that cannot be stored is a :class:`BagWriteError`
  (a ValueError naming the topic) raised before anything of that message is written, and
  :meth:`BagWriter.write_all` writes a group of messages (one frame) whole or not at all;
- :func:`recover_output` repairs what a killed writer left beside an output: it restores a previous
  output that an overwrite had moved aside when the process died between its two renames, and removes
  the temporary folders of dead writers (see :class:`BagWriter`).

MCAP files are read through one reader class (:class:`_McapStorage`) that salvages a file without its end
and, when a chunk's CRC-32 is present and wrong, stops with an error naming the chunk's byte offset after
yielding every message that comes before that chunk.
"""
from __future__ import annotations

import ctypes
import errno
import heapq
import os
import shutil
import sys
import struct
import tempfile
from binascii import crc32
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.rosbag2.errors import ReaderError
from rosbags.rosbag2.storage_mcap import McapReader, McapWriter, msgsrc

from perception_nodes.atomic import owner_tag, stale_temporaries
from perception_nodes.io.messages import RosbagsMessageTypes, default_message_types

__all__ = ['BagError', 'BagWriteError', 'BagMessage', 'TopicSummary', 'BagSummary', 'open_bag',
           'iter_messages', 'read_messages', 'bag_topics', 'bag_summary', 'BagWriter', 'is_truncated',
           'MAX_LOG_TIME_NS', 'check_log_time', 'recover_output']

STORAGES = ('mcap', 'sqlite3')
MAX_LOG_TIME_NS = 2**63 - 1     # rosbag2 stores int64 nanoseconds, MCAP uint64: 0 .. 2**63 - 1 fits both


class BagError(ValueError):
    """A bag cannot be opened or read completely (missing, corrupted, truncated, unknown format)."""


class BagWriteError(ValueError):
    """One message cannot be written (log time out of range, a field that does not serialize).

    Raised before anything of that message reaches the bag, so the caller may skip it and go on.
    """

    def __init__(self, message: str, topic: str, stamp_ns: Any) -> None:
        super().__init__(message)
        self.topic = topic
        self.stamp_ns = stamp_ns


@dataclass
class BagMessage:
    topic: str
    msgtype: str
    log_time_ns: int
    msg: Any


class _McapStorage(McapReader):
    """rosbags' MCAP reader that salvages a file without its end and names a corrupted chunk.

    - A file whose end (summary, footer) is missing, e.g. a recorder killed mid-write, is cut after its
      last complete record and read by rosbags' own unindexed scan; ``truncated`` tells the caller to
      report the loss after reading.
    - Chunks are read lazily in time order (as rosbags does); a chunk whose CRC-32 is present and does
      not match (or that does not decompress to its declared size) raises ``ReaderError`` naming its
      byte offset when the stream reaches it, after every message of the chunks before it.
    """

    truncated = False

    def _open(self) -> None:
        try:
            super()._open()
            return
        except ReaderError as exc:
            if 'end magic' not in str(exc) and 'footer' not in str(exc):
                raise
        assert self.bio is not None
        size = self.bio.seek(0, 2)
        pos = self.data_start
        while pos + 9 <= size:        # MCAP record framing: opcode u8, content length u64 (LE)
            self.bio.seek(pos)
            opcode, length = _RECORD_HEAD.unpack(self.bio.read(9))
            if pos + 9 + length > size or opcode in (0x02, 0x0F):   # partial record / data end
                break
            pos += 9 + length
        self.truncated = True
        self.data_end = pos
        self.chunks = []
        self.meta_scan()
        stats = self.statistics
        assert stats is not None
        self.connections = [c._replace(msgcount=stats.channel_message_counts.get(c.id, 0))
                            for c in self.connections]
        count = stats.message_count
        self.metadata = self.metadata._replace(
            duration=stats.end_time - stats.start_time + 1 if count else 0,
            start_time=stats.start_time if count else 2**63 - 1,
            end_time=stats.end_time + 1 if count else 0, message_count=count)

    def messages(self, connections: Any, start: int | None = None,
                 stop: int | None = None) -> Iterator[tuple[Any, int, bytes]]:
        """``McapReader.messages`` with each chunk's read errors naming the chunk's byte offset."""
        if not self.chunks:
            yield from super().messages(connections, start, stop)
            return
        assert self.bio is not None
        channel_map = {conn.id: conn for conn in connections}
        sources = [_checked_chunk(msgsrc(x, channel_map, x.message_start_time if start is None else start,
                                         x.message_end_time + 1 if stop is None else stop, self.bio), x)
                   for x in self.chunks
                   if (start is None or start < x.message_end_time + 1)
                   and (stop is None or x.message_start_time < stop)
                   and any(x.channel_count.get(cid, 0) for cid in channel_map)]
        for timestamp, offset, connection, data in heapq.merge(*sources):
            if offset:
                yield connection, timestamp, data


def _checked_chunk(source: Iterator[Any], chunk: Any) -> Iterator[Any]:
    try:
        yield from source
    except ReaderError as exc:
        offset = chunk.chunk_start_offset
        raise ReaderError(f'MCAP chunk at byte offset {offset} is corrupted: {exc}') from None


_RECORD_HEAD = struct.Struct('<BQ')
_CHUNK_CRC_AT = 9 + 24          # chunk record: opcode, length, start, end, uncompressed size, then CRC-32


class _CrcMcapWriter(McapWriter):
    """rosbags' MCAP writer, with each chunk's ``uncompressed_crc`` filled in (rosbags writes 0)."""

    def close_chunk(self) -> None:
        record_at = self.bio.tell()
        crc = crc32(self.chunk.bio.getbuffer())
        super().close_chunk()
        end = self.bio.tell()
        self.bio.seek(record_at + _CHUNK_CRC_AT)
        self.bio.write(struct.pack('<I', crc))
        self.bio.seek(end)


class _Writer(Writer):
    """rosbags' rosbag2 Writer with :class:`_CrcMcapWriter` as its MCAP storage."""

    STORAGE_PLUGINS = {**Writer.STORAGE_PLUGINS, StoragePlugin.MCAP: _CrcMcapWriter}


def _reader(path: Path) -> AnyReader:
    """Build an AnyReader whose MCAP storages are :class:`_McapStorage`."""
    reader = AnyReader([path], default_typestore=default_message_types().typestore)
    for sub in reader.readers:
        storage = getattr(sub, 'storage', None)
        if isinstance(storage, McapReader):
            sub.storage = _McapStorage(storage.path)
        elif storage is not None and hasattr(storage, 'STORAGE_PLUGINS'):
            storage.STORAGE_PLUGINS = {**storage.STORAGE_PLUGINS, 'mcap': _McapStorage}
    return reader


def _truncated(reader: AnyReader) -> bool:
    storages = []
    for sub in reader.readers:
        storage = getattr(sub, 'storage', None)
        storages += getattr(storage, 'storages', None) or [storage]
    return any(getattr(s, 'truncated', False) for s in storages)


@contextmanager
def open_bag(path: str | os.PathLike) -> Iterator[AnyReader]:
    """Open an ``AnyReader`` for a ROS 2 bag folder, a single .mcap/.db3 file, or a ROS 1 .bag.

    An MCAP file without its end (truncated) is opened for salvage; ``is_truncated(reader)`` then
    says so, and :func:`iter_messages` raises BagError after the readable messages.
    """
    path = Path(path)
    if not path.exists():
        raise BagError(f'{path}: no such bag')
    try:
        reader = _reader(path)
        reader.open()
    except Exception as exc:  # rosbags raises several error types; the message is what matters
        raise BagError(f'{path}: cannot open bag: {exc}') from exc
    try:
        yield reader
    finally:
        reader.close()


def is_truncated(reader: AnyReader) -> bool:
    """Return True when ``reader`` (from :func:`open_bag`) is salvaging a truncated MCAP file."""
    return _truncated(reader)


def bag_topics(reader: AnyReader) -> dict[str, str]:
    """Map each topic of an open reader to its message type."""
    return {name: info.msgtype or '?' for name, info in reader.topics.items()}


def iter_messages(path: str | os.PathLike, topics: Iterable[str] | None = None,
                  deserialize: bool = True, errors: dict[str, int] | None = None) -> Iterator[BagMessage]:
    """Messages of ``topics`` (all when None) in log-time order (opens the bag; see :func:`read_messages`)."""
    with open_bag(path) as reader:
        yield from read_messages(reader, topics, deserialize, errors, path)


def read_messages(reader: AnyReader, topics: Iterable[str] | None = None, deserialize: bool = True,
                  errors: dict[str, int] | None = None, path: str | os.PathLike = '') -> Iterator[BagMessage]:
    """Messages of ``topics`` (all when None) of an open reader, in log-time order.

    A message that fails to deserialize is skipped and counted in ``errors[topic]`` when a dict is
    given (else BagError). A storage failure (truncated or corrupted file) raises BagError after
    every readable message was yielded. Unknown requested topics: BagError listing existing topics.
    """
    path = path or (reader.paths[0] if getattr(reader, 'paths', None) else 'bag')
    existing = bag_topics(reader)
    wanted = None if topics is None else list(topics)
    if wanted is not None:
        missing = [t for t in wanted if t not in existing]
        if missing:
            raise BagError(f'{path}: topic(s) {missing} not in bag; it has {sorted(existing)}')
    connections = [c for c in reader.connections if wanted is None or c.topic in wanted]
    count = 0
    stream = reader.messages(connections=connections)
    while True:
        try:
            connection, stamp, raw = next(stream)
        except StopIteration:
            if is_truncated(reader):
                raise BagError(f'{path}: bag is truncated (its MCAP file ends mid-record, without the '
                               f'summary/footer); read {count} message(s) before the cut') from None
            return
        except Exception as exc:
            raise BagError(f'{path}: bag is truncated or corrupted; read {count} message(s) before: '
                           f'{type(exc).__name__}: {exc}') from exc
        count += 1
        msg: Any = raw
        if deserialize:
            try:
                msg = reader.deserialize(raw, connection.msgtype)
            except Exception as exc:
                if errors is None:
                    raise BagError(f'{path}: message {count} on {connection.topic} does not deserialize '
                                   f'as {connection.msgtype}: {exc}') from exc
                errors[connection.topic] = errors.get(connection.topic, 0) + 1
                continue
        yield BagMessage(connection.topic, connection.msgtype, stamp, msg)


@dataclass
class TopicSummary:
    name: str
    msgtype: str
    count: int
    first_ns: int | None = None
    last_ns: int | None = None
    size_bytes: int = 0

    @property
    def rate_hz(self) -> float | None:
        """Mean rate between the first and last message (None with fewer than two messages)."""
        if self.first_ns is None or self.last_ns is None or self.count < 2 or self.last_ns <= self.first_ns:
            return None
        return (self.count - 1) * 1e9 / (self.last_ns - self.first_ns)


@dataclass
class BagSummary:
    path: str
    storage: str
    message_count: int
    start_ns: int | None
    end_ns: int | None
    topics: list[TopicSummary] = field(default_factory=list)
    size_bytes: int = 0
    error: str | None = None        # set when the bag could only be read partly

    @property
    def duration_s(self) -> float:
        if self.start_ns is None or self.end_ns is None:
            return 0.0
        return (self.end_ns - self.start_ns) / 1e9

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out['duration_s'] = self.duration_s
        for topic, src in zip(out['topics'], self.topics):
            topic['rate_hz'] = src.rate_hz
        return out


def _storage_name(path: Path) -> str:
    if path.is_file():
        return {'.bag': 'rosbag1', '.mcap': 'mcap', '.db3': 'sqlite3'}.get(path.suffix, path.suffix)
    if any(path.glob('*.mcap')):
        return 'mcap'
    return 'sqlite3' if any(path.glob('*.db3')) else 'unknown'


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob('*') if p.is_file())


def bag_summary(path: str | os.PathLike, scan: bool = True) -> BagSummary:
    """Topics, types, counts, rates and duration of a bag.

    ``scan`` reads every record (not deserialized) for exact per-topic first/last times and sizes,
    and notices truncation (``error`` is then set and the counts are those actually readable);
    without it, counts come from the bag's index and rates from the bag's overall duration.
    """
    path = Path(path)
    with open_bag(path) as reader:
        topics = {name: TopicSummary(name, info.msgtype or '?', info.msgcount)
                  for name, info in sorted(reader.topics.items())}
        summary = BagSummary(str(path), _storage_name(path), reader.message_count, None, None,
                             list(topics.values()), _size(path))
        if not scan:
            if reader.message_count:
                summary.start_ns = reader.start_time
                summary.end_ns = max(reader.start_time, reader.end_time - 1)
            for t in topics.values():
                if t.count and summary.start_ns is not None:
                    t.first_ns, t.last_ns = summary.start_ns, summary.end_ns
            return summary
    for t in topics.values():
        t.count = 0
    try:
        for item in iter_messages(path, deserialize=False):
            t = topics[item.topic]
            t.count += 1
            t.size_bytes += len(item.msg)
            t.first_ns = item.log_time_ns if t.first_ns is None else min(t.first_ns, item.log_time_ns)
            t.last_ns = item.log_time_ns if t.last_ns is None else max(t.last_ns, item.log_time_ns)
    except BagError as exc:
        summary.error = str(exc)
    firsts = [t.first_ns for t in topics.values() if t.first_ns is not None]
    lasts = [t.last_ns for t in topics.values() if t.last_ns is not None]
    summary.start_ns = min(firsts) if firsts else None
    summary.end_ns = max(lasts) if lasts else None
    summary.message_count = sum(t.count for t in topics.values())
    return summary


class BagWriter:
    """Atomic ROS 2 bag writer (``storage`` 'mcap' (default) or 'sqlite3').

    Usage::

        with BagWriter('out_bag') as bag:
            bag.write('/points', 'sensor_msgs/msg/PointCloud2', msg, stamp_ns)

    Messages are built with the rosbags typestore (``message_types``, Humble by default) and stored
    as CDR in a rosbag2 version-8 bag. Everything is written into a hidden temporary folder next to
    ``path``, ``.<name>.<host>-<pid>.<random>.partial`` (its owner in its name, and an exclusive lock on
    its ``.lock`` file while the writer is open), whose bag folder is renamed to ``path`` on a clean exit;
    on an exception (KeyboardInterrupt and SIGTERM-turned-exceptions included) it is deleted, so nothing
    ever appears under the final name half-written. An existing ``path`` is an error unless ``overwrite``:
    then it is replaced by one atomic exchange of the two folders (Linux ``renameat2(RENAME_EXCHANGE)``),
    or, where the OS or filesystem cannot exchange, by two renames through a ``.<name>.<owner>.<random>.old``
    folder. Opening a writer first runs :func:`recover_output` (``recovered`` lists what it did), so a
    process killed at any instant leaves nothing the next writer of the same path does not repair.
    """

    def __init__(self, path: str | os.PathLike, storage: str = 'mcap', overwrite: bool = False,
                 message_types: RosbagsMessageTypes | None = None) -> None:
        if storage not in STORAGES:
            raise ValueError(f'unknown bag storage {storage!r}; expected one of {STORAGES}')
        self.path = Path(path)
        self.storage = storage
        self.overwrite = overwrite
        self.msgs = message_types or default_message_types()
        self._plugin = StoragePlugin.MCAP if storage == 'mcap' else StoragePlugin.SQLITE3
        self._tmpdir: Path | None = None
        self._lock: int | None = None
        self._writer: Any = None
        self._connections: dict[tuple[str, str], Any] = {}
        self.counts: dict[str, int] = {}
        self.recovered: list[str] = []

    def __enter__(self) -> BagWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.recovered = recover_output(self.path)
        if (self.path.exists() or self.path.is_symlink()) and not self.overwrite:
            raise FileExistsError(f'{self.path} exists already (use overwrite to replace it)')
        self._tmpdir = Path(tempfile.mkdtemp(prefix=f'.{self.path.name}.{owner_tag()}.', suffix='.partial',
                                             dir=self.path.parent))
        try:
            self._lock = _hold_lock(self._tmpdir)
            self._writer = _Writer(self._tmpdir / self.path.name, version=8, storage_plugin=self._plugin)
            self._writer.open()
        except BaseException:
            self._release()
            raise
        return self

    @property
    def staging(self) -> Path:
        """The bag folder being written: files put here are published with the bag, in the same rename."""
        if self._tmpdir is None:
            raise RuntimeError('BagWriter is not open (use it as a context manager)')
        return self._tmpdir / self.path.name

    def add_topic(self, topic: str, msgtype: str, latched: bool = False) -> Any:
        """Register a topic (done on first write otherwise). ``latched``: offered QoS transient-local."""
        key = (topic, msgtype)
        if key in self._connections:
            return self._connections[key]
        if self._writer is None:
            raise RuntimeError('BagWriter is not open (use it as a context manager)')
        if msgtype not in self.msgs.typestore.types:
            raise ValueError(f'unknown message type {msgtype!r}')
        qos = [_latched_qos()] if latched else []
        conn = self._writer.add_connection(topic, msgtype, typestore=self.msgs.typestore,
                                           offered_qos_profiles=qos)
        self._connections[key] = conn
        self.counts.setdefault(topic, 0)
        return conn

    def serialize(self, topic: str, msgtype: str, msg: Any, stamp_ns: Any) -> tuple[int, bytes]:
        """Return (checked log time, CDR bytes) of one message, or raise :class:`BagWriteError`."""
        stamp = check_log_time(topic, stamp_ns)
        if msgtype not in self.msgs.typestore.types:
            raise BagWriteError(f'{topic}: unknown message type {msgtype!r}', topic, stamp_ns)
        try:
            data = self.msgs.serialize(msg, msgtype)
        except (OverflowError, struct.error, TypeError, ValueError, AttributeError, KeyError) as exc:
            why = f'{type(exc).__name__}: {exc}'
            raise BagWriteError(f'{topic}: message at {stamp} ns cannot be serialized as {msgtype} '
                                f'({why}){_header_stamp(msg)}', topic, stamp_ns) from None
        return stamp, data

    def write(self, topic: str, msgtype: str, msg: Any, stamp_ns: int) -> None:
        """Serialize ``msg`` (a rosbags message of ``msgtype``) and append it at log time ``stamp_ns``.

        Raises :class:`BagWriteError` (a ValueError naming the topic and the stamp) when ``stamp_ns`` is
        outside 0 .. 2**63 - 1 ns or a field of ``msg`` cannot be serialized (e.g. a header stamp whose
        ``sec`` does not fit int32); nothing of that message is written then, so the bag stays valid.
        """
        stamp, data = self.serialize(topic, msgtype, msg, stamp_ns)
        self.write_raw(topic, msgtype, data, stamp)

    def write_all(self, messages: Iterable[tuple[str, str, Any, int]]) -> None:
        """Write ``(topic, msgtype, msg, stamp_ns)`` messages whole or not at all (e.g. one frame's).

        Every log time is checked and every message serialized before the first is written; a
        :class:`BagWriteError` for any of them leaves the bag as it was.
        """
        ready = [(topic, msgtype, *self.serialize(topic, msgtype, msg, stamp))
                 for topic, msgtype, msg, stamp in messages]
        for topic, msgtype, stamp, data in ready:
            self.write_raw(topic, msgtype, data, stamp)

    def write_raw(self, topic: str, msgtype: str, data: bytes | memoryview, stamp_ns: int) -> None:
        """Append already CDR-serialized bytes (log time checked as in :meth:`write`)."""
        stamp = check_log_time(topic, stamp_ns)
        conn = self.add_topic(topic, msgtype, latched=topic == '/tf_static')
        self._writer.write(conn, stamp, data)
        self.counts[topic] += 1

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        writer, tmpdir = self._writer, self._tmpdir
        self._writer = None
        assert writer is not None and tmpdir is not None
        try:
            if exc_type is not None:
                writer.abort()
                return
            writer.close()
            self._publish(tmpdir / self.path.name)
        finally:
            self._release()

    def _release(self) -> None:
        tmpdir, lock = self._tmpdir, self._lock
        self._tmpdir, self._lock = None, None
        if lock is not None:
            os.close(lock)
        if tmpdir is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)

    def _publish(self, built: Path) -> None:
        if not (self.path.exists() or self.path.is_symlink()):
            os.replace(built, self.path)
        elif not _exchange(built, self.path):       # the old output is now at ``built``, removed with it
            trash = Path(tempfile.mkdtemp(prefix=f'.{self.path.name}.{owner_tag()}.', suffix='.old',
                                          dir=self.path.parent))
            os.replace(self.path, trash / 'old')    # a crash here leaves OUT missing: recover_output
            os.replace(built, self.path)
            shutil.rmtree(trash, ignore_errors=True)


def recover_output(path: str | os.PathLike) -> list[str]:
    """Repair what writers of ``path`` killed mid-way left beside it; returns one line per repair.

    Only folders of dead owners count (this host's processes that no longer exist, see
    :func:`perception_nodes.atomic.stale_temporaries`; a ``.partial`` whose lock is held is in use):

    - ``path`` missing while a dead overwrite's ``.old`` folder holds the previous output (killed between
      the two renames of the fallback swap): the previous output is renamed back to ``path``;
    - every dead ``.old`` and ``.partial`` folder is then deleted.
    """
    path = Path(path)
    notes = []
    olds = sorted(stale_temporaries(path, '.old'), key=_mtime, reverse=True)
    for old in olds:
        previous = old / 'old'
        if not (path.exists() or path.is_symlink()) and (previous.exists() or previous.is_symlink()):
            try:
                os.replace(previous, path)
            except OSError as exc:
                notes.append(f'could not restore {path} from {old.name} ({exc}); left it there')
                continue
            notes.append(f'restored {path} from {old.name}: an earlier overwrite was killed between its '
                         'two renames')
        shutil.rmtree(old, ignore_errors=True)
        notes.append(f'removed {old.name}, left by a killed overwrite of {path.name}')
    for partial in stale_temporaries(path, '.partial'):
        if not partial.is_dir() or _lock_held(partial):
            continue
        shutil.rmtree(partial, ignore_errors=True)
        notes.append(f'removed {partial.name}, the unfinished output of a killed run')
    return notes


def _mtime(p: Path) -> int:
    try:
        return p.stat().st_mtime_ns
    except OSError:
        return 0


_LOCK_NAME = '.lock'


def _hold_lock(folder: Path) -> int | None:
    """Open ``folder/.lock`` and hold an exclusive lock on it while the fd is open (None: no flock)."""
    fd = os.open(folder / _LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        import fcntl
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except ImportError:
        pass
    except BaseException:
        os.close(fd)
        raise
    return fd


def _lock_held(folder: Path) -> bool:
    """Return True when another process holds ``folder/.lock`` (a live writer, whatever its PID says)."""
    try:
        import fcntl
        fd = os.open(folder / _LOCK_NAME, os.O_RDWR)
    except (ImportError, OSError):
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)            # closing drops the probe's own lock
    return False


_RENAME_EXCHANGE, _AT_FDCWD = 2, -100
_renameat2: Any = None


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one atomic step; False where the OS or filesystem cannot (nothing moved)."""
    global _renameat2
    if not sys.platform.startswith('linux'):
        return False
    if _renameat2 is None:
        try:
            _renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
            _renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                                   ctypes.c_uint]
        except (AttributeError, OSError):
            _renameat2 = False
    if _renameat2 is False:
        return False
    if _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV, errno.EPERM):
        return False
    raise OSError(err, f'cannot exchange {a} and {b}: {os.strerror(err)}')


def check_log_time(topic: str, stamp_ns: Any) -> int:
    """Return ``stamp_ns`` as an int a bag can store, else raise BagWriteError naming topic and stamp.

    What :meth:`BagWriter.write` checks first; a caller writing several messages per frame can check
    every stamp before writing any, so that a frame is written whole or not at all.
    """
    if isinstance(stamp_ns, bool) or not isinstance(stamp_ns, (int, np.integer)):
        raise BagWriteError(f'{topic}: log time {stamp_ns!r} is not an integer number of nanoseconds',
                            topic, stamp_ns)
    stamp = int(stamp_ns)
    if not 0 <= stamp <= MAX_LOG_TIME_NS:
        sec, nanosec = divmod(stamp, 1_000_000_000)
        raise BagWriteError(f'{topic}: log time {stamp} ns (sec={sec}, nanosec={nanosec}) is outside what a '
                            f'bag can store (0 .. {MAX_LOG_TIME_NS} ns); message not written',
                            topic, stamp_ns)
    return stamp


def _header_stamp(msg: Any) -> str:
    try:
        stamp = msg.header.stamp
        return f'; header stamp sec={stamp.sec}, nanosec={stamp.nanosec}'
    except AttributeError:
        return ''


def _latched_qos() -> Any:
    from rosbags.interfaces import (Qos, QosDurability, QosHistory, QosLiveliness, QosReliability,
                                    QosTime)

    return Qos(QosHistory.KEEP_LAST, 1, QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL,
               QosTime(0, 0), QosTime(0, 0), QosLiveliness.AUTOMATIC, QosTime(0, 0), False)
