"""The frame assembler's rule set, message by message (one rule per test, with the reason it counts)."""
from __future__ import annotations

import numpy as np
import pytest

from perception_nodes.assembly import (CameraInput, FrameAssembler, StampShift, SyncedSet, camera_inputs,
                                       camera_name, normalize_frame_id, stamp_ns)
from perception_nodes.frame import CameraModel
from perception_nodes.io.camera_info import camera_info_msg
from perception_nodes.io.image import rgb_to_image_msg
from perception_nodes.io.messages import default_message_types
from perception_nodes.io.pointcloud2 import FLOAT32, UINT16, UINT32, create_cloud, xyz_fields
from perception_nodes.io.stamps import header, ns_to_stamp
from perception_nodes.stats import Stats

MSGS = default_message_types()
T0 = 1_700_000_000_123_456_789
CAM = CameraInput('front', '/front/image_raw', '/front/camera_info')
MODEL = CameraModel('front_optical', 6, 4, K=[[5, 0, 3], [0, 5, 2], [0, 0, 1]])
T_CAM_LIDAR = np.array([[0, -1, 0, 0.1], [0, 0, -1, 0.2], [1, 0, 0, 0.3], [0, 0, 0, 1.0]])


def lookup(target, source, stamp):
    if (target, source) != ('front_optical', 'velodyne'):
        raise LookupError(f'no transform {source} -> {target}')
    return T_CAM_LIDAR


def cloud(points, fields, frame='velodyne', stamp=T0):
    return create_cloud(header(frame, stamp, MSGS), fields, points, MSGS)


def image(pixels=None, stamp=T0, encoding='rgb8'):
    pixels = np.full((4, 6, 3), 7, np.uint8) if pixels is None else pixels
    if encoding == 'mono16':
        return MSGS.new('sensor_msgs/msg/Image', header=header('front_optical', stamp, MSGS), height=4,
                        width=6, encoding='mono16', is_bigendian=0, step=12,
                        data=pixels.astype('<u2').view(np.uint8))
    return rgb_to_image_msg(pixels, header('front_optical', stamp, MSGS), MSGS)


def info():
    return camera_info_msg(MODEL, T0, MSGS)


def assemble(synced, cameras=(CAM,), **kw):
    stats = Stats()
    frame = FrameAssembler(list(cameras), lookup, stats, **kw).assemble(synced, 3)
    return frame, stats


XYZI = xyz_fields([('intensity', FLOAT32)])


def test_points_intensity_ground_truth_and_frame_id():
    pts = np.array([[1, 2, 3, 0.5], [np.nan, 0, 0, 1], [4, 5, 6, np.nan], [7, 8, np.inf, 2]], np.float32)
    frame, stats = assemble(SyncedSet(cloud(pts, XYZI, frame='/velodyne'), [image()], {'front': info()}))
    np.testing.assert_array_equal(frame.points, pts[[0, 2], :3])   # non-finite xyz dropped
    np.testing.assert_array_equal(frame.intensity, [0.5, 0.0])     # NaN intensity -> 0
    assert frame.frame_id == 'velodyne' and frame.stamp_ns == T0 and frame.index == 3
    assert stats.counts() == {'nonfinite_points': 2}
    labelled = cloud(np.array([[1, 2, 3, 7, 9]]), xyz_fields([('label', UINT16), ('instance', UINT32)]))
    frame, _ = assemble(SyncedSet(labelled, [image()], {'front': info()}))
    assert frame.labels.tolist() == [7] and frame.instances.tolist() == [9] and frame.intensity is None
    override, _ = assemble(SyncedSet(cloud(pts, XYZI), [None], {}), lidar_frame='/base_lidar')
    assert override.frame_id == 'base_lidar'


@pytest.mark.parametrize('name', ['intensity', 'i', 'reflectivity'])
def test_intensity_field_aliases(name):
    frame, _ = assemble(SyncedSet(cloud(np.array([[1, 2, 3, 0.25]]), xyz_fields([(name, FLOAT32)])), [], {}),
                        cameras=())
    assert frame.intensity.tolist() == [0.25]


def test_camera_view_and_its_stamp():
    frame, stats = assemble(SyncedSet(cloud(np.ones((2, 4)), XYZI), [image(stamp=T0 + 5)], {'front': info()}))
    (view,) = frame.cameras
    assert view.name == 'front' and view.stamp_ns == T0 + 5 and view.model.frame_id == 'front_optical'
    np.testing.assert_array_equal(view.T_cam_lidar, T_CAM_LIDAR)
    assert view.image.shape == (4, 6, 3) and view.image.flags.writeable and (view.image == 7).all()
    assert stats.counts() == {}


def test_sixteen_bit_and_float_images_follow_the_one_teacher_rule():
    mono = np.arange(24, dtype=np.uint16).reshape(4, 6) * 2000          # largest 46000: 16 significant bits
    frame, _ = assemble(SyncedSet(cloud(np.ones((2, 4)), XYZI), [image(mono, encoding='mono16')],
                                  {'front': info()}))
    expected = np.round(mono.astype(np.float64) * 255 / 65535).astype(np.uint8)
    np.testing.assert_array_equal(frame.cameras[0].image[..., 1], expected)
    depth = np.linspace(0.5, 30.0, 24, dtype=np.float32)                   # metres: stretched min..max
    msg = MSGS.new('sensor_msgs/msg/Image', header=header('front_optical', T0, MSGS), height=4, width=6,
                   encoding='32FC1', is_bigendian=0, step=24, data=depth.view(np.uint8))
    frame, stats = assemble(SyncedSet(cloud(np.ones((2, 4)), XYZI), [msg], {'front': info()}))
    grey = frame.cameras[0].image[..., 0].reshape(-1)
    assert grey[0] == 0 and grey[-1] == 255 and np.all(np.diff(grey.astype(int)) >= 0)
    assert stats.counts() == {}


@pytest.mark.parametrize('case, reason', [
    ('no image', 'camera/no_image'),
    ('no info', 'camera/no_camera_info'),
    ('bad info', 'camera/bad_camera_info'),
    ('no transform', 'camera/no_transform'),
    ('wrong size', 'camera/bad_image'),
    ('garbage image', 'camera/bad_image'),
    ('bad image stamp', 'camera/bad_image'),
])
def test_each_camera_problem_drops_that_camera_only(case, reason):
    second = CameraInput('rear', '/rear/image_raw', '/rear/camera_info')
    img, inf = image(), info()
    infos = {'front': inf, 'rear': inf}
    if case == 'no image':
        img = None
    elif case == 'no info':
        del infos['front']
    elif case == 'bad info':
        infos['front'] = camera_info_msg(MODEL, T0, MSGS)
        infos['front'].k = np.zeros(9)
        infos['front'].p = np.zeros(12)
    elif case == 'no transform':
        infos['front'] = camera_info_msg(CameraModel('elsewhere', 6, 4, K=MODEL.K), T0, MSGS)
    elif case == 'wrong size':
        img = image(np.zeros((8, 6, 3), np.uint8))
    elif case == 'garbage image':
        img.encoding = 'yuv9000'
    elif case == 'bad image stamp':
        img.header.stamp.nanosec = 2_000_000_000
    frame, stats = assemble(SyncedSet(cloud(np.ones((2, 4)), XYZI), [img, image()], infos), cameras=(CAM,
                                                                                                     second))
    assert frame is not None and frame.missing_cameras == ['front']
    assert [v.name for v in frame.cameras] == ['rear']
    assert stats.counts() == {reason: 1}
    assert stats.events[0]['where'] == 'frame 3' and stats.events[0]['why'].startswith('front: ')


@pytest.mark.parametrize('case', ['negative stamp', 'nanosec overflow', 'no xyz', 'empty frame id',
                                  'truncated'])
def test_bad_clouds_skip_the_frame_with_the_reason(case):
    c = cloud(np.ones((2, 4)), XYZI)
    if case == 'negative stamp':
        c.header.stamp.sec = -5
    elif case == 'nanosec overflow':
        c.header.stamp.nanosec = 10**9
    elif case == 'no xyz':
        c = cloud(np.ones((2, 1)), [('intensity', 0, FLOAT32, 1)])
    elif case == 'empty frame id':
        c.header.frame_id = '/'
    else:
        c.data = c.data[:-3]
    frame, stats = assemble(SyncedSet(c, [image()], {'front': info()}))
    assert frame is None and stats.counts() == {'bad_cloud': 1}
    assert stats.events[0]['what'] == 'bad_cloud' and stats.events[0]['why']


def test_stamp_shift_presents_a_moved_stamp_and_keeps_the_message():
    img = image(stamp=T0)
    shifted = StampShift(img, 30_000_000, lambda ns: ns_to_stamp(ns, MSGS))
    assert stamp_ns(shifted.header.stamp) == T0 - 30_000_000 and shifted.original is img
    assert stamp_ns(img.header.stamp) == T0                   # the received message is not modified
    frame, _ = assemble(SyncedSet(cloud(np.ones((2, 4)), XYZI), [shifted], {'front': info()}))
    assert frame.cameras[0].stamp_ns == T0


def test_names_and_frame_ids():
    assert camera_name('/kitti/camera_color_left/image_raw') == 'kitti_camera_color_left'
    assert camera_name('/cam-left/image_raw/compressed') == 'cam_left'
    assert camera_name('/2cam/image') == '_2cam'
    cams = camera_inputs(['/cam-left/image_raw', '/cam_left/image_raw/compressed'])
    assert [c.name for c in cams] == ['cam_left', 'cam_left_2']                 # unique overlay topics
    assert [c.compressed for c in cams] == [False, True]
    assert cams[1].info_topic == '/cam_left/camera_info'
    assert normalize_frame_id('/map') == 'map'
    with pytest.raises(ValueError, match='invalid stamp'):
        stamp_ns(MSGS.new('builtin_interfaces/msg/Time', sec=-1, nanosec=0))


def truth_msg(values, encoding='mono16', stamp=T0):
    return rgb_to_image_msg(np.asarray(values), header('front_optical', stamp, MSGS), MSGS, encoding=encoding)


def test_truth_rasters_become_camera_truth_and_bad_ones_are_left_out():
    from perception_nodes.assembly import BAD_TRUTH, decode_truth, truth_topics
    assert truth_topics('/cam/image_raw/compressed') == {'class': '/cam/truth/class',
                                                         'instance': '/cam/truth/instance'}
    cls = np.arange(24, dtype=np.uint16).reshape(4, 6)
    cls[0, 0] = 65535                                                  # none -> -1
    pts = np.zeros((2, 3), np.float32)
    good = SyncedSet(cloud(pts, xyz_fields()), [image()], {'front': info()},
                     truth={'front': {'class': truth_msg(cls), 'instance': truth_msg(np.full((4, 6), 7))}})
    frame, stats = assemble(good)
    truth = frame.cameras[0].truth
    assert truth['class'].dtype == np.int64 and truth['class'][0, 0] == -1 and truth['class'][3, 5] == 23
    assert (truth['instance'] == 7).all() and not stats.counts().get(BAD_TRUTH)
    bad = SyncedSet(cloud(pts, xyz_fields()), [image()], {'front': info()},
                    truth={'front': {'class': truth_msg(np.zeros((3, 6), np.uint16)),         # wrong size
                                     'instance': truth_msg(np.zeros((4, 6), np.uint8), 'mono8')}})
    frame, stats = assemble(bad)
    assert frame.cameras and frame.cameras[0].truth == {}                 # the camera stays
    assert stats.counts()[BAD_TRUTH] == 2
    with pytest.raises(ValueError, match='mono16'):
        decode_truth(truth_msg(np.zeros((4, 6), np.uint8), 'mono8'), (4, 6))


def test_a_depth_image_cloud_becomes_points_in_the_depth_camera_frame():
    from perception_nodes.io.depth import depth_to_points
    depth_model = CameraModel('depth_optical', 6, 4, K=[[5, 0, 3], [0, 5, 2], [0, 0, 1]])
    z = np.full((4, 6), 2.0, np.float32)
    z[0, :3] = np.nan                                                  # no measurement
    z[3, 5] = 9.0                                                      # beyond depth_max_range
    depth = rgb_to_image_msg(z, header('depth_optical', T0, MSGS), MSGS, encoding='32FC1')
    synced = SyncedSet(depth, [], {}, cloud_info=camera_info_msg(depth_model, T0, MSGS))
    stats = Stats()
    frame = FrameAssembler([], lookup, stats, depth_max_range=5.0).assemble(synced, 1)
    expected, _ = depth_to_points(z, depth_model, max_depth=5.0)
    assert frame.frame_id == 'depth_optical' and frame.stamp_ns == T0 and frame.intensity is None
    assert frame.num_points == 24 - 3 - 1 and np.array_equal(frame.points, expected)
    assert np.allclose(frame.points[:, 2], 2.0)
    frame = FrameAssembler([], lookup, stats).assemble(SyncedSet(depth, [], {}), 2)   # no CameraInfo
    assert frame is None and stats.counts()['bad_cloud'] == 1
    assert 'CameraInfo' in stats.summary()['skipped'][0]['why']


def test_ground_truth_fields_as_int64_and_bad_ones_left_out_without_losing_the_frame():
    fields = xyz_fields([('label', FLOAT32), ('instance', UINT32)])
    frame, stats = assemble(SyncedSet(cloud(np.array([[1, 2, 3, 7, 2**32 - 1]]), fields), [], {}), cameras=())
    assert frame.labels.dtype == np.int64 and frame.labels.tolist() == [7]
    assert frame.instances.tolist() == [2**32 - 1]                   # uint32 ids do not wrap to negative
    frame, stats = assemble(SyncedSet(cloud(np.array([[1, 2, 3, 7.5, 1]]), fields), [], {}), cameras=())
    assert frame is not None and frame.labels is None and frame.instances.tolist() == [1]
    assert stats.counts() == {'bad_ground_truth': 1} and 'non-integer' in stats.events[0]['why']
