"""sensor_msgs/PointCloud2 <-> numpy structured arrays, without ROS.

Names and behaviour follow ``sensor_msgs_py.point_cloud2`` (``read_points``, ``read_points_numpy``,
``create_cloud``, ``create_cloud_xyz32``, ``dtype_from_fields``) so ROS users feel at home:

- a field with ``count > 1`` becomes the sub-fields ``name_0 .. name_{count-1}``; an unnamed field
  becomes ``unnamed_field_<i>``;
- ``read_points`` returns a structured array of ``width * height`` points (row-major), or of shape
  ``(height, width)`` with ``reshape_organized_cloud=True``.

Differences, all on the side of strictness or speed:

- the message layout is validated first (``ValueError`` naming the problem: unknown datatype, a field
  past ``point_step``, overlapping fields, ``row_step < width * point_step``, ``len(data) !=
  row_step * height``, ...), so random garbage never reaches numpy;
- the returned array is a zero-copy view of ``msg.data`` when rows are not padded
  (``row_step == width * point_step``), for both byte orders: the dtype carries the message's byte
  order ('<' or '>') instead of swapping bytes; ``read_points_numpy`` returns native byte order;
- ``skip_nans`` drops points with a NaN in any selected floating field even when ``is_dense`` is set
  (drivers often set it wrongly); +-inf values are kept (use ``np.isfinite`` downstream);
- ``create_cloud`` accepts a structured array (fields matched by name), an ``(N, k)`` / ``(H, W, k)``
  plain array with one column per (sub-)field, or an iterable of tuples; ``height > 1`` for 2-D input.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from numpy.lib.recfunctions import structured_to_unstructured

from perception_nodes.io.fields import byte_buffer, non_negative_int
from perception_nodes.io.messages import MessageTypes, default_message_types

__all__ = ['INT8', 'UINT8', 'INT16', 'UINT16', 'INT32', 'UINT32', 'FLOAT32', 'FLOAT64', 'DATATYPES',
           'point_field', 'dtype_from_fields', 'fields_from_dtype', 'cloud_layout', 'read_points',
           'read_points_numpy', 'create_cloud', 'create_cloud_xyz32', 'xyz_fields']

INT8, UINT8, INT16, UINT16, INT32, UINT32, FLOAT32, FLOAT64 = range(1, 9)
# PointField datatype -> numpy type code (byte order added per message).
DATATYPES: dict[int, str] = {INT8: 'i1', UINT8: 'u1', INT16: 'i2', UINT16: 'u2',
                             INT32: 'i4', UINT32: 'u4', FLOAT32: 'f4', FLOAT64: 'f8'}
_CODES = {np.dtype(code).newbyteorder('<').str[1:]: datatype for datatype, code in DATATYPES.items()}
MAX_SUBFIELDS = 1 << 16   # guards against absurd ``count`` values in garbage messages
_POINTCLOUD2 = 'sensor_msgs/msg/PointCloud2'


def point_field(name: str, offset: int, datatype: int, count: int = 1,
                msgs: MessageTypes | None = None) -> Any:
    """Build a ``sensor_msgs/msg/PointField``."""
    return (msgs or default_message_types()).new('sensor_msgs/msg/PointField', name=name, offset=offset,
                                                 datatype=datatype, count=count)


def _field_tuple(field: Any, index: int) -> tuple[str, int, int, int]:
    if isinstance(field, tuple):
        if len(field) not in (3, 4):
            raise ValueError(f'field {index}: expected (name, offset, datatype[, count]), got {field!r}')
        name, offset, datatype, count = field if len(field) == 4 else (*field, 1)
    else:
        try:
            name, offset, datatype, count = field.name, field.offset, field.datatype, field.count
        except AttributeError:
            raise ValueError(f'field {index} is not a PointField: {field!r}') from None
    if not isinstance(name, str):
        raise ValueError(f'field {index}: name {name!r} is not a string')
    for what, value in (('offset', offset), ('datatype', datatype), ('count', count)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f'field {index} ({name!r}): {what} {value!r} is not an integer')
    return name, int(offset), int(datatype), int(count)


def _layout(fields: Iterable[Any], point_step: int | None) -> tuple[list[tuple[str, int, int, int]], int]:
    """Validate the fields; return (name, offset, datatype, count) tuples and the point size."""
    out: list[tuple[str, int, int, int]] = []
    total = 0
    for i, field in enumerate(fields):
        name, offset, datatype, count = _field_tuple(field, i)
        if datatype not in DATATYPES:
            raise ValueError(f'field {name!r}: unknown PointField datatype {datatype} (expected 1..8)')
        if count < 1:
            raise ValueError(f'field {name!r}: count {count} < 1')
        if offset < 0:
            raise ValueError(f'field {name!r}: negative offset {offset}')
        total += count
        if total > MAX_SUBFIELDS:
            raise ValueError(f'more than {MAX_SUBFIELDS} sub-fields in a point')
        out.append((name or f'unnamed_field_{i}', offset, datatype, count))
    ends = sorted((off, off + np.dtype(DATATYPES[dt]).itemsize * cnt, name) for name, off, dt, cnt in out)
    for (_, end_a, name_a), (start_b, _, name_b) in zip(ends, ends[1:]):
        if start_b < end_a:
            raise ValueError(f'fields {name_a!r} and {name_b!r} overlap')
    size = max((end for _, end, _ in ends), default=0)
    if point_step is not None:
        if isinstance(point_step, bool) or not isinstance(point_step, (int, np.integer)) or point_step < 0:
            raise ValueError(f'point_step {point_step!r} is not a non-negative integer')
        if point_step < size:
            raise ValueError(f'point_step {point_step} is smaller than the fields ({size} bytes)')
        size = int(point_step)
    return out, size


def dtype_from_fields(fields: Iterable[Any], point_step: int | None = None,
                      is_bigendian: bool = False) -> np.dtype:
    """Return the numpy structured dtype of one point (``itemsize == point_step`` when given).

    ``fields`` are PointField messages (any implementation) or ``(name, offset, datatype[, count])``
    tuples. Raises ValueError for unknown datatypes, overlaps, duplicate names, fields past point_step.
    """
    layout, size = _layout(fields, point_step)
    order = '>' if is_bigendian else '<'
    names: list[str] = []
    formats: list[str] = []
    offsets: list[int] = []
    for name, offset, datatype, count in layout:
        code = np.dtype(DATATYPES[datatype]).newbyteorder(order)
        for k in range(count):
            names.append(f'{name}_{k}' if count > 1 else name)
            formats.append(code.str)
            offsets.append(offset + k * code.itemsize)
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f'duplicate field names {dup}')
    try:
        return np.dtype({'names': names, 'formats': formats, 'offsets': offsets, 'itemsize': size})
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f'cannot build a point dtype: {exc}') from None


def fields_from_dtype(dtype: np.dtype, msgs: MessageTypes | None = None) -> list[Any]:
    """Build PointField messages describing a structured dtype (inverse of :func:`dtype_from_fields`).

    Runs of sub-fields ``name_0 .. name_{k-1}`` (same type, contiguous) and sub-array fields
    ``(name, type, (k,))`` become one field with ``count = k``.
    """
    dtype = np.dtype(dtype)
    if dtype.names is None:
        raise ValueError(f'{dtype} is not a structured dtype')
    flat: list[tuple[str, int, int, int]] = []
    for name in dtype.names:
        sub, offset = dtype.fields[name][:2]
        count = 1
        if sub.subdtype is not None:
            sub, shape = sub.subdtype
            count = int(np.prod(shape))
        code = sub.newbyteorder('<').str[1:]
        if code not in _CODES:
            raise ValueError(f'field {name!r} has type {sub}, which PointField cannot describe')
        flat.append((name, offset, _CODES[code], count))
    merged: list[tuple[str, int, int, int]] = []
    i = 0
    while i < len(flat):
        name, offset, datatype, count = flat[i]
        j = i + 1
        if count == 1 and name.endswith('_0'):
            base = name[:-2]
            size = np.dtype(DATATYPES[datatype]).itemsize
            while (j < len(flat) and flat[j][0] == f'{base}_{j - i}' and flat[j][2] == datatype
                   and flat[j][3] == 1 and flat[j][1] == offset + (j - i) * size):
                j += 1
            if j - i > 1:
                name, count = base, j - i
            else:
                j = i + 1
        merged.append((name, offset, datatype, count))
        i = j
    return [point_field(n, o, d, c, msgs) for n, o, d, c in merged]


def cloud_layout(msg: Any) -> tuple[np.dtype, np.ndarray]:
    """Validate a PointCloud2's layout; return (point dtype, data as uint8 array)."""
    try:
        fields, data = msg.fields, msg.data
        height, width = non_negative_int(msg, 'height'), non_negative_int(msg, 'width')
        point_step, row_step = non_negative_int(msg, 'point_step'), non_negative_int(msg, 'row_step')
        bigendian = bool(msg.is_bigendian)
    except AttributeError as exc:
        raise ValueError(f'not a PointCloud2 message: {exc}') from None
    if not isinstance(fields, Sequence):
        raise ValueError(f'fields is a {type(fields).__name__}, expected a sequence of PointField')
    buf = byte_buffer(data)
    n = height * width
    if n and point_step == 0:
        raise ValueError('point_step is 0 for a non-empty cloud')
    if row_step < width * point_step:
        raise ValueError(f'row_step {row_step} < width {width} * point_step {point_step}')
    if buf.size != row_step * height:
        if n == 0 and buf.size == 0:
            pass
        else:
            raise ValueError(f'data has {buf.size} bytes, expected row_step {row_step} * height {height} = '
                             f'{row_step * height} (truncated or padded cloud)')
    if n == 0:  # empty clouds often carry point_step 0: accept any step, keep it when it fits
        _, size = _layout(fields, None)
        return dtype_from_fields(fields, point_step if point_step >= size else None, bigendian), buf
    return dtype_from_fields(fields, point_step, bigendian), buf


def _all_points(msg: Any) -> np.ndarray:
    """Every point as a structured array of shape (height, width); a view when the layout allows."""
    dtype, buf = cloud_layout(msg)
    height, width = int(msg.height), int(msg.width)
    if height * width == 0:
        return np.zeros((height, width), dtype=dtype)
    point_step, row_step = int(msg.point_step), int(msg.row_step)
    return np.ndarray(shape=(height, width), dtype=dtype, buffer=buf, strides=(row_step, point_step))


def _expand_names(dtype: np.dtype, field_names: Iterable[str]) -> list[str]:
    names: list[str] = []
    for name in field_names:
        if name in dtype.names:
            names.append(name)
            continue
        subs = [n for n in dtype.names if n.startswith(f'{name}_') and n[len(name) + 1:].isdigit()]
        if not subs:
            raise ValueError(f'cloud has no field {name!r}; fields are {list(dtype.names)}')
        names += sorted(subs, key=lambda n: int(n[len(name) + 1:]))
    return names


def read_points(msg: Any, field_names: Iterable[str] | None = None, skip_nans: bool = False,
                uvs: Iterable[int] | np.ndarray | None = None,
                reshape_organized_cloud: bool = False) -> np.ndarray:
    """Points of a PointCloud2 as a numpy structured array (``sensor_msgs_py.point_cloud2.read_points``).

    ``field_names`` selects fields (a multi-count field's base name selects all its sub-fields);
    ``skip_nans`` drops points with a NaN in a selected floating field; ``uvs`` are flat point indices.
    Zero-copy view of ``msg.data`` when rows are unpadded and no points are dropped or reordered.
    """
    points = _all_points(msg)
    if field_names is not None:
        points = points[_expand_names(points.dtype, list(field_names))]
    if reshape_organized_cloud and msg.height > 1:
        if skip_nans or uvs is not None:
            raise ValueError('reshape_organized_cloud cannot be combined with skip_nans or uvs')
        return points
    points = points.reshape(-1)
    if skip_nans:
        keep = np.ones(len(points), dtype=bool)
        for name in points.dtype.names:
            if points.dtype.fields[name][0].kind == 'f':
                keep &= ~np.isnan(points[name])
        if not keep.all():
            points = points[keep]
    if uvs is not None:
        idx = np.asarray(uvs if isinstance(uvs, np.ndarray) else list(uvs), dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < -len(points) or idx.max() >= len(points)):
            raise ValueError(f'uvs index out of range for {len(points)} points')
        points = points[idx]
    return points


def read_points_numpy(msg: Any, field_names: Iterable[str] | None = None, skip_nans: bool = False,
                      dtype: np.dtype | str | None = None) -> np.ndarray:
    """Read the selected fields as a plain ``(N, k)`` array in native byte order.

    Without ``dtype`` all selected fields must share a datatype (else ValueError); with it values are
    cast. Zero-copy view when the fields are native-order, equally typed and evenly spaced.
    """
    points = read_points(msg, field_names, skip_nans)
    types = {points.dtype.fields[n][0] for n in points.dtype.names}
    if dtype is None:
        kinds = {t.newbyteorder('=') for t in types}
        if len(kinds) > 1:
            raise ValueError(f'fields have different datatypes {sorted(map(str, kinds))}; pass dtype= or use '
                             'read_points()')
        dtype = next(iter(kinds)) if kinds else np.float32
    out = structured_to_unstructured(points, dtype=np.dtype(dtype).newbyteorder('='))
    return out.reshape(len(points), len(points.dtype.names))


def create_cloud(header: Any, fields: Sequence[Any], points: Any, msgs: MessageTypes | None = None,
                 point_step: int | None = None, is_bigendian: bool = False) -> Any:
    """Build a PointCloud2 holding ``points`` laid out as ``fields`` (``sensor_msgs_py`` ``create_cloud``).

    ``points``: a structured array with (at least) every field's name, a plain array whose last axis
    has one column per (sub-)field, or an iterable of tuples. A 2-D point grid gives an organized cloud
    (``height = shape[0]``). Padding bytes are zero; ``is_dense`` is True when no floating value is NaN.
    """
    msgs = msgs or default_message_types()
    dtype = dtype_from_fields(fields, point_step, is_bigendian)
    names = dtype.names
    if isinstance(points, np.ndarray) and points.dtype.names is not None:
        missing = [n for n in names if n not in points.dtype.names]
        if missing:
            raise ValueError(f'points lack field(s) {missing}; they have {list(points.dtype.names)}')
        out = np.zeros(points.shape, dtype=dtype)
        for name in names:
            out[name] = points[name]
    else:
        if isinstance(points, np.ndarray):
            arr = points
        else:
            rows = [tuple(p) for p in points]
            arr = np.array(rows, dtype=dtype) if rows else np.zeros(0, dtype=dtype)
        if arr.dtype.names is not None:
            out = np.zeros(arr.shape, dtype=dtype)   # zeroed padding, whatever np.array left there
            for name in names:
                out[name] = arr[name]
        else:
            if arr.ndim == 1 and arr.size == 0:
                arr = arr.reshape(0, len(names))
            if arr.ndim not in (2, 3) or arr.shape[-1] != len(names):
                raise ValueError(f'points of shape {arr.shape}: expected (N, {len(names)}) or '
                                 f'(H, W, {len(names)}) for fields {list(names)}')
            out = np.zeros(arr.shape[:-1], dtype=dtype)
            for j, name in enumerate(names):
                out[name] = arr[..., j]
    if out.ndim not in (1, 2):
        raise ValueError(f'points must be 1-D (unorganized) or 2-D (organized), got shape {out.shape}')
    height, width = (1, out.shape[0]) if out.ndim == 1 else out.shape
    out = np.ascontiguousarray(out)
    is_dense = not any(np.isnan(out[n]).any() for n in names if dtype.fields[n][0].kind == 'f')
    layout, _ = _layout(fields, point_step)
    field_msgs = [point_field(n, o, d, c, msgs) for n, o, d, c in layout]
    return msgs.new(_POINTCLOUD2, header=header, height=height, width=width, fields=field_msgs,
                    is_bigendian=bool(is_bigendian), point_step=dtype.itemsize,
                    row_step=dtype.itemsize * width, data=out.reshape(-1).view(np.uint8),
                    is_dense=is_dense)


def create_cloud_xyz32(header: Any, points: Any, msgs: MessageTypes | None = None) -> Any:
    """Build a PointCloud2 with float32 x, y, z (``points``: (N, 3))."""
    fields = [('x', 0, FLOAT32, 1), ('y', 4, FLOAT32, 1), ('z', 8, FLOAT32, 1)]
    return create_cloud(header, fields, np.asarray(points, dtype=np.float32).reshape(-1, 3), msgs)


def xyz_fields(extra: Sequence[tuple[str, int]] = ()) -> list[tuple[str, int, int, int]]:
    """Packed field tuples for float32 x, y, z followed by ``extra`` (name, datatype) fields."""
    layout = [('x', 0, FLOAT32, 1), ('y', 4, FLOAT32, 1), ('z', 8, FLOAT32, 1)]
    offset = 12
    for name, datatype in extra:
        layout.append((name, offset, datatype, 1))
        offset += np.dtype(DATATYPES[datatype]).itemsize
    return layout
