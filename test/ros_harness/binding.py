r"""Stand-in for ``rclpy._rclpy_pybind11``, rclpy's compiled binding (Jazzy), over the in-process middleware.

Provides exactly the names rclpy's Python layer uses (``grep -o '_rclpy\\.[A-Za-z_]*' rclpy/*.py``), with
the semantics of the C++ classes in ros2/rclpy ``src/rclpy/*.cpp`` and of the rcl calls they wrap:
``Destroyable`` (``with handle:``, ``destroy_when_not_in_use``, ``InvalidHandle``), ``Context``, ``Node``
(names, remapping, parameter overrides from the command line and parameter files, graph queries, a
/rosout publisher), ``Publisher``/``Subscription`` (CDR through the message type support), ``Service``/
``Client``, ``Timer`` (``rcl_timer_*`` including ROS-time jumps), ``Clock`` (ROS time override and jump
callbacks), ``WaitSet`` (``rcl_wait``: guard conditions consumed when they wake a wait, timers bound the
timeout unless they run on an overridden ROS clock), ``EventHandle`` (matched and incompatible-QoS events),
rcutils logging (severity levels per logger, console output, /rosout), signal-handler options, QoS
profiles and compatibility, name validation and expansion, serialization.

Build one with :func:`build_module`; every module object gets its own middleware and state.
"""
from __future__ import annotations

import enum
import itertools
import os
import sys
import threading
import time
import types
from typing import Any, Callable

from . import names as rcl_names
from .middleware import Endpoint, Middleware, QoS, check_compatible

RCL_DEFAULT_DOMAIN_ID = 2 ** 64 - 1          # SIZE_MAX: read ROS_DOMAIN_ID, else 0
RMW_IMPLEMENTATION = 'rmw_ovp_harness_inprocess'
_pointers = itertools.count(0x1000, 0x10)


class ClockType(enum.IntEnum):
    UNINITIALIZED = 0
    ROS_TIME = 1
    SYSTEM_TIME = 2
    STEADY_TIME = 3


class ClockChange(enum.IntEnum):
    ROS_TIME_NO_CHANGE = 1
    ROS_TIME_ACTIVATED = 2
    ROS_TIME_DEACTIVATED = 3
    SYSTEM_TIME_NO_CHANGE = 4


class QoSCompatibility(enum.IntEnum):
    OK = 0
    WARNING = 1
    ERROR = 2


class GoalEvent(enum.IntEnum):
    EXECUTE = 0
    CANCEL_GOAL = 1
    SUCCEED = 2
    ABORT = 3
    CANCELED = 4


class SignalHandlerOptions(enum.IntEnum):
    NO = 0
    SIGINT = 1
    SIGTERM = 2
    ALL = 3


class RCUTILS_LOG_SEVERITY(enum.IntEnum):  # noqa: N801 (the binding's name)
    RCUTILS_LOG_SEVERITY_UNSET = 0
    RCUTILS_LOG_SEVERITY_DEBUG = 10
    RCUTILS_LOG_SEVERITY_INFO = 20
    RCUTILS_LOG_SEVERITY_WARN = 30
    RCUTILS_LOG_SEVERITY_ERROR = 40
    RCUTILS_LOG_SEVERITY_FATAL = 50


class rcl_subscription_event_type_t(enum.IntEnum):  # noqa: N801
    RCL_SUBSCRIPTION_REQUESTED_DEADLINE_MISSED = 0
    RCL_SUBSCRIPTION_LIVELINESS_CHANGED = 1
    RCL_SUBSCRIPTION_REQUESTED_INCOMPATIBLE_QOS = 2
    RCL_SUBSCRIPTION_MESSAGE_LOST = 3
    RCL_SUBSCRIPTION_INCOMPATIBLE_TYPE = 4
    RCL_SUBSCRIPTION_MATCHED = 5


class rcl_publisher_event_type_t(enum.IntEnum):  # noqa: N801
    RCL_PUBLISHER_OFFERED_DEADLINE_MISSED = 0
    RCL_PUBLISHER_LIVELINESS_LOST = 1
    RCL_PUBLISHER_OFFERED_INCOMPATIBLE_QOS = 2
    RCL_PUBLISHER_INCOMPATIBLE_TYPE = 3
    RCL_PUBLISHER_MATCHED = 4


class rmw_qos_policy_kind_t(enum.IntEnum):  # noqa: N801
    RMW_QOS_POLICY_INVALID = 1 << 0
    RMW_QOS_POLICY_DURABILITY = 1 << 1
    RMW_QOS_POLICY_DEADLINE = 1 << 2
    RMW_QOS_POLICY_LIVELINESS = 1 << 3
    RMW_QOS_POLICY_RELIABILITY = 1 << 4
    RMW_QOS_POLICY_HISTORY = 1 << 5
    RMW_QOS_POLICY_LIFESPAN = 1 << 6
    RMW_QOS_POLICY_DEPTH = 1 << 7
    RMW_QOS_POLICY_LIVELINESS_LEASE_DURATION = 1 << 8
    RMW_QOS_POLICY_AVOID_ROS_NAMESPACE_CONVENTIONS = 1 << 9


_EVENT_KINDS = {
    rcl_subscription_event_type_t.RCL_SUBSCRIPTION_REQUESTED_DEADLINE_MISSED: 'deadline',
    rcl_subscription_event_type_t.RCL_SUBSCRIPTION_LIVELINESS_CHANGED: 'liveliness',
    rcl_subscription_event_type_t.RCL_SUBSCRIPTION_REQUESTED_INCOMPATIBLE_QOS: 'requested_incompatible_qos',
    rcl_subscription_event_type_t.RCL_SUBSCRIPTION_MESSAGE_LOST: 'message_lost',
    rcl_subscription_event_type_t.RCL_SUBSCRIPTION_MATCHED: 'matched',
}
_PUBLISHER_EVENT_KINDS = {
    rcl_publisher_event_type_t.RCL_PUBLISHER_OFFERED_DEADLINE_MISSED: 'deadline',
    rcl_publisher_event_type_t.RCL_PUBLISHER_LIVELINESS_LOST: 'liveliness',
    rcl_publisher_event_type_t.RCL_PUBLISHER_OFFERED_INCOMPATIBLE_QOS: 'offered_incompatible_qos',
    rcl_publisher_event_type_t.RCL_PUBLISHER_MATCHED: 'matched',
}


def build_module(registry: Any) -> types.ModuleType:
    """Return a fresh ``rclpy._rclpy_pybind11`` stand-in (own middleware, loggers and contexts)."""
    m = types.ModuleType('rclpy._rclpy_pybind11', __doc__)
    state = _State(registry)
    m._harness_state = state
    for name, value in dict(globals()).items():
        if isinstance(value, type) and issubclass(value, enum.Enum):
            setattr(m, name, value)
    m.RCL_DEFAULT_DOMAIN_ID = RCL_DEFAULT_DOMAIN_ID
    m.RMW_DURATION_INFINITE = 9223372036854775807
    m.RMW_QOS_DEADLINE_BEST_AVAILABLE = 9223372036854775806
    m.RMW_QOS_LIVELINESS_LEASE_DURATION_BEST_AVAILABLE = 9223372036854775806
    _define_exceptions(m)
    _define_entities(m, state)
    _define_functions(m, state)
    return m


class _State:
    """Everything the C layer keeps globally: middleware, contexts, logging, signal handling."""

    def __init__(self, registry: Any) -> None:
        self.registry = registry
        self.middleware = Middleware()
        self.contexts: list[Any] = []
        self.log_levels: dict[str, int] = {}
        self.default_log_level = 20
        self.log_records: list[tuple[int, str, str]] = []
        self.rosout_loggers: dict[str, list[Any]] = {}     # logger name -> nodes publishing its logs
        self.sigint_guards: list[Any] = []
        self.signal_options = SignalHandlerOptions.NO
        self.console = True


def _define_exceptions(m: types.ModuleType) -> None:
    class RCLError(RuntimeError):
        """rcl returned an error."""

    m.RCLError = RCLError
    m.RCUtilsError = type('RCUtilsError', (RuntimeError,), {})
    m.RMWError = type('RMWError', (RuntimeError,), {})
    m.RCLInvalidROSArgsError = type('RCLInvalidROSArgsError', (RCLError,), {})
    m.UnknownROSArgsError = type('UnknownROSArgsError', (RuntimeError,), {})
    m.NodeNameNonExistentError = type('NodeNameNonExistentError', (RCLError,), {})
    m.UnsupportedEventTypeError = type('UnsupportedEventTypeError', (RCLError,), {})
    m.NotImplementedError = type('NotImplementedError', (NotImplementedError,), {})
    m.InvalidHandle = type('InvalidHandle', (RuntimeError,), {})


def _define_entities(m: types.ModuleType, state: _State) -> None:  # noqa: C901 (one binding, many classes)
    registry = state.registry
    mw = state.middleware

    class Destroyable:
        """``rclpy::Destroyable``: use counting, deferred destruction, InvalidHandle after destroy."""

        def __init__(self) -> None:
            self._use_count = 0
            self._please_destroy = False
            self._destroyed = False
            self._pointer = next(_pointers)

        @property
        def pointer(self) -> int:
            return self._pointer

        def __enter__(self) -> None:
            if self._please_destroy:
                raise m.InvalidHandle('cannot use Destroyable because destruction was requested')
            self._use_count += 1

        def __exit__(self, *exc: Any) -> None:
            self._use_count -= 1
            if self._please_destroy and self._use_count == 0:
                self._do_destroy()

        def destroy_when_not_in_use(self) -> None:
            if self._please_destroy:
                return
            self._please_destroy = True
            if self._use_count == 0:
                self._do_destroy()

        def _do_destroy(self) -> None:
            if not self._destroyed:
                self._destroyed = True
                self.destroy()

        def destroy(self) -> None:
            pass

    m.Destroyable = Destroyable

    # -- time ----------------------------------------------------------------------------------------
    class rcl_time_point_t:  # noqa: N801
        def __init__(self, nanoseconds: int = 0, clock_type: Any = ClockType.SYSTEM_TIME) -> None:
            self.nanoseconds = int(nanoseconds)
            self.clock_type = ClockType(int(clock_type))

    class rcl_duration_t:  # noqa: N801
        def __init__(self, nanoseconds: int = 0) -> None:
            self.nanoseconds = int(nanoseconds)

    m.rcl_time_point_t, m.rcl_duration_t = rcl_time_point_t, rcl_duration_t

    class Clock(Destroyable):
        """``rcl_clock_t``: system, steady or ROS time (with override and jump callbacks)."""

        def __init__(self, clock_type: Any) -> None:
            super().__init__()
            self.clock_type = ClockType(int(clock_type))
            if self.clock_type == ClockType.UNINITIALIZED:
                raise m.RCLError('failed to initialize clock')
            self._override_enabled = False
            self._override_ns = 0
            self._callbacks: list[tuple[Any, bool, int, int]] = []
            self._lock = threading.RLock()

        def now_ns(self) -> int:
            if self.clock_type == ClockType.STEADY_TIME:
                return time.monotonic_ns()
            if self.clock_type == ClockType.ROS_TIME and self._override_enabled:
                return self._override_ns
            return time.time_ns()

        def get_now(self) -> Any:
            return rcl_time_point_t(self.now_ns(), self.clock_type)

        def get_ros_time_override_is_enabled(self) -> bool:
            self._require_ros()
            return self._override_enabled

        def _require_ros(self) -> None:
            if self.clock_type != ClockType.ROS_TIME:
                raise m.RCLError('clock is not of type ROS time')

        def set_ros_time_override_is_enabled(self, enabled: bool) -> None:
            self._require_ros()
            if bool(enabled) == self._override_enabled:
                return
            change = ClockChange.ROS_TIME_ACTIVATED if enabled else ClockChange.ROS_TIME_DEACTIVATED
            self._jump(change, 0, lambda: setattr(self, '_override_enabled', bool(enabled)))

        def set_ros_time_override(self, time_point: Any) -> None:
            self._require_ros()
            new = int(time_point.nanoseconds)
            if self._override_enabled:
                self._jump(ClockChange.ROS_TIME_NO_CHANGE, new - self._override_ns,
                           lambda: setattr(self, '_override_ns', new))
            else:
                self._override_ns = new
            mw.notify()

        def _jump(self, change: ClockChange, delta: int, apply: Callable[[], None]) -> None:
            """``_rcl_clock_call_callbacks`` before and after applying the change."""
            with self._lock:
                callbacks = [c for c in self._callbacks if self._selected(c, change, delta)]
            for handle, *_ in callbacks:
                handle_pre = getattr(handle, '_pre_callback', None)
                if handle_pre is not None:
                    handle_pre()
            apply()
            for handle, *_ in callbacks:
                post = getattr(handle, '_post_callback', None)
                if post is not None:
                    post({'clock_change': change, 'delta': delta})
            mw.notify()

        @staticmethod
        def _selected(entry: tuple, change: ClockChange, delta: int) -> bool:
            _, on_change, min_forward, min_backward = entry
            if change in (ClockChange.ROS_TIME_ACTIVATED, ClockChange.ROS_TIME_DEACTIVATED):
                return on_change
            if delta > 0 and min_forward > 0 and delta >= min_forward:
                return True
            return delta < 0 and min_backward < 0 and delta <= min_backward

        def add_clock_callback(self, pyjump_handle: Any, on_clock_change: bool, min_forward: int,
                               min_backward: int) -> None:
            with self._lock:
                self._callbacks.append((pyjump_handle, bool(on_clock_change), int(min_forward),
                                        int(min_backward)))

        def remove_clock_callback(self, pyjump_handle: Any) -> None:
            with self._lock:
                before = len(self._callbacks)
                self._callbacks = [c for c in self._callbacks if c[0] is not pyjump_handle]
                if len(self._callbacks) == before:
                    raise m.RCLError('failed to remove time jump callback')

    m.Clock = Clock

    class ClockEvent:
        """``rclpy::ClockEvent``: an event that waits until a clock reaches a time point."""

        def __init__(self) -> None:
            self._event = threading.Event()

        def _wait_until(self, clock: Any, until: Any) -> None:
            while not self._event.is_set():
                remaining = until.nanoseconds - clock.now_ns()
                overridden = clock.clock_type == ClockType.ROS_TIME and clock._override_enabled
                if remaining <= 0 and not overridden:
                    return
                self._event.wait(min(max(remaining, 0) / 1e9, 0.05) or 0.05)

        wait_until_steady = wait_until_system = wait_until_ros = _wait_until

        def is_set(self) -> bool:
            return self._event.is_set()

        def set(self) -> None:
            self._event.set()

        def clear(self) -> None:
            self._event.clear()

    m.ClockEvent = ClockEvent

    # -- context ------------------------------------------------------------------------------------
    class Context(Destroyable):
        """``rcl_context_t`` initialised from the process arguments."""

        def __init__(self, pyargs: list[str], domain_id: int) -> None:
            super().__init__()
            try:
                self.arguments = rcl_names.parse_arguments(list(pyargs))
            except (rcl_names.InvalidROSArgs, rcl_names.ParamsError) as exc:
                raise m.RCLError(f'failed to initialize rcl: {exc}') from None
            if self.arguments.unparsed_ros:
                raise m.UnknownROSArgsError(repr(self.arguments.unparsed_ros))
            if domain_id == RCL_DEFAULT_DOMAIN_ID:
                domain_id = int(os.environ.get('ROS_DOMAIN_ID', '0') or 0)
            self.domain_id = int(domain_id)
            self.domain = mw.domain(self.domain_id)
            self._ok = True
            state.contexts.append(self)

        def get_domain_id(self) -> int:
            return self.domain_id

        def ok(self) -> bool:
            return self._ok

        def shutdown(self) -> None:
            if not self._ok:
                raise m.RCLError('failed to shutdown: rcl_shutdown already called on the given context')
            self._ok = False
            if self in state.contexts:
                state.contexts.remove(self)
            mw.notify()

    m.Context = Context

    # -- node ---------------------------------------------------------------------------------------
    class Node(Destroyable):
        """``rcl_node_t``: name, namespace, arguments, its /rosout publisher."""

        def __init__(self, node_name: str, namespace_: str, context: Any, pycli_args: Any,
                     use_global_arguments: bool, enable_rosout: bool) -> None:
            super().__init__()
            try:
                self.arguments = rcl_names.parse_arguments(['--ros-args', *pycli_args] if pycli_args else [])
            except rcl_names.InvalidROSArgs as exc:
                raise m.RCLInvalidROSArgsError(f'Failed to parse ROS arguments: {exc}') from None
            except rcl_names.ParamsError as exc:
                raise m.RCLError(f'failed to parse arguments: {exc}') from None
            if self.arguments.unparsed_ros:
                raise m.UnknownROSArgsError(repr(self.arguments.unparsed_ros))
            self.context = context
            self.use_global_arguments = use_global_arguments
            rules = self.remap_rules()
            node_name = rcl_names.remap_node('node', node_name, rules) or node_name
            namespace_ = rcl_names.remap_node('ns', node_name, rules) or namespace_ or '/'
            if not namespace_.startswith('/'):
                namespace_ = '/' + namespace_
            if rcl_names.node_name_error(node_name):
                raise ValueError(f'invalid node name: {rcl_names.node_name_error(node_name)[0]}')
            if rcl_names.namespace_error(namespace_):
                raise ValueError(f'invalid node namespace: {rcl_names.namespace_error(namespace_)[0]}')
            if not context.ok():
                raise m.RCLError('error creating node: context is shut down')
            self.name, self.namespace = node_name, namespace_
            self.domain = context.domain
            self.rosout = None
            with mw.cv:
                self.domain.nodes.append(self)
            if enable_rosout:
                self.rosout = self.domain.add(Endpoint('publisher', self, '/rosout', 'rcl_interfaces/msg/Log',
                                                       QoS(depth=1000, durability=1, lifespan=10 ** 10)))
                state.rosout_loggers.setdefault(self.logger_name(), []).append(self)

        def remap_rules(self) -> list[Any]:
            rules = list(self.arguments.remaps)
            if self.use_global_arguments:
                rules += self.context.arguments.remaps
            return rules

        def destroy(self) -> None:
            with mw.cv:
                if self in self.domain.nodes:
                    self.domain.nodes.remove(self)
            if self.rosout is not None:
                self.domain.remove(self.rosout)
                nodes = state.rosout_loggers.get(self.logger_name(), [])
                if self in nodes:
                    nodes.remove(self)

        def get_fully_qualified_name(self) -> str:
            return (self.namespace.rstrip('/') or '') + '/' + self.name

        def logger_name(self) -> str:
            return '.'.join([*self.namespace.strip('/').split('/'), self.name]).lstrip('.')

        def get_node_name(self) -> str:
            return self.name

        def get_namespace(self) -> str:
            return self.namespace

        def _count(self, kind: str, name: str) -> int:
            return self.domain.count(kind, name)

        def get_count_publishers(self, topic: str) -> int:
            return self._count('publisher', topic)

        def get_count_subscribers(self, topic: str) -> int:
            return self._count('subscription', topic)

        def get_count_clients(self, service: str) -> int:
            return self._count('client', service)

        def get_count_services(self, service: str) -> int:
            return self._count('service', service)

        def get_node_names_and_namespaces(self) -> list[tuple[str, str]]:
            with mw.cv:
                return [(n.name, n.namespace) for n in self.domain.nodes]

        def get_node_names_and_namespaces_with_enclaves(self) -> list[tuple[str, str, str]]:
            with mw.cv:
                return [(n.name, n.namespace, n.context.arguments.enclave) for n in self.domain.nodes]

        def get_parameters(self, pyparameter_cls: Any) -> dict[str, Any]:
            """Parameter overrides for this node from the global then the node's arguments."""
            fqn = self.get_fully_qualified_name()
            out: dict[str, Any] = {}
            sources = ([self.context.arguments] if self.use_global_arguments else []) + [self.arguments]
            for args in sources:
                for _, by_node in args.params:
                    for pattern, params in by_node.items():
                        if rcl_names.node_pattern_matches(pattern, fqn):
                            for name, value in params.items():
                                out[name] = _parameter(pyparameter_cls, name, value)
            return out

        def get_action_client_names_and_types_by_node(self, name: str, namespace: str) -> list:
            return []

        get_action_server_names_and_types_by_node = get_action_client_names_and_types_by_node

        def get_action_names_and_types(self) -> list:
            return []

    def _parameter(pyparameter_cls: Any, name: str, value: Any) -> Any:
        type_cls = pyparameter_cls.Type
        if isinstance(value, list):
            if not value:
                return pyparameter_cls(name, type_cls.NOT_SET, None)
            kind = {bool: 'BOOL_ARRAY', int: 'INTEGER_ARRAY', float: 'DOUBLE_ARRAY', str: 'STRING_ARRAY'}
            return pyparameter_cls(name, getattr(type_cls, kind[type(value[0])]), list(value))
        kind = {bool: 'BOOL', int: 'INTEGER', float: 'DOUBLE', str: 'STRING'}
        return pyparameter_cls(name, getattr(type_cls, kind[type(value)]), value)

    m.Node = Node

    def resolve(node: Any, name: str, only_expand: bool, is_service: bool) -> str:
        """``rcl_node_resolve_name``: expand, remap (unless only_expand), validate."""
        what = 'service' if is_service else 'topic'
        try:
            expanded = rcl_names.expand_topic_name(name, node.name, node.namespace)
        except ValueError as exc:
            raise m.RCLError(f'failed to resolve name: {exc}') from None
        if not only_expand:
            expanded = rcl_names.remap_name(expanded, node.name, node.namespace,
                                            node.remap_rules()) or expanded
        error = rcl_names.full_topic_name_error(expanded)
        if error:
            raise m.RCLError(f"failed to resolve name: {what} name '{expanded}' is invalid: {error[0]}")
        return expanded

    def _type_support(pytype: Any) -> Any:
        support = pytype._TYPE_SUPPORT if hasattr(pytype, '_TYPE_SUPPORT') else None
        if support is None:
            raise AttributeError(f'{pytype!r} has no _TYPE_SUPPORT: __import_type_support__() was not called')
        return support

    def _qos(profile: Any) -> QoS:
        return QoS(**vars(profile)) if profile is not None else QoS()

    class _Endpoint(Destroyable):
        kind = ''
        events: dict = {}

        def __init__(self, node: Any, pytype: Any, name: str, qos: Any, *, is_service: bool = False) -> None:
            super().__init__()
            self.node = node
            self.pytype = pytype
            self.support = _type_support(pytype)
            try:
                self.name = resolve(node, name, False, is_service)
            except m.RCLError:
                what = 'service' if is_service else 'topic'
                raise ValueError(
                    f"Failed to create {self.kind} due to invalid {what} name '{name}'") from None
            self.endpoint = Endpoint(self.kind, node, self.name, self.support.ros_name, _qos(qos))

        def destroy(self) -> None:
            self.node.domain.remove(self.endpoint)

        def get_logger_name(self) -> str:
            return self.node.logger_name()

        def get_topic_name(self) -> str:
            return self.name

        @property
        def ready(self) -> bool:
            return bool(self.endpoint.queue)

    class Publisher(_Endpoint):
        kind = 'publisher'

        def __init__(self, node: Any, pymsg_type: Any, topic: str, pyqos_profile: Any) -> None:
            super().__init__(node, pymsg_type, topic, pyqos_profile)
            node.domain.add(self.endpoint)

        def publish(self, pymsg: Any) -> None:
            if not isinstance(pymsg, self.pytype):
                raise TypeError(f'Expected {self.pytype}, got {type(pymsg)}')
            self.node.domain.publish(self.endpoint, self.support.serialize(pymsg))

        def publish_raw(self, msg: bytes) -> None:
            self.node.domain.publish(self.endpoint, bytes(msg))

        def get_subscription_count(self) -> int:
            return len(self.endpoint.matched)

        def wait_for_all_acked(self, timeout: Any) -> bool:
            return True

    class Subscription(_Endpoint):
        kind = 'subscription'

        def __init__(self, node: Any, pymsg_type: Any, topic: str, pyqos_profile: Any) -> None:
            super().__init__(node, pymsg_type, topic, pyqos_profile)
            node.domain.add(self.endpoint)

        def take_message(self, pymsg_type: Any, raw: bool) -> Any:
            item = self.node.domain.take(self.endpoint)
            if item is None:
                return None
            data, info = item
            msg = data if raw else _type_support(pymsg_type).deserialize(data, pymsg_type)
            return msg, info

        def get_publisher_count(self) -> int:
            return len(self.endpoint.matched)

    m.Publisher, m.Subscription = Publisher, Subscription

    class rmw_request_id_t:  # noqa: N801
        def __init__(self, sequence_number: int = 0, writer_guid: Any = None) -> None:
            self.sequence_number = sequence_number
            self.writer_guid = writer_guid if writer_guid is not None else [0] * 16

    class rmw_service_info_t:  # noqa: N801
        def __init__(self, request_id: Any = None, source_timestamp: int = 0, received_timestamp: int = 0):
            self.request_id = request_id or rmw_request_id_t()
            self.source_timestamp = source_timestamp
            self.received_timestamp = received_timestamp

    m.rmw_request_id_t, m.rmw_service_info_t = rmw_request_id_t, rmw_service_info_t

    class Service(_Endpoint):
        kind = 'service'

        def __init__(self, node: Any, pysrv_type: Any, service_name: str, pyqos_profile: Any) -> None:
            super().__init__(node, pysrv_type, service_name, pyqos_profile, is_service=True)
            self.srv_type = pysrv_type
            self._clients: dict[int, Any] = {}
            node.domain.add(self.endpoint)

        @property
        def name(self) -> str:
            return self._name

        @name.setter
        def name(self, value: str) -> None:
            self._name = value

        def service_take_request(self, pyrequest_type: Any) -> tuple[Any, Any]:
            item = self.node.domain.take(self.endpoint)
            if item is None:
                return None, None
            data, client, sequence, stamp = item
            self._clients[sequence, id(client)] = client
            request = _type_support(pyrequest_type).deserialize(data, pyrequest_type)
            guid = list(client.gid.to_bytes(16, 'little'))
            return request, rmw_service_info_t(rmw_request_id_t(sequence, guid), stamp, time.time_ns())

        def service_send_response(self, pyresponse: Any, header: Any) -> None:
            gid = int.from_bytes(bytes(header.writer_guid), 'little')
            for (sequence, _), client in list(self._clients.items()):
                if sequence == header.sequence_number and client.gid == gid:
                    del self._clients[sequence, id(client)]
                    data = _type_support(type(pyresponse)).serialize(pyresponse)
                    self.node.domain.send_response(client, sequence, data)
                    return
            raise m.RCLError('failed to send response: no such request')

        def configure_introspection(self, *args: Any) -> None:
            pass

    class Client(_Endpoint):
        kind = 'client'

        def __init__(self, node: Any, pysrv_type: Any, service_name: str, pyqos_profile: Any) -> None:
            super().__init__(node, pysrv_type, service_name, pyqos_profile, is_service=True)
            self.service_name = self.name
            node.domain.add(self.endpoint)

        def send_request(self, pyrequest: Any) -> int:
            data = _type_support(type(pyrequest)).serialize(pyrequest)
            return self.node.domain.send_request(self.endpoint, data)

        def take_response(self, pyresponse_type: Any) -> tuple[Any, Any]:
            item = self.node.domain.take(self.endpoint)
            if item is None:
                return None, None
            data, sequence, stamp = item
            response = _type_support(pyresponse_type).deserialize(data, pyresponse_type)
            return rmw_service_info_t(rmw_request_id_t(sequence), stamp, time.time_ns()), response

        def service_server_is_available(self) -> bool:
            return self.node.domain.service_available(self.endpoint)

        def configure_introspection(self, *args: Any) -> None:
            pass

    m.Service, m.Client = Service, Client
    m.service_introspection = types.SimpleNamespace(
        ServiceIntrospectionState=enum.IntEnum('ServiceIntrospectionState', {'OFF': 0, 'METADATA': 1,
                                                                             'CONTENTS': 2}))

    class TypeDescriptionService(Destroyable):
        """``~/get_type_description``: present in the graph; answers that descriptions are not modelled."""

        def __init__(self, node: Any) -> None:
            super().__init__()
            srv = registry.service_class('type_description_interfaces/srv/GetTypeDescription')
            srv.__class__.__import_type_support__()
            self.impl = Service(node, srv, '~/get_type_description', None)

        def handle_request(self, request: Any, response_type: Any, node: Any) -> Any:
            return response_type(successful=False, failure_reason='type descriptions are not modelled by the '
                                                                  'ROS 2 test harness')

        def destroy(self) -> None:
            self.impl.destroy_when_not_in_use()

    m.TypeDescriptionService = TypeDescriptionService

    # -- events -------------------------------------------------------------------------------------
    def _status_class(name: str, fields: tuple[str, ...]) -> type:
        def init(self: Any, **kw: Any) -> None:
            for f in fields:
                setattr(self, f, kw.get(f, 0))

        def rep(self: Any) -> str:
            return f'{name}({", ".join(f"{f}={getattr(self, f)}" for f in fields)})'
        return type(name, (), {'__init__': init, '__slots__': fields, '__repr__': rep})

    counts = ('total_count', 'total_count_change')
    m.rmw_requested_deadline_missed_status_t = _status_class('rmw_requested_deadline_missed_status_t', counts)
    m.rmw_offered_deadline_missed_status_t = _status_class('rmw_offered_deadline_missed_status_t', counts)
    m.rmw_message_lost_status_t = _status_class('rmw_message_lost_status_t', counts)
    m.rmw_liveliness_lost_status_t = _status_class('rmw_liveliness_lost_status_t', counts)
    m.rmw_liveliness_changed_status_t = _status_class(
        'rmw_liveliness_changed_status_t', ('alive_count', 'not_alive_count', 'alive_count_change',
                                            'not_alive_count_change'))
    m.rmw_requested_qos_incompatible_event_status_t = _status_class(
        'rmw_requested_qos_incompatible_event_status_t', (*counts, 'last_policy_kind'))
    m.rmw_offered_qos_incompatible_event_status_t = m.rmw_requested_qos_incompatible_event_status_t
    m.rmw_matched_status_t = _status_class('rmw_matched_status_t', (*counts, 'current_count',
                                                                    'current_count_change'))
    m.rmw_incompatible_type_status_t = _status_class('rmw_incompatible_type_status_t', counts)

    class EventHandle(Destroyable):
        """``rcl_event_t`` of a publisher or subscription (matched and incompatible QoS fire here)."""

        def __init__(self, parent: Any, event_type: Any) -> None:
            super().__init__()
            kinds = _EVENT_KINDS if isinstance(parent, Subscription) else _PUBLISHER_EVENT_KINDS
            known = type(event_type) in (rcl_subscription_event_type_t, rcl_publisher_event_type_t)
            kind = kinds.get(event_type) if known else None
            if kind is None:    # incompatible type events: like rmw implementations that lack them
                raise m.UnsupportedEventTypeError(f'event type {event_type!r} is not supported')
            self.parent = parent
            self.kind = kind
            with mw.cv:
                self.state = parent.endpoint.events[kind]

        @property
        def ready(self) -> bool:
            return self.state.pending

        def take_event(self) -> Any:
            with mw.cv:
                taken = self.state.take()
            if taken is None:
                return None
            cls = {'matched': m.rmw_matched_status_t,
                   'requested_incompatible_qos': m.rmw_requested_qos_incompatible_event_status_t,
                   'offered_incompatible_qos': m.rmw_requested_qos_incompatible_event_status_t,
                   'message_lost': m.rmw_message_lost_status_t,
                   'deadline': m.rmw_requested_deadline_missed_status_t,
                   'liveliness': m.rmw_liveliness_changed_status_t}[self.kind]
            return cls(**{k: v for k, v in taken.items() if k in cls.__slots__})

    m.EventHandle = EventHandle

    # -- guard conditions, timers, wait sets ---------------------------------------------------------
    class GuardCondition(Destroyable):
        """``rcl_guard_condition_t``: stays triggered until a wait set it wakes consumes it."""

        def __init__(self, context: Any) -> None:
            super().__init__()
            self.context = context
            self.triggered = False

        def trigger_guard_condition(self) -> None:
            with mw.cv:
                self.triggered = True
                mw.cv.notify_all()

    m.GuardCondition = GuardCondition

    class Timer(Destroyable):
        """``rcl_timer_t`` on a clock: ready when now >= next call; catches up missed periods on call."""

        def __init__(self, clock: Any, context: Any, period_nsec: int, autostart: bool = True) -> None:
            super().__init__()
            if period_nsec < 0:
                raise m.RCLError('failed to create timer: period must be non-negative')
            self.clock, self.context = clock, context
            self.period = int(period_nsec)
            now = clock.now_ns()
            self.last_call = now
            self.next_call = now + self.period
            self.canceled = not autostart
            self._credit = 0
            if clock.clock_type == ClockType.ROS_TIME:
                clock.add_clock_callback(self, True, 1, -1)

        # rcl_timer's time-jump handling, called by the ROS clock
        def _pre_callback(self) -> None:
            self._credit = self.next_call - self.clock.now_ns()

        def _post_callback(self, jump: dict) -> None:
            now = self.clock.now_ns()
            if jump['clock_change'] in (ClockChange.ROS_TIME_ACTIVATED, ClockChange.ROS_TIME_DEACTIVATED):
                if now == 0:
                    return
                credit, self._credit = self._credit, 0
                if credit:
                    self.next_call = now - credit + self.period
                    self.last_call = now - credit
            elif now < self.last_call:      # jumped back further than one period
                self.next_call = now + self.period
                self.last_call = now

        def destroy(self) -> None:
            if self.clock.clock_type == ClockType.ROS_TIME:
                try:
                    self.clock.remove_clock_callback(self)
                except m.RCLError:
                    pass

        def time_until_next_call(self) -> int | None:
            return None if self.canceled else self.next_call - self.clock.now_ns()

        def is_timer_ready(self) -> bool:
            return not self.canceled and self.next_call - self.clock.now_ns() <= 0

        def call_timer(self) -> None:
            if self.canceled:
                raise m.RCLError('failed to call timer: timer is canceled')
            now = self.clock.now_ns()
            self.last_call = now
            next_call = self.next_call + self.period
            if next_call < now:
                missed = 1 + (now - next_call - 1) // self.period if self.period else 0
                next_call = now if self.period == 0 else next_call + missed * self.period
            self.next_call = next_call

        def reset_timer(self) -> None:
            self.next_call = self.clock.now_ns() + self.period
            self.canceled = False
            mw.notify()

        def change_timer_period(self, period_nsec: int) -> None:
            self.period = int(period_nsec)

        def get_timer_period(self) -> int:
            return self.period

        def time_since_last_call(self) -> int:
            return self.clock.now_ns() - self.last_call

        def cancel_timer(self) -> None:
            self.canceled = True

        def is_timer_canceled(self) -> bool:
            return self.canceled

    m.Timer = Timer

    class WaitSet(Destroyable):
        """``rcl_wait_set_t`` + ``rcl_wait``."""

        def __init__(self, n_subs: int, n_guards: int, n_timers: int, n_clients: int, n_services: int,
                     n_events: int, context: Any) -> None:
            super().__init__()
            self.sizes = {'subscription': n_subs, 'guard_condition': n_guards, 'timer': n_timers,
                          'client': n_clients, 'service': n_services, 'event': n_events}
            self.context = context
            self.clear_entities()

        def clear_entities(self) -> None:
            self.entities: dict[str, list[Any]] = {k: [] for k in self.sizes}
            self.ready: dict[str, list[Any]] = {k: [] for k in self.sizes}

        def _add(self, kind: str, entity: Any) -> int:
            if len(self.entities[kind]) >= self.sizes[kind]:
                raise m.RCLError(f'failed to add {kind} to wait set: wait set is full')
            self.entities[kind].append(entity)
            return len(self.entities[kind]) - 1

        def add_subscription(self, sub: Any) -> int:
            return self._add('subscription', sub)

        def add_guard_condition(self, gc: Any) -> int:
            return self._add('guard_condition', gc)

        def add_timer(self, timer: Any) -> int:
            return self._add('timer', timer)

        def add_client(self, client: Any) -> int:
            return self._add('client', client)

        def add_service(self, service: Any) -> int:
            return self._add('service', service)

        def add_event(self, event: Any) -> int:
            return self._add('event', event)

        def _collect(self) -> bool:
            ready = {k: [e if _entity_ready(k, e) else None for e in v] for k, v in self.entities.items()}
            if any(e is not None for v in ready.values() for e in v):
                for gc in ready['guard_condition']:
                    if gc is not None:
                        gc.triggered = False        # rmw consumes a guard condition that woke the wait
                self.ready = ready
                return True
            self.ready = ready
            return False

        def _timer_timeout_ns(self) -> int | None:
            """Time to the next timer not on an overridden ROS clock (rcl_wait bounds its timeout so)."""
            found = None
            for timer in self.entities['timer']:
                if timer.canceled or (timer.clock.clock_type == ClockType.ROS_TIME
                                      and timer.clock._override_enabled):
                    continue
                left = timer.time_until_next_call()
                found = left if found is None else min(found, left)
            return found

        def wait(self, timeout: int) -> None:
            if not self.context.ok():
                raise m.RCLError('failed to wait on wait set: context is shut down')
            deadline = None if timeout < 0 else time.monotonic_ns() + timeout
            with mw.cv:
                while not self._collect():
                    now = time.monotonic_ns()
                    if deadline is not None and now >= deadline:
                        return
                    left = None if deadline is None else deadline - now
                    waits = [d for d in (left, self._timer_timeout_ns()) if d is not None]
                    mw.cv.wait(max(min(waits), 0) / 1e9 if waits else None)

        def is_ready(self, entity_type: str, index: int) -> bool:
            entries = self.ready.get(entity_type)
            if entries is None:
                raise RuntimeError(f"'{entity_type}' is not a known entity")
            if index >= len(self.entities[entity_type]):
                raise IndexError('wait set index too big')
            return entries[index] is not None

        def get_ready_entities(self, entity_type: str) -> list[int]:
            if entity_type not in self.ready or entity_type == 'event':
                raise RuntimeError(f"'{entity_type}' is not a known entity")
            return [e.pointer for e in self.ready[entity_type] if e is not None]

    def _entity_ready(kind: str, entity: Any) -> bool:
        if kind == 'guard_condition':
            return entity.triggered
        if kind == 'timer':
            return entity.is_timer_ready()
        return entity.ready

    m.WaitSet = WaitSet

    # -- QoS ------------------------------------------------------------------------------------------
    class rmw_qos_profile_t:  # noqa: N801
        """``rmw_qos_profile_t``: built from rclpy's QoSProfile, or one of rmw's predefined profiles."""

        def __init__(self, history: int, depth: int, reliability: int, durability: int, lifespan: Any,
                     deadline: Any, liveliness: int, liveliness_lease_duration: Any,
                     avoid_ros_namespace_conventions: bool) -> None:
            self.history, self.depth = int(history), int(depth)
            self.reliability, self.durability = int(reliability), int(durability)
            self.lifespan = _ns(lifespan)
            self.deadline = _ns(deadline)
            self.liveliness = int(liveliness)
            self.liveliness_lease_duration = _ns(liveliness_lease_duration)
            self.avoid_ros_namespace_conventions = bool(avoid_ros_namespace_conventions)

        def to_dict(self) -> dict[str, Any]:
            from rclpy.duration import Duration
            out = dict(vars(self))
            for key in ('lifespan', 'deadline', 'liveliness_lease_duration'):
                out[key] = Duration(nanoseconds=out[key])
            return out

        @staticmethod
        def predefined(name: str) -> 'rmw_qos_profile_t':
            if name not in _PREDEFINED:
                raise ValueError(f'Requested unknown rmw_qos_profile: {name}')
            return rmw_qos_profile_t(*_PREDEFINED[name])

    m.rmw_qos_profile_t = rmw_qos_profile_t

    class QoSCheckCompatibleResult:
        def __init__(self, compatibility: QoSCompatibility = QoSCompatibility.OK, reason: str = '') -> None:
            self.compatibility, self.reason = compatibility, reason

    m.QoSCheckCompatibleResult = QoSCheckCompatibleResult

    def rclpy_qos_check_compatible(pub: Any, sub: Any) -> Any:
        level, reason, _ = check_compatible(_qos(pub), _qos(sub))
        return QoSCheckCompatibleResult(QoSCompatibility(level), reason)

    m.rclpy_qos_check_compatible = rclpy_qos_check_compatible

    # -- actions and lifecycle (not modelled) ---------------------------------------------------------
    def _not_modelled(what: str) -> type:
        def init(self: Any, *args: Any, **kwargs: Any) -> None:
            raise m.NotImplementedError(f'{what} is not modelled by the ROS 2 test harness')
        return type(what, (Destroyable,), {'__init__': init})

    for name in ('ActionClient', 'ActionServer', 'ActionGoalHandle', 'LifecycleStateMachine'):
        setattr(m, name, _not_modelled(name))
    m.TransitionCallbackReturnType = enum.IntEnum('TransitionCallbackReturnType',
                                                  {'SUCCESS': 97, 'FAILURE': 98, 'ERROR': 99})

    def rclpy_action_get_rmw_qos_profile(name: str) -> dict[str, Any]:
        if name != 'rcl_action_qos_profile_status_default':
            raise RuntimeError(f'Requested unknown rmw_qos_profile: {name}')
        return rmw_qos_profile_t(1, 1, 1, 1, 0, 0, 0, 0, False).to_dict()

    m.rclpy_action_get_rmw_qos_profile = rclpy_action_get_rmw_qos_profile


def _ns(value: Any) -> int:
    return int(getattr(value, 'nanoseconds', value))


# rmw/qos_profiles.h: history, depth, reliability, durability, lifespan, deadline, liveliness, lease, avoid
_PREDEFINED = {
    'qos_profile_sensor_data': (1, 5, 2, 2, 0, 0, 0, 0, False),
    'qos_profile_default': (1, 10, 1, 2, 0, 0, 0, 0, False),
    'qos_profile_system_default': (0, 0, 0, 0, 0, 0, 0, 0, False),
    'qos_profile_services_default': (1, 10, 1, 2, 0, 0, 0, 0, False),
    'qos_profile_unknown': (3, 0, 3, 3, 0, 0, 4, 0, False),
    'qos_profile_parameters': (1, 1000, 1, 2, 0, 0, 0, 0, False),
    'qos_profile_parameter_events': (1, 1000, 1, 2, 0, 0, 0, 0, False),
    'qos_profile_best_available': (1, 10, 4, 4, 0, 9223372036854775806, 5, 9223372036854775806, False),
}


def _define_functions(m: types.ModuleType, state: _State) -> None:  # noqa: C901
    mw = state.middleware

    # -- names ----------------------------------------------------------------------------------------
    m.rclpy_get_validation_error_for_topic_name = rcl_names.topic_name_error
    m.rclpy_get_validation_error_for_full_topic_name = rcl_names.full_topic_name_error
    m.rclpy_get_validation_error_for_namespace = rcl_names.namespace_error
    m.rclpy_get_validation_error_for_node_name = rcl_names.node_name_error
    m.rclpy_expand_topic_name = rcl_names.expand_topic_name

    def rclpy_remap_topic_name(node: Any, topic_name: str) -> str:
        return rcl_names.remap_name(topic_name, node.name, node.namespace, node.remap_rules()) or topic_name

    def rclpy_resolve_name(node: Any, name: str, only_expand: bool, is_service: bool) -> str:
        what = 'service' if is_service else 'topic'
        try:
            expanded = rcl_names.expand_topic_name(name, node.name, node.namespace)
        except ValueError as exc:
            raise m.RCLError(f'failed to resolve name: {exc}') from None
        if not only_expand:
            expanded = rclpy_remap_topic_name(node, expanded)
        if rcl_names.full_topic_name_error(expanded):
            raise m.RCLError(f"failed to resolve name: {what} name '{expanded}' is invalid")
        return expanded

    m.rclpy_remap_topic_name, m.rclpy_resolve_name = rclpy_remap_topic_name, rclpy_resolve_name

    def rclpy_remove_ros_args(args: list[str]) -> list[str]:
        parsed = rcl_names.parse_arguments(list(args))
        if parsed.unparsed_ros:
            raise m.UnknownROSArgsError(repr(parsed.unparsed_ros))
        return parsed.non_ros

    m.rclpy_remove_ros_args = rclpy_remove_ros_args

    # -- graph ----------------------------------------------------------------------------------------
    def _node_in_graph(node: Any, name: str, namespace: str) -> Any:
        for other in list(node.domain.nodes):
            if other.name == name and other.namespace == namespace:
                return other
        raise m.NodeNameNonExistentError(
            f"cannot get information of nodes: node name '{namespace.rstrip('/')}/{name}' does not exist")

    def by_node(kinds: tuple[str, ...]) -> Callable:
        def query(node: Any, *args: Any) -> list:
            name, namespace = args[-2:]
            return node.domain.names_and_types(kinds, _node_in_graph(node, name, namespace))
        return query

    m.rclpy_get_publisher_names_and_types_by_node = by_node(('publisher',))
    m.rclpy_get_subscriber_names_and_types_by_node = by_node(('subscription',))
    m.rclpy_get_service_names_and_types_by_node = by_node(('service',))
    m.rclpy_get_client_names_and_types_by_node = by_node(('client',))
    m.rclpy_get_topic_names_and_types = lambda node, no_demangle: node.domain.names_and_types(
        ('publisher', 'subscription'))
    m.rclpy_get_service_names_and_types = lambda node: node.domain.names_and_types(('service', 'client'))

    def info_by_topic(kind: str) -> Callable:
        def query(node: Any, topic_name: str, no_mangle: bool) -> list[dict]:
            out = []
            for e in node.domain.endpoints_on(kind, topic_name):
                q = e.qos
                qos = m.rmw_qos_profile_t(q.history, q.depth, q.reliability, q.durability, q.lifespan,
                                          q.deadline, q.liveliness, q.liveliness_lease_duration,
                                          q.avoid_ros_namespace_conventions)
                out.append({'node_name': e.node.name, 'node_namespace': e.node.namespace,
                            'topic_type': e.type_name, 'topic_type_hash': {'version': 1, 'value': bytes(32)},
                            'endpoint_type': 1 if kind == 'publisher' else 2,
                            'endpoint_gid': list(e.gid.to_bytes(16, 'little')), 'qos_profile': qos.to_dict()})
            return out
        return query

    m.rclpy_get_publishers_info_by_topic = info_by_topic('publisher')
    m.rclpy_get_subscriptions_info_by_topic = info_by_topic('subscription')
    m.rclpy_get_rmw_implementation_identifier = lambda: RMW_IMPLEMENTATION
    m.rclpy_assert_liveliness = lambda entity: None

    # -- serialization ------------------------------------------------------------------------------
    def rclpy_serialize(pymsg: Any, pymsg_type: Any) -> bytes:
        support = pymsg_type.__class__._TYPE_SUPPORT
        if support is None:
            pymsg_type.__class__.__import_type_support__()
            support = pymsg_type.__class__._TYPE_SUPPORT
        return support.serialize(pymsg)

    def rclpy_deserialize(pybuffer: bytes, pymsg_type: Any) -> Any:
        support = pymsg_type.__class__._TYPE_SUPPORT
        if support is None:
            pymsg_type.__class__.__import_type_support__()
            support = pymsg_type.__class__._TYPE_SUPPORT
        return support.deserialize(bytes(pybuffer), pymsg_type)

    m.rclpy_serialize, m.rclpy_deserialize = rclpy_serialize, rclpy_deserialize

    # -- signals ------------------------------------------------------------------------------------
    def register_sigint_guard_condition(gc: Any) -> None:
        state.sigint_guards.append(gc)

    def unregister_sigint_guard_condition(gc: Any) -> None:
        if gc not in state.sigint_guards:
            raise ValueError('guard condition was not registered')
        state.sigint_guards.remove(gc)

    def install_signal_handlers(options: Any) -> None:
        state.signal_options = SignalHandlerOptions(int(options))

    def uninstall_signal_handlers() -> None:
        state.signal_options = SignalHandlerOptions.NO

    m.register_sigint_guard_condition = register_sigint_guard_condition
    m.unregister_sigint_guard_condition = unregister_sigint_guard_condition
    m.install_signal_handlers = install_signal_handlers
    m.uninstall_signal_handlers = uninstall_signal_handlers
    m.get_current_signal_handlers_options = lambda: state.signal_options

    # -- logging (rcutils) --------------------------------------------------------------------------
    def _configure(context: Any) -> None:
        for name, level in context.arguments.log_levels.items():
            if name:
                state.log_levels[name] = level
            else:
                state.default_log_level = level

    def effective_level(name: str) -> int:
        parts = name.split('.') if name else []
        while parts:
            level = state.log_levels.get('.'.join(parts), 0)
            if level:
                return level
            parts.pop()
        return state.default_log_level

    def set_level(name: str, level: int, detailed_error: bool = False) -> None:
        if int(level) not in (0, 10, 20, 30, 40, 50):
            raise ValueError(f'invalid log level {level}')
        if name:
            state.log_levels[name] = int(level)
        else:
            state.default_log_level = int(level)

    def severity_from_string(text: str) -> int:
        level = rcl_names.LOG_LEVELS.get(text.lower())
        if level is None:
            raise RuntimeError(f"Failed to get log severity from name: '{text}'")
        return level

    def rcutils_log(severity: int, name: str, message: str, function_name: str, file_name: str,
                    line_number: int) -> None:
        state.log_records.append((int(severity), name, message))
        if state.console:
            label = {10: 'DEBUG', 20: 'INFO', 30: 'WARN', 40: 'ERROR', 50: 'FATAL'}.get(int(severity), '?')
            stamp = time.time()
            sys.stderr.write(f'[{label}] [{stamp:.9f}] [{name}]: {message}\n')
        for node in _rosout_nodes(name):
            _publish_rosout(node, severity, name, message, function_name, file_name, line_number)

    def _rosout_nodes(name: str) -> list[Any]:
        nodes = list(state.rosout_loggers.get(name, []))
        if '.' in name and not nodes:       # a sublogger registered with rosout_add_sublogger
            nodes = list(state.rosout_loggers.get(name, []))
        return [n for n in nodes if n.rosout is not None and n.context.ok()]

    def _publish_rosout(node: Any, severity: int, name: str, message: str, function: str, file: str,
                        line: int) -> None:
        log_cls = state.registry.message_class('rcl_interfaces/msg/Log')
        stamp_cls = state.registry.message_class('builtin_interfaces/msg/Time')
        log_cls.__class__.__import_type_support__()
        now = time.time_ns()
        msg = log_cls(stamp=stamp_cls(sec=now // 10 ** 9, nanosec=now % 10 ** 9), level=int(severity),
                      name=name, msg=message, file=str(file), function=str(function), line=int(line))
        node.domain.publish(node.rosout, log_cls.__class__._TYPE_SUPPORT.serialize(msg))

    def add_sublogger(logger_name: str, sublogger_name: str) -> bool:
        nodes = state.rosout_loggers.get(logger_name)
        if not nodes:
            return False
        state.rosout_loggers.setdefault(f'{logger_name}.{sublogger_name}', []).extend(nodes)
        return True

    def remove_sublogger(logger_name: str, sublogger_name: str) -> None:
        state.rosout_loggers.pop(f'{logger_name}.{sublogger_name}', None)

    m.rclpy_logging_configure = _configure
    m.rclpy_logging_fini = lambda: None
    m.rclpy_logging_initialize = lambda: None
    m.rclpy_logging_shutdown = lambda: None
    m.rclpy_logging_get_separator_string = lambda: '.'
    m.rclpy_logging_set_logger_level = set_level
    m.rclpy_logging_get_logger_effective_level = effective_level
    m.rclpy_logging_get_logger_level = lambda name: state.log_levels.get(name, 0)
    m.rclpy_logging_logger_is_enabled_for = lambda name, severity: int(severity) >= effective_level(name)
    m.rclpy_logging_rcutils_log = rcutils_log
    m.rclpy_logging_severity_level_from_string = severity_from_string
    m.rclpy_logging_get_logging_directory = lambda: os.environ.get(
        'ROS_LOG_DIR', os.path.join(os.environ.get('ROS_HOME', os.path.expanduser('~/.ros')), 'log'))
    m.rclpy_logging_rosout_add_sublogger = add_sublogger
    m.rclpy_logging_rosout_remove_sublogger = remove_sublogger
    del mw
