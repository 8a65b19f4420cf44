"""A bag as a frame source (one reader, streaming sync, tf): known matches, drops, tf motion, bad messages."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from perception_nodes.assembly import camera_info_topic
from perception_nodes.config import InputsConfig
from perception_nodes.frame import CameraModel
from perception_nodes.io.bag_source import BagSource, _Synchronizer, iter_frames
from perception_nodes.io.bags import BagWriter
from perception_nodes.io.camera_info import camera_info_msg
from perception_nodes.io.image import rgb_to_compressed_msg, rgb_to_image_msg
from perception_nodes.io.pointcloud2 import FLOAT32, create_cloud, xyz_fields
from perception_nodes.io.stamps import header
from perception_nodes.io.tf_buffer import tf_message, transform_stamped_msg
from perception_nodes.stats import Stats

MS = 1_000_000
CAM_A, CAM_B = '/cam_a/image_raw', '/cam_b/image_raw/compressed'
A_STAMPS = [7 * MS + 40 * MS * j for j in range(25)]                # 25 Hz, +7 ms
B_STAMPS = [30 * MS + 100 * MS * j for j in range(10) if j != 4]    # 10 Hz, +30 ms, one lost
CLOUD_STAMPS = [100 * MS * k for k in range(10)]
T_BASE_LIDAR = np.array([[0, -1, 0, 0.5], [1, 0, 0, 0], [0, 0, 1, 1.8], [0, 0, 0, 1.0]])
T_BASE_CAMB = np.array([[0, 0, 1, 1.0], [-1, 0, 0, 0.2], [0, -1, 0, 1.5], [0, 0, 0, 1.0]])


def T_base_cama(stamp_ns: int) -> np.ndarray:
    """cam_a slides along x at 1 m/s (published on /tf at 20 Hz, so lookups interpolate)."""
    out = T_BASE_CAMB.copy()
    out[0, 3] = stamp_ns / 1e9
    return out


def model(frame: str, w: int = 6, h: int = 4) -> CameraModel:
    return CameraModel(frame, w, h, K=[[5, 0, 3], [0, 5, 2], [0, 0, 1]], D=np.zeros(5))


def cloud_points(k: int) -> np.ndarray:
    pts = np.zeros((20, 4), np.float32)
    pts[:, 0] = np.arange(20) + k
    pts[:, 3] = k
    if k == 2:
        pts[5, 1] = np.nan
    return pts


def build_bag(path: Path) -> None:
    events = []   # (stamp, order, topic, msgtype, msg)
    events.append((0, 0, '/tf_static', 'tf2_msgs/msg/TFMessage',
                   tf_message([transform_stamped_msg('base', 'lidar', T_BASE_LIDAR, 0),
                               transform_stamped_msg('base', 'cam_b', T_BASE_CAMB, 0)])))
    for s in range(0, 1100 * MS, 50 * MS):
        events.append((s, 1, '/tf', 'tf2_msgs/msg/TFMessage',
                       tf_message([transform_stamped_msg('base', 'cam_a', T_base_cama(s), s)])))
    info = 'sensor_msgs/msg/CameraInfo'
    events.append((0, 1, '/cam_b/camera_info', info, camera_info_msg(model('cam_b'), 0)))
    for j, s in enumerate(A_STAMPS):
        img = np.full((4, 6, 3), j, np.uint8)
        events.append((s, 2, '/cam_a/camera_info', info, camera_info_msg(model('cam_a'), s)))
        events.append((s, 3, CAM_A, 'sensor_msgs/msg/Image', rgb_to_image_msg(img, header('cam_a', s))))
    for s in B_STAMPS:
        img = np.full((4, 6, 3), 200, np.uint8)
        events.append((s, 3, CAM_B, 'sensor_msgs/msg/CompressedImage',
                       rgb_to_compressed_msg(img, header('cam_b', s), fmt='png')))
    fields = xyz_fields([('intensity', FLOAT32)])
    for k, s in enumerate(CLOUD_STAMPS):
        msg = create_cloud(header('lidar', s), fields, cloud_points(k))
        if k == 7:
            msg.data = msg.data[:-3]                                    # truncated cloud
        events.append((s, 4, '/points', 'sensor_msgs/msg/PointCloud2', msg))
    with BagWriter(path) as bag:
        for stamp, _, topic, msgtype, msg in sorted(events, key=lambda e: (e[0], e[1])):
            bag.write(topic, msgtype, msg, stamp)


@pytest.fixture(scope='module')
def synthetic_bag(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp('frames') / 'bag'
    build_bag(path)
    return path


def config(**kw) -> InputsConfig:
    return InputsConfig(lidar_topic='/points', camera_topics=[CAM_A, CAM_B], **kw)


def test_matching_drops_and_stats(synthetic_bag):
    stats = Stats()
    frames = list(iter_frames(synthetic_bag, config(), stats))
    # the truncated cloud 7 is skipped; cloud 4 has no cam_b image within the slop: it keeps cam_a
    assert [f.index for f in frames] == [0, 1, 2, 3, 4, 5, 6, 8, 9]
    assert stats.counts() == {'bad_cloud': 1, 'camera/no_image': 1, 'nonfinite_points': 1}
    # a NaN point, no image, a bad cloud
    assert [e['where'] for e in stats.events] == ['bag cloud 2', 'bag cloud 4', 'bag cloud 7']
    for f in frames:
        t = f.stamp_ns
        assert t == CLOUD_STAMPS[f.index] and f.frame_id == 'lidar'
        assert f.num_points == (19 if f.index == 2 else 20)
        np.testing.assert_array_equal(f.intensity, np.full(f.num_points, f.index, np.float32))
        a = f.cameras[0]
        j = int(np.argmin([abs(s - t) for s in A_STAMPS]))            # brute-force nearest image
        assert a.name == 'cam_a' and a.stamp_ns == A_STAMPS[j] and a.image[0, 0, 0] == j
        assert a.model.frame_id == 'cam_a'
        np.testing.assert_allclose(a.T_cam_lidar, np.linalg.inv(T_base_cama(t)) @ T_BASE_LIDAR, atol=1e-9)
        if f.index == 4:
            assert f.missing_cameras == ['cam_b'] and len(f.cameras) == 1
            continue
        b = f.cameras[1]
        assert b.name == 'cam_b' and abs(b.stamp_ns - t) == 30 * MS and b.image.shape == (4, 6, 3)
        assert b.model.frame_id == 'cam_b'
        np.testing.assert_allclose(b.T_cam_lidar, np.linalg.inv(T_BASE_CAMB) @ T_BASE_LIDAR, atol=1e-9)


def test_determinism(synthetic_bag):
    frames = list(iter_frames(synthetic_bag, config()))
    again = list(iter_frames(synthetic_bag, config()))
    for f, g in zip(frames, again):
        assert f.stamp_ns == g.stamp_ns and np.array_equal(f.points, g.points)
        assert [c.stamp_ns for c in f.cameras] == [c.stamp_ns for c in g.cameras]


def test_tight_slop_time_offsets_and_lidar_only(synthetic_bag):
    stats = Stats()
    frames = list(iter_frames(synthetic_bag, config(sync_slop=0.005), stats))
    assert all(f.missing_cameras == ['cam_a', 'cam_b'] for f in frames if f.index % 2)   # A is 13 ms off
    # declaring cam_b's clock 30 ms ahead lets a 5 ms slop match it; its view keeps the true stamp
    shifted = list(iter_frames(synthetic_bag, config(sync_slop=0.005, camera_time_offsets=[0.0, 0.03])))
    b = [f for f in shifted if f.index == 1][0].cameras[-1]
    assert b.name == 'cam_b' and b.stamp_ns == CLOUD_STAMPS[1] + 30 * MS
    only = list(iter_frames(synthetic_bag, InputsConfig(lidar_topic='/points', lidar_frame='velo',
                                                        camera_topics=['/cam_a/image_raw'])))
    assert only[0].frame_id == 'velo'


def test_missing_transform_drops_the_camera_not_the_frame(synthetic_bag):
    stats = Stats()
    frames = list(iter_frames(synthetic_bag, config(lidar_frame='nowhere'), stats))
    assert len(frames) == 9 and all(f.cameras == [] for f in frames)
    assert stats.counts()['camera/no_transform'] == 17        # 9 frames x 2 cameras, but cam_b missing once
    assert 'nowhere -> cam_a' in stats.events[0]['why']


def test_missing_topics_list_what_exists(synthetic_bag):
    with pytest.raises(ValueError, match=r"\['/cam_c/image_raw', '/cam_c/camera_info'\] not in the bag.*"
                                         r"/cam_a/image_raw \(sensor_msgs/msg/Image\)"):
        list(iter_frames(synthetic_bag, InputsConfig(lidar_topic='/points',
                                                     camera_topics=['/cam_c/image_raw'])))
    with pytest.raises(ValueError, match='not a PointCloud2'):
        list(iter_frames(synthetic_bag, InputsConfig(lidar_topic='/tf')))
    with pytest.raises(ValueError, match='camera_info_topics has 1 entries for 2'):
        config(camera_info_topics=['/x'])


def test_default_topics_and_one_reader(synthetic_bag, tmp_path, monkeypatch):
    assert camera_info_topic(CAM_B) == '/cam_b/camera_info'
    from perception_nodes.io import bags
    opened = []
    real = bags.AnyReader
    monkeypatch.setattr(bags, 'AnyReader', lambda *a, **k: opened.append(a) or real(*a, **k))
    with BagSource(synthetic_bag) as source:
        assert source.lidar_topic == '/points'
        assert [c.image_topic for c in source.cameras] == [CAM_A, CAM_B]
        auto = list(source.frames())
    assert [f.index for f in auto] == [0, 1, 2, 3, 4, 5, 6, 8, 9] and len(auto[0].cameras) == 2
    assert len(opened) == 1                    # topic checks, tf and messages: one reader session
    two = tmp_path / 'two'
    with BagWriter(two) as bag:
        for topic in ('/a', '/b'):
            bag.write(topic, 'sensor_msgs/msg/PointCloud2', bag.msgs.new('sensor_msgs/msg/PointCloud2'), 0)
    with pytest.raises(ValueError, match=r"exactly one PointCloud2 topic, found \['/a', '/b'\]"):
        BagSource(two)


def test_windows_stay_bounded():
    """Streaming: 500 clouds and 1500 images pass through a window of a few messages."""
    from perception_nodes.assembly import camera_inputs
    sync = _Synchronizer('/points', camera_inputs(['/cam/image_raw']), 50 * MS)
    info = camera_info_msg(model('cam', 1, 1), 0)
    list(sync.add('/cam/camera_info', 0, info))
    biggest, sets = 0, 0
    for k in range(500):
        for j in range(3):
            s = k * 100 * MS + j * 33 * MS
            image = rgb_to_image_msg(np.zeros((1, 1, 3), np.uint8), header('cam', s))
            sets += len(list(sync.add('/cam/image_raw', s, image)))
        cloud = create_cloud(header('lidar', k * 100 * MS), xyz_fields(), np.ones((2, 3)))
        sets += len(list(sync.add('/points', k * 100 * MS, cloud)))
        biggest = max(biggest, len(sync.images['cam']), len(sync.infos['cam']), len(sync.pending))
    sets += len(list(sync.flush(None)))
    assert sets == 500
    assert biggest <= 6
