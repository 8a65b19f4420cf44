"""``MessageTypes`` for a live robot: builds rclpy (rosidl_generator_py) message objects.

The conversion code in perception_nodes.io hands numpy arrays, Python ints and nested messages to
``new(msgtype, **fields)``; rosidl Python classes assert exact Python types in their setters, so each value
is converted from the field's rosidl type (``cls.get_fields_and_field_types()``):

- ``sequence<T>`` of a numeric T -> ``array.array`` of the matching typecode (filled with ``frombytes``,
  so a 2 MB ``uint8[] data`` costs one copy, not a Python loop);
- ``T[n]`` of a numeric T -> a numpy array of T's dtype (what rosidl stores for fixed-size arrays);
- ``octet``/``byte`` -> a 1-byte ``bytes`` (e.g. DiagnosticStatus.level); ``boolean`` -> bool;
  integer/float scalars -> int/float (numpy scalars and ints-for-floats are accepted).

Message packages are imported lazily by name (``sensor_msgs/msg/PointCloud2`` -> ``sensor_msgs.msg``), so
this module imports without ROS.
"""
from __future__ import annotations

import array
import functools
import importlib
import re
from typing import Any, Callable

import numpy as np

# rosidl basic type -> (array.array typecode, numpy dtype)
NUMERIC: dict[str, tuple[str, str]] = {
    'float': ('f', '<f4'), 'double': ('d', '<f8'), 'long double': ('d', '<f8'),
    'int8': ('b', 'i1'), 'uint8': ('B', 'u1'), 'int16': ('h', '<i2'), 'uint16': ('H', '<u2'),
    'int32': ('i', '<i4'), 'uint32': ('I', '<u4'), 'int64': ('q', '<i8'), 'uint64': ('Q', '<u8'),
}
INTEGER = {'int8', 'uint8', 'int16', 'uint16', 'int32', 'uint32', 'int64', 'uint64', 'char'}
_SEQUENCE = re.compile(r'^sequence<(?P<inner>[^,>]+)(?:,\s*\d+)?>$')
_ARRAY = re.compile(r'^(?P<inner>[\w ]+)\[(?P<n>\d+)\]$')


def message_class(msgtype: str) -> type:
    """Return the rosidl class of ``pkg/msg/Name`` (also accepts ``pkg/Name``)."""
    parts = msgtype.split('/')
    if len(parts) == 2:
        parts = [parts[0], 'msg', parts[1]]
    if len(parts) != 3 or not all(parts):
        raise ValueError(f'message type {msgtype!r} is not of the form pkg/msg/Name')
    pkg, kind, name = parts
    try:
        module = importlib.import_module(f'{pkg}.{kind}')
        return getattr(module, name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f'cannot import message type {msgtype!r}: {exc}') from None


def _array_typecode_size(code: str) -> int:
    return array.array(code).itemsize


Converter = Callable[[Any], Any]       # value -> value in the rosidl representation (ValueError if it cannot)


def _numeric_sequence(code: str, dtype: str) -> Converter:
    native = _array_typecode_size(code) == np.dtype(dtype).itemsize
    typed = np.dtype(dtype).newbyteorder('=')

    def convert(value: Any) -> Any:
        if isinstance(value, array.array) and value.typecode == code:
            return value
        if isinstance(value, (bytes, bytearray, memoryview)):
            arr = np.frombuffer(bytes(value), dtype=dtype)
        else:
            arr = np.asarray(value).reshape(-1).astype(dtype, copy=False)
        out = array.array(code)
        if not native:                     # a platform with unusual C sizes
            out.extend(arr.tolist())
        else:
            out.frombytes(np.ascontiguousarray(arr.astype(typed)).tobytes())
        return out
    return convert


def _numeric_array(dtype: str, n: int) -> Converter:
    typed = np.dtype(dtype).newbyteorder('=')

    def convert(value: Any) -> Any:
        arr = np.asarray(value, dtype=typed).reshape(-1)
        if arr.size != n:
            raise ValueError(f'needs exactly {n} values, got {arr.size}')
        return arr.copy()
    return convert


def _octet(value: Any) -> bytes:
    return bytes(value) if isinstance(value, (bytes, bytearray)) else bytes([int(value)])


def _same(value: Any) -> Any:
    return value                            # a nested message built by the same factory


@functools.lru_cache(maxsize=None)
def converter(rosidl_type: str) -> Converter:
    """Return the conversion of values for fields of ``rosidl_type`` (cached: one regex match per type)."""
    m = _SEQUENCE.match(rosidl_type)
    if m and m.group('inner') in NUMERIC:
        return _numeric_sequence(*NUMERIC[m.group('inner')])
    m = _ARRAY.match(rosidl_type)
    if m and m.group('inner') in NUMERIC:
        return _numeric_array(NUMERIC[m.group('inner')][1], int(m.group('n')))
    if rosidl_type in ('octet', 'byte'):
        return _octet
    if rosidl_type == 'boolean':
        return bool
    if rosidl_type in INTEGER:
        return int
    if rosidl_type in ('float', 'double', 'long double'):
        return float
    if rosidl_type in ('string', 'wstring') or rosidl_type.startswith(('string<', 'wstring<')):
        return str
    if rosidl_type.startswith('sequence<') or _ARRAY.match(rosidl_type):
        return list                          # sequences of strings or messages
    return _same


def convert_value(rosidl_type: str, value: Any, where: str = '') -> Any:
    """``value`` in the representation a rosidl setter for ``rosidl_type`` accepts."""
    try:
        return converter(rosidl_type)(value)
    except ValueError as exc:
        raise ValueError(f'{where or rosidl_type}: {exc}') from None


class RclpyMessageTypes:
    """``MessageTypes`` for rclpy message classes (see the module docstring)."""

    def __init__(self) -> None:
        self._classes: dict[str, tuple[type, dict[str, Converter]]] = {}

    def message_class(self, msgtype: str) -> type:
        return self._lookup(msgtype)[0]

    def _lookup(self, msgtype: str) -> tuple[type, dict[str, Converter]]:
        found = self._classes.get(msgtype)
        if found is None:
            cls = message_class(msgtype)
            found = (cls, {name: converter(kind) for name, kind in cls.get_fields_and_field_types().items()})
            self._classes[msgtype] = found
        return found

    def new(self, msgtype: str, **fields: Any) -> Any:
        """Build a message: each field converted once and handed to the constructor (no default set first)."""
        cls, converters = self._lookup(msgtype)
        if not fields.keys() <= converters.keys():
            unknown = sorted(set(fields) - set(converters))
            raise ValueError(f'{msgtype} has no field(s) {unknown}; fields are {list(converters)}')
        values = {}
        for name, value in fields.items():
            try:
                values[name] = converters[name](value)
            except ValueError as exc:
                raise ValueError(f'{msgtype}.{name}: {exc}') from None
        return cls(**values)
