"""How a configuration key is declared, checked and converted (the machinery behind ``config.model``).

Every key is a dataclass field made with :func:`key`, which records its description, unit, allowed
values, bounds, whether it may change while a node runs, and where it applies (``both``: the nodes and
the offline tools; ``node``; ``offline``). From those declarations alone this module

- builds a config from a nested mapping (YAML) or from flat dotted names (ROS 2 parameters, CLI
  overrides), converting the forms ``ros2 param set`` and the command line produce;
- validates every value (type, finiteness, bounds, choices) with one-line errors naming the key;
- lists the keys (:func:`iter_keys`) for the ROS parameter declarations, ``config/perception.yaml`` and the
  parameter tables of docs/ros.md, which tests check against this model.

Only scalars, tuples and lists of scalars are allowed, because that is what a ROS 2 parameter can hold.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Iterator

SCOPES = ('both', 'node', 'offline')


def key(default: Any, doc: str, *, unit: str = '', choices: tuple[str, ...] | None = None,
        min: float | None = None, max: float | None = None, exclusive_min: bool = False,
        live: bool = False, scope: str = 'both', item_choices: tuple[str, ...] | None = None) -> Any:
    """Declare one configuration key: a dataclass field carrying its documentation and rules.

    ``min`` / ``max`` bound numbers (each element of a tuple or list); ``exclusive_min`` makes the lower bound
    strict. ``choices`` restricts a string, ``item_choices`` each string of a list. ``live``: a node accepts a
    change while running. ``scope``: 'both', 'node' (ROS nodes only) or 'offline' (ovp commands only).
    """
    if scope not in SCOPES:
        raise ValueError(f'scope must be one of {SCOPES}')
    meta = {'doc': doc, 'unit': unit, 'choices': choices, 'min': min, 'max': max,
            'exclusive_min': exclusive_min, 'live': live, 'scope': scope, 'item_choices': item_choices}
    if isinstance(default, (list, dict)):
        value = list(default) if isinstance(default, list) else dict(default)
        return field(default_factory=lambda: type(value)(value), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class KeyInfo:
    """One declared key, as listed by :func:`iter_keys`."""

    name: str              # dotted name, e.g. 'teacher.clip_model'
    hint: Any              # the field's type hint
    default: Any
    doc: str
    unit: str
    choices: tuple[str, ...] | None
    min: float | None
    max: float | None
    live: bool
    scope: str
    exclusive_min: bool = False

    @property
    def kind(self) -> str:
        """ROS 2 parameter type name: bool, integer, double, string, *_array."""
        return ros_kind(self.hint)

    def describe(self) -> str:
        """Return the description with unit, range and choices, as shown in ParameterDescriptors and docs."""
        parts = [self.doc.rstrip('.') + '.']
        if self.unit:
            parts.append(f'Unit: {self.unit}.')
        if self.choices:
            parts.append('One of: ' + ', '.join(self.choices) + '.')
        if self.min is not None or self.max is not None:
            lo = '-inf' if self.min is None else f'{self.min:g}'
            hi = 'inf' if self.max is None else f'{self.max:g}'
            parts.append(f'Range: {"(" if self.exclusive_min else "["}{lo}, {hi}].')
        return ' '.join(parts)


def _strip_optional(hint: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return hint, False


def ros_kind(hint: Any) -> str:
    """Return the ROS 2 parameter type that holds values of ``hint``."""
    hint, _ = _strip_optional(hint)
    scalar = {bool: 'bool', int: 'integer', float: 'double', str: 'string'}
    if hint in scalar:
        return scalar[hint]
    origin = typing.get_origin(hint)
    if origin in (list, tuple):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        return scalar[args[0]] + '_array'
    raise TypeError(f'unsupported config type {hint!r}')


def iter_keys(cls: type, prefix: str = '') -> Iterator[KeyInfo]:
    """Every key of a config dataclass (recursively), in declaration order."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        name = f'{prefix}{f.name}'
        if dataclasses.is_dataclass(hint):
            yield from iter_keys(hint, name + '.')
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        m = f.metadata
        yield KeyInfo(name, hint, default, m.get('doc', ''), m.get('unit', ''), m.get('choices'),
                      m.get('min'), m.get('max'), bool(m.get('live')), m.get('scope', 'both'),
                      bool(m.get('exclusive_min')))


def _split_list(text: str) -> list[str]:
    """Split ``'a, b'`` / ``'[a, b]'`` / ``'a'`` into items (what ``ros2 param set`` or a flag gives)."""
    text = text.strip()
    if text.startswith('[') and text.endswith(']'):
        text = text[1:-1]
    return [t.strip().strip('\'"') for t in text.split(',') if t.strip().strip('\'"')]


def _scalar(value: Any, hint: type, where: str) -> Any:
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ('true', 'false'):
            return value.strip().lower() == 'true'
        raise ValueError(f'{where}: expected true or false, got {value!r}')
    if hint is int:
        if isinstance(value, bool):
            raise ValueError(f'{where}: expected an integer, got {value!r}')
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise ValueError(f'{where}: expected an integer, got {value!r}')
    if hint is float:
        if isinstance(value, bool):
            raise ValueError(f'{where}: expected a number, got {value!r}')
        if isinstance(value, (int, float)):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                raise ValueError(f'{where}: expected a number, got {value!r}') from None
        else:
            raise ValueError(f'{where}: expected a number, got {value!r}')
        if not math.isfinite(number):
            raise ValueError(f'{where}: must be a finite number, got {value!r}')
        return number
    if hint is str:
        if not isinstance(value, str):
            raise ValueError(f'{where}: expected a string, got {value!r}')
        if '\x00' in value:
            raise ValueError(f'{where}: contains a NUL character')
        return value
    raise TypeError(f'unsupported config type {hint!r}')


def coerce(value: Any, hint: Any, where: str) -> Any:
    """Convert ``value`` to ``hint`` (scalars, tuples, lists), accepting ROS and CLI forms.

    A string for a list is split on commas (``ros2 param set node names "a, b"`` sends a STRING);
    an empty list of any element type is an empty list (``"[]"`` arrives as a BOOL_ARRAY).
    """
    hint, optional = _strip_optional(hint)
    if value is None:
        if optional:
            return None
        raise ValueError(f'{where}: a value is required')
    origin = typing.get_origin(hint)
    if origin in (list, tuple):
        args = typing.get_args(hint)
        if isinstance(value, str):
            value = _split_list(value)
        elif hasattr(value, 'tolist') and not isinstance(value, (list, tuple)):
            value = value.tolist()      # numpy / array.array from rclpy
        if not isinstance(value, (list, tuple)):
            value = [value]
        if origin is tuple and Ellipsis not in args:
            if len(value) != len(args):
                raise ValueError(f'{where}: expected {len(args)} values, got {list(value)!r}')
            return tuple(_scalar(v, a, f'{where}[{i}]') for i, (v, a) in enumerate(zip(value, args)))
        item = args[0]
        items = [_scalar(v, item, f'{where}[{i}]') for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    return _scalar(value, hint, where)


def _check_number(x: float, info: dict, where: str) -> None:
    lo, hi = info.get('min'), info.get('max')
    if lo is not None and (x <= lo if info.get('exclusive_min') else x < lo):
        sign = '>' if info.get('exclusive_min') else '>='
        raise ValueError(f'{where} must be {sign} {lo:g}, got {x:g}')
    if hi is not None and x > hi:
        raise ValueError(f'{where} must be <= {hi:g}, got {x:g}')


def check(value: Any, meta: typing.Mapping[str, Any], where: str) -> None:
    """Apply a key's bounds and choices to an already converted value."""
    items = value if isinstance(value, (list, tuple)) else [value]
    for i, v in enumerate(items):
        at = f'{where}[{i}]' if isinstance(value, (list, tuple)) else where
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            _check_number(v, meta, at)
    choices = meta.get('choices')
    if choices and value not in choices:
        raise ValueError(f'{where} must be one of {list(choices)}, got {value!r}')
    item_choices = meta.get('item_choices')
    if item_choices:
        bad = [v for v in items if v not in item_choices]
        if bad:
            raise ValueError(f'{where}: {bad} not in {list(item_choices)}')


def build(cls: type, data: typing.Mapping[str, Any] | None, where: str = '') -> Any:
    """Instantiate config dataclass ``cls`` from a nested mapping (missing keys keep their defaults)."""
    data = {} if data is None else data
    if not isinstance(data, typing.Mapping):
        raise ValueError(f'{where or "config"}: expected a mapping, got {type(data).__name__}')
    hints = typing.get_type_hints(cls)
    fields_ = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields_))
    if unknown:
        raise ValueError(f'{where or "config"}: unknown key(s) {unknown}; known: {sorted(fields_)}')
    kwargs = {}
    for name, value in data.items():
        at = f'{where}.{name}' if where else name
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = build(hint, value, at)
            continue
        converted = coerce(value, hint, at)
        check(converted, fields_[name].metadata, at)
        kwargs[name] = converted
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ValueError(f'{where or "config"}: {exc}') from None


def validate(config: Any, where: str = '') -> None:
    """Check every key of an instantiated config (e.g. one built in code) against its declaration."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        at = f'{where}.{f.name}' if where else f.name
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(hints[f.name]):
            validate(value, at)
            continue
        check(coerce(value, hints[f.name], at), f.metadata, at)


def to_dict(config: Any) -> dict[str, Any]:
    """Nested plain dict (tuples as lists): YAML / JSON ready."""
    def plain(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        out[f.name] = to_dict(value) if dataclasses.is_dataclass(value) else plain(value)
    return out


def flatten(data: typing.Mapping[str, Any], prefix: str = '') -> dict[str, Any]:
    """Nested mapping -> {dotted name: value}."""
    out: dict[str, Any] = {}
    for k, v in data.items():
        name = f'{prefix}{k}'
        if isinstance(v, typing.Mapping):
            out.update(flatten(v, name + '.'))
        else:
            out[name] = v
    return out


def unflatten(flat: typing.Mapping[str, Any]) -> dict[str, Any]:
    """{dotted name: value} -> nested mapping."""
    out: dict[str, Any] = {}
    for name, value in flat.items():
        node = out
        *parents, leaf = str(name).split('.')
        for p in parents:
            child = node.setdefault(p, {})
            if not isinstance(child, dict):
                raise ValueError(f'config key {name!r} conflicts with {p!r}')
            node = child
        node[leaf] = value
    return out


def with_changes(config: Any, changes: typing.Mapping[str, Any]) -> Any:
    """Return a validated copy of ``config`` with dotted keys replaced (None values are ignored)."""
    changes = {k: v for k, v in changes.items() if v is not None}
    known = {info.name for info in iter_keys(type(config))}
    unknown = sorted(set(changes) - known)
    if unknown:
        raise ValueError(f'unknown config key(s) {unknown}')
    merged = flatten(to_dict(config))
    merged.update(changes)
    return build(type(config), unflatten(merged))
