"""Real KITTI data -> bag -> frames: points, labels, images, calibration and projection survive."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from perception_nodes.io.bags import BagError, bag_summary, iter_messages
from perception_nodes.io.bag_source import iter_frames
from perception_nodes.stats import Stats
from perception_nodes.io.kitti import find_kitti_frames, read_calib, read_semantic_labels, read_velodyne
from perception_nodes.io.kitti_bag import (CAMERA_INFO_TOPIC, IMAGE_TOPIC, LIDAR_TOPIC, kitti_layout,
                                           kitti_to_bag)


def projected_inside(frame) -> tuple[int, int]:
    """(points with positive depth, of those inside the image) using P · T_cam_lidar."""
    cam = frame.cameras[0]
    X = np.c_[frame.points.astype(np.float64), np.ones(frame.num_points)] @ cam.T_cam_lidar.T
    uvw = X @ cam.model.P.T
    front = uvw[:, 2] > 0
    uv = uvw[front, :2] / uvw[front, 2:]
    inside = (uv[:, 0] >= 0) & (uv[:, 0] < cam.model.width) & (uv[:, 1] >= 0) & (uv[:, 1] < cam.model.height)
    return int(front.sum()), int(inside.sum())


def check_frames_match_files(bag: Path, src: Path, n: int) -> list:
    files = find_kitti_frames(src)[:n]
    stats = Stats()
    frames = list(iter_frames(bag, stats=stats))
    assert len(frames) == n and stats.counts() == {}
    for i, (frame, f) in enumerate(zip(frames, files)):
        scan = read_velodyne(f.velodyne)
        assert frame.num_points == f.velodyne.stat().st_size // 16 == len(scan)
        np.testing.assert_array_equal(frame.points, scan[:, :3])
        np.testing.assert_array_equal(frame.intensity, scan[:, 3])
        assert frame.index == i and frame.stamp_ns == i * 100_000_000 and frame.frame_id == 'velodyne'
        assert frame.points.flags.writeable and frame.points.flags.c_contiguous
        assert all(c.image.flags.writeable and c.image.flags.c_contiguous for c in frame.cameras)
        if f.image is not None:
            cam = frame.cameras[0]
            calib = read_calib(f.calib)
            rgb = cv2.cvtColor(cv2.imread(str(f.image)), cv2.COLOR_BGR2RGB)
            np.testing.assert_array_equal(cam.image, rgb)
            # tf lookup; KITTI's R0_rect·Tr is orthonormal only to ~1e-6, a quaternion rounds it to a rotation
            np.testing.assert_allclose(cam.T_cam_lidar, calib.T_cam_velo, atol=1e-7)
            np.testing.assert_array_equal(cam.model.P, calib.P2)
            assert (cam.model.width, cam.model.height) == (cam.image.shape[1], cam.image.shape[0])
            assert cam.model.frame_id == 'camera_2' and cam.model.is_rectified
            front, inside = projected_inside(frame)
            assert inside > 0.25 * front > 0.1 * frame.num_points      # forward camera sees its share
    return frames


@pytest.fixture(scope='module')
def raw_bag(tmp_path_factory, kitti_raw_dir) -> Path:
    out = tmp_path_factory.mktemp('kitti') / 'raw_bag'
    info = kitti_to_bag(kitti_raw_dir, out, max_frames=3)
    assert info.layout == 'raw' and info.tf_mode == 'static' and info.calibrations == 1
    assert info.topics == {'/tf_static': 1, CAMERA_INFO_TOPIC: 3, IMAGE_TOPIC: 3, LIDAR_TOPIC: 3}
    return out


def test_kitti_raw(raw_bag, kitti_raw_dir):
    check_frames_match_files(raw_bag, kitti_raw_dir, 3)
    assert kitti_layout(kitti_raw_dir) == 'raw'


def test_kitti_object_per_frame_calibration(tmp_path, kitti_object_dir):
    out = tmp_path / 'obj'
    info = kitti_to_bag(kitti_object_dir, out, storage='sqlite3')
    assert info.layout == 'object' and info.tf_mode == 'per_frame' and info.calibrations == 2
    assert '/tf_static' not in info.topics and info.topics['/tf'] == 3
    frames = check_frames_match_files(out, kitti_object_dir, 3)
    assert frames[0].cameras[0].image.shape == (370, 1224, 3)
    assert frames[1].cameras[0].image.shape == (375, 1242, 3)
    assert frames[0].cameras[0].model.K[0, 0] == pytest.approx(707.0493)
    # SOURCE.md: projecting 000000.bin with P2·R0_rect·Tr_velo_to_cam puts 20,285 points inside the image
    assert projected_inside(frames[0])[1] == 20285


def test_semantic_kitti_labels(tmp_path, semantic_kitti_dir):
    out = tmp_path / 'sem'
    info = kitti_to_bag(semantic_kitti_dir, out, rate_hz=5.0, max_frames=2)
    assert info.layout == 'semantic' and info.tf_mode == 'none' and info.topics == {LIDAR_TOPIC: 2}
    files = find_kitti_frames(semantic_kitti_dir)[:2]
    frames = list(iter_frames(out))
    assert [f.stamp_ns for f in frames] == [0, 200_000_000]
    for frame, f in zip(frames, files):
        semantic, instance = read_semantic_labels(f.label, frame.num_points)
        assert frame.cameras == [] and frame.num_points == f.velodyne.stat().st_size // 16
        np.testing.assert_array_equal(frame.labels, semantic)
        np.testing.assert_array_equal(frame.instances, instance)
        assert len(np.unique(frame.labels)) > 5                      # a real labelled scan, not zeros
    (cloud,) = [m.msg for m in iter_messages(out, [LIDAR_TOPIC])][:1]
    assert [(fl.name, fl.offset, fl.datatype) for fl in cloud.fields] == [
        ('x', 0, 7), ('y', 4, 7), ('z', 8, 7), ('intensity', 12, 7), ('label', 16, 4), ('instance', 18, 4)]


def test_truncated_kitti_bag_yields_frames_then_error(tmp_path, raw_bag):
    summary = bag_summary(raw_bag)
    assert summary.message_count == 10 and summary.error is None
    cut = tmp_path / 'cut'
    cut.mkdir()
    (cut / 'metadata.yaml').write_bytes((raw_bag / 'metadata.yaml').read_bytes())
    data = (raw_bag / 'raw_bag.mcap').read_bytes()
    (cut / 'raw_bag.mcap').write_bytes(data[:int(len(data) * 0.85)])
    frames = []
    with pytest.raises(BagError, match='truncated'):
        for frame in iter_frames(cut):
            frames.append(frame)
    assert 1 <= len(frames) < 3 and frames[0].num_points == 114278


def test_bad_sources(tmp_path, kitti_raw_dir):
    with pytest.raises(ValueError, match='not a KITTI'):
        kitti_to_bag(tmp_path, tmp_path / 'x')
    with pytest.raises(ValueError, match='rate'):
        kitti_to_bag(kitti_raw_dir, tmp_path / 'x', rate_hz=0)
    assert not (tmp_path / 'x').exists()
