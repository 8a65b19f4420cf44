"""Hostile inputs built at test time from the real KITTI raw sample (issue 15), and the tools to run them.

Every hostile bag starts as the KITTI sample bag (``write_kitti_sample_bag``: 3 frames of
``/velodyne_points``, ``/camera_2/image_raw`` + ``camera_info`` and one ``/tf_static``) and is rewritten
message by message (:meth:`Kit.rewrite`), so each test breaks exactly one thing of a real recording.
``ovp replay`` runs in-process (:meth:`Kit.replay`) with the tiny random CLIP and one prompt template;
its exit status, its one-line error and the published output are what the tests assert.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import struct
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import pytest

from perception_nodes.io.bags import BagMessage, BagWriter, iter_messages

ROOT = Path(__file__).resolve().parents[2]
FRAMES = 3
PERIOD_NS = 100_000_000
CLOUD, IMAGE, INFO = '/velodyne_points', '/camera_2/image_raw', '/camera_2/camera_info'
TF_STATIC = '/tf_static'
COMPRESSED = '/camera_2/image_raw/compressed'
LABELED, OVERLAY = '/ovp/labeled_points', '/ovp/overlay/camera_2'
FAST_CONFIG = "vocabulary:\n  templates: ['a photo of a {}.']\n"
TINY = ['--clip-model', 'ovp-tiny', '--clip-pretrained', 'none', '--quiet']


@pytest.fixture(scope='session')
def kitti_bag(kitti_raw_dir, tmp_path_factory) -> Path:
    """Provide the clean input: the first 3 frames of the real KITTI raw sample as an MCAP bag."""
    from perception_nodes.io.sample_bags import write_kitti_sample_bag
    path = tmp_path_factory.mktemp('kitti') / 'kitti'
    write_kitti_sample_bag(kitti_raw_dir, path, max_frames=FRAMES)
    return path


@pytest.fixture(scope='session')
def clip_cache(tmp_path_factory) -> Path:
    """Text-embedding cache shared by the suite (the tiny model's embeddings are computed once)."""
    return tmp_path_factory.mktemp('clip-cache')


@dataclass
class Run:
    """What one ``ovp replay`` did: exit status, stderr lines, the output folder and its summary."""

    rc: int
    err: list[str]
    out: Path
    stdout: str = ''

    @property
    def summary(self) -> dict[str, Any]:
        return json.loads((self.out / 'summary.json').read_text())

    def skipped(self, what: str | None = None) -> list[dict[str, str]]:
        return [s for s in self.summary['skipped'] if what is None or s['what'] == what]

    def messages(self, topic: str) -> list[BagMessage]:
        return [m for m in iter_messages(self.out) if m.topic == topic]

    def topic_counts(self) -> Counter[str]:
        return Counter(m.topic for m in iter_messages(self.out, deserialize=False))

    def frame_stamps(self, topic: str = LABELED) -> list[int]:
        return [m.log_time_ns for m in iter_messages(self.out, [topic], deserialize=False)]


@dataclass
class Kit:
    """Builds hostile bags from the clean KITTI bag and runs ``ovp replay`` on them."""

    clean: Path
    tmp: Path
    config: Path
    capsys: Any
    extra_topics: list = field(default_factory=list)

    def rewrite(self, name: str, change: Callable[[BagMessage, int], Any] | None = None, raw: bool = False,
                empty_topics: Iterable[tuple[str, str]] = ()) -> Path:
        """Copy the clean bag to ``name``, passing each message through ``change(message, k)``.

        ``k`` counts the messages of that topic. ``change`` returns the message (edited in place or
        not), None to drop it, or a list of messages to write instead. ``raw``: messages are CDR bytes
        (written as they are, however broken). ``empty_topics``: (topic, type) registered without a
        message.
        """
        dst = self.tmp / name
        seen: Counter[str] = Counter()
        with BagWriter(dst) as writer:
            for topic, msgtype in empty_topics:
                writer.add_topic(topic, msgtype)
            for m in iter_messages(self.clean, deserialize=not raw):
                k = seen[m.topic]
                seen[m.topic] += 1
                result = m if change is None else change(m, k)
                for item in ([] if result is None else result if isinstance(result, list) else [result]):
                    if isinstance(item.msg, (bytes, bytearray, memoryview, np.ndarray)):
                        writer.write_raw(item.topic, item.msgtype, bytes(item.msg), item.log_time_ns)
                    else:
                        writer.write(item.topic, item.msgtype, item.msg, item.log_time_ns)
        return dst

    def replay(self, bag: Path | str, out: Path | str | None = None, *args: str, tiny: bool = True) -> Run:
        """Run ``ovp replay`` in this process; returns the exit status, stderr lines and the output."""
        from perception_nodes.cli.main import main
        out = Path(out) if out is not None else self.tmp / f'{Path(bag).name}_out'
        self.capsys.readouterr()
        rc = main(['replay', '--bag', str(bag), '--out', str(out), '--config', str(self.config),
                   *(TINY if tiny else []), *args])
        captured = self.capsys.readouterr()
        return Run(rc, [line for line in captured.err.splitlines() if line.strip()], out, captured.out)


@pytest.fixture
def kit(kitti_bag, clip_cache, tmp_path, capsys, monkeypatch) -> Kit:
    """Provide a :class:`Kit` on the clean KITTI bag, with its own folder and the shared CLIP cache."""
    monkeypatch.setenv('OVP_CLIP_CACHE', str(clip_cache))
    config = tmp_path / 'fast.yaml'
    config.write_text(FAST_CONFIG)
    return Kit(kitti_bag, tmp_path, config, capsys)


# -- hostile payloads --------------------------------------------------------------------------------------
def png_chunk(kind: bytes, body: bytes) -> bytes:
    """One PNG chunk with its CRC (so the only thing wrong with a payload is what a test put there)."""
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack('>I', len(body)) + kind + body + struct.pack('>I', crc)


@functools.lru_cache(maxsize=2)
def png_bomb(width: int = 32000, height: int = 32000) -> bytes:
    """Return a valid 1-bit grey PNG of ``width`` x ``height`` zeros (~124 KB, ``width*height`` B decoded)."""
    row = b'\x00' * (1 + (width + 7) // 8)           # filter byte + packed bits
    comp = zlib.compressobj(9)
    parts = []
    block = row * 1000
    for start in range(0, height, 1000):
        parts.append(comp.compress(block if height - start >= 1000 else row * (height - start)))
    parts.append(comp.flush())
    ihdr = struct.pack('>IIBBBBB', width, height, 1, 0, 0, 0, 0)
    return (b'\x89PNG\r\n\x1a\n' + png_chunk(b'IHDR', ihdr) + png_chunk(b'IDAT', b''.join(parts))
            + png_chunk(b'IEND', b''))


def with_png_size(png: bytes, width: int, height: int) -> bytes:
    """``png`` with its IHDR declaring another size (CRC recomputed)."""
    assert png[12:16] == b'IHDR'
    body = struct.pack('>II', width, height) + png[24:29]
    return png[:8] + png_chunk(b'IHDR', body) + png[33:]


def to_compressed(m: BagMessage, payload: bytes, fmt: str) -> BagMessage:
    """Return the Image message ``m`` as a CompressedImage on ``/camera_2/image_raw/compressed``."""
    from perception_nodes.io.messages import default_message_types
    msg = default_message_types().new('sensor_msgs/msg/CompressedImage', header=m.msg.header, format=fmt,
                                      data=np.frombuffer(payload, dtype=np.uint8))
    return BagMessage(COMPRESSED, 'sensor_msgs/msg/CompressedImage', m.log_time_ns, msg)


def encode(m: BagMessage, ext: str) -> bytes:
    """Return the Image message's pixels encoded by OpenCV as ``ext`` ('.png', '.jpg', '.bmp', '.tiff')."""
    import cv2
    from perception_nodes.io.image import image_to_rgb
    ok, buf = cv2.imencode(ext, cv2.cvtColor(image_to_rgb(m.msg), cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


# -- measurements ------------------------------------------------------------------------------------------
def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (Linux ``clear_refs`` 5); False where the kernel does not allow it."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def peak_rss_mib() -> float:
    """Peak resident set size of this process since start or the last :func:`reset_peak_rss` (MiB)."""
    text = Path('/proc/self/status').read_text()
    return int(re.search(r'VmHWM:\s+(\d+)\s+kB', text).group(1)) / 1024


def tree_digest(path: Path) -> dict[str, str]:
    """sha256 of every file under ``path`` (relative names), to prove an output was left untouched."""
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob('*')) if p.is_file()}


def listing(folder: Path) -> list[str]:
    """Names in ``folder``, hidden ones included."""
    return sorted(os.listdir(folder))


@pytest.fixture
def hostile():
    """Provide the payload builders and measurements of this module, for the test modules (importlib mode)."""
    from types import SimpleNamespace
    return SimpleNamespace(png_bomb=png_bomb, with_png_size=with_png_size, to_compressed=to_compressed,
                           encode=encode, png_chunk=png_chunk, reset_peak_rss=reset_peak_rss,
                           peak_rss_mib=peak_rss_mib, tree_digest=tree_digest, listing=listing, ROOT=ROOT,
                           FRAMES=FRAMES, PERIOD_NS=PERIOD_NS, CLOUD=CLOUD, IMAGE=IMAGE, INFO=INFO,
                           TF_STATIC=TF_STATIC, COMPRESSED=COMPRESSED, LABELED=LABELED, OVERLAY=OVERLAY,
                           TINY=TINY, BagMessage=BagMessage)
