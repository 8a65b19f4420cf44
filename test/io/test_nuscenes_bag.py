"""nuScenes devkit layout (built from the real keyframe) -> bag: points, JPEGs, calibration, alignment."""
from __future__ import annotations

import json
from pathlib import Path
import re

import numpy as np
import pytest
from transforms3d.quaternions import quat2mat

from perception_nodes.io.bags import iter_messages
from perception_nodes.io.camera_info import camera_model_from_msg
from perception_nodes.config import InputsConfig
from perception_nodes.io.bag_source import iter_frames
from perception_nodes.stats import Stats
from perception_nodes.io.nuscenes_bag import (CAMERA_CHANNELS, find_nuscenes, image_topic, lidar_topic,
                                              nuscenes_to_bag, read_lidar_top)
from perception_nodes.io.pointcloud2 import read_points
from perception_nodes.io.stamps import stamp_to_ns
from perception_nodes.io.tf_buffer import TransformBuffer

# SOURCE.md: lidar2cam and cam2img put these many points (depth > 0.5 m) inside each 1600x900 image
SOURCE_COUNTS = {'CAM_FRONT': 3067, 'CAM_FRONT_RIGHT': 3079, 'CAM_FRONT_LEFT': 3704, 'CAM_BACK': 4826,
                 'CAM_BACK_LEFT': 4097, 'CAM_BACK_RIGHT': 3379}


class BagContents:
    """Everything a converted nuScenes bag holds, with a tf buffer filled from it."""

    def __init__(self, path: Path) -> None:
        self.tf = TransformBuffer()
        self.clouds: list = []
        self.images: dict[str, list] = {}
        self.infos: dict[str, list] = {}
        self.log_times: dict[str, list[int]] = {}
        for m in iter_messages(path):
            self.log_times.setdefault(m.topic, []).append(m.log_time_ns)
            if m.topic in ('/tf', '/tf_static'):
                self.tf.add_tf_message(m.msg, static=m.topic == '/tf_static')
            elif m.msgtype == 'sensor_msgs/msg/PointCloud2':
                self.clouds.append(m.msg)
            elif m.msgtype == 'sensor_msgs/msg/CameraInfo':
                self.infos.setdefault(m.msg.header.frame_id, []).append(m.msg)
            else:
                self.images.setdefault(m.msg.header.frame_id, []).append(m.msg)


def project(points: np.ndarray, T_cam_lidar: np.ndarray, K: np.ndarray, size=(1600, 900),
            min_depth: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """(pixel coordinates of the points inside the image, mask over all points), SOURCE.md's convention."""
    X = np.c_[points.astype(np.float64), np.ones(len(points))] @ T_cam_lidar.T
    front = X[:, 2] > min_depth
    uvw = X[:, :3] @ K.T
    uv = uvw[:, :2] / np.where(front, uvw[:, 2], 1.0)[:, None]
    inside = front & (uv[:, 0] >= 0) & (uv[:, 0] < size[0]) & (uv[:, 1] >= 0) & (uv[:, 1] < size[1])
    return uv[inside], inside


def xyz(cloud) -> np.ndarray:
    pts = read_points(cloud)
    return np.stack([pts['x'], pts['y'], pts['z']], axis=1)


@pytest.fixture(scope='module')
def plain(tmp_path_factory, build_nuscenes):
    """The keyframe as a devkit dataroot (no lidarseg) and its bag."""
    tmp = tmp_path_factory.mktemp('nuscenes')
    written = build_nuscenes(tmp / 'nuscenes')
    info = nuscenes_to_bag(tmp / 'nuscenes', tmp / 'bag')
    return written, info, BagContents(tmp / 'bag')


def test_points_images_and_calibration_round_trip(plain, nuscenes_keyframe_dir):
    written, info, bag = plain
    assert info.version == 'v1.0-mini' and info.scenes == ['keyframe-scene'] and info.samples == 1
    assert info.sweeps == 0 and info.tf_mode == 'static' and info.labelled_clouds == 0
    expected = {'/tf_static': 1, '/tf': 7, lidar_topic(): 1}
    for channel in CAMERA_CHANNELS:
        expected[image_topic(channel)] = 1
        expected[f'/{channel.lower()}/camera_info'] = 1
    assert info.topics == expected
    # points: the .pcd.bin's 5 float32 per point, exactly
    scan = read_lidar_top(written['lidar_path'])
    assert scan.shape == (34688, 5) == (written['lidar_path'].stat().st_size // 20, 5)
    (cloud,) = bag.clouds
    pts = read_points(cloud)
    assert pts.dtype.names == ('x', 'y', 'z', 'intensity', 'ring') and pts['ring'].dtype == np.uint16
    for j, name in enumerate(pts.dtype.names):
        np.testing.assert_array_equal(pts[name].astype(np.float32), scan[:, j])
    assert sorted(np.unique(pts['ring']).tolist()) == list(range(32))
    t_lidar = written['lidar_stamp_us'] * 1000
    assert cloud.header.frame_id == 'lidar_top' and stamp_to_ns(cloud.header.stamp) == t_lidar
    assert bag.log_times[lidar_topic()] == [t_lidar]
    assert info.start_ns == min(c['stamp_us'] for c in written['cameras'].values()) * 1000
    assert info.end_ns == t_lidar
    for channel, cam in written['cameras'].items():
        frame = channel.lower()
        (image,), (ci,) = bag.images[frame], bag.infos[frame]
        assert bytes(image.data) == cam['path'].read_bytes()          # the JPEG as it is, not re-encoded
        assert stamp_to_ns(image.header.stamp) == stamp_to_ns(ci.header.stamp) == cam['stamp_us'] * 1000
        assert bag.log_times[image_topic(channel)] == [cam['stamp_us'] * 1000]
        model = camera_model_from_msg(ci)
        assert (model.width, model.height, model.frame_id) == (1600, 900, frame) and model.is_rectified
        np.testing.assert_array_equal(model.K, cam['K'])
        np.testing.assert_array_equal(model.P[:, :3], cam['K'])
        # extrinsics: the static edge and the ego pose of the camera's own timestamp
        np.testing.assert_allclose(bag.tf.lookup('base_link', frame), cam['T_ego_cam'], atol=1e-6)
        np.testing.assert_allclose(bag.tf.lookup('odom', 'base_link', cam['stamp_us'] * 1000),
                                   cam['T_global_ego'], atol=1e-6)
    np.testing.assert_allclose(bag.tf.lookup('base_link', 'lidar_top'), written['T_ego_lidar'], atol=1e-6)
    np.testing.assert_allclose(bag.tf.lookup('odom', 'base_link', t_lidar), written['T_global_ego'],
                               atol=1e-6)


def test_projected_lidar_points_line_up_with_the_images(plain, nuscenes_keyframe_dir):
    written, _, bag = plain
    (cloud,) = bag.clouds
    points = xyz(cloud)
    t_lidar = stamp_to_ns(cloud.header.stamp)
    calib = json.loads((nuscenes_keyframe_dir / 'calib_and_boxes.json').read_text())
    table_dir = written['root'] / 'v1.0-mini'
    tables = {name: {r['token']: r for r in json.loads((table_dir / f'{name}.json').read_text())}
              for name in ('sample_data', 'calibrated_sensor', 'ego_pose')}

    def table_pose(record) -> np.ndarray:   # the devkit's Quaternion(rotation).rotation_matrix, by hand
        T = np.eye(4)
        T[:3, :3] = quat2mat(record['rotation'])
        T[:3, 3] = record['translation']
        return T

    def devkit_chain(token: str) -> np.ndarray:   # T_ego_sensor, T_global_ego of one sample_data record
        sd = tables['sample_data'][token]
        return (table_pose(tables['calibrated_sensor'][sd['calibrated_sensor_token']]),
                table_pose(tables['ego_pose'][sd['ego_pose_token']]))

    L, E_l = devkit_chain(written['lidar_token'])
    for channel, cam in written['cameras'].items():
        frame, t_cam = channel.lower(), cam['stamp_us'] * 1000
        K = camera_model_from_msg(bag.infos[frame][0]).K
        # lidar -> base_link(t_lidar) -> odom -> base_link(t_cam) -> camera, from the bag's tf
        T_bag = bag.tf.lookup(frame, 'odom', t_cam) @ bag.tf.lookup('odom', 'lidar_top', t_lidar)
        uv, inside = project(points, T_bag, K)
        # independent references: mmdet3d's ego-motion-compensated lidar2cam, and the devkit chain
        lidar2cam = np.array(calib['images'][channel]['lidar2cam'])
        _, inside_mmdet = project(points, lidar2cam, np.array(calib['images'][channel]['cam2img']))
        C, E_c = devkit_chain(cam['token'])
        _, inside_devkit = project(points, np.linalg.inv(C) @ np.linalg.inv(E_c) @ E_l @ L, K)
        assert int(inside_mmdet.sum()) == SOURCE_COUNTS[channel]
        assert abs(int(inside.sum()) - SOURCE_COUNTS[channel]) <= 1
        assert abs(int(inside.sum()) - int(inside_devkit.sum())) <= 1
        assert (inside != inside_mmdet).sum() <= 1
        np.testing.assert_allclose(T_bag, lidar2cam, atol=1e-5)
        # the single-stamp lookup meets at base_link and misses the ego motion (~9 m/s)
        T_naive = bag.tf.lookup(frame, 'lidar_top', t_lidar)
        shift = np.linalg.norm((T_naive - T_bag)[:3, 3])
        assert shift == pytest.approx(9.24 * abs(t_cam - t_lidar) / 1e9, rel=0.05, abs=2e-3)
    # devkit conventions in CAM_FRONT: x right, y down, z forward; ground below the principal point
    T = bag.tf.lookup('cam_front', 'odom', written['cameras']['CAM_FRONT']['stamp_us'] * 1000) \
        @ bag.tf.lookup('odom', 'lidar_top', t_lidar)
    ego = np.c_[points, np.ones(len(points))] @ bag.tf.lookup('base_link', 'lidar_top').T
    ahead = (ego[:, 0] > 5) & (np.abs(ego[:, 1]) < 0.5 * ego[:, 0])      # inside the front camera's view
    ground = ahead & (ego[:, 0] < 40) & (np.abs(ego[:, 1]) < 3) & (ego[:, 2] < 0.3)   # road ahead
    high = ahead & (ego[:, 2] > 3)                                                   # trees, truck top
    K = camera_model_from_msg(bag.infos['cam_front'][0]).K
    for sel, below in ((ground, True), (high, False)):
        X = np.c_[points[sel], np.ones(int(sel.sum()))] @ T.T
        v = (X[:, :3] @ K.T)[:, 1] / X[:, 2]
        assert sel.sum() > 300 and np.all(X[:, 2] > 3) and project(points[sel], T, K)[1].mean() > 0.7
        assert np.all((v > K[1, 2]) == below)
    behind = np.c_[points[ego[:, 0] < -5], np.ones(int((ego[:, 0] < -5).sum()))] @ T.T
    assert np.all(behind[:, 2] < 0)


def test_frames_assemble_from_the_bag(tmp_path, plain):
    _, info, _ = plain
    stats = Stats()
    (frame,) = iter_frames(info.path, InputsConfig(fixed_frame='odom'), stats)
    assert stats.counts() == {} and frame.num_points == 34688 and len(frame.cameras) == 6
    assert all(c.image.shape == (900, 1600, 3) for c in frame.cameras)
    # through odom, each camera at its own stamp: the devkit's projection, SOURCE.md's in-image counts
    front = frame.cameras[[c.name for c in frame.cameras].index('cam_front')]
    X = np.c_[frame.points.astype(np.float64), np.ones(frame.num_points)] @ front.T_cam_lidar.T
    uv = (X[:, :3] @ front.model.K.T)[:, :2] / X[:, 2:3]
    inside = (X[:, 2] > 0.5) & (uv[:, 0] >= 0) & (uv[:, 0] < 1600) & (uv[:, 1] >= 0) & (uv[:, 1] < 900)
    assert inside.sum() == 3067
    # one lookup at the LiDAR stamp ignores the car's motion between the sensors (9 m/s): fewer points land
    (static,) = iter_frames(info.path)
    front = static.cameras[[c.name for c in static.cameras].index('cam_front')]
    X = np.c_[static.points.astype(np.float64), np.ones(static.num_points)] @ front.T_cam_lidar.T
    uv = (X[:, :3] @ front.model.K.T)[:, :2] / X[:, 2:3]
    moved = (X[:, 2] > 0.5) & (uv[:, 0] >= 0) & (uv[:, 0] < 1600) & (uv[:, 1] >= 0) & (uv[:, 1] < 900)
    assert moved.sum() != 3067


def test_lidarseg_and_sweeps(tmp_path, build_nuscenes):
    labels = np.random.default_rng(0).integers(0, 32, 34688).astype(np.uint8)
    written = build_nuscenes(tmp_path / 'ds', lidarseg=labels, sweep_offset_us=50_000)
    keyframes = nuscenes_to_bag(tmp_path / 'ds' / 'v1.0-mini', tmp_path / 'key', storage='sqlite3')
    assert keyframes.sweeps == 0 and keyframes.labelled_clouds == 1 and keyframes.topics[lidar_topic()] == 1
    info = nuscenes_to_bag(tmp_path / 'ds', tmp_path / 'all', sweeps=True)
    assert info.sweeps == 1 and info.labelled_clouds == 1 and info.topics[lidar_topic()] == 2
    assert info.tf_mode == 'static' and info.topics['/tf'] == 8
    bag = BagContents(tmp_path / 'all')
    key, sweep = bag.clouds
    key_pts, sweep_pts = read_points(key), read_points(sweep)
    assert key_pts.dtype.names[-1] == 'label' and key_pts['label'].dtype == np.uint16
    np.testing.assert_array_equal(key_pts['label'], labels)
    assert 'label' not in sweep_pts.dtype.names                  # no ground truth for sweeps
    np.testing.assert_array_equal(xyz(sweep), xyz(key))
    t_sweep = written['sweep']['stamp_us'] * 1000
    assert stamp_to_ns(sweep.header.stamp) == t_sweep == stamp_to_ns(key.header.stamp) + 50_000_000
    np.testing.assert_allclose(bag.tf.lookup('odom', 'base_link', t_sweep), written['sweep']['T_global_ego'],
                               atol=1e-6)
    # a recalibrated sensor: extrinsics go on /tf with every record, each lookup gets its own
    written = build_nuscenes(tmp_path / 'recal', sweep_offset_us=50_000, sweep_recalibrated=True)
    info = nuscenes_to_bag(tmp_path / 'recal', tmp_path / 'recal_bag', sweeps=True)
    assert info.tf_mode == 'per_frame' and '/tf_static' not in info.topics and info.topics['/tf'] == 8
    bag = BagContents(tmp_path / 'recal_bag')
    t_key = written['lidar_stamp_us'] * 1000
    for stamp, T in ((t_key, written['T_ego_lidar']), (t_sweep, written['sweep']['T_ego_lidar'])):
        np.testing.assert_allclose(bag.tf.lookup('base_link', 'lidar_top', stamp), T, atol=1e-6)


def test_selection_and_bad_input(tmp_path, build_nuscenes):
    root = tmp_path / 'ds'
    written = build_nuscenes(root, sweep_offset_us=50_000)
    assert find_nuscenes(root) == (root, root / 'v1.0-mini')
    assert find_nuscenes(root / 'v1.0-mini') == (root, root / 'v1.0-mini')
    with pytest.raises(ValueError, match=r"unknown scene\(s\) \['scene-0061'\]; v1.0-mini has "
                                         r"\['keyframe-scene'\]"):
        nuscenes_to_bag(root, tmp_path / 'b', scenes=['scene-0061'])
    (tmp_path / 'empty').mkdir()
    with pytest.raises(ValueError, match='not a nuScenes dataroot'):
        nuscenes_to_bag(tmp_path / 'empty', tmp_path / 'b')
    with pytest.raises(ValueError, match='no table folder v1.0-trainval'):
        nuscenes_to_bag(root, tmp_path / 'b', version='v1.0-trainval')
    sweep_file = root / 'sweeps' / 'LIDAR_TOP'
    for f in sweep_file.iterdir():
        f.unlink()
    with pytest.raises(ValueError, match=r'missing, e\.g\. .*sweeps/LIDAR_TOP/.*convert without sweeps'):
        nuscenes_to_bag(root, tmp_path / 'b', sweeps=True)
    assert nuscenes_to_bag(root, tmp_path / 'b').topics[lidar_topic()] == 1    # keyframes need no sweeps/
    front = written['cameras']['CAM_FRONT']['path'].name
    (root / 'samples' / 'CAM_FRONT' / front).unlink()
    with pytest.raises(ValueError, match=f'1 sensor file.*{re.escape(front)}'):
        nuscenes_to_bag(root, tmp_path / 'c')
    (root / 'v1.0-mini' / 'ego_pose.json').unlink()
    with pytest.raises(ValueError, match=r"missing nuScenes table\(s\) \['ego_pose.json'\]"):
        nuscenes_to_bag(root, tmp_path / 'c')
    assert not (tmp_path / 'c').exists()
    seg = tmp_path / 'seg'
    build_nuscenes(seg, lidarseg=np.zeros(100, np.uint8))
    with pytest.raises(ValueError, match='100 labels for 34688 points'):
        nuscenes_to_bag(seg, tmp_path / 'd')
    build_nuscenes(tmp_path / 'seg40', lidarseg=np.full(34688, 40, np.uint8))
    with pytest.raises(ValueError, match=r'label\(s\) \[40\] are not category indices'):
        nuscenes_to_bag(tmp_path / 'seg40', tmp_path / 'd')
    assert not (tmp_path / 'd').exists()
