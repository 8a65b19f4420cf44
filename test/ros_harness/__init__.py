"""ROS 2 test harness: the real Jazzy rclpy, message_filters, tf2_ros, launch and launch_ros, in one process.

ROS 2 cannot be installed here, but its Python layers can run: :class:`RosHarness` puts the unchanged
sources in ``../shared/ros2-python`` (``$OVP_ROS2_PYTHON``) on ``sys.path`` and installs the smallest
stand-ins for what is compiled or generated, then removes everything again on exit:

==============================  ===========================================================================
``rclpy._rclpy_pybind11``       :mod:`.binding` over :mod:`.middleware`: contexts, nodes, publishers,
                                subscriptions, services, clients, timers, clocks, guard conditions, wait
                                sets, events, logging, names, arguments and parameter files, graph queries
message packages                :mod:`.messages`: rosidl-shaped classes from rosbags' Jazzy typestore (+
                                vision_msgs, services, the tf2 action), CDR on the way through
``tf2_py``                      :mod:`.tf2_core`: BufferCore with caches, interpolation, tf2's exceptions
``ament_index_python``,         :mod:`.support`
``rpyutils``, ``osrf_pycommon``
``rosidl_parser.definition``    the type classes ``SLOT_TYPES`` holds
==============================  ===========================================================================

What the stand-ins do NOT model (tests that depend on these need a ROS 2 machine):

- no DDS and no other process: every endpoint lives in this process; nothing is discovered over a
  network, ``ROS_DOMAIN_ID`` only separates contexts in this process; no ``ros2`` CLI, no launch of
  real processes (launch tests intercept ``ExecuteProcess``);
- messages are serialized to CDR with rosbags' serializers (same wire format, not the rosidl C code);
  type hashes and type descriptions are not computed (``~/get_type_description`` answers "not modelled");
- delivery is lossless and immediate for reliable and best-effort alike (no bandwidth, no packet loss, no
  fragmentation); QoS deadline, lifespan, liveliness and lease durations are checked for compatibility
  but never expire; message-lost, deadline and liveliness events never fire; incompatible-type events are
  unsupported (as on rmw implementations without them); KEEP_LAST depth and transient-local history are
  modelled, resource limits are not;
- actions and lifecycle nodes are importable but cannot be constructed;
- logging goes to stderr and /rosout without rcl_logging's file output or ``--log-config-file``;
  signals are recorded, not installed;
- message classes check field types like ``ROS_PYTHON_CHECK_FIELDS=1`` (Humble always does); Jazzy's
  default skips the checks, so code that passes here passes there too, not the other way round.
"""
from __future__ import annotations

from pathlib import Path
import sys
import threading
import time
import types
from typing import Any, Callable

from . import binding as _binding
from . import messages as _messages
from . import support as _support
from . import tf2_core as _tf2_core
from .reference import ENV_VAR, default_root

REPO_ROOT = Path(__file__).resolve().parents[2]
# the real packages loaded from the shared folder
REAL_PACKAGES = ('rclpy', 'message_filters', 'tf2_ros', 'launch', 'launch_ros', 'launch_testing',
                 'sensor_msgs_py')
STAND_IN_ROOTS = ('rpyutils', 'ament_index_python', 'osrf_pycommon', 'tf2_py', 'rosidl_parser')
# package code that imports ROS and so must be forgotten with it
ROS_USING_PREFIXES = ('perception_nodes.nodes.',)

_REGISTRIES: dict[bool, _messages.MessageRegistry] = {}


def ros2_python_path() -> Path:
    """Return where the ROS 2 Python layers are: ``$OVP_ROS2_PYTHON`` or ``<repo>/../shared/ros2-python``."""
    return default_root()


def message_registry(check_fields: bool = True) -> _messages.MessageRegistry:
    """Return the process-wide message classes (stateless, so built once per field-check setting)."""
    if check_fields not in _REGISTRIES:
        _REGISTRIES[check_fields] = _messages.MessageRegistry(check_fields=check_fields)
    return _REGISTRIES[check_fields]


class HarnessUnavailable(RuntimeError):
    """The ROS 2 Python sources are not where the harness looks."""


class RosHarness:
    """Install the stand-ins and the real ROS 2 Python layers; undo it all on :meth:`deactivate`.

    Use as a context manager (or the ``ros_harness`` fixture of test/conftest.py)::

        with RosHarness() as ros:
            import rclpy
            rclpy.init()
            ...

    :param path: the ros2-python folder (default :func:`ros2_python_path`).
    :param check_fields: message setters assert types (rosidl with ``ROS_PYTHON_CHECK_FIELDS=1``).
    :param packages: ``{package: share directory}`` for the ament index (default: perception_nodes -> repo).
    :param console: print rcutils log lines to stderr (they are always kept in :attr:`logs`).
    """

    def __init__(self, path: Path | str | None = None, *, check_fields: bool = True,
                 packages: dict[str, str] | None = None, console: bool = True) -> None:
        self.path = Path(path).resolve() if path is not None else ros2_python_path()
        self.check_fields = check_fields
        self.packages = dict(packages or {'perception_nodes': str(REPO_ROOT)})
        self.console = console
        self.active = False
        self.binding: types.ModuleType | None = None
        self.thread_errors: list[threading.ExceptHookArgs] = []
        self.leaked_threads: list[threading.Thread] = []

    # -- install / uninstall ----------------------------------------------------------------------------
    def activate(self) -> 'RosHarness':
        if self.active:
            raise RuntimeError('the harness is already active')
        if not (self.path / 'rclpy' / 'node.py').is_file():
            raise HarnessUnavailable(f'ROS 2 Python layers not found at {self.path} (set ${ENV_VAR})')
        self._modules_before = set(sys.modules)
        self._threads_before = set(threading.enumerate())
        managed = REAL_PACKAGES + STAND_IN_ROOTS + _messages.PACKAGES
        self._stashed = {k: sys.modules.pop(k) for k in list(sys.modules)
                         if k.split('.')[0] in managed or k.startswith(ROS_USING_PREFIXES)}
        self._modules_before -= set(self._stashed)
        registry = message_registry(self.check_fields)
        self.binding = _binding.build_module(registry)
        self.binding._harness_state.console = self.console
        stand_ins: dict[str, types.ModuleType] = dict(registry.modules())
        stand_ins['rclpy._rclpy_pybind11'] = self.binding
        stand_ins['tf2_py'] = _tf2_core.build_module()
        stand_ins['rpyutils'] = _support.rpyutils_module()
        stand_ins.update(_support.ament_index_modules(self.packages))
        stand_ins.update(_support.osrf_pycommon_modules())
        parser = types.ModuleType('rosidl_parser', 'rosidl_parser stand-in (ROS 2 harness).')
        parser.__path__ = []
        parser.definition = _messages.rosidl_parser_definition()
        stand_ins['rosidl_parser'] = parser
        stand_ins['rosidl_parser.definition'] = parser.definition
        sys.modules.update(stand_ins)
        sys.path.insert(0, str(self.path))
        self._excepthook = threading.excepthook
        threading.excepthook = self._on_thread_error
        self.active = True
        return self

    def _on_thread_error(self, args: threading.ExceptHookArgs) -> None:
        self.thread_errors.append(args)
        self._excepthook(args)

    def deactivate(self, join_timeout: float = 2.0) -> None:
        """Shut every context down, wait for the threads started meanwhile, forget every module."""
        if not self.active:
            return
        try:
            rclpy = sys.modules.get('rclpy')
            if rclpy is not None and hasattr(rclpy, 'try_shutdown'):
                rclpy.try_shutdown()
            for context in list(self.binding._harness_state.contexts):
                context.shutdown()
            self.binding._harness_state.middleware.notify()
            end = time.monotonic() + join_timeout
            # Jazzy's MultiThreadedExecutor never shuts its ThreadPoolExecutor down: idle pool workers
            # stay until interpreter exit; every other thread started meanwhile must end now.
            started = [t for t in set(threading.enumerate()) - self._threads_before
                       if t is not threading.current_thread() and not t.name.startswith('ThreadPoolExecutor')]
            for thread in started:
                thread.join(max(end - time.monotonic(), 0.0))
            self.leaked_threads = [t for t in started if t.is_alive()]
        finally:
            threading.excepthook = self._excepthook
            if str(self.path) in sys.path:
                sys.path.remove(str(self.path))
            root = str(self.path)
            for name in list(sys.modules):
                if name in self._modules_before:
                    continue
                module = sys.modules[name]
                file = getattr(module, '__file__', None) or ''
                managed = REAL_PACKAGES + STAND_IN_ROOTS + _messages.PACKAGES
                if (name.split('.')[0] in managed or name.startswith(ROS_USING_PREFIXES)
                        or file.startswith(root) or name == 'rclpy._rclpy_pybind11'):
                    del sys.modules[name]
            sys.modules.update(self._stashed)
            self.active = False

    def __enter__(self) -> 'RosHarness':
        return self.activate()

    def __exit__(self, *exc: Any) -> None:
        self.deactivate()

    # -- helpers for tests --------------------------------------------------------------------------------
    @property
    def logs(self) -> list[tuple[int, str, str]]:
        """Every rcutils log call so far: (severity, logger name, message)."""
        return self.binding._harness_state.log_records

    def log_messages(self, min_severity: int = 0, logger: str | None = None) -> list[str]:
        return [msg for sev, name, msg in self.logs
                if sev >= min_severity
                and (logger is None or name == logger or name.startswith(logger + '.'))]

    def message(self, type_name: str) -> type:
        """Return the class of ``pkg/msg/Name`` (or ``pkg/srv/Name``) as installed."""
        pkg, kind, name = type_name.split('/')
        return getattr(sys.modules[f'{pkg}.{kind}'], name)

    @staticmethod
    def spin_until(executor: Any, predicate: Callable[[], bool], timeout: float = 5.0,
                   step: float = 0.05) -> bool:
        """Spin ``executor`` once at a time until ``predicate()`` holds or ``timeout`` seconds pass."""
        end = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > end:
                return False
            executor.spin_once(timeout_sec=step)
        return True
