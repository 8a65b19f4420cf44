"""Shared fixtures: where the real data lives (skip with the reason when absent); layouts built from it."""
from __future__ import annotations

import functools
import json
import os
from pathlib import Path
import shutil

import numpy as np
import pytest

from perception_nodes.io.kitti import DATA_ENV, shared_data_dir


def _require(sub: str) -> Path:
    path = shared_data_dir() / sub
    if not path.is_dir():
        pytest.skip(f'real data not found at {path} (set ${DATA_ENV} to the folder holding {sub}/)')
    return path


@pytest.fixture(scope='session')
def kitti_raw_dir() -> Path:
    """10 consecutive KITTI raw frames with images and calib.txt."""
    return _require('kitti_raw_2011_09_26_seq')


@pytest.fixture(scope='session')
def kitti_object_dir() -> Path:
    """3 KITTI object-benchmark frames (training/{velodyne,image_2,calib,label_2})."""
    return _require('kitti_object_vis')


@pytest.fixture(scope='session')
def semantic_kitti_dir() -> Path:
    """Provide SemanticKITTI sequence 00, scans 0-2 with ground-truth labels (no images)."""
    return _require('semantickitti_seq00')


@pytest.fixture(scope='session')
def nuscenes_keyframe_dir() -> Path:
    """One real nuScenes v1.0-mini keyframe: LIDAR_TOP .pcd.bin, 6 camera JPEGs, calib_and_boxes.json."""
    return _require('nuscenes_mini_keyframe')


@pytest.fixture(scope='session')
def scannet_scene_dir() -> Path:
    """Provide ScanNet scene0000_00: axis-aligned vertices xyzrgb, NYU40 + instance labels, 3 posed JPEGs."""
    return _require('scannet_scene0000_00')


NUSCENES_CAMERAS = ('CAM_FRONT', 'CAM_FRONT_RIGHT', 'CAM_FRONT_LEFT', 'CAM_BACK', 'CAM_BACK_LEFT',
                    'CAM_BACK_RIGHT')


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.symlink(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _pose(T: np.ndarray) -> dict:
    from transforms3d.quaternions import mat2quat
    return {'translation': [float(v) for v in T[:3, 3]], 'rotation': [float(v) for v in mat2quat(T[:3, :3])]}


def build_nuscenes_dataroot(keyframe: Path, root: Path, lidarseg: np.ndarray | None = None,
                            sweep_offset_us: int | None = None, sweep_recalibrated: bool = False) -> dict:
    """Write a nuScenes devkit layout (v1.0-mini tables + samples/) for the real keyframe in ``keyframe``.

    Calibration and poses come from its calib_and_boxes.json (mmdet3d info v1.1): calibrated_sensor from
    lidar2ego / cam2ego / cam2img, the LiDAR's ego pose from ego2global, and each camera's ego pose at its
    own timestamp from the ego-motion-compensated lidar2cam
    (``lidar2cam = inv(cam2ego) · inv(ego2global(t_cam)) · ego2global(t_lidar) · lidar2ego``).
    ``lidarseg``: per-point uint8 labels written as lidarseg (+ category.json with indices 0-31).
    ``sweep_offset_us``: also a LIDAR_TOP sweep (the same file under sweeps/) that many microseconds later,
    with its own ego pose; ``sweep_recalibrated`` gives it a different calibrated_sensor.
    Returns what was written (tokens, stamps, matrices) for the tests.
    """
    info = json.loads((keyframe / 'calib_and_boxes.json').read_text())
    tables = root / 'v1.0-mini'
    tables.mkdir(parents=True)
    E_lidar = np.array(info['ego2global'], dtype=np.float64)
    L = np.array(info['lidar_points']['lidar2ego'], dtype=np.float64)
    sample_token = info['sample_token']
    lidar_name = info['lidar_points']['lidar_path']

    def stamp_us(name: str) -> int:
        return int(name.rsplit('__', 1)[1].split('.')[0])

    sensors, calibs, poses, data = [], [], [], []
    lidar_token = f'lidar-{sample_token}'

    def add(channel: str, modality: str, T_ego_sensor: np.ndarray, T_global_ego: np.ndarray, name: str,
            token: str, folder: str, key_frame: bool, K: list | None = None, size=(0, 0),
            sensor_token: str | None = None) -> None:
        if sensor_token is None:
            sensor_token = f'sensor-{channel}'
            sensors.append({'token': sensor_token, 'channel': channel, 'modality': modality})
        calibs.append({'token': f'cs-{token}', 'sensor_token': sensor_token, **_pose(T_ego_sensor),
                       'camera_intrinsic': K or []})
        poses.append({'token': f'ego-{token}', 'timestamp': stamp_us(name), **_pose(T_global_ego)})
        data.append({'token': token, 'sample_token': sample_token, 'ego_pose_token': f'ego-{token}',
                     'calibrated_sensor_token': f'cs-{token}', 'timestamp': stamp_us(name),
                     'fileformat': 'pcd' if modality == 'lidar' else 'jpg', 'is_key_frame': key_frame,
                     'height': size[1], 'width': size[0], 'filename': f'{folder}/{channel}/{name}',
                     'prev': '', 'next': ''})
        source = keyframe / (lidar_name if modality == 'lidar' else name)
        _link(source, root / folder / channel / name)

    add('LIDAR_TOP', 'lidar', L, E_lidar, lidar_name, lidar_token, 'samples', True)
    cameras = {}
    for channel in NUSCENES_CAMERAS:
        cam = info['images'][channel]
        C = np.array(cam['cam2ego'], dtype=np.float64)
        lidar2cam = np.array(cam['lidar2cam'], dtype=np.float64)
        E_cam = E_lidar @ L @ np.linalg.inv(lidar2cam) @ np.linalg.inv(C)
        add(channel, 'camera', C, E_cam, cam['img_path'], cam['sample_data_token'], 'samples', True,
            K=cam['cam2img'], size=(1600, 900))
        cameras[channel] = {'stamp_us': stamp_us(cam['img_path']), 'T_ego_cam': C, 'T_global_ego': E_cam,
                            'K': np.array(cam['cam2img']), 'lidar2cam': lidar2cam,
                            'token': cam['sample_data_token'], 'path': keyframe / cam['img_path']}
    sweep = None
    if sweep_offset_us is not None:
        t = stamp_us(lidar_name) + sweep_offset_us
        name = f'{lidar_name.rsplit("__", 1)[0]}__{t}.pcd.bin'
        E_sweep = E_lidar.copy()
        E_sweep[:3, 3] += E_lidar[:3, 0] * 9.2 * sweep_offset_us * 1e-6      # ~9 m/s forward
        L_sweep = L.copy()
        if sweep_recalibrated:
            L_sweep[:3, 3] += [0.0, 0.0, 0.1]
        add('LIDAR_TOP', 'lidar', L_sweep, E_sweep, name, 'lidar-sweep', 'sweeps', False,
            sensor_token='sensor-LIDAR_TOP')
        sweep = {'stamp_us': t, 'T_global_ego': E_sweep, 'T_ego_lidar': L_sweep}
    scene_token = 'scene-keyframe'
    log_name = lidar_name.split('__')[0]
    written = {
        'sensor': sensors, 'calibrated_sensor': calibs, 'ego_pose': poses, 'sample_data': data,
        'sample': [{'token': sample_token, 'timestamp': stamp_us(lidar_name), 'prev': '', 'next': '',
                    'scene_token': scene_token}],
        'scene': [{'token': scene_token, 'log_token': 'log-0', 'nbr_samples': 1,
                   'first_sample_token': sample_token, 'last_sample_token': sample_token,
                   'name': 'keyframe-scene', 'description': 'test fixture'}],
        'log': [{'token': 'log-0', 'logfile': log_name, 'vehicle': log_name.split('-')[0],
                 'date_captured': '2018-07-24', 'location': ''}],
    }
    if lidarseg is not None:
        rel = f'lidarseg/v1.0-mini/{lidar_token}_lidarseg.bin'
        (root / rel).parent.mkdir(parents=True)
        np.asarray(lidarseg, dtype=np.uint8).tofile(root / rel)
        written['lidarseg'] = [{'token': 'seg-0', 'sample_data_token': lidar_token, 'filename': rel}]
        written['category'] = [{'token': f'cat-{i}', 'name': f'class-{i}', 'description': '', 'index': i}
                               for i in range(32)]
    for name, records in written.items():
        (tables / f'{name}.json').write_text(json.dumps(records, indent=1))
    return {'root': root, 'sample_token': sample_token, 'lidar_token': lidar_token,
            'lidar_stamp_us': stamp_us(lidar_name), 'lidar_path': keyframe / lidar_name,
            'T_global_ego': E_lidar, 'T_ego_lidar': L, 'cameras': cameras, 'sweep': sweep}


@pytest.fixture(scope='session')
def build_nuscenes(nuscenes_keyframe_dir):
    """``build(root, **options)``: :func:`build_nuscenes_dataroot` of the real keyframe."""
    return functools.partial(build_nuscenes_dataroot, nuscenes_keyframe_dir)


# -- ROS 2 harness (test/ros_harness): the real Jazzy Python layers with stand-ins for the compiled parts --
def _ros_harness_package():
    """Import test/ros_harness once (test folders are not packages under --import-mode=importlib)."""
    import importlib.util
    import sys

    if 'ros_harness' not in sys.modules:
        folder = Path(__file__).resolve().parent / 'ros_harness'
        spec = importlib.util.spec_from_file_location('ros_harness', folder / '__init__.py',
                                                      submodule_search_locations=[str(folder)])
        module = importlib.util.module_from_spec(spec)
        sys.modules['ros_harness'] = module
        spec.loader.exec_module(module)
    return sys.modules['ros_harness']


@pytest.fixture
def ros_harness_package():
    """Return the test/ros_harness package (``RosHarness`` with options); skip without shared/ros2-python."""
    package = _ros_harness_package()
    if not (package.ros2_python_path() / 'rclpy' / 'node.py').is_file():
        pytest.skip(f'ROS 2 Python layers not found at {package.ros2_python_path()} '
                    f'(set ${package.ENV_VAR} to the ros2-python folder of shared/)')
    return package


@pytest.fixture
def ros_harness(ros_harness_package):
    """Activate the harness for one test: ``import rclpy`` etc. work inside, and are forgotten after."""
    with ros_harness_package.RosHarness(console=False) as harness:
        yield harness


@pytest.fixture
def rclpy_init(ros_harness):
    """``rclpy`` with the default context initialised; shut down (if still up) after the test."""
    import rclpy

    rclpy.init(args=[])
    yield rclpy
    rclpy.try_shutdown()


# -- Frames compared field by field (the bag route against the node route, a node against its reference) --
def assert_frames_equal(a, b) -> None:
    """Assert two Frames are the same: stamp, frame, points, intensity, truth, cameras (all fields)."""
    assert (a.stamp_ns, a.frame_id, a.missing_cameras) == (b.stamp_ns, b.frame_id, b.missing_cameras)
    for name in ('points', 'intensity', 'labels', 'instances'):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None) and (x is None or np.array_equal(x, y)), name
    assert [v.name for v in a.cameras] == [v.name for v in b.cameras]
    for u, v in zip(a.cameras, b.cameras):
        assert u.stamp_ns == v.stamp_ns and np.array_equal(u.image, v.image)
        assert np.array_equal(u.T_cam_lidar, v.T_cam_lidar)
        for field in ('frame_id', 'width', 'height', 'distortion_model'):
            assert getattr(u.model, field) == getattr(v.model, field)
        for field in ('K', 'D', 'R', 'P'):
            assert np.array_equal(getattr(u.model, field), getattr(v.model, field))


@pytest.fixture(scope='session')
def frames_equal():
    """Return :func:`assert_frames_equal` (test modules cannot import a conftest in importlib mode)."""
    return assert_frames_equal
