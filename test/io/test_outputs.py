"""Outputs -> ROS messages, read back through CDR and read_points."""
from __future__ import annotations

import numpy as np
import pytest

from perception_nodes.io.messages import default_message_types
from perception_nodes.io.outputs import (labeled_cloud, occupancy_grid_msg, overlay_image_msg, pack_rgb,
                                         similarity_cloud, unpack_rgb, voxel_markers)
from perception_nodes.io.pointcloud2 import read_points
from perception_nodes.io.stamps import header, stamp_to_ns
from perception_nodes.outputs import UNKNOWN_LABEL, OccupancyGrid2D, Outputs, SemanticVoxels

MSGS = default_message_types()
STAMP = 1_317_000_000_123_456_789
PALETTE = np.array([[255, 0, 0], [0, 200, 10], [1, 2, 3]], dtype=np.uint8)


def _roundtrip(msg):
    return MSGS.deserialize(MSGS.serialize(msg), msg.__msgtype__)


def _outputs(n=7):
    rng = np.random.default_rng(0)
    labels = np.array([0, 1, 2, UNKNOWN_LABEL, 1, 0, 2][:n], dtype=np.uint16)
    return Outputs(stamp_ns=STAMP, frame_id='velo', points=rng.normal(size=(n, 3)).astype(np.float32),
                   intensity=rng.random(n).astype(np.float32), labels=labels,
                   scores=rng.random(n).astype(np.float32), instances=np.arange(n, dtype=np.uint32) * 3,
                   class_names=['road', 'car', 'pole'])


def test_pack_rgb_bits_and_inverse():
    c = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [18, 52, 86]], dtype=np.uint8)
    packed = pack_rgb(c)
    assert packed.dtype == np.float32
    assert packed.view(np.uint32).tolist() == [0xFF0000, 0x00FF00, 0x0000FF, 0x123456]
    assert np.array_equal(unpack_rgb(packed), c)


def test_labeled_cloud_fields_values_frame_stamp():
    out = _outputs()
    msg = _roundtrip(labeled_cloud(out, header(out.frame_id, out.stamp_ns), PALETTE))
    assert msg.header.frame_id == 'velo' and stamp_to_ns(msg.header.stamp) == STAMP
    assert [(f.name, f.datatype) for f in msg.fields] == [
        ('x', 7), ('y', 7), ('z', 7), ('intensity', 7), ('label', 4), ('score', 7), ('instance', 6),
        ('rgb', 7)]
    assert msg.point_step == 30 and msg.width == 7 and msg.height == 1
    pts = read_points(msg)
    np.testing.assert_array_equal(np.stack([pts['x'], pts['y'], pts['z']], 1), out.points)
    np.testing.assert_array_equal(pts['intensity'], out.intensity)
    np.testing.assert_array_equal(pts['label'], out.labels)
    np.testing.assert_array_equal(pts['score'], out.scores)
    np.testing.assert_array_equal(pts['instance'], out.instances)
    colors = unpack_rgb(np.ascontiguousarray(pts['rgb']))
    expected = [PALETTE[0], PALETTE[1], PALETTE[2], [128, 128, 128], PALETTE[1], PALETTE[0], PALETTE[2]]
    np.testing.assert_array_equal(colors, np.array(expected, dtype=np.uint8))


def test_labeled_cloud_without_intensity_and_empty():
    out = _outputs()
    out.intensity = None
    pts = read_points(labeled_cloud(out, header('velo', 0), PALETTE))
    assert (pts['intensity'] == 0).all()
    empty = Outputs(stamp_ns=0, frame_id='velo', points=np.zeros((0, 3), np.float32), intensity=None,
                    labels=np.zeros(0, np.uint16), scores=np.zeros(0, np.float32),
                    instances=np.zeros(0, np.uint32), class_names=[])
    msg = _roundtrip(labeled_cloud(empty, header('velo', 0), PALETTE))
    assert msg.width == 0 and len(read_points(msg)) == 0


def test_labeled_cloud_rejects_misaligned_arrays():
    out = _outputs()
    out.scores = out.scores[:3]
    with pytest.raises(ValueError, match='Outputs.scores has 3 entries for 7 points'):
        labeled_cloud(out, header('velo', 0), PALETTE)


def test_occupancy_grid_msg():
    data = np.array([[-1, 0, 100], [0, 100, -1]], dtype=np.int8)
    grid = OccupancyGrid2D(data=data, resolution=0.25, origin_xy=(-10.0, 5.5), frame_id='velo')
    msg = _roundtrip(occupancy_grid_msg(grid, header('velo', STAMP)))
    assert msg.header.frame_id == 'velo' and stamp_to_ns(msg.header.stamp) == STAMP
    assert (msg.info.width, msg.info.height) == (3, 2)
    assert msg.info.resolution == pytest.approx(0.25)
    assert (msg.info.origin.position.x, msg.info.origin.position.y) == (-10.0, 5.5)
    assert msg.info.origin.orientation.w == 1.0
    assert msg.data.tolist() == [-1, 0, 100, 0, 100, -1]     # row-major, row 0 = lowest y


def test_voxel_markers_one_cube_list_per_class():
    centers = np.array([[0, 0, 0], [1, 0, 0], [2, 2, 1], [3, 3, 3]], dtype=np.float32)
    labels = np.array([1, 0, 1, UNKNOWN_LABEL])
    vox = SemanticVoxels(centers=centers, labels=labels, voxel_size=np.array([0.4, 0.4, 0.5]))
    msg = _roundtrip(voxel_markers(vox, header('velo', STAMP), ['road', 'car'], PALETTE))
    first, *rest = msg.markers
    assert first.action == 3                                   # DELETEALL
    assert [(m.ns, m.id, m.type, len(m.points)) for m in rest] == [
        ('semantic_voxels/road', 0, 6, 1), ('semantic_voxels/car', 1, 6, 2),
        ('semantic_voxels/unknown', 65535, 6, 1)]
    car = rest[1]
    assert [(p.x, p.y, p.z) for p in car.points] == [(0, 0, 0), (2, 2, 1)]
    assert (car.scale.x, car.scale.y, car.scale.z) == pytest.approx((0.4, 0.4, 0.5))
    assert (car.color.r, car.color.g, car.color.b) == pytest.approx((0, 200 / 255, 10 / 255))
    assert car.header.frame_id == 'velo' and stamp_to_ns(car.header.stamp) == STAMP
    assert car.pose.orientation.w == 1.0


def test_overlay_image_msg():
    img = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    msg = _roundtrip(overlay_image_msg(img, header('cam', 5)))
    assert (msg.height, msg.width, msg.encoding, msg.step) == (2, 3, 'rgb8', 9)
    assert np.array_equal(np.asarray(msg.data).reshape(2, 3, 3), img)
    with pytest.raises(ValueError, match='uint8'):
        overlay_image_msg(img.astype(np.float32), header('cam', 5))


def test_similarity_cloud():
    pts = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]], dtype=np.float32)
    sim = np.array([0.1, np.nan, 0.3], dtype=np.float32)
    msg = _roundtrip(similarity_cloud(pts, sim, header('velo', STAMP)))
    assert [f.name for f in msg.fields] == ['x', 'y', 'z', 'similarity', 'rgb']
    got = read_points(msg)
    np.testing.assert_array_equal(got['similarity'], sim)
    np.testing.assert_array_equal(got['z'], pts[:, 2])
    colors = unpack_rgb(np.ascontiguousarray(got['rgb']))
    assert colors[1].tolist() == [128, 128, 128]
    assert colors[0].tolist() != colors[2].tolist()
    with pytest.raises(ValueError, match='2 similarity values for 3 points'):
        similarity_cloud(pts, sim[:2], header('velo', 0))


# ------------------------------------------------------------------------- fast builders vs slow references
def _reference_labeled_cloud(outputs, hdr, palette):
    """The former field-by-field construction, through create_cloud's generic path."""
    from perception_nodes.io.outputs import LABELED_FIELDS
    from perception_nodes.io.pointcloud2 import create_cloud, dtype_from_fields
    from perception_nodes.overlay import label_colors
    cloud = np.zeros(len(outputs.points), dtype=dtype_from_fields(LABELED_FIELDS))
    pts = np.asarray(outputs.points, dtype=np.float32).reshape(-1, 3)
    cloud['x'], cloud['y'], cloud['z'] = pts[:, 0], pts[:, 1], pts[:, 2]
    cloud['intensity'] = 0.0 if outputs.intensity is None else outputs.intensity
    cloud['label'] = outputs.labels
    cloud['score'] = outputs.scores
    cloud['instance'] = outputs.instances
    cloud['rgb'] = pack_rgb(label_colors(outputs.labels, palette))
    msg = create_cloud(hdr, LABELED_FIELDS, cloud)
    msg.is_dense = not any(np.isnan(cloud[n]).any() for n in ('x', 'y', 'z', 'intensity', 'score', 'rgb'))
    return msg


def _reference_voxel_markers(voxels, hdr, class_names, palette, ns='semantic_voxels', alpha=0.8):
    """The former construction: msgs.new for every message, one boolean mask per class."""
    from perception_nodes.overlay import label_colors
    msgs = MSGS
    identity = msgs.new('geometry_msgs/msg/Pose',
                        orientation=msgs.new('geometry_msgs/msg/Quaternion', x=0.0, y=0.0, z=0.0, w=1.0))
    markers = [msgs.new('visualization_msgs/msg/Marker', header=hdr, ns=ns, id=0, action=3)]
    centers = np.asarray(voxels.centers, dtype=np.float64).reshape(-1, 3)
    labels = np.asarray(voxels.labels).astype(np.int64).reshape(-1)
    size = np.broadcast_to(np.asarray(voxels.voxel_size, dtype=np.float64).reshape(-1), (3,))
    scale = msgs.new('geometry_msgs/msg/Vector3', x=float(size[0]), y=float(size[1]), z=float(size[2]))
    for cls in np.unique(labels):
        known = 0 <= cls < len(class_names) and cls != UNKNOWN_LABEL
        rgb = label_colors(np.array([cls]), palette)[0] / 255.0
        color = msgs.new('std_msgs/msg/ColorRGBA', r=float(rgb[0]), g=float(rgb[1]), b=float(rgb[2]), a=alpha)
        points = [msgs.new('geometry_msgs/msg/Point', x=float(x), y=float(y), z=float(z))
                  for x, y, z in centers[labels == cls]]
        markers.append(msgs.new('visualization_msgs/msg/Marker', header=hdr,
                                ns=f'{ns}/{class_names[cls] if known else "unknown"}',
                                id=int(cls) if known else 65535, type=6, action=0, pose=identity, scale=scale,
                                color=color, points=points))
    return msgs.new('visualization_msgs/msg/MarkerArray', markers=markers)


@pytest.mark.parametrize('seed, n', [(0, 5000), (1, 1), (2, 0)])
def test_labeled_cloud_and_markers_are_byte_identical_to_the_slow_references(seed, n):
    rng = np.random.default_rng(seed)
    palette = rng.integers(0, 256, (19, 3)).astype(np.uint8)
    labels = rng.integers(0, 19, n).astype(np.uint16)
    labels[rng.random(n) < 0.3] = UNKNOWN_LABEL
    points = rng.normal(scale=20, size=(n, 3)).astype(np.float32)
    points[rng.random(n) < 0.01] = np.nan
    out = Outputs(stamp_ns=STAMP, frame_id='velo', points=points, intensity=rng.random(n).astype(np.float32),
                  labels=labels, scores=rng.random(n).astype(np.float32),
                  instances=rng.integers(0, 2**32, n, dtype=np.uint32),
                  class_names=[f'c{i}' for i in range(19)])
    hdr = header('velo', STAMP)
    fast, slow = labeled_cloud(out, hdr, palette), _reference_labeled_cloud(out, hdr, palette)
    assert MSGS.serialize(fast) == MSGS.serialize(slow)
    m = n // 3
    vox_labels = np.concatenate([rng.integers(0, 21, m - m // 10), np.full(m // 10, UNKNOWN_LABEL)])
    vox = SemanticVoxels(centers=rng.normal(size=(m, 3)).astype(np.float32),
                         labels=rng.permutation(vox_labels), voxel_size=np.array([0.4, 0.4, 0.4]))
    fast = voxel_markers(vox, hdr, out.class_names, palette)
    slow = _reference_voxel_markers(vox, hdr, out.class_names, palette)
    assert MSGS.serialize(fast) == MSGS.serialize(slow)


class _KeywordOnlyMessages:
    """A MessageTypes like rclpy's: message classes take keywords only; or one without message_class."""

    def __init__(self, with_class: bool) -> None:
        self.inner = MSGS
        if with_class:
            self.message_class = self._message_class

    def new(self, msgtype, **fields):
        return self.inner.new(msgtype, **fields)

    def _message_class(self, msgtype):
        base = self.inner.message_class(msgtype)

        def make(**fields):
            return base(**fields)
        return make


@pytest.mark.parametrize('with_class', [True, False])
def test_other_message_factories_give_the_same_markers(with_class):
    vox = SemanticVoxels(centers=np.array([[0, 0, 0], [1, 0, 0], [2, 2, 1]], np.float32),
                         labels=np.array([1, 0, 1]), voxel_size=np.array([0.4, 0.4, 0.5]))
    want = voxel_markers(vox, header('velo', STAMP), ['road', 'car'], PALETTE)
    got = voxel_markers(vox, header('velo', STAMP), ['road', 'car'], PALETTE,
                        msgs=_KeywordOnlyMessages(with_class))
    assert MSGS.serialize(got) == MSGS.serialize(want)


def test_labeled_cloud_refuses_labels_outside_uint16():
    out = _outputs()
    out.labels = out.labels.astype(np.int64)
    out.labels[2] = 70000
    with pytest.raises(ValueError, match="field 'label': value 70000 is outside uint16 range"):
        labeled_cloud(out, header('velo', 0), PALETTE)


@pytest.mark.parametrize('check_fields', [True, False])
def test_rclpy_markers_built_slot_by_slot_equal_the_constructor_path(ros_harness_package, check_fields):
    """Issue 14: rosidl Points made by __new__ + slots equal keyword-built ones (field checks on and off)."""
    from perception_nodes.io import outputs as outputs_module
    from perception_nodes.nodes.rclpy_messages import RclpyMessageTypes

    rng = np.random.default_rng(4)
    vox = SemanticVoxels(centers=rng.normal(size=(300, 3)).astype(np.float32),
                         labels=rng.integers(0, 3, 300), voxel_size=np.array([0.4, 0.4, 0.5]))
    with ros_harness_package.RosHarness(console=False, check_fields=check_fields):
        msgs = RclpyMessageTypes()
        point = msgs.message_class('geometry_msgs/msg/Point')
        assert outputs_module._rosidl_point_builder(point) is not None       # the fast path is taken
        got = voxel_markers(vox, header('velo', STAMP, msgs), ['road', 'car', 'tree'], PALETTE, msgs=msgs)
        slow = _KeywordOnlyMessages(True)
        slow.inner = msgs                                                   # keyword constructor per point
        want = voxel_markers(vox, header('velo', STAMP, msgs), ['road', 'car', 'tree'], PALETTE, msgs=slow)
        assert len(got.markers) == len(want.markers) == 4
        for a, b in zip(got.markers, want.markers):
            assert a == b
            assert all(p._check_fields == check_fields for p in a.points)


def test_point_builder_falls_back_for_classes_not_shaped_like_rosidl():
    from perception_nodes.io.outputs import _rosidl_point_builder

    class Slotted:
        __slots__ = ('_x', '_y', '_z', '_check_fields')

        def __init__(self, x=0.0, y=0.0, z=0.0):
            self._x, self._y, self._z, self._check_fields = x * 2, y, z, True     # a different meaning

        def __eq__(self, other):
            return (self._x, self._y, self._z) == (other._x, other._y, other._z)

    assert _rosidl_point_builder(Slotted) is None
    assert _rosidl_point_builder(MSGS.message_class('geometry_msgs/msg/Point')) is None
