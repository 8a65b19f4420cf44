"""Read and write bags with ``rosbags`` (ROS 2 .mcap / .db3 folders or files, ROS 1 .bag).

- :func:`open_bag` opens any bag with ``rosbags.highlevel.AnyReader`` (message definitions from the
  bag, ROS 2 Humble definitions as fallback);
- :func:`iter_messages` streams ``(topic, msgtype, log_time_ns, message)`` in log-time order and turns
  storage failures into :class:`BagError` *after* yielding everything that was readable;
- :func:`bag_summary` (used by ``ovp bag-info``) counts topics, types and rates;
- :class:`BagWriter` writes ROS 2 bags atomically: into a temporary sibling folder renamed to the final
  name only when the ``with`` block ends without an exception.
"""
from __future__ import annotations

import os
import shutil
import struct
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from rosbags.highlevel import AnyReader
from rosbags.rosbag2.errors import ReaderError
from rosbags.rosbag2.storage_mcap import McapReader

from perception_nodes.io.messages import RosbagsMessageTypes, default_message_types

__all__ = ['BagError', 'BagMessage', 'TopicSummary', 'BagSummary', 'open_bag', 'iter_messages',
           'bag_topics', 'bag_summary', 'read_messages', 'BagWriter', 'is_truncated']

STORAGES = ('mcap', 'sqlite3')


class BagError(ValueError):
    """A bag cannot be opened or read completely (missing, corrupted, truncated, unknown format)."""


@dataclass
class BagMessage:
    topic: str
    msgtype: str
    log_time_ns: int
    msg: Any


class _SalvageMcapReader(McapReader):
    """Read an MCAP file whose end (summary, footer) is missing with rosbags' MCAP reader.

    E.g. a recorder killed mid-write: the data section is cut after its last complete record and
    read by rosbags' own unindexed scan. ``truncated`` tells the caller to report the loss after
    reading.
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


_RECORD_HEAD = struct.Struct('<BQ')


def _salvage_reader(path: Path) -> AnyReader:
    reader = AnyReader([path], default_typestore=default_message_types().typestore)
    for sub in reader.readers:
        storage = getattr(sub, 'storage', None)
        if isinstance(storage, McapReader):
            sub.storage = _SalvageMcapReader(storage.path)
        elif storage is not None and hasattr(storage, 'STORAGE_PLUGINS'):
            storage.STORAGE_PLUGINS = {**storage.STORAGE_PLUGINS, 'mcap': _SalvageMcapReader}
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
        reader = AnyReader([path], default_typestore=default_message_types().typestore)
        try:
            reader.open()
        except Exception as exc:
            if 'end magic' not in str(exc) and 'footer' not in str(exc):
                raise
            reader = _salvage_reader(path)
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
    ``path`` that is renamed to ``path`` on a clean exit; on an exception it is deleted, so nothing
    ever appears under the final name half-written. An existing ``path`` is an error unless
    ``overwrite`` (then it is replaced, also atomically from the reader's point of view).
    """

    def __init__(self, path: str | os.PathLike, storage: str = 'mcap', overwrite: bool = False,
                 message_types: RosbagsMessageTypes | None = None) -> None:
        from rosbags.rosbag2 import StoragePlugin

        if storage not in STORAGES:
            raise ValueError(f'unknown bag storage {storage!r}; expected one of {STORAGES}')
        self.path = Path(path)
        self.storage = storage
        self.overwrite = overwrite
        self.msgs = message_types or default_message_types()
        self._plugin = StoragePlugin.MCAP if storage == 'mcap' else StoragePlugin.SQLITE3
        self._tmpdir: Path | None = None
        self._writer: Any = None
        self._connections: dict[tuple[str, str], Any] = {}
        self.counts: dict[str, int] = {}

    def __enter__(self) -> BagWriter:
        from rosbags.rosbag2 import Writer

        if self.path.exists() and not self.overwrite:
            raise FileExistsError(f'{self.path} exists already (use overwrite to replace it)')
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmpdir = Path(tempfile.mkdtemp(prefix=f'.{self.path.name}.', suffix='.partial',
                                             dir=self.path.parent))
        self._writer = Writer(self._tmpdir / self.path.name, version=8, storage_plugin=self._plugin)
        self._writer.open()
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

    def write(self, topic: str, msgtype: str, msg: Any, stamp_ns: int) -> None:
        """Serialize ``msg`` (a rosbags message of ``msgtype``) and append it at log time ``stamp_ns``."""
        self.write_raw(topic, msgtype, self.msgs.serialize(msg, msgtype), stamp_ns)

    def write_raw(self, topic: str, msgtype: str, data: bytes | memoryview, stamp_ns: int) -> None:
        """Append already CDR-serialized bytes."""
        conn = self.add_topic(topic, msgtype, latched=topic == '/tf_static')
        self._writer.write(conn, int(stamp_ns), data)
        self.counts[topic] += 1

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        writer, tmpdir = self._writer, self._tmpdir
        self._writer, self._tmpdir = None, None
        assert writer is not None and tmpdir is not None
        try:
            if exc_type is not None:
                writer.abort()
                return
            writer.close()
            self._publish(tmpdir / self.path.name)
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)

    def _publish(self, built: Path) -> None:
        if self.path.exists():
            trash = Path(tempfile.mkdtemp(prefix=f'.{self.path.name}.', suffix='.old', dir=self.path.parent))
            os.replace(self.path, trash / 'old')
            os.replace(built, self.path)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(built, self.path)


def _latched_qos() -> Any:
    from rosbags.interfaces import (Qos, QosDurability, QosHistory, QosLiveliness, QosReliability,
                                    QosTime)

    return Qos(QosHistory.KEEP_LAST, 1, QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL,
               QosTime(0, 0), QosTime(0, 0), QosLiveliness.AUTOMATIC, QosTime(0, 0), False)
