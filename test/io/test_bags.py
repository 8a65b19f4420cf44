"""Bags: write/read round trips (mcap, sqlite3, ROS 1), summaries, atomic writes, truncated bags."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from rosbags.rosbag1 import Writer as Ros1Writer
from rosbags.typesys import Stores, get_typestore

from perception_nodes.io.bags import BagError, BagWriter, bag_summary, iter_messages, open_bag
from perception_nodes.io.pointcloud2 import create_cloud_xyz32, read_points_numpy
from perception_nodes.io.stamps import header, stamp_to_ns
from perception_nodes.io.tf_buffer import tf_message, transform_stamped_msg

CLOUD = 'sensor_msgs/msg/PointCloud2'
MS = 1_000_000


def write_sample(path: Path, storage: str = 'mcap', n: int = 20, points: int = 50) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    clouds = []
    with BagWriter(path, storage=storage) as bag:
        bag.write('/tf_static', 'tf2_msgs/msg/TFMessage',
                  tf_message([transform_stamped_msg('base', 'lidar', np.eye(4), 0)]), 0)
        for i in range(n):
            xyz = rng.normal(size=(points, 3)).astype(np.float32)
            clouds.append(xyz)
            bag.write('/points', CLOUD, create_cloud_xyz32(header('lidar', i * 100 * MS), xyz), i * 100 * MS)
            if i % 2 == 0:
                bag.write('/status', 'std_msgs/msg/String', bag.msgs.new('std_msgs/msg/String', data=f'{i}'),
                          i * 100 * MS + 1)
    return clouds


@pytest.mark.parametrize('storage, suffix', [('mcap', '.mcap'), ('sqlite3', '.db3')])
def test_write_read_round_trip(tmp_path, storage, suffix):
    bag = tmp_path / 'out_bag'
    clouds = write_sample(bag, storage)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['out_bag']            # no temp leftovers
    assert (bag / f'out_bag{suffix}').is_file() and (bag / 'metadata.yaml').is_file()
    got = [m for m in iter_messages(bag, ['/points'])]
    assert [m.log_time_ns for m in got] == [i * 100 * MS for i in range(20)]
    for m, xyz in zip(got, clouds):
        np.testing.assert_array_equal(read_points_numpy(m.msg), xyz)
        assert stamp_to_ns(m.msg.header.stamp) == m.log_time_ns
    # the storage file alone opens too
    assert sum(1 for _ in iter_messages(bag / f'out_bag{suffix}')) == 31
    summary = bag_summary(bag)
    topics = {t.name: t for t in summary.topics}
    assert summary.storage == storage and summary.message_count == 31 and summary.error is None
    assert topics['/points'].count == 20 and topics['/points'].rate_hz == pytest.approx(10.0)
    assert topics['/status'].rate_hz == pytest.approx(5.0) and topics['/tf_static'].rate_hz is None
    assert topics['/points'].msgtype == CLOUD
    assert summary.duration_s == pytest.approx(1.9)
    quick = bag_summary(bag, scan=False)
    assert {t.name: t.count for t in quick.topics} == {t.name: t.count for t in summary.topics}


def test_missing_topics_and_paths(tmp_path):
    write_sample(tmp_path / 'b', n=2)
    expected = r"\['/camera'\] not in bag; it has \['/points', '/status', '/tf_static'\]"
    with pytest.raises(BagError, match=expected):
        list(iter_messages(tmp_path / 'b', ['/points', '/camera']))
    with pytest.raises(BagError, match='no such bag'):
        bag_summary(tmp_path / 'nothing')
    (tmp_path / 'junk.mcap').write_bytes(b'definitely not a bag')
    with pytest.raises(BagError, match='cannot open bag'):
        list(iter_messages(tmp_path / 'junk.mcap'))


def test_writer_is_atomic(tmp_path):
    out = tmp_path / 'bag'
    with pytest.raises(RuntimeError, match='boom'):
        with BagWriter(out) as bag:
            bag.write('/points', CLOUD, create_cloud_xyz32(header('l', 0), np.zeros((3, 3))), 0)
            raise RuntimeError('boom')
    assert list(tmp_path.iterdir()) == []
    write_sample(out, n=1)
    with pytest.raises(FileExistsError):
        with BagWriter(out):
            pass
    with BagWriter(out, overwrite=True) as bag:
        bag.write('/other', 'std_msgs/msg/String', bag.msgs.new('std_msgs/msg/String', data='x'), 5)
    assert [m.topic for m in iter_messages(out)] == ['/other']
    assert [p.name for p in tmp_path.iterdir()] == ['bag']
    with pytest.raises(ValueError, match='storage'):
        BagWriter(tmp_path / 'x', storage='rosbag1')


def test_truncated_mcap_reads_what_it_can_then_raises(tmp_path):
    bag = tmp_path / 'bag'
    write_sample(bag, n=60, points=3000)               # ~2 MB: several MCAP chunks
    data = (bag / 'bag.mcap').read_bytes()
    (bag / 'bag.mcap').write_bytes(data[:int(len(data) * 0.7)])
    got = []
    with pytest.raises(BagError, match=r'truncated .*read (\d+) message'):
        for m in iter_messages(bag):
            got.append(m)
    assert 0 < len(got) < 91
    assert [m.log_time_ns for m in got] == sorted(m.log_time_ns for m in got)
    summary = bag_summary(bag)
    assert summary.error and 'truncated' in summary.error and summary.message_count == len(got)


def test_corrupted_sqlite_is_a_clear_error(tmp_path):
    bag = tmp_path / 'bag'
    write_sample(bag, 'sqlite3', n=30, points=500)
    db = bag / 'bag.db3'
    db.write_bytes(db.read_bytes()[:5000])
    with pytest.raises(BagError, match='bag.db3'):
        list(iter_messages(bag))


def test_undecodable_messages_are_skipped_and_counted(tmp_path):
    bag = tmp_path / 'bag'
    with BagWriter(bag) as w:
        w.write_raw('/points', CLOUD, b'\x00\x01\x00\x00garbage', 1)
        w.write('/points', CLOUD, create_cloud_xyz32(header('l', 2), np.ones((2, 3))), 2)
    errors: dict[str, int] = {}
    assert [m.log_time_ns for m in iter_messages(bag, errors=errors)] == [2]
    assert errors == {'/points': 1}
    with pytest.raises(BagError, match='does not deserialize'):
        list(iter_messages(bag))


def test_ros1_bag(tmp_path):
    ts = get_typestore(Stores.ROS1_NOETIC)
    Header, Time, String = (ts.types[t] for t in ('std_msgs/msg/Header', 'builtin_interfaces/msg/Time',
                                                  'std_msgs/msg/String'))
    path = tmp_path / 'old.bag'
    with Ros1Writer(path) as w:
        conn = w.add_connection('/chatter', 'std_msgs/msg/String', typestore=ts)
        for i in range(3):
            w.write(conn, 10 + i, ts.serialize_ros1(String(data=f'hi {i}'), 'std_msgs/msg/String'))
        hconn = w.add_connection('/hdr', 'std_msgs/msg/Header', typestore=ts)
        w.write(hconn, 20, ts.serialize_ros1(Header(seq=1, stamp=Time(sec=3, nanosec=4), frame_id='f'),
                                             'std_msgs/msg/Header'))
    assert [m.msg.data for m in iter_messages(path, ['/chatter'])] == ['hi 0', 'hi 1', 'hi 2']
    (hdr,) = [m.msg for m in iter_messages(path, ['/hdr'])]
    assert stamp_to_ns(hdr.stamp) == 3_000_000_004
    summary = bag_summary(path)
    assert summary.storage == 'rosbag1' and summary.message_count == 4
    with open_bag(path) as reader:
        assert reader.message_count == 4


def test_summary_of_copied_bag_is_independent_of_location(tmp_path):
    write_sample(tmp_path / 'a', n=3)
    shutil.copytree(tmp_path / 'a', tmp_path / 'b')
    assert bag_summary(tmp_path / 'b').message_count == bag_summary(tmp_path / 'a').message_count == 6


def test_out_of_range_stamps_are_a_clear_value_error_and_the_bag_survives(tmp_path):
    """Issue 15 item 1: a header stamp with sec = -5 used as log time raised OverflowError in the writer."""
    from perception_nodes.io.bags import BagWriteError

    bag = tmp_path / 'bag'
    cloud = create_cloud_xyz32(header('l', 0), np.ones((2, 3)))
    negative = -5 * 1_000_000_000
    with BagWriter(bag) as w:
        w.write('/points', CLOUD, cloud, 1)
        with pytest.raises(BagWriteError, match=r'/points: log time -5000000000 ns \(sec=-5, nanosec=0\)'):
            w.write('/points', CLOUD, cloud, negative)
        with pytest.raises(ValueError, match='/points: log time 9223372036854775808 ns'):
            w.write('/points', CLOUD, cloud, 2**63)
        with pytest.raises(ValueError, match="/points: log time 1.5 is not an integer"):
            w.write_raw('/points', CLOUD, b'', 1.5)
        big_sec = create_cloud_xyz32(header('l', 0), np.ones((2, 3)))
        big_sec.header.stamp.sec = 2**40
        with pytest.raises(BagWriteError, match=r'message at 3 ns cannot be serialized .* sec=1099511627776'):
            w.write('/points', CLOUD, big_sec, 3)
        w.write('/points', CLOUD, cloud, 4)                   # the writer goes on after a refused message
    assert [m.log_time_ns for m in iter_messages(bag)] == [1, 4]
    assert issubclass(BagWriteError, ValueError)
    from perception_nodes.io.bags import check_log_time        # a frame's stamps can be checked up front
    assert check_log_time('/points', np.int64(7)) == 7
    with pytest.raises(BagWriteError, match='/overlay: log time -1 ns') as info:
        check_log_time('/overlay', -1)
    assert (info.value.topic, info.value.stamp_ns) == ('/overlay', -1)


def _chunks(path: Path) -> list[tuple[int, int, int, int, int]]:
    """(record offset, payload offset, payload size, crc, start time) of each MCAP chunk, walking the file."""
    import struct

    data = path.read_bytes()
    pos, out = 8, []
    while pos + 9 <= len(data):
        opcode, length = struct.unpack_from('<BQ', data, pos)
        if opcode == 0x06:
            start, _, size, crc = struct.unpack_from('<QQQI', data, pos + 9)
            (clen,) = struct.unpack_from('<I', data, pos + 9 + 28)
            payload = pos + 9 + 32 + clen + 8
            out.append((pos, payload, size, crc, start))
        if opcode == 0x02:
            break
        pos += 9 + length
    return out


def test_mcap_chunks_carry_their_crc(tmp_path):
    from binascii import crc32

    bag = tmp_path / 'bag'
    write_sample(bag, n=60, points=3000)
    data = (bag / 'bag.mcap').read_bytes()
    chunks = _chunks(bag / 'bag.mcap')
    assert len(chunks) >= 2
    for _, payload, size, crc, _ in chunks:
        assert crc != 0 and crc32(data[payload:payload + size]) == crc      # uncompressed chunks here


def test_flipped_byte_mid_file_names_the_chunk_after_the_messages_before_it(tmp_path):
    """Issue 15 item 17: corruption used to go unnoticed (CRC 0); now a BagError names the chunk offset."""
    bag = tmp_path / 'bag'
    clouds = write_sample(bag, n=60, points=3000)
    path = bag / 'bag.mcap'
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    (record, _, _, _, start), = [c for c in _chunks(path) if c[1] <= middle < c[1] + c[2]]
    data[middle] ^= 0x40
    path.write_bytes(bytes(data))
    got = []
    with pytest.raises(BagError, match=rf'MCAP chunk at byte offset {record} is corrupted: Chunk checksum'):
        for m in iter_messages(bag, ['/points']):
            got.append(m)
    before = [i for i in range(60) if i * 100 * MS < start]       # clouds of the chunks before the bad one
    assert 0 < len(before) < 60 and [m.log_time_ns for m in got] == [i * 100 * MS for i in before]
    for m, xyz in zip(got, clouds):                              # and they are intact
        np.testing.assert_array_equal(read_points_numpy(m.msg), xyz)
    summary = bag_summary(bag)
    assert summary.error and f'byte offset {record}' in summary.error
