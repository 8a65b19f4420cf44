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

``is_dense`` (``create_cloud``): False by default, as the reference always writes it. False claims
nothing (readers must expect invalid points; ``read_points(skip_nans=True)`` checks anyway), so it is
always honest, and building a cloud costs no scan of its values. A caller that knows its points are
finite passes ``is_dense=True`` (the labeled cloud computes it from its inputs); ``is_dense=None`` scans
the floating fields for NaN (one NaN-propagating min each) and sets it accordingly.

Values that do not fit their field (``create_cloud``), on purpose rather than by numpy's wrap-around:

- integer fields: a value outside the field's range (300 into uint8, -1 into uint32, 2**70 into int64)
  or a NaN / +-inf raises ValueError naming the field; with ``clip=True`` finite and infinite values are
  saturated to the range instead (NaN still raises: it has no integer value). Floats are truncated
  toward zero (numpy's cast), so 255.7 is stored in uint8 as 255;
- float fields: NaN and +-inf are stored as they are (NaN marks invalid points in ROS clouds); a finite
  value beyond float32's range raises ValueError (``clip=True``: saturated to +-3.4e38) instead of
  becoming inf; float64 -> float32 otherwise rounds to nearest.

Speed: the point dtype of a field layout is validated once and cached; a plain or structured array
whose memory already has the message's layout is copied once (``copy=False`` hands it over without a
copy), and ``is_dense=None`` costs one NaN-propagating min/max per floating field. ``read_points`` /
``read_points_numpy`` return views built directly from the cached layout.
"""
from __future__ import annotations

import dataclasses
import functools
import operator
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from perception_nodes.io.fields import byte_buffer, non_negative_int
from perception_nodes.io.messages import MessageTypes, RosbagsMessageTypes, default_message_types

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
_PC2_FIELDS = ('header', 'height', 'width', 'fields', 'is_bigendian', 'point_step', 'row_step', 'data',
               'is_dense')
_CACHE_SIZE = 256          # distinct (fields, point_step, byte order) layouts remembered
_DTYPE_CACHE: dict[tuple[Any, ...], np.dtype] = {}
_LAYOUT_CACHE: dict[tuple[Any, ...], list[tuple[str, int, int, int]]] = {}


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


_FIELD_ATTRS = operator.attrgetter('name', 'offset', 'datatype', 'count')


def _fields_key(fields: Any) -> tuple[tuple[Any, ...], ...] | None:
    """Hashable (name, offset, datatype, count) of every field, or None when that cannot be read.

    Only a key already validated by :func:`dtype_from_fields` is ever found in the cache, so a
    malformed layout always reaches the validation.
    """
    try:
        if fields and type(fields[0]) is tuple:
            return tuple(f if len(f) == 4 else (*f, 1) for f in fields)
        return tuple(map(_FIELD_ATTRS, fields))
    except (AttributeError, TypeError, IndexError, KeyError):
        return None


def _cached_dtype(fields: Any, point_step: int | None, is_bigendian: bool) -> np.dtype:
    """:func:`dtype_from_fields`, validated once per distinct layout (plain int/str fields only)."""
    key = _fields_key(fields)
    if key is None or (point_step is not None and type(point_step) is not int):
        return dtype_from_fields(fields, point_step, is_bigendian)
    full = (key, point_step, bool(is_bigendian))
    try:
        dtype = _DTYPE_CACHE.get(full)
    except TypeError:                      # unhashable values in a malformed field
        return dtype_from_fields(fields, point_step, is_bigendian)
    if dtype is None:
        dtype = dtype_from_fields(fields, point_step, is_bigendian)
        if len(_DTYPE_CACHE) >= _CACHE_SIZE:
            _DTYPE_CACHE.clear()
        _DTYPE_CACHE[full] = dtype
    return dtype


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
    dtype, buf, _, _, _, _ = _checked_layout(msg)
    return dtype, buf


def _checked_layout(msg: Any) -> tuple[np.dtype, np.ndarray, int, int, int, int]:
    """(dtype, data bytes, height, width, point_step, row_step) of a validated PointCloud2."""
    try:
        fields, data = msg.fields, msg.data
        height, width, point_step, row_step = msg.height, msg.width, msg.point_step, msg.row_step
        bigendian = bool(msg.is_bigendian)
    except AttributeError as exc:
        raise ValueError(f'not a PointCloud2 message: {exc}') from None
    if not (type(height) is int and type(width) is int and type(point_step) is int and type(row_step) is int
            and height >= 0 and width >= 0 and point_step >= 0 and row_step >= 0):
        height, width = non_negative_int(msg, 'height'), non_negative_int(msg, 'width')
        point_step, row_step = non_negative_int(msg, 'point_step'), non_negative_int(msg, 'row_step')
    if not isinstance(fields, Sequence):
        raise ValueError(f'fields is a {type(fields).__name__}, expected a sequence of PointField')
    if type(data) is np.ndarray and data.dtype == np.uint8 and data.ndim == 1:
        buf = data
    else:
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
        dtype = dtype_from_fields(fields, point_step if point_step >= size else None, bigendian)
    else:
        dtype = _cached_dtype(fields, point_step, bigendian)
    return dtype, buf, height, width, point_step, row_step


def _all_points(msg: Any) -> np.ndarray:
    """Every point as a structured array of shape (height, width); a view when the layout allows."""
    dtype, buf, height, width, point_step, row_step = _checked_layout(msg)
    if height * width == 0:
        return np.zeros((height, width), dtype=dtype)
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
        points = points[_indices(uvs, len(points))]
    return points


def _indices(uvs: Any, n: int) -> np.ndarray:
    """``uvs`` as int64 point indices in [-n, n); ValueError for anything else (never OverflowError)."""
    try:
        idx = np.asarray(uvs if isinstance(uvs, np.ndarray) else list(uvs))
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f'uvs must be integer point indices: {exc}') from None
    idx = idx.reshape(-1)
    if idx.size == 0:
        return idx.astype(np.int64)
    if idx.dtype.kind not in 'iu':
        raise ValueError(f'uvs must be integer point indices, got {idx.dtype} values')
    lo, hi = int(idx.min()), int(idx.max())
    if lo < -n or hi >= n:
        raise ValueError(f'uvs index out of range for {n} points (got {lo} .. {hi})')
    return idx.astype(np.int64, copy=False)


def read_points_numpy(msg: Any, field_names: Iterable[str] | None = None, skip_nans: bool = False,
                      dtype: np.dtype | str | None = None) -> np.ndarray:
    """Read the selected fields as a plain ``(N, k)`` array in native byte order.

    Without ``dtype`` all selected fields must share a datatype (else ValueError); with it values are
    cast. Zero-copy view when the fields are native-order, equally typed and evenly spaced.
    """
    points = read_points(msg, field_names, skip_nans)
    fields = points.dtype.fields
    names = points.dtype.names
    types = {fields[n][0] for n in names}
    if dtype is None:
        kinds = {t.newbyteorder('=') for t in types}
        if len(kinds) > 1:
            raise ValueError(f'fields have different datatypes {sorted(map(str, kinds))}; pass dtype= or use '
                             'read_points()')
        dtype = next(iter(kinds)) if kinds else np.float32
    target = np.dtype(dtype).newbyteorder('=')
    view = _plain_view(points, target)
    if view is not None:
        return view
    out = np.empty((len(points), len(names)), dtype=target)
    for j, name in enumerate(names):
        out[:, j] = points[name]
    return out


def _plain_view(points: np.ndarray, target: np.dtype) -> np.ndarray | None:
    """Zero-copy ``(N, k)`` view of 1-D structured ``points``: every field ``target``, evenly spaced."""
    names = points.dtype.names
    if not names or points.ndim != 1:
        return None
    fields = points.dtype.fields
    offsets = [fields[n][1] for n in names]
    if any(fields[n][0] != target for n in names):
        return None
    step = offsets[1] - offsets[0] if len(offsets) > 1 else target.itemsize
    if step < target.itemsize or any(b - a != step for a, b in zip(offsets, offsets[1:])):
        return None
    try:
        return np.ndarray(shape=(len(points), len(names)), dtype=target, buffer=points, offset=offsets[0],
                          strides=(points.strides[0] if len(points) else points.dtype.itemsize, step))
    except (TypeError, ValueError):      # e.g. a non-contiguous selection: copy instead
        return None


def create_cloud(header: Any, fields: Sequence[Any], points: Any, msgs: MessageTypes | None = None,
                 point_step: int | None = None, is_bigendian: bool = False, *, clip: bool = False,
                 copy: bool = True, is_dense: bool | None = False) -> Any:
    """Build a PointCloud2 holding ``points`` laid out as ``fields`` (``sensor_msgs_py`` ``create_cloud``).

    ``points``: a structured array with (at least) every field's name, a plain array whose last axis
    has one column per (sub-)field, or an iterable of tuples. A 2-D point grid gives an organized cloud
    (``height = shape[0]``). Padding bytes are zero. ``is_dense``: False (the reference's value), True
    when the caller knows every point is valid, None to scan the floating fields for NaN (module
    docstring). Out-of-range values raise ValueError unless
    ``clip`` (see the module docstring). ``copy=False``: when ``points`` already is a C-contiguous array
    with exactly the message's layout, the message's ``data`` is a view of it (the caller hands it over).
    """
    msgs = msgs or default_message_types()
    dtype = _cached_dtype(fields, point_step, is_bigendian)
    out, nan = _encode(points, dtype, clip, copy, is_dense is None)
    if out.ndim not in (1, 2):
        raise ValueError(f'points must be 1-D (unorganized) or 2-D (organized), got shape {out.shape}')
    height, width = (1, out.shape[0]) if out.ndim == 1 else out.shape
    if is_dense is None:
        is_dense = not (_has_nan(out) if nan is None else nan)
    values = dict(header=header, height=height, width=width, fields=_field_msgs(fields, msgs),
                  is_bigendian=bool(is_bigendian), point_step=dtype.itemsize, row_step=dtype.itemsize * width,
                  data=out.reshape(-1).view(np.uint8), is_dense=bool(is_dense))
    cls = _positional_class(msgs, _POINTCLOUD2, _PC2_FIELDS)
    return cls(**values) if cls is not None else msgs.new(_POINTCLOUD2, **values)


def _field_msgs(fields: Sequence[Any], msgs: MessageTypes) -> list[Any]:
    """Fresh PointField messages of a (validated) layout, unnamed fields named as in the dtype."""
    key = _fields_key(fields)
    layout = _LAYOUT_CACHE.get(key) if key is not None else None
    if layout is None:
        layout, _ = _layout(fields, None)
        if key is not None:
            if len(_LAYOUT_CACHE) >= _CACHE_SIZE:
                _LAYOUT_CACHE.clear()
            _LAYOUT_CACHE[key] = layout
    cls = _positional_class(msgs, 'sensor_msgs/msg/PointField', ('name', 'offset', 'datatype', 'count'))
    if cls is not None:
        return [cls(n, o, d, c) for n, o, d, c in layout]
    return [point_field(n, o, d, c, msgs) for n, o, d, c in layout]


def _positional_class(msgs: MessageTypes, msgtype: str, names: tuple[str, ...]) -> Any:
    """Return the rosbags dataclass of ``msgtype`` when its fields are ``names`` (in order), else None.

    Only :class:`RosbagsMessageTypes` qualifies: its classes take numpy arrays as they are, so a hot path
    may call them directly; other factories (rclpy) convert values in ``new``.
    """
    if not isinstance(msgs, RosbagsMessageTypes):
        return None
    return _rosbags_class(msgs, msgtype, names)


@functools.lru_cache(maxsize=64)
def _rosbags_class(msgs: RosbagsMessageTypes, msgtype: str, names: tuple[str, ...]) -> Any:
    cls = msgs.message_class(msgtype)
    fields = tuple(f.name for f in dataclasses.fields(cls) if f.name != '__msgtype__')
    return cls if fields == names else None


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _base_type(dtype: np.dtype) -> np.dtype | None:
    """Return the sub-field type of a packed, gap-free, equally typed point dtype (4 x <f4), else None."""
    names = dtype.names
    first = dtype.fields[names[0]][0] if names else None
    if first is None or first.subdtype is not None:
        return None
    for j, name in enumerate(names):
        sub, offset = dtype.fields[name][:2]
        if sub != first or offset != j * first.itemsize:
            return None
    return first if dtype.itemsize == len(names) * first.itemsize else None


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _gaps(dtype: np.dtype) -> tuple[tuple[int, int], ...]:
    """Byte ranges of a point not covered by any field (padding), merged."""
    covered = sorted((off, off + sub.itemsize) for sub, off, *_ in dtype.fields.values())
    gaps, pos = [], 0
    for start, end in covered:
        if start > pos:
            gaps.append((pos, start))
        pos = max(pos, end)
    if pos < dtype.itemsize:
        gaps.append((pos, dtype.itemsize))
    return tuple(gaps)


def _new_points(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    return np.zeros(shape, dtype=dtype) if _gaps(dtype) else np.empty(shape, dtype=dtype)


def _encode(points: Any, dtype: np.dtype, clip: bool, copy: bool,
            want_nan: bool = False) -> tuple[np.ndarray, bool | None]:
    """``points`` as a C-contiguous array of ``dtype`` (zeroed padding), values checked as documented.

    Also returns whether a floating value is NaN when that was cheap to learn on the way (the input of a
    plain float array is scanned just before it is copied, while it is in cache), else None.
    """
    names = dtype.names
    if isinstance(points, np.ndarray) and points.dtype.names is not None:
        if points.dtype == dtype:
            if not copy and points.flags.c_contiguous:
                return points, None
            out = np.array(points, order='C', copy=True)
            gaps = _gaps(dtype)
            if gaps and out.size:
                raw = out.reshape(-1).view(np.uint8).reshape(out.size, dtype.itemsize)
                for a, b in gaps:
                    raw[:, a:b] = 0
            return out, None
        missing = [n for n in names if n not in points.dtype.names]
        if missing:
            raise ValueError(f'points lack field(s) {missing}; they have {list(points.dtype.names)}')
        out = _new_points(points.shape, dtype)
        for name in names:
            out[name] = _checked(points[name], dtype.fields[name][0], clip, name)
        return out, None
    if isinstance(points, np.ndarray):
        arr = points
    else:
        arr = _from_rows(points, len(names))
    if arr.ndim == 1 and arr.size == 0:
        arr = arr.reshape(0, len(names))
    if arr.ndim not in (2, 3) or arr.shape[-1] != len(names):
        raise ValueError(f'points of shape {arr.shape}: expected (N, {len(names)}) or '
                         f'(H, W, {len(names)}) for fields {list(names)}')
    base = _base_type(dtype)
    if base is not None and arr.dtype.kind in 'biuf' and (arr.dtype == base or base.kind == 'f'):
        checked = _checked(arr, base, clip, names[0] if len(names) == 1 else 'every')
        nan = None
        if want_nan:
            nan = bool(checked.size) and base.kind == 'f' and checked.dtype.kind == 'f' and \
                bool(np.isnan(checked.min()))
        out = np.array(checked, dtype=base, order='C', copy=True)
        return out.view(dtype).reshape(arr.shape[:-1]), nan
    out = _new_points(arr.shape[:-1], dtype)
    for j, name in enumerate(names):
        out[name] = _checked(arr[..., j], dtype.fields[name][0], clip, name)
    return out, None


def _from_rows(points: Any, k: int) -> np.ndarray:
    """Turn an iterable of per-point tuples into an (N, k) array, one naturally typed column at a time."""
    try:
        rows = [tuple(p) for p in points]
    except TypeError as exc:
        raise ValueError(f'points must be an array or an iterable of tuples: {exc}') from None
    if not rows:
        return np.zeros((0, k))
    if any(len(r) != k for r in rows):
        raise ValueError(f'every point tuple needs {k} values (one per field)')
    columns = []
    for values in zip(*rows):
        try:
            col = np.array(values)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ValueError(f'point values cannot be read as numbers: {exc}') from None
        columns.append(col)
    kinds = {c.dtype.kind for c in columns}
    if kinds <= set('biu') and all(c.dtype == columns[0].dtype for c in columns):
        return np.stack(columns, axis=1)
    out = np.empty((len(rows), k), dtype=object)
    for j, col in enumerate(columns):
        out[:, j] = col
    return out


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _checked(src: Any, dst: np.dtype, clip: bool, name: str) -> np.ndarray:
    """``src`` ready to be cast into field type ``dst`` under the documented out-of-range policy."""
    src = np.asarray(src)
    kind = src.dtype.kind
    if kind == 'O':
        src = _from_objects(src, dst, clip, name)
        kind = src.dtype.kind
    if kind not in 'biuf':
        raise ValueError(f'field {name!r}: {src.dtype} values cannot be stored as {dst.name}')
    if dst.kind == 'f':
        if kind == 'f' and src.dtype.itemsize > dst.itemsize and src.size:
            with np.errstate(invalid='ignore'):
                big = np.abs(src) > _FLOAT32_MAX
            if np.isfinite(src[big]).any():
                if not clip:
                    worst = src[big & np.isfinite(src)].flat[0]
                    raise ValueError(f'field {name!r}: value {worst!r} is beyond float32 range (clip=True '
                                     'saturates)')
                src = np.where(big & np.isfinite(src), np.copysign(_FLOAT32_MAX, src), src)
        return src
    info = np.iinfo(dst)
    if kind == 'b' or src.size == 0 or np.can_cast(src.dtype, dst, 'safe'):
        return src
    lo, hi = src.min(), src.max()
    if kind == 'f':
        if np.isnan(lo) or np.isnan(hi):
            raise ValueError(f'field {name!r}: NaN cannot be stored in a {dst.name} field')
        if lo > info.min - 1 and hi < info.max + 1:      # truncation toward zero keeps them in range
            return src
        if not clip:
            bad = lo if not lo > info.min - 1 else hi
            raise ValueError(f'field {name!r}: value {float(bad)!r} is outside {dst.name} range '
                             f'[{info.min}, {info.max}] (clip=True saturates)')
        top = float(info.max) if dst.itemsize < 8 else float(np.nextafter(float(info.max) + 1.0, 0.0))
        return np.clip(src, float(info.min), top)
    if info.min <= int(lo) and int(hi) <= info.max:
        return src
    if not clip:
        bad = int(lo) if int(lo) < info.min else int(hi)
        raise ValueError(f'field {name!r}: value {bad} is outside {dst.name} range [{info.min}, {info.max}] '
                         '(clip=True saturates)')
    return np.clip(src, max(info.min, np.iinfo(src.dtype).min), min(info.max, np.iinfo(src.dtype).max))


def _from_objects(src: np.ndarray, dst: np.dtype, clip: bool, name: str) -> np.ndarray:
    """Python numbers (e.g. ints beyond int64 from tuples) checked one by one."""
    values = src.reshape(-1).tolist()
    if dst.kind in 'iu' and all(isinstance(v, int) for v in values):
        info = np.iinfo(dst)
        bad = [v for v in values if not info.min <= v <= info.max]
        if bad and not clip:
            raise ValueError(f'field {name!r}: value {bad[0]} is outside {dst.name} range '
                             f'[{info.min}, {info.max}] (clip=True saturates)')
        return np.array([min(max(v, info.min), info.max) for v in values], dtype=dst).reshape(src.shape)
    try:
        return np.array(values, dtype=np.float64).reshape(src.shape)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f'field {name!r}: values cannot be read as numbers') from None


def _has_nan(out: np.ndarray) -> bool:
    """Tell whether any floating field of ``out`` holds a NaN (one NaN-propagating min per field)."""
    if out.size == 0:
        return False
    dtype = out.dtype
    base = _base_type(dtype)
    if base is not None:
        if base.kind != 'f':
            return False
        flat = out.view(base).reshape(-1)
        return bool(np.isnan(flat.min()))
    for name in dtype.names:
        if dtype.fields[name][0].kind == 'f' and np.isnan(out[name].min()):
            return True
    return False


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
