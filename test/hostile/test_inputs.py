"""Issue 15, items 1-7 and 17-20: one hostile message in a real KITTI bag costs one frame (or one camera).

Each test rewrites the clean 3-frame KITTI bag with one kind of breakage, runs ``ovp replay`` and asserts
what was written (the good frames, each with its camera where the camera was usable) and what the summary
says about the bad message (``skipped``: what, where, why).
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from perception_nodes.io.pointcloud2 import read_points
from perception_nodes.io.stamps import stamp_to_ns
from perception_nodes.outputs import UNKNOWN_LABEL

PERIOD = 100_000_000
ALL = [0, PERIOD, 2 * PERIOD]        # log times of the clean bag's three frames


def _only(run, what):
    (entry,) = run.skipped(what)
    return entry


def test_item01_negative_cloud_stamp_costs_that_frame_only(kit, hostile):
    def change(m, k):
        if m.topic == hostile.CLOUD and k == 1:
            m.msg.header.stamp.sec = -5
        return m
    run = kit.replay(kit.rewrite('neg_stamp', change), None, '--labeller', 'none')
    assert run.rc == 0, run.err
    assert run.frame_stamps() == [0, 2 * PERIOD]
    assert run.summary['frames'] == 2 and run.summary['counts'] == {'bad_cloud': 1}
    bad = _only(run, 'bad_cloud')
    assert bad['where'] == 'neg_stamp cloud 1' and 'sec=-5' in bad['why']


def test_item02_giant_png_header_and_corrupt_png_body_drop_the_camera_not_the_frame(kit, hostile):
    def change(m, k):
        if m.topic == hostile.IMAGE:
            png = hostile.encode(m, '.png')
            if k == 1:
                png = hostile.with_png_size(png, 100000, 100000)
            elif k == 2:                    # right header, garbage body: OpenCV's own error
                png = png[:33] + bytes(range(256)) * 64 + png[33 + 256 * 64:]
            return hostile.to_compressed(m, png, 'png')
        return m
    run = kit.replay(kit.rewrite('giant_png', change))
    assert run.rc == 0, run.err
    assert run.frame_stamps() == ALL                          # every frame written
    assert run.frame_stamps(hostile.OVERLAY) == [0]           # the camera only where its image was good
    first, second = run.skipped('camera/bad_image')
    assert first['where'] == 'giant_png cloud 1' and '100000x100000' in first['why']
    assert 'CameraInfo size' in first['why']
    assert second['where'] == 'giant_png cloud 2' and 'cannot decode' in second['why']


def test_item03_decompression_bomb_is_refused_before_decoding(kit, hostile):
    bomb = hostile.png_bomb()
    assert len(bomb) < 130_000

    def change(m, k):
        if m.topic == hostile.IMAGE:
            return hostile.to_compressed(m, bomb if k == 1 else hostile.encode(m, '.png'), 'png')
        return m
    bag = kit.rewrite('bomb', change)
    clean = kit.rewrite('clean_png', lambda m, k: hostile.to_compressed(m, hostile.encode(m, '.png'), 'png')
                        if m.topic == hostile.IMAGE else m)
    if not hostile.reset_peak_rss():
        import pytest
        pytest.skip('this kernel does not let a process reset its peak RSS (/proc/self/clear_refs)')
    ok = kit.replay(clean)
    clean_peak = hostile.peak_rss_mib()
    hostile.reset_peak_rss()
    run = kit.replay(bag)
    bomb_peak = hostile.peak_rss_mib()
    assert ok.rc == 0 and run.rc == 0, run.err
    assert run.frame_stamps() == ALL and run.frame_stamps(hostile.OVERLAY) == [0, 2 * PERIOD]
    bad = _only(run, 'camera/bad_image')
    assert bad['where'] == 'bomb cloud 1' and '32000x32000' in bad['why'] and '1242x375' in bad['why']
    # decoding it would take >= 1000 MiB (1 byte per pixel); refusing it from the header costs nothing
    assert bomb_peak < clean_peak + 200, (clean_peak, bomb_peak)


def test_item04_nan_first_transform_keeps_the_valid_ones(kit, hostile):
    def change(m, k):
        if m.topic == hostile.TF_STATIC:
            import copy
            bad = copy.deepcopy(m.msg.transforms[0])
            bad.child_frame_id = 'imu'
            bad.transform.rotation.x = math.nan
            m.msg.transforms = [bad, *m.msg.transforms]
        return m
    run = kit.replay(kit.rewrite('nan_tf', change))
    assert run.rc == 0, run.err
    assert run.frame_stamps() == ALL and run.frame_stamps(hostile.OVERLAY) == ALL   # camera in every frame
    bad = _only(run, 'malformed//tf_static')
    assert bad['why'].startswith('transform 0:') and 'quaternion' in bad['why']
    assert run.summary['frames_with_camera'] == 3 and run.summary['warnings'] == []


def test_item05_bad_extrinsic_drops_the_camera_and_a_frameless_run_publishes_nothing(kit, hostile):
    def far(m, k):                       # finite but absurd: the camera 1e30 m away
        if m.topic == hostile.TF_STATIC:
            m.msg.transforms[0].transform.translation.x = 1e30
        return m

    def zero_rotation(m, k):
        if m.topic == hostile.TF_STATIC:
            q = m.msg.transforms[0].transform.rotation
            q.x = q.y = q.z = q.w = 0.0
        return m
    for name, change in (('far_camera', far), ('zero_quaternion', zero_rotation)):
        run = kit.replay(kit.rewrite(name, change), None, '--max-frames', '2')
        assert run.rc == 0, run.err
        assert run.frame_stamps() == ALL[:2], name          # frames kept, camera dropped or harmless
        if name == 'zero_quaternion':
            assert [s['what'] for s in run.skipped()] == ['malformed//tf_static', 'camera/no_transform',
                                                          'camera/no_transform']
            assert run.summary['warnings'] and run.summary['labels_meaningful'] is False

    def no_frame(m, k):
        if m.topic == hostile.CLOUD:
            m.msg.header.frame_id = ''
        return m
    out = kit.tmp / 'OUT'
    run = kit.replay(kit.rewrite('no_frame', no_frame), out, '--labeller', 'none')
    assert run.rc == 2 and len(run.err) == 1 and 'nothing was written' in run.err[0]
    assert 'bad_cloud x3' in run.err[0] and not out.exists()
    assert not [p for p in kit.tmp.iterdir() if p.name.startswith('.OUT')]
    assert kit.replay(kit.clean, out, '--labeller', 'none').rc == 0     # no --overwrite needed


def test_item06_no_usable_camera_is_said_and_labels_not_meaningful(kit, hostile, monkeypatch):
    from perception_nodes.pipeline import Pipeline
    monkeypatch.setattr(Pipeline, 'meaningful', property(lambda self: True))   # as with real weights
    cases = {
        'no_camera': (lambda m, k: None if m.topic in (hostile.IMAGE, hostile.INFO) else m, (), 'no camera'),
        'no_camera_info': (lambda m, k: None if m.topic == hostile.INFO else m, (), hostile.IMAGE),
        'no_image': (lambda m, k: None if m.topic == hostile.IMAGE else m,
                     [(hostile.IMAGE, 'sensor_msgs/msg/Image')], 'no frame had a usable camera'),
    }
    for name, (change, empty, said) in cases.items():
        run = kit.replay(kit.rewrite(name, change, empty_topics=empty), None, '--max-frames', '2')
        assert run.rc == 0, run.err
        summary = run.summary
        assert summary['frames'] == 2 and summary['frames_with_camera'] == 0, name
        assert summary['labeller']['labels_meaningful'] is True       # the labeller itself is fine ...
        assert summary['labels_meaningful'] is False, name            # ... but no camera fed it
        assert any(said in w for w in summary['warnings']), (name, summary['warnings'])
        labels = read_points(run.messages(hostile.LABELED)[0].msg)['label']
        assert (labels == UNKNOWN_LABEL).all()


def test_item07_comma_list_of_32_class_names(kit, hostile):
    names = [f'class number {i} with a rather long descriptive name' for i in range(32)]
    run = kit.replay(kit.clean, None, '--vocabulary', ','.join(names), '--max-frames', '1')
    assert run.rc == 0, run.err
    info = run.messages('/ovp/label_info')[0].msg
    assert [c.class_name for c in info.class_map] == [*names, 'unknown']
    labels = read_points(run.messages(hostile.LABELED)[0].msg)['label']
    assert set(np.unique(labels)) <= set(range(32)) | {UNKNOWN_LABEL}


def _mcap_chunks(data: bytes) -> list[tuple[int, int, int]]:
    """(message start time, record offset, record length) of every chunk record of an MCAP file."""
    import struct
    chunks, pos = [], 8                            # after the magic
    while pos + 9 <= len(data):
        opcode, length = struct.unpack_from('<BQ', data, pos)
        if opcode == 0x06:                         # Chunk: message_start_time u64 first
            chunks.append((struct.unpack_from('<Q', data, pos + 9)[0], pos, 9 + length))
        if opcode == 0x0F:                         # DataEnd
            break
        pos += 9 + length
    return chunks


def test_item17_corrupted_mcap_chunk_keeps_the_frames_before_it(kit, hostile):
    import shutil
    from perception_nodes.io.bags import bag_summary
    bag = kit.tmp / 'bitrot'
    shutil.copytree(kit.clean, bag)
    mcap = next(bag.glob('*.mcap'))
    data = bytearray(mcap.read_bytes())
    start, offset, length = next(c for c in _mcap_chunks(data) if c[0] >= 2 * PERIOD)  # frame 2's first
    data[offset + length // 2] ^= 0x10                                                # one flipped bit
    mcap.write_bytes(bytes(data))
    run = kit.replay(bag, None, '--labeller', 'none')
    assert run.rc == 0, run.err
    assert run.frame_stamps() == ALL[:2]
    assert f'MCAP chunk at byte offset {offset} is corrupted' in run.summary['error']
    assert f'byte offset {offset}' in bag_summary(bag).error


@pytest.mark.filterwarnings('ignore:overflow encountered in cast:RuntimeWarning')   # 1e300 -> float32
def test_item18_out_of_range_intensities_are_zeroed_not_wrapped(kit, hostile):
    from perception_nodes.io.pointcloud2 import FLOAT32, FLOAT64, create_cloud

    garbage = np.array([1e300, -1e300, np.nan, np.inf, -np.inf])

    def change(m, k):
        if m.topic == hostile.CLOUD and k == 1:
            pts = read_points(m.msg)
            xyzi = np.zeros(len(pts), dtype=[('x', '<f4'), ('y', '<f4'), ('z', '<f4'), ('intensity', '<f8')])
            for name in ('x', 'y', 'z', 'intensity'):
                xyzi[name] = pts[name]
            xyzi['intensity'][:5] = garbage
            fields = [('x', 0, FLOAT32, 1), ('y', 4, FLOAT32, 1), ('z', 8, FLOAT32, 1),
                      ('intensity', 12, FLOAT64, 1)]
            m.msg = create_cloud(m.msg.header, fields, xyzi)
        return m
    bag = kit.rewrite('float64_intensity', change)
    source = [read_points(m.msg)['intensity'] for m in _messages(bag, hostile.CLOUD)][1]
    run = kit.replay(bag, None, '--labeller', 'none')
    assert run.rc == 0, run.err
    assert run.frame_stamps() == ALL
    clouds = run.messages(hostile.LABELED)
    out = read_points(clouds[1].msg)['intensity']
    assert out.dtype == np.float32 and np.isfinite(out).all()
    assert (out[:5] == 0).all()                                   # not representable in float32: 0
    np.testing.assert_array_equal(out[5:], source[5:].astype(np.float32))
    assert clouds[1].msg.is_dense


def test_item19_payload_not_matching_its_format_is_not_decoded(kit, hostile):
    def change(m, k):
        if m.topic == hostile.IMAGE:
            payload, fmt = {0: (hostile.encode(m, '.jpg'), 'jpeg'), 1: (hostile.encode(m, '.bmp'), 'jpeg'),
                            2: (hostile.encode(m, '.tiff'), 'png')}[k]
            return hostile.to_compressed(m, payload, fmt)
        return m
    run = kit.replay(kit.rewrite('wrong_codec', change))
    assert run.rc == 0, run.err
    assert run.frame_stamps() == ALL and run.frame_stamps(hostile.OVERLAY) == [0]
    bmp, tiff = run.skipped('camera/bad_image')
    assert bmp['where'] == 'wrong_codec cloud 1' and "format 'jpeg' but the data is neither" in bmp['why']
    assert tiff['where'] == 'wrong_codec cloud 2' and "format 'png' but the data is neither" in tiff['why']


def test_item20_cameras_with_clashing_names_get_unique_topics_and_pngs(kit, hostile):
    import copy

    def change(m, k):
        if m.topic in (hostile.IMAGE, hostile.INFO):
            leaf = m.topic.rsplit('/', 1)[1]
            return [hostile.BagMessage(f'/cam-left/{leaf}', m.msgtype, m.log_time_ns, m.msg),
                    hostile.BagMessage(f'/cam_left/{leaf}', m.msgtype, m.log_time_ns, copy.deepcopy(m.msg))]
        return m
    run = kit.replay(kit.rewrite('two_cams', change), None, '--max-frames', '2')
    assert run.rc == 0, run.err
    counts = run.topic_counts()
    assert counts['/ovp/overlay/cam_left'] == 2 and counts['/ovp/overlay/cam_left_2'] == 2
    assert sorted(run.summary['cameras']) == ['cam_left', 'cam_left_2']
    pngs = sorted(p.name for p in (run.out / 'overlays').iterdir())
    assert pngs == ['frame0000_cam_left.png', 'frame0000_cam_left_2.png', 'frame0001_cam_left.png',
                    'frame0001_cam_left_2.png']


def _messages(bag, topic):
    from perception_nodes.io.bags import iter_messages
    return [m for m in iter_messages(bag) if m.topic == topic]


def test_output_stamps_are_the_cloud_stamps(kit, hostile):
    """The reference the other tests lean on: a clean replay writes the 3 frames at their cloud stamps."""
    run = kit.replay(kit.clean, None, '--labeller', 'none')
    assert run.rc == 0 and run.frame_stamps() == ALL and run.summary['skipped'] == []
    assert [stamp_to_ns(m.msg.header.stamp) for m in run.messages(hostile.LABELED)] == ALL
