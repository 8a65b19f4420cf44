"""Synchronized KITTI messages -> Frame; bad messages are counted, never raised."""
from __future__ import annotations

import numpy as np

from perception_nodes.io.messages import default_message_types
from perception_nodes.io.stamps import stamp_to_ns
from perception_nodes.runtime import stats as counters
from perception_nodes.runtime.assembly import FrameAssembler, SyncedSet, cloud_arrays, shift_stamp
from perception_nodes.runtime.extrinsics import ExtrinsicsCache
from perception_nodes.runtime.params import CameraInput
from perception_nodes.runtime.stats import RuntimeStats

CAM = CameraInput('front', '/kitti/camera_color_left/image_raw', '/kitti/camera_color_left/camera_info')


def _assembler(kitti_sets, make_lookup, cameras=(CAM,), transforms=None):
    T = kitti_sets[0].T_cam_lidar
    lookup = make_lookup({('camera_2', 'velodyne'): T} if transforms is None else transforms)
    stats = RuntimeStats()
    return FrameAssembler(list(cameras), ExtrinsicsCache(lookup), stats), stats


def test_kitti_set_becomes_the_right_frame(kitti_sets, make_lookup):
    assembler, stats = _assembler(kitti_sets, make_lookup)
    s = kitti_sets[1]
    frame = assembler.assemble(SyncedSet(s.cloud, [s.image], {'front': s.info}), index=4)
    finite = np.isfinite(s.points[:, :3]).all(axis=1)
    assert frame.stamp_ns == s.stamp_ns and frame.frame_id == 'velodyne' and frame.index == 4
    assert np.array_equal(frame.points, s.points[finite, :3])
    assert np.array_equal(frame.intensity, s.points[finite, 3])
    (view,) = frame.cameras
    assert view.name == 'front' and view.stamp_ns == s.stamp_ns
    assert np.array_equal(view.image, s.rgb)
    assert np.allclose(view.T_cam_lidar, s.T_cam_lidar)
    assert view.model.frame_id == 'camera_2' and (view.model.width, view.model.height) == s.rgb.shape[1::-1]
    assert frame.missing_cameras == [] and not stats.counts()


def test_missing_camera_info_and_bad_image_leave_the_camera_out(kitti_sets, make_lookup):
    msgs = default_message_types()
    assembler, stats = _assembler(kitti_sets, make_lookup)
    s = kitti_sets[0]
    frame = assembler.assemble(SyncedSet(s.cloud, [s.image], {}))
    assert frame.cameras == [] and frame.missing_cameras == ['front'] and frame.num_points == len(s.points)
    assert stats.counts() == {counters.MISSING_CAMERA_INFO: 1}
    truncated = msgs.new('sensor_msgs/msg/Image', header=s.image.header, height=s.image.height,
                         width=s.image.width, encoding='rgb8', step=s.image.step, data=s.image.data[:100])
    frame = assembler.assemble(SyncedSet(s.cloud, [truncated], {'front': s.info}))
    assert frame.missing_cameras == ['front'] and stats.counts()[counters.BAD_IMAGE] == 1
    garbage = msgs.new('sensor_msgs/msg/CompressedImage', header=s.image.header, format='jpeg',
                       data=np.frombuffer(b'not a jpeg at all', np.uint8))
    assembler.assemble(SyncedSet(s.cloud, [garbage], {'front': s.info}))
    assert stats.counts()[counters.BAD_IMAGE] == 2
    uncalibrated = msgs.new('sensor_msgs/msg/CameraInfo', header=s.info.header, width=1242, height=375)
    frame = assembler.assemble(SyncedSet(s.cloud, [s.image], {'front': uncalibrated}))
    assert frame.missing_cameras == ['front'] and stats.counts()[counters.BAD_CAMERA_INFO] == 1
    assert 'focal length' in stats.last_problem[counters.BAD_CAMERA_INFO]


def test_malformed_cloud_and_missing_tf_skip_the_set(kitti_sets, make_lookup):
    msgs = default_message_types()
    assembler, stats = _assembler(kitti_sets, make_lookup)
    s = kitti_sets[0]
    c = s.cloud
    broken = msgs.new('sensor_msgs/msg/PointCloud2', header=c.header, height=c.height, width=c.width + 5,
                      fields=c.fields, point_step=c.point_step, row_step=c.row_step, data=c.data)
    assert assembler.assemble(SyncedSet(broken, [s.image], {'front': s.info})) is None
    no_z = msgs.new('sensor_msgs/msg/PointCloud2', header=c.header, height=1, width=0, fields=c.fields[:2],
                    point_step=8, row_step=0)
    assert assembler.assemble(SyncedSet(no_z, [s.image], {'front': s.info})) is None
    assert stats.counts() == {counters.BAD_CLOUD: 2}
    assert "no 'z' field" in stats.last_problem[counters.BAD_CLOUD]

    assembler, stats = _assembler(kitti_sets, make_lookup, transforms={})
    assert assembler.assemble(SyncedSet(s.cloud, [s.image], {'front': s.info})) is None
    assert stats.counts() == {counters.TF_FAILURES: 1}
    assert "'velodyne' -> 'camera_2'" in stats.last_problem[counters.TF_FAILURES]


def test_time_offset_shift_and_restore(kitti_sets, make_lookup):
    msgs = default_message_types()
    offset = 30_000_000
    cam = CameraInput('front', CAM.image_topic, CAM.info_topic, time_offset_ns=offset)
    assembler, _ = _assembler(kitti_sets, make_lookup, cameras=(cam,))
    s = kitti_sets[2]
    hdr = msgs.new('std_msgs/msg/Header', frame_id='camera_2', stamp=s.image.header.stamp)
    image = msgs.new('sensor_msgs/msg/Image', header=hdr,
                     height=s.image.height, width=s.image.width, encoding='rgb8', step=s.image.step,
                     data=s.image.data)
    shift_stamp(image, offset, msgs)                 # the camera stamps 30 ms late ...
    shift_stamp(image, -offset, msgs)                # ... the node removes that before synchronizing
    assert stamp_to_ns(image.header.stamp) == s.stamp_ns
    frame = assembler.assemble(SyncedSet(s.cloud, [image], {'front': s.info}))
    assert frame.cameras[0].stamp_ns == s.stamp_ns + offset


def test_cloud_without_intensity_and_with_nans(make_cloud):
    msgs = default_message_types()
    from perception_nodes.io.pointcloud2 import create_cloud, xyz_fields
    from perception_nodes.io.stamps import header
    pts = np.array([[1, 2, 3], [np.nan, 0, 0], [4, 5, 6]], np.float32)
    xyz, intensity = cloud_arrays(create_cloud(header('l', 0, msgs), xyz_fields(), pts, msgs))
    assert intensity is None and np.array_equal(xyz, pts[[0, 2]])
    xyz, intensity = cloud_arrays(make_cloud(np.c_[pts, [7, 8, 9]], 0))
    assert np.array_equal(intensity, [7, 9])
