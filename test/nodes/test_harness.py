"""The ROS 2 harness runs the real Jazzy rclpy / message_filters / tf2_ros code (test/ros_harness)."""
from __future__ import annotations

import array
import sys

import numpy as np
import pytest


@pytest.fixture
def node(rclpy_init):
    from rclpy.node import Node
    node = Node('harness_test')
    yield node
    node.destroy_node()


@pytest.fixture
def executor(rclpy_init, node):
    from rclpy.executors import SingleThreadedExecutor
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    yield executor
    executor.shutdown()


def test_publish_subscribe_through_an_executor(ros_harness, node, executor):
    from std_msgs.msg import String
    received = []
    pub = node.create_publisher(String, 'chatter', 10)
    node.create_subscription(String, '/chatter', received.append, 10)
    sent = String(data='hello')
    pub.publish(sent)
    assert ros_harness.spin_until(executor, lambda: received, timeout=2.0)
    assert received[0] == sent and received[0] is not sent      # a copy, as through the middleware
    assert pub.get_subscription_count() == 1 and node.count_publishers('/chatter') == 1
    names = dict(node.get_publisher_names_and_types_by_node('harness_test', '/'))
    assert names['/chatter'] == ['std_msgs/msg/String'] and '/rosout' in names
    with pytest.raises(TypeError):
        pub.publish(b'not a message'.decode())


def test_private_and_relative_names_expand_like_rcl(ros_harness, rclpy_init):
    from rclpy.exceptions import InvalidTopicNameException
    from rclpy.node import Node
    from std_msgs.msg import String
    node = Node('cam_node', namespace='robot')
    try:
        assert node.create_publisher(String, '~/out', 1).topic_name == '/robot/cam_node/out'
        assert node.create_publisher(String, 'rel', 1).topic_name == '/robot/rel'
        with pytest.raises(InvalidTopicNameException):
            node.create_publisher(String, '~/bad name', 1)
    finally:
        node.destroy_node()


def test_messages_are_rosidl_shaped(ros_harness):
    from diagnostic_msgs.msg import DiagnosticStatus
    from sensor_msgs.msg import CameraInfo, PointCloud2
    assert PointCloud2.get_fields_and_field_types()['data'] == 'sequence<uint8>'
    assert CameraInfo.get_fields_and_field_types()['k'] == 'double[9]'
    assert DiagnosticStatus.ERROR == b'\x02'
    info = CameraInfo(d=[0.1, 0.2], k=np.eye(3).reshape(-1))
    assert isinstance(info.d, array.array) and info.k.dtype == np.float64
    with pytest.raises(AssertionError, match="'width' field must be of type 'int'"):
        CameraInfo(width=640.0)
    with pytest.raises(AssertionError, match='Invalid arguments'):
        CameraInfo(wdth=1)


def test_serialization_round_trip(ros_harness):
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import PointCloud2, PointField
    cloud = PointCloud2(height=1, width=2, point_step=4, row_step=8, data=array.array('B', range(8)),
                        fields=[PointField(name='x', offset=0, datatype=PointField.FLOAT32, count=1)])
    raw = serialize_message(cloud)
    assert isinstance(raw, bytes) and raw[:4] == b'\x00\x01\x00\x00'      # CDR little endian
    assert deserialize_message(raw, PointCloud2) == cloud


def test_timer_fires_on_the_executor(ros_harness, node, executor):
    calls = []
    timer = node.create_timer(0.02, lambda: calls.append(1))
    assert ros_harness.spin_until(executor, lambda: len(calls) >= 3, timeout=2.0)
    timer.cancel()
    count = len(calls)
    executor.spin_once(timeout_sec=0.06)
    assert len(calls) == count and timer.is_canceled()


def test_ros_clock_timer_follows_clock_topic(ros_harness, rclpy_init):
    """With use_sim_time a ROS-clock timer fires only when /clock advances; a steady-clock one always."""
    from rclpy.clock import Clock, ClockType
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from rosgraph_msgs.msg import Clock as ClockMsg
    sim = Node('sim_node', parameter_overrides=[Parameter('use_sim_time', value=True)])
    clock_node = Node('clock_pub')
    executor = SingleThreadedExecutor()
    for n in (sim, clock_node):
        executor.add_node(n)
    ros_calls, wall_calls = [], []
    clock_pub = clock_node.create_publisher(ClockMsg, '/clock', 10)

    def publish_clock(sec: int) -> None:
        msg = ClockMsg()
        msg.clock.sec = sec
        clock_pub.publish(msg)

    publish_clock(100)
    assert ros_harness.spin_until(executor, lambda: sim.get_clock().now().nanoseconds == 100 * 10 ** 9)
    sim.create_timer(1.0, lambda: ros_calls.append(1))
    sim.create_timer(0.02, lambda: wall_calls.append(1), clock=Clock(clock_type=ClockType.STEADY_TIME))
    assert ros_harness.spin_until(executor, lambda: len(wall_calls) >= 3, timeout=2.0)
    assert ros_calls == []                                          # /clock paused: no ROS-time tick
    publish_clock(101)
    assert ros_harness.spin_until(executor, lambda: ros_calls, timeout=2.0)
    executor.shutdown()
    sim.destroy_node()
    clock_node.destroy_node()


def test_parameters_validating_callback(ros_harness, rclpy_init):
    from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    node = Node('params', parameter_overrides=[Parameter('rate', value=5)])
    node.declare_parameter('rate', 1, ParameterDescriptor(description='Hz'))
    node.declare_parameter('frame', 'base', ParameterDescriptor(read_only=True))
    assert node.get_parameter('rate').value == 5                    # the override wins

    def validate(params):
        bad = [p.name for p in params if p.name == 'rate' and p.value <= 0]
        return SetParametersResult(successful=not bad, reason='rate must be positive' if bad else '')

    node.add_on_set_parameters_callback(validate)
    (ok,) = node.set_parameters([Parameter('rate', value=10)])
    (refused,) = node.set_parameters([Parameter('rate', value=-1)])
    assert ok.successful and not refused.successful and refused.reason == 'rate must be positive'
    assert node.get_parameter('rate').value == 10                   # previous value kept
    (read_only,) = node.set_parameters([Parameter('frame', value='map')])
    assert not read_only.successful and node.get_parameter('frame').value == 'base'
    node.destroy_node()


def test_parameters_through_the_set_parameters_service(ros_harness, rclpy_init):
    """What ``ros2 param set`` does: a SetParameters request to ``/<node>/set_parameters``."""
    from rcl_interfaces.msg import Parameter as ParameterMsg, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.node import Node
    server, client_node = Node('server'), Node('ros2param')
    server.declare_parameter('names', ['a'])
    client = client_node.create_client(SetParameters, '/server/set_parameters')
    assert client.wait_for_service(timeout_sec=1.0)
    executor = MultiThreadedExecutor()
    for n in (server, client_node):
        executor.add_node(n)
    value = ParameterValue(type=ParameterType.PARAMETER_STRING_ARRAY, string_array_value=['x', 'y'])
    future = client.call_async(SetParameters.Request(parameters=[ParameterMsg(name='names', value=value)]))
    executor.spin_until_future_complete(future, timeout_sec=3.0)
    assert future.result().results[0].successful
    assert server.get_parameter('names').value == ['x', 'y']
    executor.shutdown()
    server.destroy_node()
    client_node.destroy_node()


def test_parameters_from_a_params_file_and_the_command_line(ros_harness, tmp_path):
    import rclpy
    from rclpy.node import Node
    params = tmp_path / 'params.yaml'
    params.write_text('/**:\n  ros__parameters:\n    shared: 1\nmy_node:\n  ros__parameters:\n'
                      '    names: [a, b]\n    ratio: 0.5\n    nested:\n      flag: true\n    quoted: "12"\n')
    rclpy.init(args=['prog', '--ros-args', '--params-file', str(params), '-p', 'shared:=2'])
    node = Node('my_node', automatically_declare_parameters_from_overrides=True)
    names = ['shared', 'names', 'ratio', 'nested.flag', 'quoted']
    values = {p.name: p.value for p in node.get_parameters(names)}
    assert values == {'shared': 2, 'names': ['a', 'b'], 'ratio': 0.5, 'nested.flag': True, 'quoted': '12'}
    node.destroy_node()
    rclpy.shutdown()


def test_transient_local_late_joiner(ros_harness, node, executor):
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from std_msgs.msg import String
    latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                         reliability=ReliabilityPolicy.RELIABLE)
    pub = node.create_publisher(String, 'latched', latched)
    pub.publish(String(data='old'))
    pub.publish(String(data='latest'))
    late, volatile = [], []
    node.create_subscription(String, 'latched', late.append, latched)
    node.create_subscription(String, 'latched', volatile.append, 10)
    assert ros_harness.spin_until(executor, lambda: late, timeout=2.0)
    executor.spin_once(timeout_sec=0.05)
    assert [m.data for m in late] == ['latest'] and volatile == []


def test_incompatible_qos_is_not_delivered_and_is_reported(ros_harness, node, executor):
    from rclpy.qos import qos_profile_sensor_data, QoSProfile, ReliabilityPolicy
    from std_msgs.msg import String
    reliable_sub, sensor_sub = [], []
    pub = node.create_publisher(String, 'scan', qos_profile_sensor_data)        # best effort
    node.create_subscription(String, 'scan', reliable_sub.append,
                             QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE))
    node.create_subscription(String, 'scan', sensor_sub.append, qos_profile_sensor_data)
    pub.publish(String(data='x'))
    assert ros_harness.spin_until(executor, lambda: sensor_sub, timeout=2.0)
    # both sides report it, as rmw does: the publisher's and the subscription's default event callbacks
    assert ros_harness.spin_until(
        executor, lambda: len([m for m in ros_harness.log_messages(30) if 'incompatible QoS' in m]) == 2)
    assert reliable_sub == []


def _stamped(cls, sec: int, nanosec: int = 0, frame: str = 'f'):
    msg = cls()
    msg.header.stamp.sec, msg.header.stamp.nanosec = sec, nanosec
    msg.header.frame_id = frame
    return msg


def test_approximate_time_synchronizer_delivers_a_cloud_and_an_image(ros_harness, node, executor):
    import message_filters
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image, PointCloud2
    sets = []
    cloud_sub = message_filters.Subscriber(node, PointCloud2, '/points', qos_profile=qos_profile_sensor_data)
    image_sub = message_filters.Subscriber(node, Image, '/cam/image_raw', qos_profile=qos_profile_sensor_data)
    sync = message_filters.ApproximateTimeSynchronizer([cloud_sub, image_sub], 5, 0.05)
    sync.registerCallback(lambda cloud, image: sets.append((cloud, image)))
    cloud_pub = node.create_publisher(PointCloud2, '/points', 10)
    image_pub = node.create_publisher(Image, '/cam/image_raw', 10)
    cloud_pub.publish(_stamped(PointCloud2, 10, 0, 'velodyne'))
    image_pub.publish(_stamped(Image, 10, 20_000_000, 'camera'))
    assert ros_harness.spin_until(executor, lambda: sets, timeout=2.0)
    cloud, image = sets[0]
    assert (cloud.header.frame_id, image.header.frame_id) == ('velodyne', 'camera')
    assert image.header.stamp.nanosec == 20_000_000


def test_approximate_time_synchronizer_slop_is_strict(ros_harness, node, executor):
    """The real Python synchronizer needs the spread strictly below slop (its docs say within)."""
    import message_filters
    from sensor_msgs.msg import Image, PointCloud2
    sets = []
    subs = [message_filters.Subscriber(node, PointCloud2, '/p'),
            message_filters.Subscriber(node, Image, '/i')]
    message_filters.ApproximateTimeSynchronizer(subs, 5, 0.05).registerCallback(lambda *m: sets.append(m))
    cloud_pub = node.create_publisher(PointCloud2, '/p', 10)
    image_pub = node.create_publisher(Image, '/i', 10)
    cloud_pub.publish(_stamped(PointCloud2, 1))
    image_pub.publish(_stamped(Image, 1, 50_000_000))          # spread == slop
    for _ in range(6):
        executor.spin_once(timeout_sec=0.02)
    assert sets == []
    image_pub.publish(_stamped(Image, 1, 49_999_999))          # just below
    assert ros_harness.spin_until(executor, lambda: sets, timeout=2.0)


def test_tf2_buffer_resolves_a_static_transform_from_tf_static(ros_harness, node, executor):
    from geometry_msgs.msg import TransformStamped
    from rclpy.time import Time
    from tf2_ros import Buffer, StaticTransformBroadcaster, TransformListener
    import tf2_ros
    buffer = Buffer(node=node)
    TransformListener(buffer, node, spin_thread=False)
    t = TransformStamped()
    t.header.frame_id, t.child_frame_id = 'velodyne', 'camera'
    t.transform.translation.x, t.transform.translation.z = 0.27, -0.08
    t.transform.rotation.x, t.transform.rotation.y, t.transform.rotation.z, t.transform.rotation.w = \
        -0.5, 0.5, -0.5, 0.5
    StaticTransformBroadcaster(node).sendTransform(t)
    assert ros_harness.spin_until(executor, lambda: buffer.can_transform('camera', 'velodyne', Time()))
    out = buffer.lookup_transform('camera', 'velodyne', Time(seconds=1234), timeout=rclpy_duration(0.05))
    r = out.transform.rotation
    assert (out.header.frame_id, out.child_frame_id) == ('camera', 'velodyne')
    # camera <- velodyne is the inverse rotation; the velodyne origin lands at -R^T t
    assert np.allclose([r.x, r.y, r.z, r.w], [0.5, -0.5, 0.5, 0.5])
    tr = out.transform.translation
    assert np.allclose([tr.x, tr.y, tr.z], [0.0, -0.08, -0.27], atol=1e-9)
    with pytest.raises(tf2_ros.LookupException):
        buffer.lookup_transform('camera', 'nowhere', Time())


def rclpy_duration(seconds: float):
    from rclpy.duration import Duration
    return Duration(seconds=seconds)


def test_tf2_dynamic_transforms_interpolate_and_refuse_extrapolation(ros_harness, node):
    from geometry_msgs.msg import TransformStamped
    from rclpy.time import Time
    from tf2_ros import Buffer
    import tf2_ros
    buffer = Buffer()
    for sec, x in ((1, 0.0), (2, 2.0)):
        t = TransformStamped()
        t.header.frame_id, t.child_frame_id = 'odom', 'base'
        t.header.stamp.sec = sec
        t.transform.translation.x = x
        t.transform.rotation.w = 1.0
        buffer.set_transform(t, 'test')
    assert buffer.lookup_transform('odom', 'base', Time(seconds=1.5)).transform.translation.x == \
        pytest.approx(1.0)
    latest = buffer.lookup_transform('odom', 'base', Time())
    assert latest.header.stamp.sec == 2
    with pytest.raises(tf2_ros.ExtrapolationException, match='future'):
        buffer.lookup_transform('odom', 'base', Time(seconds=3))


def test_destroy_and_shutdown_leave_no_thread_or_traceback(ros_harness, capfd):
    import rclpy
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.node import Node
    rclpy.init()
    node = Node('short_lived')
    node.create_timer(0.01, lambda: None)
    executor = MultiThreadedExecutor()
    executor.add_node(node)
    for _ in range(5):
        executor.spin_once(timeout_sec=0.02)
    executor.shutdown()
    node.destroy_node()
    rclpy.shutdown()
    assert not rclpy.ok()
    assert ros_harness.thread_errors == [] and 'Traceback' not in capfd.readouterr().err


def test_harness_uninstalls_cleanly():
    from pathlib import Path
    spec_path = Path(__file__).resolve().parents[1] / 'ros_harness' / '__init__.py'
    if 'ros_harness' not in sys.modules:
        pytest.skip('the ros_harness fixture was not used in this session')
    package = sys.modules['ros_harness']
    if not (package.ros2_python_path() / 'rclpy').is_dir():
        pytest.skip('ROS 2 Python layers not present')
    assert spec_path.is_file()
    before = set(sys.modules)
    with package.RosHarness(console=False):
        import rclpy  # noqa: F401
        import sensor_msgs.msg  # noqa: F401
        assert 'tf2_py' in sys.modules and str(package.ros2_python_path()) in sys.path
    leftovers = {m for m in set(sys.modules) - before
                 if m.split('.')[0] in ('rclpy', 'sensor_msgs', 'tf2_py', 'std_msgs', 'rpyutils')}
    assert leftovers == set()
    assert str(package.ros2_python_path()) not in sys.path
