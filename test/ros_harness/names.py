"""Name validation, expansion and remapping, and command-line arguments, as rcl and rmw do them.

Mirrors rmw's ``rmw_validate_full_topic_name`` / ``rmw_validate_namespace`` / ``rmw_validate_node_name``,
rcl's ``rcl_validate_topic_name``, ``rcl_expand_topic_name``, ``rcl_remap_*``, ``rcl_parse_arguments``
(``--ros-args`` ... ``--``: ``-r``/``--remap``, ``-p``/``--param``, ``--params-file``, ``--log-level``, the
rosout/stdout/external-lib switches, ``-e``/``--enclave``) and ``rcl_yaml_param_parser`` (typing of
scalars, homogeneous sequences, ``/**`` and ``/*`` node wildcards, nested parameter namespaces; a params
file that cannot be opened or parsed fails argument parsing, so ``rclpy.init`` raises). The messages are
rcl's and rmw's validation strings (the params-file ones shortened: no parser.c line numbers).
"""
from __future__ import annotations

from dataclasses import dataclass, field
import re
from typing import Any

import yaml

TOPIC_MAX_LENGTH = 247          # RMW_TOPIC_MAX_NAME_LENGTH
NODE_NAME_MAX_LENGTH = 255


def _full_name_error(name: str, what: str, allow_root: bool) -> tuple[str, int] | None:
    if not name:
        return f'{what} must not be empty', 0
    if name[0] != '/':
        return f"{what} must be absolute, it must lead with a '/'", 0
    if name == '/' and allow_root:
        return None
    if name.endswith('/'):
        return (f"{what} must not end with a '/'" + (", unless only a '/'" if allow_root else ''),
                len(name) - 1)
    for i, ch in enumerate(name):
        if not (ch.isascii() and (ch.isalnum() or ch in '_/')):
            return f"{what} must not contain characters other than alphanumerics, '_', or '/'", i
    if '//' in name:
        return f"{what} must not contain repeated '/'", name.index('//') + 1
    for m in re.finditer(r'/(\d)', name):
        return f'{what} must not have a token that starts with a number', m.start(1)
    if len(name) > TOPIC_MAX_LENGTH:
        return f"{what} length should not exceed '{TOPIC_MAX_LENGTH}'", TOPIC_MAX_LENGTH - 1
    return None


def full_topic_name_error(name: str) -> tuple[str, int] | None:
    """``rmw_validate_full_topic_name``: None when valid, else (message, index)."""
    return _full_name_error(name, 'topic name', allow_root=False)


def namespace_error(namespace: str) -> tuple[str, int] | None:
    """``rmw_validate_namespace``: None when valid, else (message, index)."""
    return _full_name_error(namespace, 'namespace', allow_root=True)


def node_name_error(name: str) -> tuple[str, int] | None:
    """``rmw_validate_node_name``: None when valid, else (message, index)."""
    if not name:
        return 'node name must not be empty', 0
    for i, ch in enumerate(name):
        if not (ch.isascii() and (ch.isalnum() or ch == '_')):
            return "node name must not contain characters other than alphanumerics or '_'", i
    if name[0].isdigit():
        return 'node name must not start with a number', 0
    if len(name) > NODE_NAME_MAX_LENGTH:
        return f"node name should not exceed '{NODE_NAME_MAX_LENGTH}'", NODE_NAME_MAX_LENGTH - 1
    return None


def topic_name_error(name: str) -> tuple[str, int] | None:
    """``rcl_validate_topic_name`` (relative names, ``~`` and ``{substitutions}`` allowed)."""
    if not name:
        return 'topic name must not be empty string', 0
    if name.endswith('/'):
        return 'topic name must not end with a forward slash', len(name) - 1
    depth = 0
    for i, ch in enumerate(name):
        if ch == '{':
            if depth:
                return "topic name must not have unmatched (unbalanced) curly braces '{}'", i
            depth = i + 1
            continue
        if ch == '}':
            if not depth:
                return "topic name must not have unmatched (unbalanced) curly braces '{}'", i
            sub = name[depth:i]
            if not sub or not all(c.isascii() and (c.isalnum() or c == '_') for c in sub):
                return "substitution name must not contain characters other than alphanumerics or '_'", depth
            if sub[0].isdigit():
                return 'substitution name must not start with a number', depth
            depth = 0
            continue
        if depth:
            continue
        if ch == '~':
            if i != 0:
                return ("topic name must not have tilde '~' unless it is the first character and followed "
                        "by a slash '/' if there are more characters", i)
            if len(name) > 1 and name[1] != '/':
                return "topic name must not have a tilde '~' that is not followed by a forward slash '/'", i
            continue
        if not (ch.isascii() and (ch.isalnum() or ch in '_/')):
            return "topic name must not contain characters other than alphanumerics, '_', '~', '{', or '}'", i
        if ch.isdigit() and (i == 0 or name[i - 1] == '/'):
            return 'topic name token must not start with a number', i
    if depth:
        return "topic name must not have unmatched (unbalanced) curly braces '{}'", depth - 1
    return None


def expand_topic_name(name: str, node_name: str, namespace: str) -> str:
    """``rcl_expand_topic_name``: ``~``, ``{node}``, ``{ns}``/``{namespace}`` and relative names.

    :raises ValueError: with rcl's wording when the name, node name or namespace is invalid.
    """
    error = topic_name_error(name)
    if error:
        raise ValueError(f"topic name '{name}' is invalid, {error[0]}, at index {error[1]}")
    if node_name_error(node_name):
        raise ValueError(f"node name '{node_name}' is invalid")
    if namespace_error(namespace):
        raise ValueError(f"node namespace '{namespace}' is invalid")
    base = '' if namespace == '/' else namespace
    if name.startswith('~'):
        name = f'{base}/{node_name}' + name[1:]
    for sub in re.findall(r'\{(\w+)\}', name):
        if sub == 'node':
            name = name.replace('{node}', node_name)
        elif sub in ('ns', 'namespace'):
            name = name.replace('{' + sub + '}', base)
        else:
            raise ValueError(f"topic name '{name}' is invalid, unknown substitution: {{{sub}}}")
    if not name.startswith('/'):
        name = f'{base}/{name}'
    return name


# -- command-line arguments ----------------------------------------------------------------------
LOG_LEVELS = {'unset': 0, 'debug': 10, 'info': 20, 'warn': 30, 'warning': 30, 'error': 40, 'fatal': 50}


@dataclass
class RemapRule:
    """One ``-r [node:]from:=to`` rule."""

    node: str | None
    source: str
    target: str


@dataclass
class Arguments:
    """What ``rcl_parse_arguments`` keeps from one argument vector."""

    remaps: list[RemapRule] = field(default_factory=list)
    params: list[tuple[str, dict[str, dict[str, Any]]]] = field(default_factory=list)   # (origin, params)
    log_levels: dict[str, int] = field(default_factory=dict)                           # '' = default
    enclave: str = '/'
    unparsed_ros: list[str] = field(default_factory=list)
    non_ros: list[str] = field(default_factory=list)


def parse_arguments(argv: list[str] | None) -> Arguments:
    """Parse an argument vector the way ``rcl_parse_arguments`` does (ROS arguments after ``--ros-args``).

    :raises RuntimeError: (``RCLInvalidROSArgsError`` in the binding) when a ROS argument is malformed.
    """
    out = Arguments()
    args = list(argv or [])
    i = 0
    in_ros = False
    while i < len(args):
        arg = args[i]
        if arg == '--ros-args':
            in_ros = True
        elif in_ros and arg == '--':
            in_ros = False
        elif not in_ros:
            out.non_ros.append(arg)
        elif arg in ('-r', '--remap', '-p', '--param', '--params-file', '--log-level', '-e', '--enclave',
                     '--log-config-file', '--log-file-name'):
            if i + 1 >= len(args):
                raise InvalidROSArgs(f"Couldn't parse trailing {arg} flag. No value given.")
            value = args[i + 1]
            i += 1
            if arg in ('-r', '--remap'):
                out.remaps.append(_parse_remap(value))
            elif arg in ('-p', '--param'):
                name, sep, text = value.partition(':=')
                if not sep or not name:
                    raise InvalidROSArgs(f"Couldn't parse parameter override rule: '{arg} {value}'")
                out.params.append(('-p', {'/**': {name: yaml_value(text)}}))
            elif arg == '--params-file':
                out.params.append((value, parse_params_file(value)))
            elif arg == '--log-level':
                name, sep, level = value.rpartition(':=')
                if level.lower() not in LOG_LEVELS:
                    raise InvalidROSArgs(f"Couldn't parse log level rule: '{value}'")
                out.log_levels[name if sep else ''] = LOG_LEVELS[level.lower()]
            elif arg in ('-e', '--enclave'):
                out.enclave = value
        elif arg in ('--enable-rosout-logs', '--disable-rosout-logs', '--enable-stdout-logs',
                     '--disable-stdout-logs', '--enable-external-lib-logs', '--disable-external-lib-logs'):
            pass
        else:
            out.unparsed_ros.append(arg)
        i += 1
    return out


class InvalidROSArgs(RuntimeError):
    """A malformed ROS argument (``RCL_RET_INVALID_ROS_ARGS``)."""


def _parse_remap(rule: str) -> RemapRule:
    source, sep, target = rule.partition(':=')
    if not sep or not source or not target:
        raise InvalidROSArgs(f"Couldn't parse remap rule: '-r {rule}'")
    node = None
    if ':' in source:               # node-specific rule: node_name:from:=to
        node, source = source.split(':', 1)
    return RemapRule(node, source, target)


def remap_name(name: str, node_name: str, namespace: str, rules: list[RemapRule]) -> str | None:
    """``rcl_remap_topic_name``/``rcl_remap_service_name``: the first matching rule's target, or None."""
    for rule in rules:
        if rule.source.startswith('__') or (rule.node is not None and rule.node != node_name):
            continue
        try:
            if expand_topic_name(rule.source, node_name, namespace) == name:
                return expand_topic_name(rule.target, node_name, namespace)
        except ValueError:
            continue
    return None


def remap_node(kind: str, node_name: str, rules: list[RemapRule]) -> str | None:
    """``__node``/``__name`` or ``__ns`` remapping for a node (None when no rule applies)."""
    keys = ('__node', '__name') if kind == 'node' else ('__ns',)
    for rule in rules:
        if rule.source in keys and (rule.node is None or rule.node == node_name):
            return rule.target
    return None


# -- parameters (rcl_yaml_param_parser) --------------------------------------------------------------
_BOOL_TRUE = {'Y', 'y', 'yes', 'Yes', 'YES', 'true', 'True', 'TRUE', 'on', 'On', 'ON'}
_BOOL_FALSE = {'N', 'n', 'no', 'No', 'NO', 'false', 'False', 'FALSE', 'off', 'Off', 'OFF'}
_SPECIAL_FLOATS = {'.nan': float('nan'), '.inf': float('inf'), '+.inf': float('inf'), '-.inf': float('-inf')}


def scalar_value(text: str, quoted: bool) -> Any:
    """Type one YAML scalar as rcl does: quoted -> string; else bool, int (strtoll), double, string."""
    if quoted:
        return text
    if text in _BOOL_TRUE:
        return True
    if text in _BOOL_FALSE:
        return False
    try:
        return int(text, 0)
    except ValueError:
        pass
    if text.lower() in _SPECIAL_FLOATS:
        return _SPECIAL_FLOATS[text.lower()]
    try:
        if text.strip() == text and text and not text.lower().startswith(('nan', 'inf', '-inf', '+inf')):
            return float(text)
    except ValueError:
        pass
    return text


class ParamsError(RuntimeError):
    """A parameter file or value rcl_yaml_param_parser refuses."""


def _typed(node: yaml.Node, where: str) -> Any:
    if isinstance(node, yaml.ScalarNode):
        if node.tag == 'tag:yaml.org,2002:str' and node.style not in ('"', "'") and node.value == '':
            raise ParamsError(f'No value at line {node.start_mark.line + 1}')
        return scalar_value(node.value, node.style in ('"', "'"))
    if isinstance(node, yaml.SequenceNode):
        values = [_typed(v, where) for v in node.value]
        if any(not isinstance(v, (bool, int, float, str)) for v in values):
            raise ParamsError(f'Sequences can only contain scalars ({where})')
        kinds = {bool if isinstance(v, bool) else type(v) for v in values}
        if len(kinds) > 1:
            raise ParamsError(f'Sequence should be of same type. ({where}, line {node.start_mark.line + 1})')
        return values
    raise ParamsError(f'unexpected YAML node at line {node.start_mark.line + 1}')


def yaml_value(text: str) -> Any:
    """Type the value of ``-p name:=value`` (parsed as YAML, typed like the parameter file)."""
    node = yaml.compose(text) if text.strip() else yaml.ScalarNode('tag:yaml.org,2002:str', '', style="'")
    return _typed(node, 'parameter override')


def parse_params_file(path: str) -> dict[str, dict[str, Any]]:
    """``{node name pattern: {parameter: value}}`` from a ROS 2 parameter file."""
    # rcl_yaml_param_parser fails (and rcl_parse_arguments with it) on a file it cannot open or parse
    try:
        with open(path, encoding='utf-8') as handle:
            root = yaml.compose(handle)
    except OSError as exc:
        raise ParamsError(f"Couldn't parse params file: '--params-file {path}'. Error: Error opening YAML "
                          f'file ({exc.strerror})') from None
    except yaml.YAMLError as exc:
        detail = ' '.join(str(exc).split())
        raise ParamsError(f"Couldn't parse params file: '--params-file {path}'. Error: {detail}") from None
    out: dict[str, dict[str, Any]] = {}
    if root is None:
        return out
    if not isinstance(root, yaml.MappingNode):
        raise ParamsError(f'{path}: the top level must be a map of node names')

    def nodes(mapping: yaml.MappingNode, prefix: list[str]) -> None:
        for key, value in mapping.value:
            if key.value == 'ros__parameters':
                if not prefix:
                    raise ParamsError(f'There are no node names before ros__parameters at line '
                                      f'{key.start_mark.line + 1}')
                name = '/'.join(prefix)
                name = name if name.startswith('/') else '/' + name
                params = out.setdefault(name, {})
                if isinstance(value, yaml.MappingNode):
                    _params(value, [], params)
                continue
            if not isinstance(value, yaml.MappingNode):
                raise ParamsError('Cannot have a value before ros__parameters at line '
                                  f'{key.start_mark.line + 1}')
            name = key.value if key.value in ('/**', '/*') else key.value.strip('/')
            nodes(value, prefix + [name])

    def _params(mapping: yaml.MappingNode, prefix: list[str], params: dict[str, Any]) -> None:
        for key, value in mapping.value:
            name = '.'.join(prefix + [key.value])
            if isinstance(value, yaml.MappingNode):
                _params(value, prefix + [key.value], params)
            else:
                params[name] = _typed(value, f'{path}: {name}')

    nodes(root, [])
    return {k.replace('//', '/'): v for k, v in out.items()}


def node_pattern_matches(pattern: str, node_fqn: str) -> bool:
    r"""Tell whether a parameter-file node key applies to a node (rclpy's ``/*`` -> ``(/\w+)`` regex)."""
    regex = pattern.replace('/*', r'(/\w+)')
    return re.fullmatch(regex, node_fqn) is not None
