"""Frame assembly on a synthetic bag with known matches, drops, tf motion and bad messages."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from perception_nodes.frame import CameraModel
from perception_nodes.io.bags import BagWriter
from perception_nodes.io.camera_info import camera_info_msg
from perception_nodes.io.frames import (AssemblyStats, FrameAssemblyConfig, _Assembler, camera_info_topic,
                                        default_topics, iter_frames)
from perception_nodes.io.image import rgb_to_compressed_msg, rgb_to_image_msg
from perception_nodes.io.pointcloud2 import FLOAT32, create_cloud, xyz_fields
from perception_nodes.io.stamps import header
from perception_nodes.io.tf_buffer import tf_message, transform_stamped_msg

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


def config(**kw) -> FrameAssemblyConfig:
    return FrameAssemblyConfig(lidar_topic='/points', camera_topics=[CAM_A, CAM_B], **kw)


def test_matching_drops_and_stats(synthetic_bag):
    stats = AssemblyStats()
    frames = list(iter_frames(synthetic_bag, config(), stats))
    assert [f.index for f in frames] == [0, 1, 2, 3, 5, 6, 8, 9]
    assert stats.clouds == 10 and stats.frames == 8 and stats.partial_frames == 0
    assert stats.dropped == {'missing_camera': 1, 'bad_cloud': 1}
    assert stats.missing == {f'{CAM_B}: no_image': 1}
    assert stats.malformed == {'/points': 1} and stats.nonfinite_points == 1
    for f in frames:
        t = f.stamp_ns
        assert t == CLOUD_STAMPS[f.index] and f.frame_id == 'lidar'
        assert f.num_points == (19 if f.index == 2 else 20)
        np.testing.assert_array_equal(f.intensity, np.full(f.num_points, f.index, np.float32))
        a, b = f.cameras
        j = int(np.argmin([abs(s - t) for s in A_STAMPS]))            # brute-force nearest image
        assert a.name == CAM_A and a.stamp_ns == A_STAMPS[j] and a.image[0, 0, 0] == j
        assert b.name == CAM_B and abs(b.stamp_ns - t) == 30 * MS and b.image.shape == (4, 6, 3)
        assert a.model.frame_id == 'cam_a' and b.model.frame_id == 'cam_b'
        np.testing.assert_allclose(a.T_cam_lidar, np.linalg.inv(T_base_cama(t)) @ T_BASE_LIDAR, atol=1e-9)
        np.testing.assert_allclose(b.T_cam_lidar, np.linalg.inv(T_BASE_CAMB) @ T_BASE_LIDAR, atol=1e-9)


def test_partial_frames_and_determinism(synthetic_bag):
    stats = AssemblyStats()
    frames = list(iter_frames(synthetic_bag, config(allow_partial=True), stats))
    assert [f.index for f in frames] == [0, 1, 2, 3, 4, 5, 6, 8, 9]
    partial = frames[4]
    assert partial.missing_cameras == [CAM_B] and [c.name for c in partial.cameras] == [CAM_A]
    assert stats.partial_frames == 1 and stats.dropped == {'bad_cloud': 1}
    again = list(iter_frames(synthetic_bag, config(allow_partial=True)))
    for f, g in zip(frames, again):
        assert f.stamp_ns == g.stamp_ns and np.array_equal(f.points, g.points)
        assert [c.stamp_ns for c in f.cameras] == [c.stamp_ns for c in g.cameras]


def test_tight_slop_and_lidar_only(synthetic_bag):
    stats = AssemblyStats()
    frames = list(iter_frames(synthetic_bag, config(slop_ns=5 * MS, allow_partial=True), stats))
    assert all(f.missing_cameras == [CAM_A, CAM_B] for f in frames if f.index % 2)   # A is 13 ms off
    only = list(iter_frames(synthetic_bag, FrameAssemblyConfig('/points', lidar_frame='velo')))
    assert len(only) == 9 and only[0].frame_id == 'velo' and only[0].cameras == []


def test_missing_transform_is_reported(synthetic_bag):
    stats = AssemblyStats()
    frames = list(iter_frames(synthetic_bag, config(lidar_frame='nowhere', allow_partial=True), stats))
    assert all(f.cameras == [] for f in frames)
    assert stats.missing[f'{CAM_A}: no_transform'] == 9


def test_missing_topics_list_what_exists(synthetic_bag):
    with pytest.raises(ValueError, match=r"\['/cam_c/image_raw', '/cam_c/camera_info'\] not in bag.*"
                                         r"/cam_a/image_raw \(sensor_msgs/msg/Image\)"):
        list(iter_frames(synthetic_bag, FrameAssemblyConfig('/points', ['/cam_c/image_raw'])))
    with pytest.raises(ValueError, match='not a PointCloud2'):
        list(iter_frames(synthetic_bag, FrameAssemblyConfig('/tf')))
    with pytest.raises(ValueError, match='camera_info topics'):
        list(iter_frames(synthetic_bag, config(camera_info_topics=['/x'])))


def test_default_topics(synthetic_bag, tmp_path):
    cfg = default_topics(synthetic_bag, slop_ns=10 * MS)
    assert cfg.lidar_topic == '/points' and cfg.camera_topics == [CAM_A, CAM_B] and cfg.slop_ns == 10 * MS
    assert camera_info_topic(CAM_B) == '/cam_b/camera_info'
    auto = list(iter_frames(synthetic_bag, FrameAssemblyConfig(None, None)))
    assert [f.index for f in auto] == [0, 1, 2, 3, 5, 6, 8, 9] and len(auto[0].cameras) == 2
    counter: dict[str, int] = {}
    assert len(list(iter_frames(synthetic_bag, FrameAssemblyConfig('/points', None), counter))) == 8
    assert counter == {'clouds': 10, 'frames': 8, 'partial_frames': 0, 'nonfinite_points': 1,
                       'dropped/missing_camera': 1, 'dropped/bad_cloud': 1,
                       f'missing/{CAM_B}: no_image': 1, 'malformed//points': 1}
    assert FrameAssemblyConfig.from_dict({'lidar_topic': '/p', 'slop_ns': 5}).slop_ns == 5
    with pytest.raises(ValueError, match='unknown frame assembly option'):
        FrameAssemblyConfig.from_dict({'lidar_topic': '/p', 'slop': 5})
    two = tmp_path / 'two'
    with BagWriter(two) as bag:
        for topic in ('/a', '/b'):
            bag.write(topic, 'sensor_msgs/msg/PointCloud2', bag.msgs.new('sensor_msgs/msg/PointCloud2'), 0)
    with pytest.raises(ValueError, match=r"exactly one PointCloud2 topic, found \['/a', '/b'\]"):
        default_topics(two)


def test_windows_stay_bounded():
    """Streaming: 500 clouds and 1500 images pass through a window of a few messages."""
    cfg = FrameAssemblyConfig('/points', ['/cam/image_raw'])
    stats = AssemblyStats()
    asm = _Assembler(cfg, stats)
    list(asm.add('/tf_static', 0, tf_message([transform_stamped_msg('lidar', 'cam', np.eye(4), 0)])))
    list(asm.add('/cam/camera_info', 0, camera_info_msg(model('cam', 1, 1), 0)))
    biggest, frames = 0, 0
    for k in range(500):
        for j in range(3):
            s = k * 100 * MS + j * 33 * MS
            frames += len(list(asm.add('/cam/image_raw', s, rgb_to_image_msg(np.zeros((1, 1, 3), np.uint8),
                                                                             header('cam', s)))))
        cloud = create_cloud(header('lidar', k * 100 * MS), xyz_fields(), np.ones((2, 3)))
        frames += len(list(asm.add('/points', k * 100 * MS, cloud)))
        biggest = max(biggest, len(asm.images['/cam/image_raw']), len(asm.infos['/cam/image_raw']),
                      len(asm.pending))
    frames += len(list(asm.flush(None)))
    assert frames == stats.frames == 500
    assert biggest <= 6
