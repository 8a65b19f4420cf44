"""Generated-message stand-ins: rosidl_generator_py-shaped classes built from rosbags' type definitions.

Mirrors what ``rosidl_generator_py`` (Jazzy) generates for every ``pkg/msg/Name``, ``pkg/srv/Name`` and
``pkg/action/Name``:

- a metaclass holding ``_TYPE_SUPPORT``, ``_CREATE_ROS_MESSAGE``, ``_CONVERT_FROM_PY``, ``_CONVERT_TO_PY``,
  ``_DESTROY_ROS_MESSAGE`` (``None`` until ``__import_type_support__()``) and the constants as read-only
  class properties;
- ``__slots__``, ``_fields_and_field_types`` / ``get_fields_and_field_types()`` with rosidl type strings
  (``double``, ``octet``, ``sequence<uint8>``, ``double[9]``, ``builtin_interfaces/Time``, ...),
  ``SLOT_TYPES`` (``rosidl_parser.definition`` objects), keyword constructor with the field defaults;
- setters that convert numeric sequences to ``array.array`` and numeric arrays to ``numpy`` arrays and,
  when field checks are on, assert value types and ranges exactly like the generated setters (Humble
  always asserts under ``__debug__``; Jazzy does when ``ROS_PYTHON_CHECK_FIELDS=1``; the harness checks by
  default so that code which works here works on both);
- ``__eq__`` and ``__repr__`` as generated.

Field definitions come from rosbags' ROS 2 Jazzy typestore (the same .msg files), plus the few types it
lacks (vision_msgs, services, actions) from their .msg/.srv/.action text below. The type support object
serializes to and from CDR through that typestore, so a published message reaches subscribers as a new
object converted field by field, as through the real C type support.
"""
from __future__ import annotations

import array
from collections import UserList, UserString
from collections.abc import Sequence, Set
import math
import re
import sys
import types
from typing import Any

import numpy as np
from rosbags.interfaces import Nodetype
from rosbags.typesys import get_types_from_msg, get_typestore, Stores

# .msg basic type -> IDL basic type (rosidl_adapter: char is uint8, byte is octet)
IDL_TYPES = {'bool': 'boolean', 'byte': 'octet', 'char': 'uint8', 'float32': 'float', 'float64': 'double',
             'int8': 'int8', 'uint8': 'uint8', 'int16': 'int16', 'uint16': 'uint16', 'int32': 'int32',
             'uint32': 'uint32', 'int64': 'int64', 'uint64': 'uint64', 'string': 'string'}
# rosidl_generator_py SPECIAL_NESTED_BASIC_TYPES: IDL type -> (array.array typecode, numpy dtype)
SPECIAL = {'float': ('f', np.float32), 'double': ('d', np.float64), 'int8': ('b', np.int8),
           'uint8': ('B', np.uint8), 'int16': ('h', np.int16), 'uint16': ('H', np.uint16),
           'int32': ('i', np.int32), 'uint32': ('I', np.uint32), 'int64': ('q', np.int64),
           'uint64': ('Q', np.uint64)}
FLOAT_BOUNDS = {'float': 3.402823466e+38, 'double': 1.7976931348623157e+308}

# Types that rosbags' Jazzy store lacks: {ros type name: definition text}.
EXTRA_MESSAGES = {
    'vision_msgs/msg/VisionClass': 'uint16 class_id\nstring class_name\n',
    'vision_msgs/msg/LabelInfo': ('std_msgs/Header header\nvision_msgs/VisionClass[] class_map\n'
                                  'float32 threshold\n'),
}
SERVICES = {
    'rcl_interfaces/srv/DescribeParameters': 'string[] names\n---\nParameterDescriptor[] descriptors\n',
    'rcl_interfaces/srv/GetParameters': 'string[] names\n---\nParameterValue[] values\n',
    'rcl_interfaces/srv/GetParameterTypes': 'string[] names\n---\nuint8[] types\n',
    'rcl_interfaces/srv/ListParameters': ('uint64 DEPTH_RECURSIVE=0\nstring[] prefixes\nuint64 depth\n---\n'
                                          'ListParametersResult result\n'),
    'rcl_interfaces/srv/SetParameters': 'Parameter[] parameters\n---\nSetParametersResult[] results\n',
    'rcl_interfaces/srv/SetParametersAtomically': 'Parameter[] parameters\n---\nSetParametersResult result\n',
    'rcl_interfaces/srv/GetLoggerLevels': 'string[] names\n---\nLoggerLevel[] levels\n',
    'rcl_interfaces/srv/SetLoggerLevels': 'LoggerLevel[] levels\n---\nSetLoggerLevelsResult[] results\n',
    'type_description_interfaces/srv/GetTypeDescription': (
        'string type_name\nstring type_hash\nbool include_type_sources true\n---\nbool successful\n'
        'string failure_reason\nTypeDescription type_description\nTypeSource[] type_sources\n'
        'KeyValue[] extra_information\n'),
    'tf2_msgs/srv/FrameGraph': '---\nstring frame_yaml\n',
    'action_msgs/srv/CancelGoal': ('int8 ERROR_NONE=0\nint8 ERROR_REJECTED=1\nint8 ERROR_UNKNOWN_GOAL_ID=2\n'
                                   'int8 ERROR_GOAL_TERMINATED=3\nGoalInfo goal_info\n---\nint8 return_code\n'
                                   'GoalInfo[] goals_canceling\n'),
    'lifecycle_msgs/srv/ChangeState': 'Transition transition\n---\nbool success\n',
    'lifecycle_msgs/srv/GetState': '---\nState current_state\n',
    'lifecycle_msgs/srv/GetAvailableStates': '---\nState[] available_states\n',
    'lifecycle_msgs/srv/GetAvailableTransitions': '---\nTransitionDescription[] available_transitions\n',
    'composition_interfaces/srv/LoadNode': (
        'string package_name\nstring plugin_name\nstring node_name\nstring node_namespace\nuint8 log_level\n'
        'string[] remap_rules\nrcl_interfaces/Parameter[] parameters\n'
        'rcl_interfaces/Parameter[] extra_arguments\n---\nbool success\nstring error_message\n'
        'string full_node_name\nuint64 unique_id\n'),
    'composition_interfaces/srv/UnloadNode': 'uint64 unique_id\n---\nbool success\nstring error_message\n',
    'composition_interfaces/srv/ListNodes': '---\nstring[] full_node_names\nuint64[] unique_ids\n',
}
ACTIONS = {
    'tf2_msgs/action/LookupTransform': (
        'string target_frame\nstring source_frame\nbuiltin_interfaces/Time source_time\n'
        'builtin_interfaces/Duration timeout\nbuiltin_interfaces/Time target_time\nstring fixed_frame\n'
        'bool advanced\n---\ngeometry_msgs/TransformStamped transform\ntf2_msgs/TF2Error error\n---\n'),
}
# The packages a harness installs (plus every package their fields reference).
PACKAGES = ('builtin_interfaces', 'std_msgs', 'sensor_msgs', 'geometry_msgs', 'nav_msgs',
            'visualization_msgs',
            'diagnostic_msgs', 'tf2_msgs', 'rcl_interfaces', 'rosgraph_msgs', 'vision_msgs',
            'type_description_interfaces', 'service_msgs', 'action_msgs', 'unique_identifier_msgs',
            'lifecycle_msgs', 'composition_interfaces')
_DEFAULT = re.compile(r'^\s*(?P<type>[\w/]+(?:<=\d+)?(?:\[[^\]]*\])?)\s+(?P<name>\w+)\s+'
                      r'(?P<value>[^=#\s][^#]*?)\s*$')


def _camel_to_snake(name: str) -> str:
    return re.sub(r'(?<!^)(?=[A-Z])', '_', name).lower()


class TypeSupport:
    """What ``Metaclass._TYPE_SUPPORT`` holds: the ROS type name and CDR (de)serialization of one type."""

    def __init__(self, registry: 'MessageRegistry', ros_name: str, store_name: str) -> None:
        self.registry = registry
        self.ros_name = ros_name
        self.store_name = store_name

    def serialize(self, msg: Any) -> bytes:
        """CDR bytes of a message (what rmw puts on the wire)."""
        store = self.registry.store
        return bytes(store.serialize_cdr(self.registry.to_store(msg), self.store_name))

    def deserialize(self, data: bytes, cls: type) -> Any:
        """Return a new message of ``cls`` from CDR bytes."""
        return self.registry.from_store(self.registry.store.deserialize_cdr(data, self.store_name), cls)

    def __repr__(self) -> str:
        return f'<type support {self.ros_name}>'


class _Field:
    """One member: its IDL basic type or nested message, and array/sequence shape."""

    __slots__ = ('name', 'base', 'string_bound', 'message', 'nested', 'size', 'rosidl', 'default')

    def __init__(self, name: str, desc: tuple, registry: 'MessageRegistry') -> None:
        self.name = name
        self.nested = None      # None, 'array' or 'sequence'
        self.size = 0           # array length or sequence bound (0: unbounded)
        kind, detail = desc
        if kind in (Nodetype.ARRAY, Nodetype.SEQUENCE):
            self.nested = 'array' if kind == Nodetype.ARRAY else 'sequence'
            (kind, detail), self.size = detail
        self.base = self.message = None
        self.string_bound = 0
        if kind == Nodetype.NAME:
            self.message = detail                     # store name, resolved lazily
            inner = registry.short_name(detail)
        else:
            self.base, bound = IDL_TYPES[detail[0]], detail[1]
            self.string_bound = bound if self.base == 'string' else 0
            inner = f'string<{bound}>' if self.base == 'string' and bound else self.base
        if self.nested == 'array':
            self.rosidl = f'{inner}[{self.size}]'
        elif self.nested == 'sequence':
            self.rosidl = f'sequence<{inner}, {self.size}>' if self.size else f'sequence<{inner}>'
        else:
            self.rosidl = inner
        self.default: Any = None

    @property
    def special(self) -> bool:
        return self.nested is not None and self.base in SPECIAL


def _scalar_ok(base: str, value: Any, string_bound: int = 0) -> str | None:
    """Return the generated setter's assertion message if ``value`` fails it, else None."""
    if base == 'boolean':
        return None if isinstance(value, bool) else "must be of type 'bool'"
    if base == 'octet':
        return None if isinstance(value, (bytes, bytearray)) and len(value) == 1 else (
            "must be of type 'bytes' or 'ByteString' with length 1")
    if base == 'string':
        if not isinstance(value, (str, UserString)) or (string_bound and len(value) > string_bound):
            return "must be of type 'str'" + (f' not longer than {string_bound}' if string_bound else '')
        return None
    if base in FLOAT_BOUNDS:
        if not isinstance(value, float):
            return "must be of type 'float'"
        bound = FLOAT_BOUNDS[base]
        return None if not (value < -bound or value > bound) or math.isinf(value) else (
            f'must be a {base} in [{-bound}, {bound}]')
    if not isinstance(value, int):
        return "must be of type 'int'"
    bits = int(base.lstrip('uint'))
    low, high = (0, 2 ** bits) if base.startswith('u') else (-2 ** (bits - 1), 2 ** (bits - 1))
    return None if low <= value < high else f'must be an integer in [{low}, {high - 1}]'


class MessageRegistry:
    """Builds and caches the message modules of one typestore (stateless once built)."""

    def __init__(self, check_fields: bool = True) -> None:
        self.check_fields = check_fields
        self.store = get_typestore(Stores.ROS2_JAZZY)
        self.ros_names: dict[str, str] = {}          # store name -> ROS name
        self.classes: dict[str, type] = {}           # store name -> class
        self.services: dict[str, type] = {}          # ROS name -> service class
        self.actions: dict[str, type] = {}
        self._fields: dict[str, list[_Field]] = {}
        self._register_extras()

    # -- type definitions -------------------------------------------------------------------------
    def _register_extras(self) -> None:
        typs: dict = {}
        self._defaults: dict[str, dict[str, str]] = {}

        def add(ros_name: str, text: str) -> str:
            pkg, kind, name = ros_name.split('/')
            store_name = f'{pkg}/msg/{name}'
            typs.update(get_types_from_msg(text, store_name))
            self.ros_names[store_name] = ros_name
            matches = map(_DEFAULT.match, text.splitlines())
            self._defaults[store_name] = {m['name']: m['value'] for m in matches
                                          if m and '=' not in m.group(0)}
            return store_name

        for ros_name, text in EXTRA_MESSAGES.items():
            add(ros_name, text)
        for ros_name, text in SERVICES.items():
            request, response = text.split('---\n')
            add(ros_name + '_Request', request)
            add(ros_name + '_Response', response)
            pkg = ros_name.split('/')[0]
            short = f'{pkg}/{ros_name.split("/")[2]}'
            add(ros_name + '_Event', f'service_msgs/ServiceEventInfo info\n{short}_Request[<=1] request\n'
                f'{short}_Response[<=1] response\n')
        for ros_name, text in ACTIONS.items():
            goal, result, feedback = text.split('---\n')
            pkg, _, name = ros_name.split('/')
            for suffix, body in (('Goal', goal), ('Result', result), ('Feedback', feedback)):
                add(f'{ros_name}_{suffix}', body)
            uuid = 'unique_identifier_msgs/UUID goal_id\n'
            add(f'{ros_name}_SendGoal_Request', f'{uuid}{pkg}/{name}_Goal goal\n')
            add(f'{ros_name}_SendGoal_Response', 'bool accepted\nbuiltin_interfaces/Time stamp\n')
            add(f'{ros_name}_GetResult_Request', uuid)
            add(f'{ros_name}_GetResult_Response', f'int8 status\n{pkg}/{name}_Result result\n')
            add(f'{ros_name}_FeedbackMessage', f'{uuid}{pkg}/{name}_Feedback feedback\n')
        # service request/response names are referenced as pkg/msg/Name inside the texts above
        self.store.register(typs)

    def ros_name(self, store_name: str) -> str:
        return self.ros_names.get(store_name, store_name)

    def short_name(self, store_name: str) -> str:
        """``pkg/Name`` as rosidl writes a nested type in ``_fields_and_field_types``."""
        pkg, _, name = self.ros_name(store_name).split('/')
        return f'{pkg}/{name}'

    def fields(self, store_name: str) -> list[_Field]:
        found = self._fields.get(store_name)
        if found is None:
            found = [_Field(n, d, self) for n, d in self.store.fielddefs[store_name][1]]
            defaults = self._defaults.get(store_name, {})
            for f in found:
                if f.name in defaults and f.nested is None and f.base is not None:
                    text = defaults[f.name]
                    f.default = (text.lower() == 'true') if f.base == 'boolean' else (
                        text.strip('"\'') if f.base == 'string' else
                        float(text) if f.base in FLOAT_BOUNDS else int(text))
            self._fields[store_name] = found
        return found

    # -- classes ----------------------------------------------------------------------------------
    def message_class(self, store_name: str) -> type:
        """Return (building on first use) the class of a type given by its typestore name."""
        cls = self.classes.get(store_name)
        if cls is None:
            cls = self._build(store_name)
            self.classes[store_name] = cls
        return cls

    def _build(self, store_name: str) -> type:
        registry = self
        ros_name = self.ros_name(store_name)
        pkg, kind, name = ros_name.split('/')
        fields = self.fields(store_name)
        support = TypeSupport(self, ros_name, store_name)
        constants = {c: self._constant(t, v) for c, t, v in self.store.fielddefs[store_name][0]}

        def import_type_support(mcls: type) -> None:
            mcls._CREATE_ROS_MESSAGE = mcls._CONVERT_FROM_PY = mcls._CONVERT_TO_PY = support
            mcls._DESTROY_ROS_MESSAGE = support
            mcls._TYPE_SUPPORT = support

        meta_ns: dict[str, Any] = {
            '_CREATE_ROS_MESSAGE': None, '_CONVERT_FROM_PY': None, '_CONVERT_TO_PY': None,
            '_DESTROY_ROS_MESSAGE': None, '_TYPE_SUPPORT': None,
            '__import_type_support__': classmethod(import_type_support),
            '__doc__': f"Metaclass of message '{name}'.",
        }
        for const, value in constants.items():
            meta_ns[const] = property(lambda _self, v=value: v, doc=f"Message constant '{const}'.")
        meta = type(f'Metaclass_{name}', (type,), meta_ns)

        field_names = [f.name for f in fields]
        ns: dict[str, Any] = dict(constants)
        ns.update({
            '__slots__': [f'_{n}' for n in field_names] + ['_check_fields'],
            '_fields_and_field_types': {f.name: f.rosidl for f in fields},
            'SLOT_TYPES': tuple(_slot_type(f, self) for f in fields),
            '__doc__': f"Message class '{name}'.",
            '__module__': f'{pkg}.{kind}._{_camel_to_snake(name.split("_")[0])}',
        })

        def __init__(self: Any, **kwargs: Any) -> None:
            self._check_fields = kwargs.pop('check_fields', registry.check_fields)
            if self._check_fields:
                unknown = sorted(k for k in kwargs if k not in field_names)
                assert not unknown, 'Invalid arguments passed to constructor: %s' % ', '.join(unknown)
            for f in fields:
                setattr(self, f.name, kwargs[f.name] if f.name in kwargs else registry.default(f))

        def __eq__(self: Any, other: Any) -> bool:
            if not isinstance(other, self.__class__):
                return False
            for f in fields:
                mine, theirs = getattr(self, f.name), getattr(other, f.name)
                if f.nested == 'array' and f.special:
                    if not np.array_equal(mine, theirs):
                        return False
                elif mine != theirs:
                    return False
            return True

        def __repr__(self: Any) -> str:
            args = []
            for f in fields:
                text = repr(getattr(self, f.name))
                if f.nested == 'sequence' and f.special:
                    text = '[]' if not len(getattr(self, f.name)) else text[len("array('X', "):-1]
                args.append(f'{f.name}={text}')
            return f'{pkg}.{kind}.{name}({", ".join(args)})'

        ns.update(__init__=__init__, __eq__=__eq__, __repr__=__repr__, __hash__=None,
                  get_fields_and_field_types=classmethod(lambda c: dict(c._fields_and_field_types)))
        for f in fields:
            ns[f.name] = self._property(f)
        return meta(name, (), ns)

    @staticmethod
    def _constant(msg_type: str, value: Any) -> Any:
        idl = IDL_TYPES.get(msg_type, msg_type)
        if idl == 'octet':
            return bytes([int(value) & 0xFF])
        if idl == 'boolean':
            return bool(value)
        if idl in FLOAT_BOUNDS:
            return float(value)
        return value

    def default(self, f: _Field) -> Any:
        if f.nested == 'array':
            if f.special:
                return np.zeros(f.size, dtype=SPECIAL[f.base][1])
            return [self._scalar_default(f) for _ in range(f.size)]
        if f.nested == 'sequence':
            return array.array(SPECIAL[f.base][0]) if f.special else []
        return f.default if f.default is not None else self._scalar_default(f)

    def _scalar_default(self, f: _Field) -> Any:
        if f.message is not None:
            return self.message_class(f.message)()
        return {'boolean': False, 'octet': bytes([0]), 'string': ''}.get(
            f.base, 0.0 if f.base in FLOAT_BOUNDS else 0)

    def _property(self, f: _Field) -> property:
        registry = self
        slot = f'_{f.name}'
        where = f"The '{f.name}' field"

        def get(self: Any) -> Any:
            return getattr(self, slot)

        def set_(self: Any, value: Any) -> None:
            if self._check_fields:
                problem = registry.check(f, value)
                assert problem is None, f'{where} {problem}'
            if f.special:
                code, dtype = SPECIAL[f.base]
                if f.nested == 'array':
                    if not (isinstance(value, np.ndarray) and value.dtype == dtype and value.size == f.size):
                        value = np.array(value, dtype=dtype)
                elif not (isinstance(value, array.array) and value.typecode == code):
                    value = array.array(code, value)
            setattr(self, slot, value)

        return property(get, set_, doc=f"Message field '{f.name}'.")

    def check(self, f: _Field, value: Any) -> str | None:
        """Run the generated setter's assertions for one field (None when the value passes)."""
        if f.special:
            code, dtype = SPECIAL[f.base]
            if f.nested == 'array' and isinstance(value, np.ndarray):
                if value.dtype != dtype:
                    return f"numpy.ndarray() must have the dtype of 'numpy.{np.dtype(dtype).name}'"
                return None if value.size == f.size else f'numpy.ndarray() must have a size of {f.size}'
            if f.nested == 'sequence' and isinstance(value, array.array):
                if value.typecode != code:
                    return f"array.array() must have the type code of '{code}'"
                if f.size and len(value) > f.size:
                    return f'array.array() must have a size <= {f.size}'
                return None
        if f.nested is not None:
            if (not isinstance(value, (Sequence, Set, UserList)) or isinstance(value, (str, UserString))
                    or (f.nested == 'array' and len(value) != f.size)
                    or (f.nested == 'sequence' and f.size and len(value) > f.size)):
                return 'must be a set or sequence' + (f' with length {f.size}' if f.nested == 'array' else '')
            if f.message is not None:
                cls = self.message_class(f.message)
                return None if all(isinstance(v, cls) for v in value) else (
                    f"must be a set or sequence and each value of type '{cls.__name__}'")
            for v in value:
                if f.base == 'octet' and not isinstance(v, bytes):
                    return "must be a set or sequence and each value of type 'bytes'"
                if f.base != 'octet' and _scalar_ok(f.base, v, f.string_bound) is not None:
                    return f'must be a set or sequence and each value {_scalar_ok(f.base, v, f.string_bound)}'
            return None
        if f.message is not None:
            cls = self.message_class(f.message)
            return None if isinstance(value, cls) else f"must be a sub message of type '{cls.__name__}'"
        return _scalar_ok(f.base, value, f.string_bound)

    # -- conversion to and from rosbags' classes (the CDR path) ---------------------------------------
    def to_store(self, msg: Any, store_name: str | None = None) -> Any:
        """Convert a message to the typestore's class, as the C type support reads a Python message."""
        store_name = store_name or type(msg).__class__._TYPE_SUPPORT.store_name
        values = {}
        for f in self.fields(store_name):
            value = getattr(msg, f.name)
            if f.message is not None:
                values[f.name] = ([self.to_store(v, f.message) for v in value] if f.nested
                                  else self.to_store(value, f.message))
            elif f.nested is None:
                values[f.name] = _to_store_scalar(f.base, value)
            elif f.base == 'string':
                values[f.name] = [str(v) for v in value]
            elif f.base == 'octet':
                values[f.name] = np.frombuffer(b''.join(bytes(v) for v in value), dtype=np.int8)
            elif f.base == 'boolean':
                values[f.name] = np.array([bool(v) for v in value], dtype=bool)
            else:
                dtype = SPECIAL[f.base][1]
                values[f.name] = (np.frombuffer(value, dtype=dtype) if isinstance(value, array.array)
                                  and value.itemsize == np.dtype(dtype).itemsize
                                  else np.asarray(value, dtype=dtype))
        return self.store.types[store_name](**values)

    def from_store(self, data: Any, cls: type) -> Any:
        """Build a new message of ``cls`` from a typestore object (what the C type support returns)."""
        store_name = cls.__class__._TYPE_SUPPORT.store_name if cls.__class__._TYPE_SUPPORT else None
        store_name = store_name or data.__msgtype__
        msg = cls.__new__(cls)
        msg._check_fields = self.check_fields
        for f in self.fields(store_name):
            value = getattr(data, f.name)
            if f.message is not None:
                sub = self.message_class(f.message)
                value = [self.from_store(v, sub) for v in value] if f.nested else self.from_store(value, sub)
            elif f.nested is None:
                value = _from_store_scalar(f.base, value)
            elif f.special:
                code, dtype = SPECIAL[f.base]
                raw = np.ascontiguousarray(value, dtype=dtype)
                if f.nested == 'array':
                    value = raw.copy()
                else:
                    value = array.array(code)
                    value.frombytes(raw.tobytes())
            elif f.base == 'string':
                value = [str(v) for v in value]
            else:
                value = [_from_store_scalar(f.base, v) for v in value]
            object.__setattr__(msg, f'_{f.name}', value)
        return msg

    # -- modules ----------------------------------------------------------------------------------
    def modules(self) -> dict[str, types.ModuleType]:
        """Return ``{module name: module}`` for every interface package (``pkg``, ``pkg.msg``, ...)."""
        wanted = set(PACKAGES)
        names = [n for n in self.store.fielddefs]
        # add the packages referenced by the wanted ones
        changed = True
        while changed:
            changed = False
            for store_name in names:
                if store_name.split('/')[0] in wanted:
                    for f in self.fields(store_name):
                        if f.message and f.message.split('/')[0] not in wanted:
                            wanted.add(f.message.split('/')[0])
                            changed = True
        out: dict[str, types.ModuleType] = {}

        def module(name: str) -> types.ModuleType:
            if name not in out:
                mod = types.ModuleType(name, f'Generated interfaces of {name} (ROS 2 harness stand-in).')
                if '.' not in name:
                    mod.__path__ = []           # a package, so that ``import pkg.msg`` works
                else:
                    setattr(module(name.split('.')[0]), name.split('.')[1], mod)
                out[name] = mod
            return out[name]

        for store_name in names:
            pkg = store_name.split('/')[0]
            if pkg not in wanted:
                continue
            ros_name = self.ros_name(store_name)
            kind, cls_name = ros_name.split('/')[1:]
            setattr(module(f'{pkg}.{kind}'), cls_name, self.message_class(store_name))
        for ros_name in SERVICES:
            pkg, _, name = ros_name.split('/')
            if pkg in wanted:
                setattr(module(f'{pkg}.srv'), name, self.service_class(ros_name))
        for ros_name in ACTIONS:
            pkg, _, name = ros_name.split('/')
            if pkg in wanted:
                setattr(module(f'{pkg}.action'), name, self.action_class(ros_name))
        return out

    def _cls(self, ros_name: str) -> type:
        pkg, _, name = ros_name.split('/')
        return self.message_class(f'{pkg}/msg/{name}')

    def service_class(self, ros_name: str) -> type:
        """Return the class of ``pkg/srv/Name`` with ``Request``, ``Response`` and ``Event``."""
        if ros_name not in self.services:
            support = TypeSupport(self, ros_name, '')
            self.services[ros_name] = self._interface(ros_name, support, {
                'Request': self._cls(ros_name + '_Request'), 'Response': self._cls(ros_name + '_Response'),
                'Event': self._cls(ros_name + '_Event')}, 'Service')
        return self.services[ros_name]

    def action_class(self, ros_name: str) -> type:
        """Return the class of ``pkg/action/Name`` with ``Goal``, ``Result``, ``Feedback`` and ``Impl``."""
        if ros_name not in self.actions:
            srv = {}
            for part in ('SendGoal', 'GetResult'):
                support = TypeSupport(self, ros_name, '')
                srv[part + 'Service'] = self._interface(f'{ros_name}_{part}', support, {
                    'Request': self._cls(f'{ros_name}_{part}_Request'),
                    'Response': self._cls(f'{ros_name}_{part}_Response')}, 'Service')
            impl = type('Impl', (), dict(srv, FeedbackMessage=self._cls(f'{ros_name}_FeedbackMessage'),
                                         CancelGoalService=self.service_class('action_msgs/srv/CancelGoal'),
                                         GoalStatusMessage=self._cls('action_msgs/msg/GoalStatusArray')))
            self.actions[ros_name] = self._interface(ros_name, TypeSupport(self, ros_name, ''), {
                'Goal': self._cls(ros_name + '_Goal'), 'Result': self._cls(ros_name + '_Result'),
                'Feedback': self._cls(ros_name + '_Feedback'), 'Impl': impl}, 'Action')
        return self.actions[ros_name]

    @staticmethod
    def _interface(ros_name: str, support: TypeSupport, members: dict[str, Any], what: str) -> type:
        name = ros_name.split('/')[-1]

        def import_type_support(mcls: type) -> None:
            mcls._TYPE_SUPPORT = support
            for member in members.values():     # as the generated srv/action modules do
                if hasattr(member.__class__, '__import_type_support__'):
                    member.__class__.__import_type_support__()

        meta = type(f'Metaclass_{name}', (type,), {
            '_TYPE_SUPPORT': None, '__import_type_support__': classmethod(import_type_support)})

        def __init__(self: Any) -> None:
            raise NotImplementedError(f'{what} classes can not be instantiated')

        return meta(name, (), dict(members, __init__=__init__, __doc__=f"{what} class '{name}'."))


def _to_store_scalar(base: str, value: Any) -> Any:
    if base == 'octet':
        return int.from_bytes(bytes(value)[:1], 'little', signed=True)
    if base == 'boolean':
        return bool(value)
    if base == 'string':
        return str(value)
    if base in FLOAT_BOUNDS:
        return float(value)
    return int(value)


def _from_store_scalar(base: str, value: Any) -> Any:
    if base == 'octet':
        return bytes([int(value) & 0xFF])
    if base == 'boolean':
        return bool(value)
    if base == 'string':
        return str(value)
    if base in FLOAT_BOUNDS:
        return float(value)
    return int(value)


def _slot_type(f: _Field, registry: MessageRegistry) -> Any:
    """``rosidl_parser.definition`` object describing a field, as in the generated ``SLOT_TYPES``."""
    definition = sys.modules.get('rosidl_parser.definition') or rosidl_parser_definition()
    if f.message is not None:
        pkg, kind, name = registry.ros_name(f.message).split('/')
        inner = definition.NamespacedType([pkg, kind], name)
    elif f.base == 'string':
        inner = definition.BoundedString(f.string_bound) if f.string_bound else definition.UnboundedString()
    else:
        inner = definition.BasicType(f.base)
    if f.nested == 'array':
        return definition.Array(inner, f.size)
    if f.nested == 'sequence':
        return definition.BoundedSequence(inner, f.size) if f.size else definition.UnboundedSequence(inner)
    return inner


_DEFINITION: types.ModuleType | None = None


def rosidl_parser_definition() -> types.ModuleType:
    """Return a stand-in for ``rosidl_parser.definition`` with the type classes ``SLOT_TYPES`` uses."""
    global _DEFINITION
    if _DEFINITION is not None:
        return _DEFINITION
    mod = types.ModuleType('rosidl_parser.definition', 'The rosidl_parser type classes (harness stand-in).')

    class AbstractType:
        def __eq__(self, other: object) -> bool:
            return type(self) is type(other) and vars(self) == vars(other)

        def __repr__(self) -> str:
            return f'{type(self).__name__}({", ".join(f"{k}={v!r}" for k, v in vars(self).items())})'

    class BasicType(AbstractType):
        def __init__(self, typename: str) -> None:
            self.typename = typename

    class NamespacedType(AbstractType):
        def __init__(self, namespaces: list[str], name: str) -> None:
            self.namespaces, self.name = list(namespaces), name

        def namespaced_name(self) -> tuple[str, ...]:
            return (*self.namespaces, self.name)

    class AbstractGenericString(AbstractType):
        pass

    class UnboundedString(AbstractGenericString):
        def has_maximum_size(self) -> bool:
            return False

    class BoundedString(AbstractGenericString):
        def __init__(self, maximum_size: int) -> None:
            self.maximum_size = maximum_size

        def has_maximum_size(self) -> bool:
            return True

    class AbstractNestedType(AbstractType):
        def __init__(self, value_type: AbstractType) -> None:
            self.value_type = value_type

    class Array(AbstractNestedType):
        def __init__(self, value_type: AbstractType, size: int) -> None:
            super().__init__(value_type)
            self.size = size

    class AbstractSequence(AbstractNestedType):
        pass

    class UnboundedSequence(AbstractSequence):
        pass

    class BoundedSequence(AbstractSequence):
        def __init__(self, value_type: AbstractType, maximum_size: int) -> None:
            super().__init__(value_type)
            self.maximum_size = maximum_size

    for cls in (AbstractType, BasicType, NamespacedType, AbstractGenericString, UnboundedString,
                BoundedString, AbstractNestedType, Array, AbstractSequence, UnboundedSequence,
                BoundedSequence):
        cls.__module__ = mod.__name__
        setattr(mod, cls.__name__, cls)
    _DEFINITION = mod
    return mod
