"""What a node does on a robot and on bag replay, through the real rclpy / message_filters / tf2_ros.

Time going back (``ros2 bag play --loop``, with and without ``--clock``), timers while /clock is paused,
input QoS, compressed images, processing-time status and keep-latest drops.
"""
from __future__ import annotations

import threading

import numpy as np
import pytest

from perception_nodes.io.pointcloud2 import read_points
from perception_nodes.io.stamps import stamp_to_ns

SECOND = 1_000_000_000


def _clock_msg(ns: int):
    from rosgraph_msgs.msg import Clock
    msg = Clock()
    msg.clock.sec, msg.clock.nanosec = divmod(ns, SECOND)
    return msg


def _stale_queue(r, node, kit, clouds) -> int:
    """One frame at T0 + 5 s, then two clouds whose images never come: the cloud queue (2) is full."""
    high = kit.T0_NS + 5 * SECOND
    r.send(0, stamp=high)
    assert r.spin_until(lambda: clouds)
    received = node.ovp_core.stats.received(kit.LIDAR)
    for k in (1, 2):
        r.send(k, stamp=high + k * kit.PERIOD_NS, cameras=[])
    assert r.spin_until(lambda: node.ovp_core.stats.received(kit.LIDAR) == received + 2)
    assert [len(q) for q in node.ovp_synchronizer.queues] == [2, 0, 0]
    return high


@pytest.mark.parametrize('detect', [True, False])
def test_stamps_going_back_reset_the_synchronizer_and_worker(rig, kit, base_params, detect):
    """A bag played again without --clock: without the reset the new messages are evicted for ever."""
    from sensor_msgs.msg import PointCloud2

    from perception_nodes.nodes.fusion_node import FusionNode
    r = rig()
    node = r.start(FusionNode, {**base_params, 'node.queue_size': 2})
    clouds = r.listen('/fusion_node/labeled_points', PointCloud2)
    _stale_queue(r, node, kit, clouds)
    if not detect:
        node.ovp_jumps.stamp = lambda topic, ns: None
    submitted = node.ovp_core.worker.counts.submitted
    received = {t: node.ovp_core.stats.received(t) for t in (kit.LIDAR, *kit.CAMERAS)}
    r.send(0)                                              # the loop starts again at T0
    assert r.spin_until(lambda: all(node.ovp_core.stats.received(t) == n + 1 for t, n in received.items()))
    resets = node.ovp_core.stats.counts().get('synchronizer_resets', 0)
    if not detect:
        # the control: message_filters evicted the new cloud (lowest stamp first), no set formed
        assert node.ovp_core.worker.counts.submitted == submitted and resets == 0
        return
    assert r.spin_until(lambda: len(clouds) == 2)
    assert stamp_to_ns(clouds[-1].header.stamp) == kit.T0_NS and resets == 1
    assert 'stamp went back 5.' in node.ovp_core.stats.last_problem['synchronizer_resets']
    assert [v.name for v in node.ovp_core.pipeline.frames[-1].cameras] == ['cam_a', 'cam_b']  # static tf kept
    r.send(1)                                               # the new pass goes on: no more resets
    assert r.spin_until(lambda: len(clouds) == 3)
    assert node.ovp_core.stats.counts()['synchronizer_resets'] == 1
    assert any('time went back' in m for m in r.harness.log_messages(30))


def test_a_clock_jumping_back_resets_once(rig, kit, base_params):
    """``ros2 bag play --loop --clock``: /clock jumps back first, then the old stamps come again."""
    from diagnostic_msgs.msg import DiagnosticArray
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import PointCloud2

    from perception_nodes.nodes.fusion_node import FusionNode
    r = rig()
    clock = r.node.create_publisher(Clock, '/clock', 10)
    node = r.start(FusionNode, {**base_params, 'node.queue_size': 2, 'use_sim_time': True})
    clouds = r.listen('/fusion_node/labeled_points', PointCloud2)
    diagnostics = r.listen('/diagnostics', DiagnosticArray)
    high = kit.T0_NS + 5 * SECOND
    clock.publish(_clock_msg(high + 3 * kit.PERIOD_NS))
    assert r.spin_until(lambda: node.get_clock().now().nanoseconds == high + 3 * kit.PERIOD_NS)
    _stale_queue(r, node, kit, clouds)
    clock.publish(_clock_msg(kit.T0_NS))                   # the player starts over
    assert r.spin_until(lambda: node.ovp_core.stats.counts().get('synchronizer_resets') == 1)
    assert 'clock jumped back' in node.ovp_core.stats.last_problem['synchronizer_resets']
    assert [len(q) for q in node.ovp_synchronizer.queues] == [0, 0, 0]
    r.send(0)
    assert r.spin_until(lambda: len(clouds) == 2)
    assert stamp_to_ns(clouds[-1].header.stamp) == kit.T0_NS
    assert len(node.ovp_core.pipeline.frames[-1].cameras) == 2      # tf2 cleared itself, statics stay
    assert r.spin_until(lambda: diagnostics and kit.statuses(diagnostics[-1])['fusion_node: inputs'][2]
                        ['synchronizer resets (time jumped back)'] == '1', timeout=5)
    assert node.ovp_core.stats.counts()['synchronizer_resets'] == 1


def test_diagnostics_and_the_watchdog_keep_running_while_clock_is_paused(rig, kit, base_params):
    from diagnostic_msgs.msg import DiagnosticArray
    from rosgraph_msgs.msg import Clock

    from perception_nodes.nodes.fusion_node import FusionNode
    r = rig()
    clock = r.node.create_publisher(Clock, '/clock', 10)
    diagnostics = r.listen('/diagnostics', DiagnosticArray)
    node = r.start(FusionNode, {**base_params, 'use_sim_time': True, 'node.diagnostics_period': 0.05,
                                'node.silent_topic_timeout': 0.3})
    clock.publish(_clock_msg(kit.T0_NS))                   # one tick, then the bag is paused
    assert r.spin_until(lambda: node.get_clock().now().nanoseconds == kit.T0_NS)
    assert r.spin_until(lambda: any(stamp_to_ns(d.header.stamp) == kit.T0_NS for d in diagnostics))
    start = next(i for i, d in enumerate(diagnostics) if stamp_to_ns(d.header.stamp) == kit.T0_NS)
    assert r.spin_until(lambda: len(diagnostics) >= start + 8, timeout=10)
    stamps = {stamp_to_ns(d.header.stamp) for d in diagnostics[start:]}
    assert stamps == {kit.T0_NS}                          # ROS time stood still, the wall-clock timer ran
    assert r.spin_until(lambda: any('no synchronized set' in m for m in r.harness.log_messages(30)),
                        timeout=5)
    level, message, _ = kit.statuses(diagnostics[-1])['fusion_node: inputs']
    assert level == 1 and 'silent topics: /velodyne_points, /cam_a/image_raw, /cam_b/image_raw' in message


@pytest.mark.parametrize('input_qos', ['sensor_data', 'reliable'])
def test_input_qos_is_honoured_and_a_mismatch_names_the_silent_topic(rig, kit, base_params, input_qos):
    """A driver publishing the cloud best effort: a reliable subscription never gets it, and says so."""
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import PointCloud2

    from perception_nodes.nodes.fusion_node import FusionNode
    r = rig()
    r.node.destroy_publisher(r.cloud_pub)
    r.cloud_pub = r.node.create_publisher(PointCloud2, kit.LIDAR, qos_profile_sensor_data)
    clouds = r.listen('/fusion_node/labeled_points', PointCloud2)
    diagnostics = r.listen('/diagnostics', DiagnosticArray)
    node = r.start(FusionNode, {**base_params, 'node.input_qos': input_qos, 'node.queue_size': 7,
                                'node.silent_topic_timeout': 1.0})
    for topic in (kit.LIDAR, *kit.CAMERAS):
        (info,) = [i for i in node.get_subscriptions_info_by_topic(topic) if i.node_name == 'fusion_node']
        expected = ReliabilityPolicy.BEST_EFFORT if input_qos == 'sensor_data' else ReliabilityPolicy.RELIABLE
        assert info.qos_profile.reliability == expected and info.qos_profile.depth == 7
    r.send(0)
    if input_qos == 'sensor_data':
        assert r.spin_until(lambda: clouds)
        return

    def cloud_named_silent() -> bool:
        r.send(0, cloud=False)                 # the cameras keep publishing (and keep arriving)
        return any('silent topics: /velodyne_points (' in m for m in r.harness.log_messages(30))
    assert r.spin_until(cloud_named_silent, timeout=10)
    (warning,) = [m for m in r.harness.log_messages(30) if 'silent topics: /velodyne_points (' in m][:1]
    assert "input_qos 'reliable' for bag playback" in warning
    assert any('incompatible QoS' in m for m in r.harness.log_messages(30))      # rclpy's event says it too
    assert r.spin_until(lambda: diagnostics and 'silent topics: /velodyne_points' in
                        kit.statuses(diagnostics[-1])['fusion_node: inputs'][1], timeout=5)
    assert node.ovp_core.stats.received(kit.CAMERAS[0]) > 1 and node.ovp_core.stats.received(kit.LIDAR) == 0
    assert clouds == [] and node.ovp_core.worker.counts.submitted == 0


def test_compressed_camera_topics_are_compressed_image_subscriptions(rig, kit, base_params, kitti):
    from sensor_msgs.msg import Image, PointCloud2

    from perception_nodes.nodes.fusion_node import FusionNode
    cameras = ['/cam_a/image_raw/compressed', '/cam_b/image_raw']
    r = rig(cameras=tuple(cameras))
    node = r.start(FusionNode, {**base_params, 'inputs.camera_topics': cameras})
    types = dict(node.get_subscriber_names_and_types_by_node('fusion_node', '/'))
    assert types[cameras[0]] == ['sensor_msgs/msg/CompressedImage'] and types[cameras[1]] == \
        ['sensor_msgs/msg/Image']
    assert '/cam_a/camera_info' in types
    clouds = r.listen('/fusion_node/labeled_points', PointCloud2)
    overlays = r.listen('/fusion_node/overlay/cam_a', Image)
    r.send(0)
    assert r.spin_until(lambda: clouds and overlays)
    frame = node.ovp_core.pipeline.frames[0]
    ref = kit.reference_frame(kitti[0], kit.stamp_of(0), [cameras[0]], compressed=True)
    assert [v.name for v in frame.cameras] == ['cam_a', 'cam_b']
    assert np.array_equal(frame.cameras[0].image, ref.cameras[0].image)         # the JPEG, decoded
    assert not np.array_equal(frame.cameras[0].image, frame.cameras[1].image)   # lossy: not the raw one
    expected = node.ovp_core.pipeline.inner.process(frame)
    assert np.array_equal(read_points(clouds[0])['label'], expected.labels)


class SlowPipeline:
    """The node's real pipeline behind a gate: each frame waits until the test lets it through."""

    def __init__(self, inner) -> None:
        self.inner, self.gate, self.entered = inner, threading.Semaphore(0), threading.Semaphore(0)

    def process(self, frame):
        self.entered.release()
        assert self.gate.acquire(timeout=20)
        return self.inner.process(frame)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_keep_latest_drops_and_processing_time_status(rig, kit, base_params):
    """Sets arriving while a frame runs: only the newest waits (drops counted); overruns WARN then ERROR."""
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import PointCloud2

    from perception_nodes.nodes.common import default_pipeline
    from perception_nodes.nodes.fusion_node import FusionNode
    r = rig()
    slow = []
    node = r.start(FusionNode, {**base_params, 'labeller.kind': 'none', 'node.max_processing_time': 1e-6},
                   build_pipeline=lambda c, w: slow.append(SlowPipeline(default_pipeline(c, w))) or slow[0])
    clouds = r.listen('/fusion_node/labeled_points', PointCloud2)
    diagnostics = r.listen('/diagnostics', DiagnosticArray)
    slow = slow[0]

    def processing():
        return kit.statuses(diagnostics[-1])['fusion_node: processing']
    r.send(0, cameras=[])
    assert r.spin_until(lambda: slow.entered.acquire(blocking=False))   # frame 0 runs; 1, 2 arrive meanwhile
    for i in (1, 2):
        r.send(i, cameras=[])
    assert r.spin_until(lambda: node.ovp_core.worker.counts.submitted == 3)
    for _ in range(2):
        slow.gate.release()
    assert r.spin_until(lambda: len(clouds) == 2)
    assert [stamp_to_ns(c.header.stamp) for c in clouds] == [kit.stamp_of(0), kit.stamp_of(2)]  # 1 dropped
    assert r.spin_until(lambda: diagnostics and processing()[2]['frames processed'] == '2', timeout=5)
    level, message, values = processing()
    assert level == 1 and values['frames dropped (replaced by newer)'] == '1'
    assert 'last frame took' in message or '1 frames dropped' in message
    for i in range(3, 6):                                  # 5 consecutive overruns: ERROR
        slow.gate.release()
        r.send(i, cameras=[])
        assert r.spin_until(lambda: len(clouds) == i)
    assert r.spin_until(lambda: processing()[0] == 2, timeout=5)
    assert '5 consecutive frames over 0.000 s' in processing()[1]
    (ok,) = node.set_parameters([Parameter('node.max_processing_time', value=60.0)])
    assert ok.successful
    slow.gate.release()
    r.send(6, cameras=[])
    assert r.spin_until(lambda: len(clouds) == 6)
    assert r.spin_until(lambda: processing()[2]['consecutive overruns'] == '0', timeout=5)
    assert processing()[0] == 0 and processing()[2]['frames dropped (replaced by newer)'] == '1'


def test_a_message_with_an_invalid_stamp_is_counted_and_the_node_goes_on(rig, kit, base_params, kitti):
    import message_filters
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import PointCloud2

    from perception_nodes.nodes.fusion_node import FusionNode
    r = rig()
    bad_cloud = kit.cloud_of(kitti[0], kit.T0_NS, r.msgs)
    bad_cloud.header.stamp.sec = -1                         # int32: a driver can send it
    # the premise: message_filters' synchronizer raises on it (in the executor, the node would die)
    inputs = [message_filters.SimpleFilter(), message_filters.SimpleFilter()]
    message_filters.ApproximateTimeSynchronizer(inputs, 5, 0.05)
    with pytest.raises(ValueError, match='must not be negative'):
        inputs[0].signalMessage(bad_cloud)

    node = r.start(FusionNode, base_params)
    clouds = r.listen('/fusion_node/labeled_points', PointCloud2)
    diagnostics = r.listen('/diagnostics', DiagnosticArray)
    bad_image = kit.image_of(kitti[0], kit.T0_NS, r.msgs)
    bad_image.header.stamp.nanosec = 2_000_000_000          # uint32: not a time either
    r.cloud_pub.publish(bad_cloud)
    r.image_pubs[1].publish(bad_image)
    assert r.spin_until(lambda: node.ovp_core.stats.received(kit.CAMERAS[1]) == 1)
    counts = node.ovp_core.stats.counts()
    assert counts['bad_cloud'] == 1 and counts['camera/bad_image'] == 1
    problem = node.ovp_core.stats.last_problem['camera/bad_image']
    assert 'cam_b: /cam_b/image_raw: invalid header stamp' in problem
    r.send(1)
    assert r.spin_until(lambda: clouds) and stamp_to_ns(clouds[0].header.stamp) == kit.stamp_of(1)
    assert r.spin_until(lambda: diagnostics and kit.statuses(diagnostics[-1])['fusion_node: input errors'][2]
                        ['bad_cloud'] == '1', timeout=5)
