"""The rclpy shell shared by ``fusion_node`` and ``student_node``.

Parameters, QoS, subscriptions, message_filters synchronization, tf2, publishers, timers.
Everything else is in perception_nodes.runtime.

Threads: subscription callbacks only hand messages to the core (cheap); inference runs in the core's
keep-latest worker thread; tf2 lookups happen there too (with ``tf_timeout``), while the
TransformListener spins its own thread, so the executor is never blocked.
"""
from __future__ import annotations

from typing import Any, Callable

import message_filters
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import OccupancyGrid
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.duration import Duration
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import String
from tf2_ros import Buffer, TransformListener
from visualization_msgs.msg import MarkerArray

from perception_nodes.nodes.rclpy_messages import RclpyMessageTypes
from perception_nodes.runtime.assembly import shift_stamp
from perception_nodes.runtime.core import PerceptionCore
from perception_nodes.runtime.extrinsics import transform_to_matrix
from perception_nodes.runtime.params import NodeParams, ParamSpec, specs_for

ARRAY_TYPES = {'string_array': Parameter.Type.STRING_ARRAY, 'double_array': Parameter.Type.DOUBLE_ARRAY}
OUTPUT_TYPES = {'labeled_points': PointCloud2, 'similarity': PointCloud2, 'occupancy': OccupancyGrid,
                'semantic_voxels': MarkerArray}

# builds the core: (params, message factory, tf lookup, logger, share_dir) -> PerceptionCore
CoreBuilder = Callable[[NodeParams, RclpyMessageTypes, Callable[[str, str, int], Any], Any, str | None],
                       PerceptionCore]


def share_dir() -> str | None:
    """Return the package share folder (source checkout or install), for relative vocabulary paths."""
    from perception_nodes.vocabulary import config_dir
    try:
        return str(config_dir().parent)
    except FileNotFoundError:   # relative paths then resolve against the working directory
        return None


def input_qos(name: str, depth: int) -> QoSProfile:
    """'sensor_data': best effort (matches best-effort and reliable publishers); 'reliable': bag playback."""
    if name == 'sensor_data':
        return qos_profile_sensor_data
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=max(depth, 5),
                      reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)


class StampOffsetFilter(message_filters.SimpleFilter):
    """Subtracts a camera's time offset from its image stamps before the synchronizer sees them."""

    def __init__(self, source: Any, offset_ns: int, msgs: RclpyMessageTypes) -> None:
        super().__init__()
        self.offset_ns = int(offset_ns)
        self.msgs = msgs
        self.incoming_connection = source.registerCallback(self.add)

    def add(self, msg: Any) -> None:
        self.signalMessage(shift_stamp(msg, -self.offset_ns, self.msgs))


class PerceptionNode(Node):
    """Declares the node's parameters, builds its core and wires it to ROS."""

    def __init__(self, name: str, build_core: CoreBuilder, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self._declare(specs_for(name))
        self.share_dir = share_dir()
        self.params = NodeParams.from_dict(self._values(specs_for(name)), self.share_dir)
        self.msgs = RclpyMessageTypes()
        self.tf_buffer = Buffer(node=self)
        self.tf_listener = TransformListener(self.tf_buffer, self, spin_thread=True)
        self.core = build_core(self.params, self.msgs, self._lookup, self.get_logger(), self.share_dir)
        self.core.publish = self._publish

        # not `self._publishers`: rclpy's Node keeps its own list under that name (create_publisher appends)
        self._outputs: dict[str, Any] = {key: self.create_publisher(t, f'~/{key}', 5)
                                         for key, t in OUTPUT_TYPES.items()}
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                             reliability=ReliabilityPolicy.RELIABLE)
        self._outputs['classes'] = self.create_publisher(String, '~/classes', latched)
        for cam in self.params.cameras:
            self._outputs[f'overlay/{cam.name}'] = self.create_publisher(Image, f'~/overlay/{cam.name}', 2)
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)

        inputs = MutuallyExclusiveCallbackGroup()
        self._subscribe(inputs)
        self.create_subscription(String, '~/query', lambda m: self.core.on_query(m.data), 10,
                                 callback_group=inputs)
        timers = MutuallyExclusiveCallbackGroup()
        self.create_timer(self.params.diagnostics_period, self._diagnostics, callback_group=timers)
        self.create_timer(1.0, self._check_inputs, callback_group=timers)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.core.start(threaded=True)
        self._publish('classes', self.core.classes_message())
        cams = ', '.join(f'{c.name} ({c.transport})' for c in self.params.cameras) or 'none'
        self.get_logger().info(f'{name}: lidar {self.params.lidar_topic}, cameras: {cams}, '
                               f'input QoS {self.params.input_qos}, backend: {self.core.backend_name}')

    # -- parameters ----------------------------------------------------------------------------
    def _declare(self, specs: list[ParamSpec]) -> None:
        for spec in specs:
            descriptor = ParameterDescriptor(description=spec.description, read_only=not spec.live)
            if spec.kind in ARRAY_TYPES and not spec.default:
                # an empty list has no element type: declare the type, the value may stay unset
                self.declare_parameter(spec.name, ARRAY_TYPES[spec.kind], descriptor)
            else:
                self.declare_parameter(spec.name, spec.default, descriptor)

    def _values(self, specs: list[ParamSpec]) -> dict[str, Any]:
        values = {}
        for spec in specs:
            param = self.get_parameter_or(spec.name, None)
            value = None if param is None or param.type_ == Parameter.Type.NOT_SET else param.value
            if value is not None and spec.kind in ARRAY_TYPES:
                value = list(value)
            values[spec.name] = spec.default if value is None else value
        return values

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        changes = {p.name: (list(p.value) if isinstance(p.value, (list, tuple)) or hasattr(p.value, 'tolist')
                            else p.value) for p in params if p.name != 'use_sim_time'}
        if not changes:
            return SetParametersResult(successful=True)
        reason = self.core.request_parameters(changes)
        if reason is not None:
            self.get_logger().warning(f'parameter change refused: {reason}')
            return SetParametersResult(successful=False, reason=reason)
        self.get_logger().info(f'parameters changed (effective from the next frame): {sorted(changes)}')
        return SetParametersResult(successful=True)

    # -- inputs ----------------------------------------------------------------------------------
    def _subscribe(self, group: MutuallyExclusiveCallbackGroup) -> None:
        p = self.params
        qos = input_qos(p.input_qos, p.queue_size)
        for cam in p.cameras:
            self.create_subscription(CameraInfo, cam.info_topic,
                                     lambda msg, name=cam.name: self.core.on_camera_info(name, msg), qos,
                                     callback_group=group)
        if not p.cameras:   # LiDAR only: nothing to synchronize
            def on_cloud(msg: PointCloud2) -> None:
                self.core.on_input(p.lidar_topic)
                self.core.on_synchronized(msg)
            self.create_subscription(PointCloud2, p.lidar_topic, on_cloud, qos, callback_group=group)
            return
        cloud = message_filters.Subscriber(self, PointCloud2, p.lidar_topic, qos_profile=qos,
                                           callback_group=group)
        cloud.registerCallback(lambda msg: self.core.on_input(p.lidar_topic))
        filters: list[Any] = [cloud]
        for cam in p.cameras:
            msg_type = CompressedImage if cam.transport == 'compressed' else Image
            sub = message_filters.Subscriber(self, msg_type, cam.image_topic, qos_profile=qos,
                                             callback_group=group)
            sub.registerCallback(lambda msg, topic=cam.image_topic: self.core.on_input(topic))
            if cam.time_offset_ns:
                sub = StampOffsetFilter(sub, cam.time_offset_ns, self.msgs)
            filters.append(sub)
        # The Python synchronizer matches on |stamp difference| <= slop (no inter-message bound as in C++).
        self.synchronizer = message_filters.ApproximateTimeSynchronizer(filters, p.queue_size, p.slop)
        self.synchronizer.registerCallback(self.core.on_synchronized)

    def _lookup(self, target: str, source: str, stamp_ns: int) -> Any:
        transform = self.tf_buffer.lookup_transform(target, source, Time(nanoseconds=stamp_ns),
                                                    timeout=Duration(seconds=self.params.tf_timeout))
        return transform_to_matrix(transform)

    # -- outputs ---------------------------------------------------------------------------------
    def _publish(self, key: str, msg: Any) -> None:
        publisher = self._outputs.get(key)
        if publisher is None:       # e.g. an overlay for a camera the node was not configured with
            publisher = self.create_publisher(type(msg), f'~/{key}', 2)
            self._outputs[key] = publisher
        publisher.publish(msg)

    def _diagnostics(self) -> None:
        self.diagnostics_pub.publish(self.core.diagnostics(self.get_clock().now().nanoseconds))

    def _check_inputs(self) -> None:
        warning = self.core.check_inputs()
        if warning:
            self.get_logger().warning(warning)

    def destroy_node(self) -> None:
        self.core.stop()
        super().destroy_node()


def run(node_factory: Callable[[], Node], args: list[str] | None = None) -> int:
    """Spin a node on a multi-threaded executor until shutdown (Ctrl-C or the launch system)."""
    rclpy.init(args=args)
    node = None
    try:
        node = node_factory()
        executor = MultiThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except ValueError as exc:   # bad parameters or models: say why, exit non-zero
        rclpy.logging.get_logger('perception_nodes').fatal(str(exc))
        return 2
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
