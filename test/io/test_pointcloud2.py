"""PointCloud2 <-> numpy: known answers, a slow struct-based reference decoder, hypothesis properties."""
from __future__ import annotations

import struct
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perception_nodes.io import pointcloud2 as pc2
from perception_nodes.io.messages import default_message_types
from perception_nodes.io.stamps import header

STRUCT = {pc2.INT8: 'b', pc2.UINT8: 'B', pc2.INT16: 'h', pc2.UINT16: 'H', pc2.INT32: 'i', pc2.UINT32: 'I',
          pc2.FLOAT32: 'f', pc2.FLOAT64: 'd'}
SIZE = {k: struct.calcsize(v) for k, v in STRUCT.items()}


def reference_decode(msg) -> list[dict[str, object]]:
    """Slow, obviously correct decoder: struct.unpack_from for every point, field and element."""
    order = '>' if msg.is_bigendian else '<'
    data = bytes(msg.data)
    points = []
    for row in range(msg.height):
        for col in range(msg.width):
            base = row * msg.row_step + col * msg.point_step
            point = {}
            for f in msg.fields:
                for k in range(f.count):
                    name = f'{f.name}_{k}' if f.count > 1 else f.name
                    point[name] = struct.unpack_from(order + STRUCT[f.datatype], data,
                                                     base + f.offset + k * SIZE[f.datatype])[0]
            points.append(point)
    return points


def make_msg(fields, height, width, point_step, row_step, data, is_bigendian=False):
    msgs = default_message_types()
    return msgs.new('sensor_msgs/msg/PointCloud2', header=header('lidar', 0), height=height, width=width,
                    fields=[pc2.point_field(*f) for f in fields], is_bigendian=is_bigendian,
                    point_step=point_step, row_step=row_step, data=np.frombuffer(data, np.uint8))


def same_bits(a: object, b: object) -> bool:
    if isinstance(a, float):
        return struct.pack('<d', a) == struct.pack('<d', float(b)) or (np.isnan(a) and np.isnan(b))
    return a == b


# ---------------------------------------------------------------------------------------------- known answers
def test_known_answer_big_endian_padded_rows_and_count():
    # point: [u8 flag][pad][i16 ring][f32 x][f64 t][u16 rgb x3][2 pad] = 24 bytes; rows padded by 5 bytes
    fields = [('flag', 0, pc2.UINT8, 1), ('ring', 2, pc2.INT16, 1), ('x', 4, pc2.FLOAT32, 1),
              ('t', 8, pc2.FLOAT64, 1), ('rgb', 16, pc2.UINT16, 3)]
    rows = []
    values = [[(7, -3, 1.5, 2.25, (1, 2, 65535)), (255, 300, -0.5, -1e10, (4, 5, 6))],
              [(0, -32768, 3.0, 0.125, (7, 8, 9)), (1, 32767, float('inf'), 5.0, (0, 0, 1))]]
    for row in values:
        raw = b''.join(struct.pack('>Bxhfd3H2x', f, r, x, t, *c) for f, r, x, t, c in row)
        rows.append(raw + b'\xAA' * 5)
    msg = make_msg(fields, 2, 2, 24, 53, b''.join(rows), is_bigendian=True)
    pts = pc2.read_points(msg)
    assert pts.shape == (4,)
    assert pts.dtype.names == ('flag', 'ring', 'x', 't', 'rgb_0', 'rgb_1', 'rgb_2')
    np.testing.assert_array_equal(pts['ring'], [-3, 300, -32768, 32767])
    np.testing.assert_array_equal(pts['x'], [1.5, -0.5, 3.0, np.inf])
    np.testing.assert_array_equal(pts['t'], [2.25, -1e10, 0.125, 5.0])
    np.testing.assert_array_equal(pts['rgb_2'], [65535, 6, 9, 1])
    organized = pc2.read_points(msg, reshape_organized_cloud=True)
    assert organized.shape == (2, 2) and organized['flag'][1, 1] == 1
    rgb = pc2.read_points_numpy(msg, ['rgb'])
    assert rgb.dtype == np.dtype('=u2') and rgb.tolist() == [[1, 2, 65535], [4, 5, 6], [7, 8, 9], [0, 0, 1]]


def test_packed_cloud_is_a_zero_copy_view_in_both_byte_orders():
    rng = np.random.default_rng(0)
    xyzi = rng.normal(size=(1000, 4)).astype(np.float32)
    fields = pc2.xyz_fields([('intensity', pc2.FLOAT32)])
    for big in (False, True):
        msg = pc2.create_cloud(header('velodyne', 5), fields, xyzi, is_bigendian=big)
        pts = pc2.read_points(msg)
        assert np.shares_memory(pts, msg.data)
        np.testing.assert_array_equal(pc2.read_points_numpy(msg), xyzi)
        if big:
            assert pts.dtype['x'] == np.dtype('>f4')
    little = pc2.create_cloud(header('velodyne', 5), fields, xyzi)
    view = pc2.read_points_numpy(little, ['x', 'y', 'z'])
    assert np.shares_memory(view, little.data)
    np.testing.assert_array_equal(view, xyzi[:, :3])


def test_cdr_round_trip_through_rosbags_typestore():
    msgs = default_message_types()
    pts = np.zeros(3, dtype=[('x', '<f4'), ('y', '<f4'), ('z', '<f4'), ('label', '<u2')])
    pts['x'], pts['label'] = [1, 2, 3], [10, 20, 65535]
    msg = pc2.create_cloud(header('v', 123), pc2.fields_from_dtype(pts.dtype), pts, is_dense=None)
    back = msgs.deserialize(msgs.serialize(msg), 'sensor_msgs/msg/PointCloud2')
    out = pc2.read_points(back)
    assert out.dtype.names == ('x', 'y', 'z', 'label')
    np.testing.assert_array_equal(out['label'], [10, 20, 65535])
    assert back.point_step == 14 and back.row_step == 42 and back.is_dense       # scanned: no NaN


def test_is_dense_policy():
    """False by default as the reference writes it; None scans for NaN; an explicit value is kept."""
    finite = np.zeros((4, 3), np.float32)
    invalid = finite.copy()
    invalid[2, 1] = np.nan
    fields = pc2.xyz_fields()
    for pts in (finite, invalid):
        assert pc2.create_cloud(header('v', 0), fields, pts).is_dense is False
        assert pc2.create_cloud_xyz32(header('v', 0), pts).is_dense is False
        assert pc2.create_cloud(header('v', 0), fields, pts, is_dense=True).is_dense is True
    assert pc2.create_cloud(header('v', 0), fields, finite, is_dense=None).is_dense is True
    assert pc2.create_cloud(header('v', 0), fields, invalid, is_dense=None).is_dense is False
    assert pc2.create_cloud(header('v', 0), fields, np.zeros((0, 3), np.float32), is_dense=None).is_dense


def test_skip_nans_field_selection_and_uvs():
    xyz = np.array([[0, 0, 0], [np.nan, 1, 1], [2, 2, np.inf], [3, np.nan, 3]], dtype=np.float32)
    msg = pc2.create_cloud_xyz32(header('v', 0), xyz)
    assert not msg.is_dense
    kept = pc2.read_points_numpy(msg, skip_nans=True)
    np.testing.assert_array_equal(kept, xyz[[0, 2]])                # inf is kept, NaN dropped
    np.testing.assert_array_equal(pc2.read_points_numpy(msg, ['z'], skip_nans=True)[:, 0], [0, 1, np.inf, 3])
    assert pc2.read_points(msg, uvs=[3, 0])['x'][1] == 0
    with pytest.raises(ValueError, match='no field'):
        pc2.read_points(msg, ['intensity'])
    with pytest.raises(ValueError, match='uvs'):
        pc2.read_points(msg, uvs=[4])


def test_empty_clouds():
    msg = pc2.create_cloud_xyz32(header('v', 0), np.zeros((0, 3)))
    assert msg.width == 0 and pc2.read_points(msg).shape == (0,)
    blank = default_message_types().new('sensor_msgs/msg/PointCloud2', fields=[pc2.point_field('x', 0, 7)])
    assert pc2.read_points_numpy(blank).shape == (0, 1)


def test_create_cloud_inputs():
    fields = [('a', 0, pc2.UINT8, 1), ('b', 4, pc2.FLOAT64, 1)]
    from_tuples = pc2.create_cloud(header('v', 0), fields, [(1, 0.5), (2, 1.5)])
    plain = pc2.create_cloud(header('v', 0), fields, np.array([[1, 0.5], [2, 1.5]]))
    assert bytes(from_tuples.data) == bytes(plain.data)
    assert from_tuples.point_step == 12 and bytes(from_tuples.data)[1:4] == b'\0\0\0'   # zeroed padding
    grid = pc2.create_cloud(header('v', 0), fields, np.ones((2, 3, 2)))
    assert (grid.height, grid.width, grid.row_step) == (2, 3, 36)
    with pytest.raises(ValueError, match='shape'):
        pc2.create_cloud(header('v', 0), fields, np.ones((4, 3)))
    with pytest.raises(ValueError, match='lack'):
        pc2.create_cloud(header('v', 0), fields, np.zeros(2, dtype=[('a', 'u1')]))
    with pytest.raises(ValueError, match='different datatypes'):
        pc2.read_points_numpy(plain)
    np.testing.assert_array_equal(pc2.read_points_numpy(plain, dtype=np.float64), [[1, 0.5], [2, 1.5]])


def test_fields_from_dtype_inverts_dtype_from_fields():
    fields = [('xyz', 0, pc2.FLOAT32, 3), ('', 12, pc2.INT8, 1), ('t', 16, pc2.FLOAT64, 1)]
    dtype = pc2.dtype_from_fields(fields, 32)
    assert dtype.names == ('xyz_0', 'xyz_1', 'xyz_2', 'unnamed_field_1', 't') and dtype.itemsize == 32
    back = [(f.name, f.offset, f.datatype, f.count) for f in pc2.fields_from_dtype(dtype)]
    assert back == [('xyz', 0, 7, 3), ('unnamed_field_1', 12, 1, 1), ('t', 16, 8, 1)]
    sub = [(f.name, f.count) for f in pc2.fields_from_dtype(np.dtype([('rgb', 'u1', (3,)), ('x', 'f4')]))]
    assert sub == [('rgb', 3), ('x', 1)]
    with pytest.raises(ValueError, match='cannot describe'):
        pc2.fields_from_dtype(np.dtype([('x', 'i8')]))


@pytest.mark.parametrize('kwargs, match', [
    (dict(data=b'\0' * 23), 'truncated'),
    (dict(point_step=8), 'smaller than the fields'),
    (dict(fields=[('x', 0, 9, 1)]), 'unknown PointField datatype'),
    (dict(fields=[('x', 0, 7, 1), ('y', 2, 7, 1)]), 'overlap'),
    (dict(fields=[('x', 0, 7, 1), ('x', 4, 7, 1)]), 'duplicate'),
    (dict(fields=[('x', 0, 7, 0)]), 'count'),
    (dict(row_step=10), 'row_step'),
    (dict(point_step=0), 'point_step'),
])
def test_malformed_clouds_raise_value_error(kwargs, match):
    base = dict(fields=[('x', 0, 7, 1), ('y', 4, 7, 1), ('z', 8, 7, 1)], height=2, width=1, point_step=12,
                row_step=12, data=b'\0' * 24)
    base.update(kwargs)
    msg = SimpleNamespace(is_bigendian=False, **base)
    msg.fields = [SimpleNamespace(name=n, offset=o, datatype=d, count=c) for n, o, d, c in msg.fields]
    with pytest.raises(ValueError, match=match):
        pc2.read_points(msg)


# ---------------------------------------------------------------------------------------------- properties
@st.composite
def layouts(draw):
    nfields = draw(st.integers(1, 5))
    fields, offset = [], 0
    for i in range(nfields):
        datatype = draw(st.integers(1, 8))
        count = draw(st.integers(1, 3))
        offset += draw(st.integers(0, 3))                   # unaligned gaps are allowed
        fields.append((f'f{i}', offset, datatype, count))
        offset += SIZE[datatype] * count
    order = draw(st.permutations(fields))                   # field order need not follow offsets
    point_step = offset + draw(st.integers(0, 5))
    height, width = draw(st.integers(1, 3)), draw(st.integers(0, 4))
    row_step = width * point_step + draw(st.integers(0, 7))
    data = draw(st.binary(min_size=row_step * height, max_size=row_step * height))
    return list(order), height, width, point_step, row_step, data, draw(st.booleans())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layouts())
def test_random_layouts_decode_like_the_reference_and_round_trip(layout):
    fields, height, width, point_step, row_step, data, big = layout
    msg = make_msg(fields, height, width, point_step, row_step, data, big)
    points = pc2.read_points(msg)
    expected = reference_decode(msg)
    assert len(points) == len(expected)
    for got, want in zip(points, expected):
        for name, value in want.items():
            assert same_bits(value, got[name].item()), name
    if row_step == width * point_step:
        assert np.shares_memory(points, msg.data) or points.size == 0
    # create_cloud(read_points(msg)) re-encodes every value bit for bit, in either byte order
    for out_big in (False, True):
        grid = points.reshape(height, width) if height > 1 else points
        again = pc2.create_cloud(msg.header, msg.fields, grid, point_step=point_step, is_bigendian=out_big)
        assert (again.height, again.width, again.point_step) == (height, width, point_step)
        back = pc2.read_points(again)
        for name in points.dtype.names:
            a = points[name].astype(points.dtype[name].newbyteorder('='))
            b = back[name].astype(back.dtype[name].newbyteorder('='))
            assert a.tobytes() == b.tobytes(), name


garbage_ints = st.one_of(st.integers(-5, 40), st.integers(-2**40, 2**40), st.just(2**32 - 1))


@st.composite
def garbage_messages(draw):
    field = st.tuples(st.one_of(st.text(max_size=3), st.integers()), garbage_ints,
                      st.one_of(st.integers(-1, 10), st.just(255)), garbage_ints)
    fields = [SimpleNamespace(name=n, offset=o, datatype=d, count=c)
              for n, o, d, c in draw(st.lists(field, max_size=4))]
    return SimpleNamespace(fields=fields, height=draw(garbage_ints), width=draw(garbage_ints),
                           point_step=draw(garbage_ints), row_step=draw(garbage_ints),
                           is_bigendian=draw(st.booleans()),
                           data=draw(st.one_of(st.binary(max_size=64), st.lists(st.integers(-300, 300),
                                                                                max_size=8))))


@settings(max_examples=300, deadline=None)
@given(garbage_messages(), st.booleans())
def test_garbage_raises_value_error_only(msg, skip_nans):
    try:
        points = pc2.read_points(msg, skip_nans=skip_nans)
    except ValueError:
        return
    assert len(points) <= max(len(msg.data), 1) * 64  # decoded: consistent with the buffer


def test_rclpy_style_data_buffers():
    """rclpy messages carry array.array('B') (or bytes / lists); all decode alike, buffers without copies."""
    import array

    xyz = np.arange(12, dtype=np.float32).reshape(4, 3)
    msg = pc2.create_cloud_xyz32(header('v', 0), xyz)
    raw = bytes(msg.data)
    for data in (raw, bytearray(raw), array.array('B', raw), list(raw), memoryview(raw)):
        layout = ('fields', 'height', 'width', 'point_step', 'row_step', 'is_bigendian')
        alike = SimpleNamespace(**{k: getattr(msg, k) for k in layout}, data=data)
        np.testing.assert_array_equal(pc2.read_points_numpy(alike), xyz)
    buf = array.array('B', raw)
    view = pc2.read_points(SimpleNamespace(**{**vars(alike), 'data': buf}))
    buf[0:4] = array.array('B', struct.pack('<f', 42.0))
    assert view['x'][0] == 42.0                                   # a view of the array.array's memory


# ---------------------------------------------------------------------------------------------- reference
@pytest.mark.parametrize('seed', range(4))
def test_create_cloud_bytes_match_sensor_msgs_py(ros2_point_cloud2, seed):
    """The ROS 2 Jazzy reference as an oracle: same bytes, same layout, for plain and structured input."""
    ref = ros2_point_cloud2
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 300))
    xyzi = rng.normal(size=(n, 4)).astype(np.float32)
    xyzi[rng.random(n) < 0.1, 1] = np.nan
    fields = pc2.fields_from_dtype(np.dtype([('x', '<f4'), ('y', '<f4'), ('z', '<f4'), ('intensity', '<f4')]))
    want = ref.create_cloud(header('v', 0), fields, xyzi)
    got = pc2.create_cloud(header('v', 0), fields, xyzi)
    assert bytes(got.data) == bytes(want.data) == xyzi.tobytes()
    layout = ('width', 'height', 'point_step', 'row_step')
    assert [getattr(got, k) for k in layout] == [getattr(want, k) for k in layout]
    assert got.is_dense is bool(want.is_dense) is False                 # the reference never claims it
    scanned = pc2.create_cloud(header('v', 0), fields, xyzi, is_dense=None)
    assert scanned.is_dense == (not np.isnan(xyzi).any()) and bytes(scanned.data) == bytes(want.data)
    # a mixed, padded layout given as a structured array of exactly the fields' dtype
    mixed = [('x', 0, pc2.FLOAT32, 1), ('ring', 4, pc2.UINT16, 1), ('t', 8, pc2.FLOAT64, 1),
             ('rgb', 16, pc2.UINT8, 3)]
    msg_fields = [pc2.point_field(*f) for f in mixed]
    dtype = ref.dtype_from_fields(msg_fields, point_step=24)
    assert dtype == pc2.dtype_from_fields(mixed, 24)
    pts = np.zeros(n, dtype=dtype)
    pts['x'], pts['t'] = xyzi[:, 0], rng.normal(size=n)
    pts['ring'] = rng.integers(0, 65536, n)
    for k in range(3):
        pts[f'rgb_{k}'] = rng.integers(0, 256, n)
    want = ref.create_cloud(header('v', 0), msg_fields, pts, point_step=24)
    got = pc2.create_cloud(header('v', 0), msg_fields, pts, point_step=24)
    assert bytes(got.data) == bytes(want.data)
    # and our reader decodes the reference's message (array.array data) like the reference does
    back, ref_back = pc2.read_points(want), ref.read_points(want)
    assert back.dtype == ref_back.dtype and back.tobytes() == ref_back.tobytes()
    np.testing.assert_array_equal(pc2.read_points_numpy(want, ['x']), ref.read_points_numpy(want, ['x']))


def test_padding_of_a_copied_structured_array_is_zeroed():
    dtype = pc2.dtype_from_fields([('a', 0, pc2.UINT8, 1), ('b', 4, pc2.FLOAT32, 1)], 12)
    pts = np.frombuffer(b'\xAB' * 36, dtype=dtype).copy()           # garbage in every padding byte
    msg = pc2.create_cloud(header('v', 0), [('a', 0, pc2.UINT8, 1), ('b', 4, pc2.FLOAT32, 1)], pts,
                           point_step=12)
    raw = bytes(msg.data)
    assert all(raw[i * 12 + j] == 0 for i in range(3) for j in (1, 2, 3, 8, 9, 10, 11))
    assert all(raw[i * 12] == 0xAB for i in range(3))


def test_copy_false_hands_the_array_over():
    dtype = pc2.dtype_from_fields(pc2.xyz_fields())
    pts = np.zeros(5, dtype=dtype)
    shared = pc2.create_cloud(header('v', 0), pc2.xyz_fields(), pts, copy=False, is_dense=True)
    copied = pc2.create_cloud(header('v', 0), pc2.xyz_fields(), pts)
    assert np.shares_memory(shared.data, pts) and not np.shares_memory(copied.data, pts)
    assert shared.is_dense


# ---------------------------------------------------------------------------------------------- issue 15 #18
@pytest.mark.parametrize('value, datatype, match', [
    (300.0, pc2.UINT8, r"field 'v': value 300.0 is outside uint8 range \[0, 255\]"),
    (-1, pc2.UINT32, r"value -1(\.0)? is outside uint32 range"),
    (float('nan'), pc2.UINT8, "NaN cannot be stored in a uint8 field"),
    (float('inf'), pc2.INT16, r"value inf is outside int16 range"),
    (2.0**63, pc2.INT32, "outside int32 range"),
    (70000, pc2.UINT16, r"value 70000(\.0)? is outside uint16 range"),
    (1e39, pc2.FLOAT32, "beyond float32 range"),
])
def test_out_of_range_values_raise_instead_of_wrapping(value, datatype, match):
    """Issue 15 item 18: 300.0 -> 44 for uint8 and NaN -> 0 used to happen silently."""
    fields = [('v', 0, datatype, 1), ('w', 8, pc2.FLOAT64, 1)]
    with pytest.raises(ValueError, match=match):
        pc2.create_cloud(header('v', 0), fields, np.array([[1.0, 0.0], [value, 0.0]]))
    with pytest.raises(ValueError, match=match.replace("field 'v': ", '')):
        pc2.create_cloud(header('v', 0), fields, [(1, 0.0), (value, 0.0)])
    structured = np.zeros(2, dtype=[('v', 'f8'), ('w', 'f8')])
    structured['v'][1] = value
    with pytest.raises(ValueError, match=match):
        pc2.create_cloud(header('v', 0), fields, structured)


def test_clip_saturates_and_in_range_values_are_kept():
    fields = [('u8', 0, pc2.UINT8, 1), ('i16', 1, pc2.INT16, 1), ('f', 3, pc2.FLOAT32, 1),
              ('u32', 7, pc2.UINT32, 1)]
    values = np.array([[300.0, -1e9, 1e39, -5.0], [255.7, np.inf, np.nan, 4e9], [-0.9, -np.inf, -1e39, 7.0]])
    pts = pc2.read_points(pc2.create_cloud(header('v', 0), fields, values, clip=True))
    assert pts['u8'].tolist() == [255, 255, 0]                         # 255.7 truncates to 255, -0.9 to 0
    assert pts['i16'].tolist() == [-32768, 32767, -32768]
    f32 = np.finfo(np.float32).max
    assert pts['f'][0] == f32 and np.isnan(pts['f'][1]) and pts['f'][2] == -f32
    assert pts['u32'].tolist() == [0, 4_000_000_000, 7]
    with pytest.raises(ValueError, match='NaN'):
        pc2.create_cloud(header('v', 0), fields[:1], np.array([[np.nan]]), clip=True)
    # exact integer inputs of a wider type are range-checked, not wrapped; Python ints beyond int64 too
    ints = pc2.create_cloud(header('v', 0), [('i', 0, pc2.INT32, 1)], np.array([[2**31 - 1], [-2**31]]))
    assert pc2.read_points(ints)['i'].tolist() == [2**31 - 1, -2**31]
    with pytest.raises(ValueError, match='value 1180591620717411303424 is outside int32'):
        pc2.create_cloud(header('v', 0), [('i', 0, pc2.INT32, 1)], [(2**70,)])
    big = pc2.create_cloud(header('v', 0), [('i', 0, pc2.INT32, 1)], [(2**70,), (-2**70,)], clip=True)
    assert pc2.read_points(big)['i'].tolist() == [2**31 - 1, -2**31]
    # float inputs into float fields keep NaN and inf (invalid points), and -> is_dense False
    keep = pc2.create_cloud_xyz32(header('v', 0), [[np.nan, np.inf, -np.inf]])
    assert not keep.is_dense and np.isinf(pc2.read_points(keep)['y']).all()
    with pytest.raises(ValueError, match='cannot be stored'):
        pc2.create_cloud(header('v', 0), [('i', 0, pc2.INT32, 1)], np.array([['a']]))


def test_uvs_that_are_not_indices_raise_value_error():
    msg = pc2.create_cloud_xyz32(header('v', 0), np.zeros((4, 3)))
    for uvs, match in (([2**70], 'integer point indices'), ([1.5], 'integer point indices'),
                       ([True], 'integer point indices'), ([-5], r'out of range for 4 points \(got -5'),
                       (['a'], 'integer point indices'), (5, 'integer point indices')):
        with pytest.raises(ValueError, match=match):
            pc2.read_points(msg, uvs=uvs)
    assert pc2.read_points(msg, uvs=np.array([3, -4], dtype=np.int8))['x'].shape == (2,)
