"""A message factory, so one conversion code path builds messages for bags and for a live robot.

Conversion functions (``pointcloud2.create_cloud``, ``image.rgb_to_image_msg``, ...) never import a
message package; they ask a :class:`MessageTypes` for ``new('sensor_msgs/msg/PointCloud2', ...)``.
Here (no ROS) that is :class:`RosbagsMessageTypes`, backed by a ``rosbags`` typestore; on a robot the
nodes pass an rclpy-backed implementation with the same ``new`` method.

Conventions for field values passed to ``new``: numeric arrays and sequences (``uint8[] data``,
``float64[9] k``) are given as numpy arrays (or lists / bytes); an implementation converts them to
its native representation (rosbags: numpy arrays of the field's dtype; rclpy: ``array.array``).
"""
from __future__ import annotations

import functools
from typing import Any, Protocol

import numpy as np
from rosbags.typesys import Stores, get_typestore
from rosbags.typesys.base import Nodetype

__all__ = ['MessageTypes', 'RosbagsMessageTypes', 'default_message_types']

# ROS primitive type -> numpy dtype (strings and bools handled apart).
_NUMPY_TYPES: dict[str, str] = {
    'int8': 'i1', 'uint8': 'u1', 'byte': 'u1', 'char': 'u1', 'int16': 'i2', 'uint16': 'u2',
    'int32': 'i4', 'uint32': 'u4', 'int64': 'i8', 'uint64': 'u8', 'float32': 'f4', 'float64': 'f8',
    'bool': '?', 'octet': 'u1',
}


# Non-zero defaults ROS 2 message definitions declare but rosbags' typestore does not carry.
_FIELD_DEFAULTS: dict[tuple[str, str], Any] = {('geometry_msgs/msg/Quaternion', 'w'): 1.0}


class MessageTypes(Protocol):
    """Builds ROS messages by type name, e.g. ``new('std_msgs/msg/Header', frame_id='map')``.

    Implementations may also offer ``message_class(msgtype)``: the message class itself, for hot loops
    that construct many small messages with every field given in its native representation (Python
    ``float``/``int``/``str``, nested messages), e.g. one ``geometry_msgs/Point`` per voxel. Callers
    fall back to :meth:`new` when it is missing.
    """

    def new(self, msgtype: str, **fields: Any) -> Any:
        """Build a message of ``msgtype``; fields not given take their type defaults."""
        ...


_Plan = tuple[type, frozenset, list[tuple[str, Any, Any]], tuple[str, ...]]


class RosbagsMessageTypes:
    """:class:`MessageTypes` backed by a rosbags typestore (ROS 2 Humble definitions by default).

    Missing fields are filled by introspecting the typestore: numbers 0 (a Quaternion's w 1, as in
    ROS 2), strings '', nested messages default-constructed, numeric sequences empty numpy arrays,
    fixed arrays zero-filled numpy arrays.
    Lists / bytes given for numeric arrays are converted to numpy arrays of the field's dtype.
    The introspection is done once per message type (a plan of per-field converters and defaults).
    """

    def __init__(self, store: Stores = Stores.ROS2_HUMBLE) -> None:
        self.store = store
        self.typestore = get_typestore(store)
        from perception_nodes.io.vision_msgs import register
        register(self.typestore)
        self._plans: dict[str, _Plan] = {}

    def message_class(self, msgtype: str) -> type:
        """Return the rosbags class of ``msgtype`` (every field must then be given, natively)."""
        return self._plan(msgtype)[0]

    def _plan(self, msgtype: str) -> _Plan:
        plan = self._plans.get(msgtype)
        if plan is None:
            try:
                _, fields = self.typestore.fielddefs[msgtype]
            except KeyError:
                raise ValueError(f'unknown message type {msgtype!r} in typestore {self.store.name}') from None
            steps = []
            for name, desc in fields:
                where = f'{msgtype}.{name}'
                if (msgtype, name) in _FIELD_DEFAULTS:
                    value = _FIELD_DEFAULTS[msgtype, name]
                    default: Any = functools.partial(_same, value)
                else:
                    default = functools.partial(self._default, desc)
                steps.append((name, self._converter(desc, where), default))
            names = tuple(name for name, _ in fields)
            plan = (self.typestore.types[msgtype], frozenset(names), steps, names)
            self._plans[msgtype] = plan
        return plan

    def new(self, msgtype: str, **fields: Any) -> Any:
        cls, names, steps, order = self._plan(msgtype)
        if not names.issuperset(fields):
            unknown = sorted(set(fields) - names)
            raise ValueError(f'{msgtype} has no field(s) {unknown}; fields are {list(order)}')
        values = {}
        for name, convert, default in steps:
            if name in fields:
                value = fields[name]
                values[name] = value if convert is None else convert(value)
            else:
                values[name] = default()
        return cls(**values)

    def serialize(self, msg: Any, msgtype: str | None = None) -> bytes:
        """CDR bytes of a rosbags message (what a ROS 2 bag stores)."""
        msgtype = msgtype or msg.__msgtype__
        return bytes(self.typestore.serialize_cdr(msg, msgtype))

    def deserialize(self, data: bytes | memoryview, msgtype: str) -> Any:
        """Inverse of :meth:`serialize`."""
        return self.typestore.deserialize_cdr(data, msgtype)

    # -- defaults and conversions ---------------------------------------------------------
    def _default(self, desc: tuple[Any, ...]) -> Any:
        kind, detail = desc
        if kind == Nodetype.BASE:
            return _base_default(detail[0])
        if kind == Nodetype.NAME:
            return self.new(detail)
        (elem_kind, elem_detail), length = detail
        if elem_kind == Nodetype.BASE and elem_detail[0] in _NUMPY_TYPES:
            return np.zeros(length if kind == Nodetype.ARRAY else 0, dtype=_NUMPY_TYPES[elem_detail[0]])
        if kind == Nodetype.ARRAY:
            return [self._default((elem_kind, elem_detail)) for _ in range(length)]
        return []

    @staticmethod
    def _converter(desc: tuple[Any, ...], where: str) -> Any:
        """Return a function converting a given value of this field, or None when it is passed as is."""
        kind, detail = desc
        if kind not in (Nodetype.ARRAY, Nodetype.SEQUENCE):
            return None
        (elem_kind, elem_detail), length = detail
        if not (elem_kind == Nodetype.BASE and elem_detail[0] in _NUMPY_TYPES):
            return list
        dtype = np.dtype(_NUMPY_TYPES[elem_detail[0]])
        fixed = length if kind == Nodetype.ARRAY else None
        return functools.partial(_numeric_array, dtype=dtype, length=fixed, where=where)


def _same(value: Any) -> Any:
    return value


def _numeric_array(value: Any, dtype: np.dtype, length: int | None, where: str) -> np.ndarray:
    if isinstance(value, (bytes, bytearray, memoryview)):
        arr = np.frombuffer(value, dtype=np.uint8).view(dtype) if dtype.itemsize == 1 else \
            np.frombuffer(value, dtype=dtype)
    else:
        arr = np.asarray(value)
        if arr.dtype != dtype:
            arr = arr.astype(dtype)
    arr = arr.reshape(-1)
    if length is not None and arr.size != length:
        raise ValueError(f'{where} needs exactly {length} values, got {arr.size}')
    return arr


def _base_default(typename: str) -> Any:
    if typename in ('string', 'wstring'):
        return ''
    if typename == 'bool':
        return False
    if typename.startswith('float'):
        return 0.0
    return 0


@functools.lru_cache(maxsize=1)
def default_message_types() -> RosbagsMessageTypes:
    """Return the shared ROS 2 Humble :class:`RosbagsMessageTypes` (cached)."""
    return RosbagsMessageTypes(Stores.ROS2_HUMBLE)
