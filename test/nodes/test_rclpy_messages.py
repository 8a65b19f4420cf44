"""The rclpy message factory's conversions against rosidl-like classes with strict setters (no ROS)."""
from __future__ import annotations

import array
import sys
import types

import numpy as np
import pytest

from perception_nodes.io.pointcloud2 import FLOAT32, read_points_numpy, xyz_fields
from perception_nodes.nodes.rclpy_messages import RclpyMessageTypes, convert_value


def _strict_class(name, fields, checks):
    """A class shaped like rosidl_generator_py output: typed properties that assert like its setters."""
    def make_property(field):
        def get(self):
            return getattr(self, '_' + field)

        def set_(self, value):
            assert checks[field](value), f'The {field!r} field got {type(value).__name__}'
            setattr(self, '_' + field, value)
        return property(get, set_)

    ns = {f: make_property(f) for f in fields}
    ns['_fields_and_field_types'] = dict(fields)
    ns['get_fields_and_field_types'] = classmethod(lambda cls: dict(cls._fields_and_field_types))

    def init(self, **kwargs):                 # rosidl: keyword arguments through the setters
        assert set(kwargs) <= set(fields), 'Invalid arguments passed to constructor'
        for f in fields:
            object.__setattr__(self, '_' + f, None)
        for f, value in kwargs.items():
            setattr(self, f, value)
    ns['__init__'] = init
    return type(name, (), ns)


@pytest.fixture
def fake_msgs(monkeypatch):
    fields = {'data': 'sequence<uint8>', 'k': 'double[9]', 'level': 'octet', 'x': 'double', 'n': 'uint32',
              'flag': 'boolean', 'name': 'string', 'names': 'sequence<string>', 'vals': 'sequence<float>',
              'd': 'sequence<double>'}
    checks = {
        'data': lambda v: isinstance(v, array.array) and v.typecode == 'B',
        'k': lambda v: isinstance(v, np.ndarray) and v.dtype == np.float64 and v.size == 9,
        'level': lambda v: isinstance(v, bytes) and len(v) == 1,
        'x': lambda v: isinstance(v, float), 'n': lambda v: type(v) is int, 'flag': lambda v: type(v) is bool,
        'name': lambda v: isinstance(v, str), 'names': lambda v: isinstance(v, list),
        'vals': lambda v: isinstance(v, array.array) and v.typecode == 'f',
        'd': lambda v: isinstance(v, array.array) and v.typecode == 'd',
    }
    module = types.ModuleType('fake_msgs.msg')
    module.Thing = _strict_class('Thing', fields, checks)
    monkeypatch.setitem(sys.modules, 'fake_msgs', types.ModuleType('fake_msgs'))
    monkeypatch.setitem(sys.modules, 'fake_msgs.msg', module)
    return module


def test_values_take_the_rosidl_representation(fake_msgs):
    factory = RclpyMessageTypes()
    pixels = np.arange(12, dtype=np.uint8)
    msg = factory.new('fake_msgs/msg/Thing', data=pixels, k=np.eye(3).reshape(-1), level=2, x=1,
                      n=np.uint32(7), flag=np.bool_(True), name='cam', names=('a', 'b'),
                      vals=np.array([0.5, 1.5]), d=[0.1, -0.2, 0.0, 0.0, 0.0])
    assert bytes(msg.data) == pixels.tobytes()
    assert msg.level == b'\x02' and msg.x == 1.0 and msg.n == 7 and msg.flag is True
    assert list(msg.vals) == [0.5, 1.5] and list(msg.d) == [0.1, -0.2, 0.0, 0.0, 0.0]
    assert np.array_equal(msg.k.reshape(3, 3), np.eye(3)) and msg.names == ['a', 'b']
    with pytest.raises(ValueError, match='no field'):
        factory.new('fake_msgs/msg/Thing', colour=1)
    with pytest.raises(ValueError, match='exactly 9'):
        factory.new('fake_msgs/msg/Thing', k=[1.0, 2.0])
    with pytest.raises(ValueError, match='cannot import'):
        factory.new('no_such_pkg/msg/Nothing')


def test_float_array_bytes_are_exact():
    out = convert_value('sequence<float>', np.array([1.25, -3.5, np.inf], np.float64))
    assert out.typecode == 'f'
    assert np.array_equal(np.frombuffer(out.tobytes(), np.float32), [1.25, -3.5, np.inf])
    raw = convert_value('sequence<uint8>', b'\x01\x02\xff')
    assert list(raw) == [1, 2, 255]


def test_clouds_with_array_array_data_read_back():
    """rclpy delivers uint8[] as array.array('B'): the io readers must take it as is."""
    from perception_nodes.io.messages import default_message_types
    from perception_nodes.io.pointcloud2 import create_cloud
    from perception_nodes.io.stamps import header

    msgs = default_message_types()
    pts = np.array([[1, 2, 3, 0.5], [4, 5, 6, 0.25]], np.float32)
    cloud = create_cloud(header('velodyne', 0, msgs), xyz_fields([('intensity', FLOAT32)]), pts, msgs)
    names = ('header', 'height', 'width', 'fields', 'is_bigendian', 'point_step', 'row_step', 'is_dense')
    as_rclpy = types.SimpleNamespace(**{f: getattr(cloud, f) for f in names})
    as_rclpy.data = convert_value('sequence<uint8>', cloud.data)
    assert np.array_equal(read_points_numpy(as_rclpy), pts)
