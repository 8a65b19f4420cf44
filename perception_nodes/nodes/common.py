"""The rclpy shell of ``fusion_node`` and ``student_node``: parameters, QoS, subscriptions, tf2, publishers.

Everything else is ``perception_nodes.runtime.core.NodeCore`` (the path ``ovp replay`` runs too).
Parameters are the dotted keys of ``perception_nodes.config`` (``inputs.lidar_topic``, ``labeller.kind``,
                                                               ...),
declared with their descriptions; live ones are validated by the core before they are accepted.

Threads: subscription callbacks only hand messages to the core; inference runs in the core's keep-latest
worker thread, which also waits for tf2 (``node.tf_timeout``). The TransformListener is driven by the
node's own executor (``spin_thread=False``). Diagnostics and the silent-topic watchdog run on wall-clock
(steady) timers, so they keep running while /clock is paused.

Attribute names: rclpy's ``Node`` keeps private state under many ``_`` names (``_publishers``,
``_subscriptions``, ``_timers``, ...); everything this class adds is prefixed ``ovp_`` so it cannot clash
(test/nodes checks it against the real rclpy source).
"""
from __future__ import annotations

from typing import Any, Callable

import message_filters
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.duration import Duration
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import String
from tf2_ros import Buffer, TransformListener

from perception_nodes.assembly import StampShift, stamp_ns
from perception_nodes.config import config_from_dict, keys, unflatten
from perception_nodes.io.writer import LABEL_INFO, output_type
from perception_nodes.nodes.rclpy_messages import RclpyMessageTypes, message_class
from perception_nodes.runtime.core import NodeCore
from perception_nodes.runtime.extrinsics import transform_to_matrix

ARRAY_TYPES = {'string_array': Parameter.Type.STRING_ARRAY, 'double_array': Parameter.Type.DOUBLE_ARRAY,
               'integer_array': Parameter.Type.INTEGER_ARRAY, 'bool_array': Parameter.Type.BOOL_ARRAY}
CLOCK_JUMP_NS = 1_000_000_000      # a cloud stamp this far behind the previous one resets synchronization

# builds the pipeline for a config: (config, logger warn) -> Pipeline
PipelineBuilder = Callable[[Any, Callable[[str], None]], Any]


def default_pipeline(config: Any, warn: Callable[[str], None]) -> Any:
    from perception_nodes.pipeline import Pipeline
    return Pipeline(config, warn=warn)


def input_qos(name: str, depth: int) -> QoSProfile:
    """'sensor_data': best effort (matches best-effort and reliable publishers); 'reliable': bag playback."""
    if name == 'sensor_data':
        return qos_profile_sensor_data
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=max(depth, 5),
                      reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)


class PerceptionNode(Node):
    """Declares the config keys as parameters, builds the core and wires it to ROS."""

    def __init__(self, name: str, labeller: str, build_pipeline: PipelineBuilder = default_pipeline,
                 **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.ovp_keys = {k.name: k for k in keys('node')}
        self._ovp_declare(labeller)
        config = config_from_dict(unflatten(self._ovp_values()))
        self.ovp_msgs = RclpyMessageTypes()
        self.ovp_tf_buffer = Buffer(node=self)
        self.ovp_tf_listener = TransformListener(self.ovp_tf_buffer, self, spin_thread=False)
        self.ovp_tf_timeout = config.node.tf_timeout
        pipeline = build_pipeline(config, self.get_logger().warning)
        self.ovp_core = NodeCore(config, pipeline, self.ovp_msgs, self._ovp_lookup, node_name=name,
                                 publish=self._ovp_publish, wanted=self._ovp_wanted, logger=self.get_logger())
        self.ovp_outputs: dict[str, Any] = {}
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                             reliability=ReliabilityPolicy.RELIABLE)
        self.ovp_outputs[LABEL_INFO] = self.create_publisher(message_class(output_type(LABEL_INFO)),
                                                             f'~/{LABEL_INFO}', latched)
        keys_ = ['labeled_points', 'occupancy', 'semantic_voxels', 'similarity']
        keys_ += [f'overlay/{cam.name}' for cam in self.ovp_core.cameras]
        for key in keys_:
            self.ovp_outputs[key] = self.create_publisher(message_class(output_type(key)), f'~/{key}', 2)
        self.ovp_diagnostics = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.ovp_last_cloud_ns: int | None = None
        self.ovp_synchronizer: Any = None
        inputs = MutuallyExclusiveCallbackGroup()
        self._ovp_subscribe(config, inputs)
        self.create_subscription(String, '~/query', lambda m: self.ovp_core.on_query(m.data), 10,
                                 callback_group=inputs)
        timers = MutuallyExclusiveCallbackGroup()
        wall = Clock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(config.node.diagnostics_period, self._ovp_diagnostics, callback_group=timers,
                          clock=wall)
        self.create_timer(1.0, self._ovp_check_inputs, callback_group=timers, clock=wall)
        self.add_on_set_parameters_callback(self._ovp_on_set_parameters)
        self.ovp_core.start(threaded=True)
        self._ovp_publish(LABEL_INFO, '', self.ovp_core.label_info(self.get_clock().now().nanoseconds).msg)
        self.ovp_core.announce = False
        cams = ', '.join(c.image_topic for c in self.ovp_core.cameras) or 'none (LiDAR only)'
        self.get_logger().info(f'{name}: labeller {self.ovp_core.backend_name}, lidar '
                               f'{config.inputs.lidar_topic},'
                               f' cameras: {cams}, input QoS {config.node.input_qos}')

    # -- parameters ----------------------------------------------------------------------------------------
    def _ovp_declare(self, labeller: str) -> None:
        for info in self.ovp_keys.values():
            descriptor = ParameterDescriptor(description=info.describe(), read_only=not info.live,
                                             dynamic_typing=True)
            default = labeller if info.name == 'labeller.kind' else info.default
            if isinstance(default, tuple):
                default = list(default)
            if info.kind in ARRAY_TYPES and not default:
                # an empty list has no element type: declare the type, the value stays unset
                self.declare_parameter(info.name, ARRAY_TYPES[info.kind], descriptor)
            else:
                self.declare_parameter(info.name, default, descriptor)

    def _ovp_values(self) -> dict[str, Any]:
        values = {}
        for name, info in self.ovp_keys.items():
            param = self.get_parameter_or(name, None)
            value = None if param is None or param.type_ == Parameter.Type.NOT_SET else param.value
            values[name] = info.default if value is None else _plain(value)
        return values

    def _ovp_on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        changes = {p.name: _plain(p.value) for p in params if p.name != 'use_sim_time'}
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
                self.ovp_core.on_input(lidar)
                self._ovp_check_clock(msg)
                self.ovp_core.on_synchronized(msg)
            self.create_subscription(PointCloud2, lidar, on_cloud, qos, callback_group=group)
            return
        cloud = message_filters.Subscriber(self, PointCloud2, lidar, qos_profile=qos, callback_group=group)
        cloud.registerCallback(lambda msg: (self.ovp_core.on_input(lidar), self._ovp_check_clock(msg)))
        filters: list[Any] = [cloud]
        for cam in cameras:
            image_type = CompressedImage if cam.compressed else Image
            sub = message_filters.Subscriber(self, image_type, cam.image_topic, qos_profile=qos,
                                             callback_group=group)
            sub.registerCallback(lambda msg, topic=cam.image_topic: self.ovp_core.on_input(topic))
            if cam.time_offset_ns:
                sub = _Shift(sub, cam.time_offset_ns, self.ovp_msgs)
            filters.append(sub)
        # The Python synchronizer accepts a set only when its spread is strictly below slop; add 1 ns so a
        # spread equal to inputs.sync_slop is accepted, as the bag route does.
        self.ovp_synchronizer = message_filters.ApproximateTimeSynchronizer(
            filters, config.node.queue_size, config.inputs.sync_slop + 1e-9)
        self.ovp_synchronizer.registerCallback(self.ovp_core.on_synchronized)

    def _ovp_check_clock(self, msg: Any) -> None:
        """Return a cloud stamp far behind the last one (bag replayed with --loop): reset the synchronizer."""
        try:
            now = stamp_ns(msg.header.stamp)
        except ValueError:
            return
        last, self.ovp_last_cloud_ns = self.ovp_last_cloud_ns, now
        if last is None or now >= last - CLOCK_JUMP_NS:
            return
        sync = self.ovp_synchronizer
        if sync is not None:
            with sync.lock:
                for queue in sync.queues:
                    queue.clear()
        self.ovp_tf_buffer.clear()
        self.ovp_core.on_clock_jump(f'cloud stamp went back {(last - now) / 1e9:.3f} s; synchronizer reset')
        self.get_logger().warning('time jumped back (bag loop?): synchronizer, tf buffer and pending frame '
                                  'reset')

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
        if publisher is not None:
            publisher.publish(msg)

    def _ovp_diagnostics(self) -> None:
        self.ovp_diagnostics.publish(self.ovp_core.diagnostics(self.get_clock().now().nanoseconds))

    def _ovp_check_inputs(self) -> None:
        warning = self.ovp_core.check_inputs()
        if warning:
            self.get_logger().warning(warning)

    def destroy_node(self) -> None:
        self.ovp_core.stop()
        super().destroy_node()


class _Shift(message_filters.SimpleFilter):
    """Presents a camera's images with its time offset subtracted from their stamps (``StampShift``)."""

    def __init__(self, source: Any, offset_ns: int, msgs: RclpyMessageTypes) -> None:
        super().__init__()
        self.offset_ns = int(offset_ns)
        self.msgs = msgs
        self.incoming_connection = source.registerCallback(self.add)

    def add(self, msg: Any) -> None:
        from perception_nodes.io.stamps import ns_to_stamp
        self.signalMessage(StampShift(msg, self.offset_ns, lambda ns: ns_to_stamp(ns, self.msgs)))


def _plain(value: Any) -> Any:
    """Return rclpy parameter values (array.array, numpy) as plain Python lists."""
    if isinstance(value, (list, tuple)):
        return list(value)
    if hasattr(value, 'tolist') and not isinstance(value, (str, bytes)):
        return value.tolist()
    return value


def run(node_factory: Callable[[], Node], args: list[str] | None = None) -> int:
    """Spin a node on a multi-threaded executor until shutdown; a bad configuration exits 2 with one line."""
    rclpy.init(args=args)
    node = None
    code = 0
    try:
        node = node_factory()
        executor = MultiThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (ValueError, OSError) as exc:   # bad parameters, models or weights: say why, exit 2
        line = str(exc).splitlines()[0] if str(exc) else repr(exc)
        rclpy.logging.get_logger('perception_nodes').fatal(line)
        code = 2
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return code
