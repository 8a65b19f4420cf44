"""The rclpy shell of ``fusion_node`` and ``student_node``: parameters, QoS, subscriptions, tf2, publishers.

Everything else is ``perception_nodes.runtime.core.NodeCore`` (the path ``ovp replay`` runs too).

Parameters are the keys of ``perception_nodes.config`` under their dotted names (``inputs.lidar_topic``,
``labeller.kind``, ...), declared statically typed with their descriptions, ranges and read-only flags, so
``ros2 param describe`` / ``dump`` / ``get`` show real types. A params file must give each key its declared
type (a bad type is a one-line error and exit code 2). Live keys go through a pre-set callback (rclpy on
Iron and later) that turns the forms ``ros2 param set`` produces into the declared type (``nuscenes`` sent
as a STRING for a string array, ``"[]"`` sent as a BOOL_ARRAY, ``2`` for a double), then the core
validates them; a refused change keeps the previous state and says why.

Threads: subscription callbacks only hand messages to the core; inference runs in the core's keep-latest
worker thread, which also waits for tf2 (``node.tf_timeout``). The TransformListener is driven by the
node's own executor (``spin_thread=False``). Diagnostics and the silent-topic watchdog run on wall-clock
(steady) timers, so they keep running while /clock is paused. When time goes back (``ros2 bag play
--loop``: the ROS clock or the input stamps jump back by more than 1 s, as tf2's buffer checks) the
synchronizer queues, the tf buffer and the frame waiting for the worker are dropped, counted in diagnostics.

Attribute names: rclpy's ``Node`` keeps private state under many ``_`` names (``_publishers``,
``_subscriptions``, ``_timers``, ...); everything this class adds is prefixed ``ovp_`` so it cannot clash
(test/nodes/test_attribute_audit.py checks it against the real rclpy source).
"""
from __future__ import annotations

from typing import Any, Callable

import message_filters
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType, JumpThreshold
from rclpy.duration import Duration
from rclpy.exceptions import NameValidationException, ParameterException
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import String
from tf2_ros import Buffer, TransformListener

from perception_nodes import stats as reasons
from perception_nodes.assembly import StampShift, valid_stamp_ns
from perception_nodes.config import KeyInfo, config_from_dict, keys, unflatten
from perception_nodes.config.schema import coerce
from perception_nodes.io.stamps import ns_to_stamp
from perception_nodes.io.writer import LABEL_INFO, LABELED_POINTS, OCCUPANCY, SEMANTIC_VOXELS, SIMILARITY, \
    output_type, overlay_key
from perception_nodes.nodes.rclpy_messages import RclpyMessageTypes, message_class
from perception_nodes.runtime.core import NodeCore
from perception_nodes.runtime.extrinsics import transform_to_matrix
from perception_nodes.runtime.time_jump import DEFAULT_THRESHOLD_NS, TimeJumpDetector

PARAMETER_TYPES = {'bool': Parameter.Type.BOOL, 'integer': Parameter.Type.INTEGER,
                   'double': Parameter.Type.DOUBLE, 'string': Parameter.Type.STRING,
                   'string_array': Parameter.Type.STRING_ARRAY, 'double_array': Parameter.Type.DOUBLE_ARRAY,
                   'integer_array': Parameter.Type.INTEGER_ARRAY, 'bool_array': Parameter.Type.BOOL_ARRAY}
# parameters rclpy declares or reserves itself (not configuration keys; never reported as unknown)
RCLPY_PARAMETERS = ('use_sim_time', 'start_type_description_service')
OUTPUT_DEPTH = 2
# builds the pipeline for a config: (config, logger warn) -> Pipeline
PipelineBuilder = Callable[[Any, Callable[[str], None]], Any]


def default_pipeline(config: Any, warn: Callable[[str], None]) -> Any:
    from perception_nodes.pipeline import Pipeline
    return Pipeline(config, warn=warn)


def input_qos(name: str, depth: int) -> QoSProfile:
    """'sensor_data': best effort (matches best-effort and reliable publishers); 'reliable': bag playback."""
    reliability = ReliabilityPolicy.BEST_EFFORT if name == 'sensor_data' else ReliabilityPolicy.RELIABLE
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=max(int(depth), 1), reliability=reliability,
                      durability=DurabilityPolicy.VOLATILE)


def descriptor_for(info: KeyInfo) -> ParameterDescriptor:
    """Return the ParameterDescriptor of a key: type, description, read-only unless live, numeric range."""
    descriptor = ParameterDescriptor(name=info.name, type=PARAMETER_TYPES[info.kind].value,
                                     description=info.describe(), read_only=not info.live)
    if info.min is not None and info.max is not None:
        if info.kind == 'double':
            descriptor.floating_point_range = [FloatingPointRange(from_value=float(info.min),
                                                                  to_value=float(info.max), step=0.0)]
        elif info.kind == 'integer':
            descriptor.integer_range = [IntegerRange(from_value=int(info.min), to_value=int(info.max),
                                                     step=0)]
    return descriptor


def canonical_parameter(info: KeyInfo, param: Parameter) -> Parameter:
    """``param`` converted to its key's declared type when the value allows it, else unchanged.

    ``ros2 param set`` guesses a type from the text: ``nuscenes`` is a STRING, ``"[]"`` a BOOL_ARRAY, ``2`` an
    INTEGER; the configuration model accepts those forms (``config.schema.coerce``).
    """
    wanted = PARAMETER_TYPES[info.kind]
    if param.type_ in (wanted, Parameter.Type.NOT_SET):
        return param
    try:
        value = coerce(_plain(param.value), info.hint, info.name)
    except (ValueError, TypeError):
        return param            # rclpy refuses it: wrong type, with the expected one named
    return Parameter(param.name, wanted, list(value) if isinstance(value, tuple) else value)


class PerceptionNode(Node):
    """Declares the config keys as parameters, builds the core and wires it to ROS."""

    def __init__(self, name: str, labeller: str, build_pipeline: PipelineBuilder = default_pipeline,
                 **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.ovp_keys = {k.name: k for k in keys('node')}
        self._ovp_declare(labeller)
        self._ovp_report_unknown_overrides()
        config = config_from_dict(unflatten(self._ovp_values()))
        self.ovp_msgs = RclpyMessageTypes()
        self.ovp_tf_buffer = Buffer(node=self)
        self.ovp_tf_listener = TransformListener(self.ovp_tf_buffer, self, spin_thread=False)
        self.ovp_tf_timeout = config.node.tf_timeout
        pipeline = build_pipeline(config, self.get_logger().warning)
        self.ovp_core = NodeCore(config, pipeline, self.ovp_msgs, self._ovp_lookup, node_name=name,
                                 publish=self._ovp_publish, wanted=self._ovp_wanted, logger=self.get_logger())
        # outputs: LabelInfo latched (transient local), the rest volatile, built only for subscribers
        self.ovp_outputs: dict[str, Any] = {}
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                             reliability=ReliabilityPolicy.RELIABLE)
        self.ovp_outputs[LABEL_INFO] = self.create_publisher(message_class(output_type(LABEL_INFO)),
                                                             f'~/{LABEL_INFO}', latched)
        outputs = [LABELED_POINTS, OCCUPANCY, SEMANTIC_VOXELS, SIMILARITY]
        outputs += [overlay_key(cam.name) for cam in self.ovp_core.cameras]
        for key in outputs:
            self.ovp_outputs[key] = self.create_publisher(message_class(output_type(key)), f'~/{key}',
                                                          OUTPUT_DEPTH)
        self.ovp_diagnostics = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        # inputs
        self.ovp_jumps = TimeJumpDetector()
        self.ovp_synchronizer: Any = None
        inputs = MutuallyExclusiveCallbackGroup()
        self._ovp_subscribe(config, inputs)
        self.create_subscription(String, '~/query', lambda m: self.ovp_core.on_query(m.data), 10,
                                 callback_group=inputs)
        self.ovp_clock_jump = self.get_clock().create_jump_callback(
            JumpThreshold(min_forward=None, min_backward=Duration(nanoseconds=-DEFAULT_THRESHOLD_NS),
                          on_clock_change=False),
            post_callback=self._ovp_on_clock_jump)
        # wall-clock timers: they run while /clock is paused
        timers = MutuallyExclusiveCallbackGroup()
        wall = Clock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(config.node.diagnostics_period, self._ovp_publish_diagnostics,
                          callback_group=timers, clock=wall)
        self.create_timer(min(1.0, config.node.silent_topic_timeout / 2), self._ovp_check_inputs,
                          callback_group=timers, clock=wall)
        # live parameters
        if hasattr(self, 'add_pre_set_parameters_callback'):       # rclpy >= Iron
            self.add_pre_set_parameters_callback(self._ovp_canonical_parameters)
        self.add_on_set_parameters_callback(self._ovp_on_set_parameters)
        self._ovp_publish(LABEL_INFO, '', self.ovp_core.label_info(self.get_clock().now().nanoseconds).msg)
        self.ovp_core.announce = False
        self.ovp_core.start(threaded=True)
        cams = ', '.join(c.image_topic for c in self.ovp_core.cameras) or 'none (LiDAR only)'
        self.get_logger().info(f'{name}: labeller {self.ovp_core.backend_name}, lidar '
                               f'{config.inputs.lidar_topic}, cameras: {cams}, input QoS '
                               f'{config.node.input_qos}')

    # -- parameters ----------------------------------------------------------------------------------------
    def _ovp_declare(self, labeller: str) -> None:
        for info in self.ovp_keys.values():
            descriptor = descriptor_for(info)
            default = labeller if info.name == 'labeller.kind' else info.default
            if isinstance(default, tuple):
                default = list(default)
            if isinstance(default, list) and not default:
                # an empty list has no element type (and a params file cannot hold one): declared typed,
                # without a value, which means the key's default (empty)
                self.declare_parameter(info.name, PARAMETER_TYPES[info.kind], descriptor)
            else:
                self.declare_parameter(info.name, default, descriptor)

    def _ovp_report_unknown_overrides(self) -> None:
        """Warn about params-file / command-line keys that are no parameter of this node (typos, old keys)."""
        overrides = getattr(self, '_parameter_overrides', {}) or {}     # rclpy's own record, read only
        unknown = sorted(n for n in overrides if not self.has_parameter(n) and n not in RCLPY_PARAMETERS
                         and not n.startswith('qos_overrides.'))
        if unknown:
            self.get_logger().warning(f'ignoring unknown parameter(s) {unknown}: this node reads the keys of '
                                      "config/perception.yaml ('ros2 param list' shows them)")

    def _ovp_values(self) -> dict[str, Any]:
        values = {}
        for name, info in self.ovp_keys.items():
            param = self.get_parameter_or(name, None)
            value = None if param is None or param.type_ == Parameter.Type.NOT_SET else param.value
            values[name] = info.default if value is None else _plain(value)
        return values

    def _ovp_canonical_parameters(self, params: list[Parameter]) -> list[Parameter]:
        return [canonical_parameter(self.ovp_keys[p.name], p) if p.name in self.ovp_keys else p
                for p in params]

    def _ovp_on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        changes = {p.name: _plain(p.value) for p in params if p.name in self.ovp_keys}
        if not changes:
            return SetParametersResult(successful=True)
        reason = self.ovp_core.request_parameters(changes)
        if reason is not None:
            self.get_logger().warning(f'parameter change refused: {reason}')
            return SetParametersResult(successful=False, reason=reason)
        self.get_logger().info(f'parameters changed (effective from the next frame): {sorted(changes)}')
        return SetParametersResult(successful=True)

    # -- inputs ----------------------------------------------------------------------------------------------
    def _ovp_subscribe(self, config: Any, group: MutuallyExclusiveCallbackGroup) -> None:
        qos = input_qos(config.node.input_qos, config.node.queue_size)
        lidar = config.inputs.lidar_topic
        cameras = self.ovp_core.cameras
        for cam in cameras:
            self.create_subscription(CameraInfo, cam.info_topic,
                                     lambda msg, name=cam.name: self.ovp_core.on_camera_info(name, msg), qos,
                                     callback_group=group)
        if not cameras:   # LiDAR only: nothing to synchronize
            def on_cloud(msg: PointCloud2) -> None:
                if self._ovp_on_input(lidar, msg):
                    self.ovp_core.on_synchronized(msg)
            self.create_subscription(PointCloud2, lidar, on_cloud, qos, callback_group=group)
            return
        cloud = message_filters.Subscriber(self, PointCloud2, lidar, qos_profile=qos, callback_group=group)
        filters: list[Any] = [_Input(cloud, lambda msg: self._ovp_on_input(lidar, msg))]
        for cam in cameras:
            image_type = CompressedImage if cam.compressed else Image
            sub = message_filters.Subscriber(self, image_type, cam.image_topic, qos_profile=qos,
                                             callback_group=group)

            def check(msg: Any, cam: Any = cam) -> bool:
                return self._ovp_on_input(cam.image_topic, msg, cam.time_offset_ns, cam.name)
            filters.append(_Input(sub, check, cam.time_offset_ns, self.ovp_msgs))
        self.ovp_synchronizer = message_filters.ApproximateTimeSynchronizer(
            filters, config.node.queue_size, config.inputs.sync_slop)
        # The Python synchronizer accepts a set only when its spread is strictly below slop; 1 ns more makes a
        # spread equal to inputs.sync_slop acceptable, as in the bag route.
        self.ovp_synchronizer.slop = Duration(nanoseconds=round(config.inputs.sync_slop * 1e9) + 1)
        self.ovp_synchronizer.registerCallback(self.ovp_core.on_synchronized)

    def _ovp_on_input(self, topic: str, msg: Any, offset_ns: int = 0, camera: str = '') -> bool:
        """See every input message first: rates, watchdog, time going back; False: an invalid stamp.

        A stamp with ``sec < 0`` makes message_filters raise inside the executor (the node would die) and
        one with ``nanosec >= 1e9`` is not a time: such a message goes no further, counted as a bad cloud
        or a bad image of its camera.
        """
        self.ovp_core.on_input(topic)
        stamp = valid_stamp_ns(getattr(getattr(msg, 'header', None), 'stamp', None))
        if stamp is None or stamp - offset_ns < 0:
            what = f'{camera}: ' if camera else ''
            problem = f'{what}{topic}: invalid header stamp (needs sec >= 0, 0 <= nanosec < 1e9)'
            self.ovp_core.stats.count(reasons.BAD_IMAGE if camera else reasons.BAD_CLOUD, problem=problem)
            return False
        reason = self.ovp_jumps.stamp(topic, stamp - offset_ns)
        if reason is not None:
            self._ovp_reset(reason)
        return True

    def _ovp_on_clock_jump(self, jump: Any) -> None:
        reason = self.ovp_jumps.clock(self.get_clock().now().nanoseconds)
        if reason is not None:
            self._ovp_reset(reason)

    def _ovp_reset(self, reason: str) -> None:
        """Time went back: drop the synchronizer queues, the tf history and the frame waiting; count it."""
        sync = self.ovp_synchronizer
        if sync is not None:
            with sync.lock:
                for queue in sync.queues:
                    queue.clear()
        self.ovp_tf_buffer.clear()            # static transforms stay (tf2 keeps them on clear)
        self.ovp_core.on_clock_jump(reason)
        self.get_logger().warning(f'time went back ({reason}; bag loop?): synchronizer, tf buffer and the '
                                  'pending frame reset')

    def _ovp_lookup(self, target: str, source: str, stamp: int) -> Any:
        transform = self.ovp_tf_buffer.lookup_transform(target, source, Time(nanoseconds=stamp),
                                                        timeout=Duration(seconds=self.ovp_tf_timeout))
        return transform_to_matrix(transform)

    # -- outputs -------------------------------------------------------------------------------------------
    def _ovp_wanted(self, key: str) -> bool:
        publisher = self.ovp_outputs.get(key)
        return publisher is not None and publisher.get_subscription_count() > 0

    def _ovp_publish(self, key: str, msgtype: str, msg: Any) -> None:
        publisher = self.ovp_outputs.get(key)
        if publisher is not None and self.context.ok():
            publisher.publish(msg)

    def _ovp_publish_diagnostics(self) -> None:
        self.ovp_diagnostics.publish(self.ovp_core.diagnostics(self.get_clock().now().nanoseconds))

    def _ovp_check_inputs(self) -> None:
        warning = self.ovp_core.check_inputs()
        if warning:
            self.get_logger().warning(warning)

    def destroy_node(self) -> None:
        """Stop the worker (it may be publishing), then let rclpy destroy the endpoints."""
        self.ovp_core.stop()
        self.ovp_clock_jump.unregister()
        super().destroy_node()


class _Input(message_filters.SimpleFilter):
    """Between an input's Subscriber and the synchronizer.

    Each message is shown to ``check`` (the node's bookkeeping; False drops it) and, for a camera with a
    time offset, presented with the offset subtracted from its stamp (``StampShift``).
    """

    def __init__(self, source: Any, check: Callable[[Any], bool], offset_ns: int = 0,
                 msgs: RclpyMessageTypes | None = None) -> None:
        super().__init__()
        self.check = check
        self.offset_ns = int(offset_ns)
        self.msgs = msgs
        self.incoming_connection = source.registerCallback(self.add)

    def add(self, msg: Any) -> None:
        if not self.check(msg):
            return
        if self.offset_ns:
            msg = StampShift(msg, self.offset_ns, lambda ns: ns_to_stamp(ns, self.msgs))
        self.signalMessage(msg)


def _plain(value: Any) -> Any:
    """Return rclpy parameter values (array.array, numpy) as plain Python lists."""
    if isinstance(value, (list, tuple)):
        return list(value)
    if hasattr(value, 'tolist') and not isinstance(value, (str, bytes)):
        return value.tolist()
    return value


def _rcl_error() -> type:
    from rclpy.impl.implementation_singleton import rclpy_implementation
    return rclpy_implementation.RCLError


# what a bad configuration raises while the node starts: one line and exit code 2, no traceback
STARTUP_ERRORS = (ValueError, OSError, ParameterException, NameValidationException)


def _fatal(exc: BaseException) -> None:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    rclpy.logging.get_logger('perception_nodes').fatal(f'cannot start: {line}')


def run(node_factory: Callable[[], Node], args: list[str] | None = None) -> int:
    """Spin a node on a multi-threaded executor until shutdown; a bad configuration exits 2 with one line."""
    try:
        rclpy.init(args=args)
    except _rcl_error() as exc:         # unreadable --ros-args or params file
        _fatal(exc)
        return 2
    node = None
    executor = None
    code = 0
    try:
        node = node_factory()
        executor = MultiThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except STARTUP_ERRORS + (_rcl_error(),) as exc:   # bad parameters, models or weights: say why, exit 2
        if node is not None:
            raise
        _fatal(exc)
        code = 2
    finally:
        if executor is not None:
            executor.shutdown()
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return code
