"""launch_testing integration test (runs on a ROS 2 machine: `colcon test` or `launch_test` on this file).

Starts fusion_node with a tiny random CLIP (no weights to download) and a static LiDAR -> camera
transform, publishes synchronized PointCloud2 + Image + CameraInfo built with the package's own
conversions through the rclpy message factory, and checks the labeled cloud (fields, frame, stamp),
/diagnostics, the latched ~/label_info and a live vocabulary change (``ros2 param set`` sends a STRING).
Random weights: the labels carry no meaning.

Here (no ROS 2 install) it is skipped; test/nodes runs the same nodes in-process on the real Python layers
of rclpy / message_filters / tf2_ros (test/ros_harness), which is not a DDS round trip between processes.
"""
from __future__ import annotations

import tempfile
import time
import unittest
from pathlib import Path

import pytest

pytest.importorskip('rclpy', reason='rclpy is not installed (not a ROS 2 machine; run it there)')
pytest.importorskip('launch_testing', reason='launch_testing is not installed (not a ROS 2 machine)')

import launch  # noqa: E402
import launch_ros.actions  # noqa: E402
import launch_testing.actions  # noqa: E402
import launch_testing.asserts  # noqa: E402
import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from transforms3d.quaternions import mat2quat  # noqa: E402

T_CAM_LIDAR = np.array([[0.0, -1.0, 0.0, 0.0], [0.0, 0.0, -1.0, -0.1], [1.0, 0.0, 0.0, -0.3], [0, 0, 0, 1.0]])
STAMP_NS = 1_700_000_000_123_456_789


@pytest.mark.launch_test
def generate_test_description():
    work = Path(tempfile.mkdtemp(prefix='ovp-launch-test-'))
    w, x, y, z = mat2quat(T_CAM_LIDAR[:3, :3])
    t = T_CAM_LIDAR[:3, 3]
    tf = launch_ros.actions.Node(
        package='tf2_ros', executable='static_transform_publisher', output='screen',
        arguments=['--x', str(t[0]), '--y', str(t[1]), '--z', str(t[2]), '--qx', str(x), '--qy', str(y),
                   '--qz', str(z), '--qw', str(w), '--frame-id', 'cam', '--child-frame-id', 'lidar'])
    node = launch_ros.actions.Node(
        package='perception_nodes', executable='fusion_node', name='fusion_node', output='screen',
        parameters=[{'inputs.lidar_topic': '/test/points', 'inputs.camera_topics': ['/test/cam/image_raw'],
                     'node.input_qos': 'reliable', 'teacher.clip_model': 'ovp-tiny',
                     'teacher.clip_pretrained': 'none', 'teacher.cache_dir': str(work),
                     'teacher.input_size': [64, 128], 'vocabulary.classes': ['car', 'road'],
                     'node.silent_topic_timeout': 2.0, 'node.diagnostics_period': 0.5,
                     'node.max_processing_time': 60.0}])
    return launch.LaunchDescription([tf, node, launch_testing.actions.ReadyToTest()]), {'fusion': node}


def _inputs(msgs):
    from perception_nodes.frame import CameraModel
    from perception_nodes.io.camera_info import camera_info_msg
    from perception_nodes.io.image import rgb_to_image_msg
    from perception_nodes.io.pointcloud2 import FLOAT32, create_cloud, xyz_fields
    from perception_nodes.io.stamps import header

    rng = np.random.default_rng(0)
    pts = np.c_[rng.uniform(3, 20, 2000), rng.uniform(-5, 5, 2000), rng.uniform(-1.5, 1.0, 2000),
                rng.uniform(0, 1, 2000)].astype(np.float32)
    cloud = create_cloud(header('lidar', STAMP_NS, msgs), xyz_fields([('intensity', FLOAT32)]), pts, msgs)
    rgb = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    image = rgb_to_image_msg(rgb, header('cam', STAMP_NS, msgs), msgs)
    model = CameraModel('cam', 160, 120, K=[[100, 0, 80], [0, 100, 60], [0, 0, 1]], D=np.zeros(5))
    return cloud, image, camera_info_msg(model, STAMP_NS, msgs)


class TestFusionNode(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        rclpy.init()
        cls.node = rclpy.create_node('fusion_node_tester')

    @classmethod
    def tearDownClass(cls):
        cls.node.destroy_node()
        rclpy.shutdown()

    def _spin_until(self, predicate, publish=None, timeout=90.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end and not predicate():
            if publish is not None:
                publish()
            rclpy.spin_once(self.node, timeout_sec=0.5)
        return predicate()

    def test_labeled_cloud_diagnostics_and_vocabulary_change(self):
        from diagnostic_msgs.msg import DiagnosticArray
        from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
        from rcl_interfaces.srv import SetParameters
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2
        from vision_msgs.msg import LabelInfo

        from perception_nodes.io.pointcloud2 import read_points
        from perception_nodes.io.stamps import stamp_to_ns
        from perception_nodes.nodes.rclpy_messages import RclpyMessageTypes

        cloud, image, info = _inputs(RclpyMessageTypes())
        pubs = [(self.node.create_publisher(PointCloud2, '/test/points', 10), cloud),
                (self.node.create_publisher(Image, '/test/cam/image_raw', 10), image),
                (self.node.create_publisher(CameraInfo, '/test/cam/camera_info', 10), info)]
        clouds, diagnostics, classes = [], [], []
        self.node.create_subscription(PointCloud2, '/fusion_node/labeled_points', clouds.append, 10)
        self.node.create_subscription(DiagnosticArray, '/diagnostics', diagnostics.append, 10)
        latched = rclpy.qos.QoSProfile(depth=1, durability=rclpy.qos.DurabilityPolicy.TRANSIENT_LOCAL)
        self.node.create_subscription(LabelInfo, '/fusion_node/label_info', classes.append, latched)

        def publish():
            for pub, msg in pubs:
                pub.publish(msg)

        self.assertTrue(self._spin_until(lambda: clouds, publish), 'no labeled cloud from fusion_node')
        out = clouds[-1]
        self.assertEqual(out.header.frame_id, 'lidar')
        self.assertEqual(stamp_to_ns(out.header.stamp), STAMP_NS)
        self.assertEqual([f.name for f in out.fields],
                         ['x', 'y', 'z', 'intensity', 'label', 'score', 'instance', 'rgb'])
        labels = read_points(out)['label']
        self.assertEqual(len(labels), 2000)
        self.assertTrue(set(np.unique(labels)) <= {0, 1, 65535})
        self.assertTrue(self._spin_until(lambda: diagnostics))
        names = {s.name for d in diagnostics for s in d.status}
        self.assertIn('fusion_node: processing', names)

        client = self.node.create_client(SetParameters, '/fusion_node/set_parameters')
        self.assertTrue(client.wait_for_service(timeout_sec=10.0))
        # what `ros2 param set /fusion_node vocabulary.classes "person, bicycle, tree"` sends: a STRING
        value = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value='person, bicycle, tree')
        request = SetParameters.Request(parameters=[Parameter(name='vocabulary.classes', value=value)])
        future = client.call_async(request)
        rclpy.spin_until_future_complete(self.node, future, timeout_sec=10.0)
        self.assertTrue(future.result().results[0].successful)

        def announced():
            return classes and 'bicycle' in [c.class_name for c in classes[-1].class_map]
        self.assertTrue(self._spin_until(announced, publish), 'vocabulary change not announced on label_info')
        self.assertEqual(classes[-1].class_map[-1].class_id, 65535)


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_exit_code(self, proc_info, fusion):
        launch_testing.asserts.assertExitCodes(proc_info, process=fusion, allowable_exit_codes=[0, -2, -15])
