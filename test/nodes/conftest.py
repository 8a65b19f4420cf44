"""Node tests on real KITTI frames through the real rclpy / message_filters / tf2_ros (test/ros_harness).

``Rig`` is the robot around a node under test: a ``sensors`` node that publishes the KITTI cloud, camera
images, CameraInfo and /tf_static the way drivers and robot_state_publisher do, subscribes to the outputs,
and spins one executor with the nodes under test. ``reference_frame`` assembles the same data as the bag
route does (rosbags messages, ``FrameAssembler`` with the bag route's ``TransformBuffer``), so a test can
check that the node route gives the same Frame and the same labels.

A tiny random CLIP (``ovp-tiny``, no weights) and a fresh tiny student exported to ONNX keep it fast; the
labels carry no meaning, the wiring does.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
import sys
import time
from typing import Any, Callable

import numpy as np
import pytest
from PIL import Image as PILImage

from perception_nodes.assembly import FrameAssembler, SyncedSet, camera_info_topic, camera_inputs
from perception_nodes.io.camera_info import camera_info_msg
from perception_nodes.io.image import rgb_to_compressed_msg, rgb_to_image_msg
from perception_nodes.io.kitti import find_kitti_frames, read_calib, read_velodyne
from perception_nodes.io.messages import default_message_types
from perception_nodes.io.pointcloud2 import FLOAT32, create_cloud, xyz_fields
from perception_nodes.io.stamps import header
from perception_nodes.io.tf_buffer import TransformBuffer, tf_message, transform_stamped_msg

LIDAR = '/velodyne_points'
CAMERAS = ('/cam_a/image_raw', '/cam_b/image_raw')      # KITTI camera_2, twice, under two namespaces
LIDAR_FRAME, CAMERA_FRAME = 'velodyne', 'camera_2'
T0_NS = 1_317_000_000_000_000_000                      # a 2011 stamp, like the recording
PERIOD_NS = 100_000_000
CLASSES = ['car', 'road', 'tree', 'building']


@dataclass
class KittiFrame:
    """One KITTI raw frame (every 8th point, to stay fast)."""

    points: np.ndarray          # (N, 4) x, y, z, intensity float32
    rgb: np.ndarray             # (H, W, 3) uint8
    calib: Any


@pytest.fixture(scope='session')
def kitti(kitti_raw_dir) -> list[KittiFrame]:
    out = []
    for files in find_kitti_frames(kitti_raw_dir)[:3]:
        points = read_velodyne(files.velodyne)[::8].astype(np.float32)
        out.append(KittiFrame(points, np.asarray(PILImage.open(files.image).convert('RGB')),
                              read_calib(files.calib)))
    return out


@pytest.fixture(scope='session')
def clip_cache(tmp_path_factory) -> Path:
    """One text-embedding cache for the session."""
    return tmp_path_factory.mktemp('clip-cache')


@pytest.fixture(scope='session')
def student_onnx(tmp_path_factory) -> Path:
    """Export a fresh tiny range-image student to ONNX (random weights)."""
    import torch

    from perception_nodes.student.config import StudentConfig
    from perception_nodes.student.export import export_onnx
    from perception_nodes.student.model import build_student
    torch.manual_seed(0)
    config = StudentConfig(arch='range_unet', widths=(8, 16), depths=(1, 1), embed_dim=32, proj_dim=16,
                           point_width=16, head_hidden=16, voxel_width=4, range_height=32, range_width=256,
                           max_points=32768)
    return export_onnx(build_student(config).eval(), tmp_path_factory.mktemp('student') / 'student.onnx')


@pytest.fixture
def base_params(clip_cache) -> dict[str, Any]:
    """Parameters every test node gets: KITTI topics, tiny CLIP, generous limits (no drops, no warnings)."""
    return {'inputs.lidar_topic': LIDAR, 'inputs.camera_topics': list(CAMERAS),
            'teacher.clip_model': 'ovp-tiny', 'teacher.clip_pretrained': 'none',
            'teacher.cache_dir': str(clip_cache), 'teacher.input_size': [64, 128],
            'vocabulary.classes': list(CLASSES), 'vocabulary.templates': ['a photo of a {}.'],
            'node.max_frame_age': 0.0, 'node.max_processing_time': 60.0, 'node.diagnostics_period': 0.1,
            'node.silent_topic_timeout': 60.0}


def stamp_of(i: int) -> int:
    return T0_NS + i * PERIOD_NS


def cloud_of(frame: KittiFrame, stamp: int, msgs: Any) -> Any:
    return create_cloud(header(LIDAR_FRAME, stamp, msgs), xyz_fields([('intensity', FLOAT32)]), frame.points,
                        msgs)


def image_of(frame: KittiFrame, stamp: int, msgs: Any, compressed: bool = False) -> Any:
    hdr = header(CAMERA_FRAME, stamp, msgs)
    if compressed:
        return rgb_to_compressed_msg(frame.rgb, hdr, msgs)
    return rgb_to_image_msg(frame.rgb, hdr, msgs)


def info_of(frame: KittiFrame, stamp: int, msgs: Any) -> Any:
    model = frame.calib.camera_model(frame.rgb.shape[1], frame.rgb.shape[0], frame_id=CAMERA_FRAME)
    return camera_info_msg(model, stamp, msgs)


def tf_static_of(frame: KittiFrame, msgs: Any) -> Any:
    """/tf_static: camera_2 -> velodyne (T_cam_velo), as one edge of a robot's tf tree."""
    edge = transform_stamped_msg(CAMERA_FRAME, LIDAR_FRAME, frame.calib.T_cam_velo, 0, msgs)
    return tf_message([edge], msgs)


def reference_frame(frame: KittiFrame, stamp: int, cameras: list[str], compressed: bool = False,
                    index: int = 0):
    """Assemble the Frame the bag route makes of the same data (rosbags messages, its tf buffer)."""
    msgs = default_message_types()
    tf = TransformBuffer()
    tf.add_tf_message(tf_static_of(frame, msgs), static=True)
    inputs = camera_inputs(cameras)
    assembler = FrameAssembler(inputs, lambda t, s, ns: tf.lookup(t, s, ns, 50_000_000))
    image = image_of(frame, stamp, msgs, compressed)
    infos = {c.name: info_of(frame, stamp, msgs) for c in inputs}
    return assembler.assemble(SyncedSet(cloud_of(frame, stamp, msgs), [image] * len(inputs), infos), index)


class Recording:
    """Wraps the node's real Pipeline and keeps every Frame and Outputs (``config`` passes through)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.frames: list = []
        self.outputs: list = []

    @property
    def config(self) -> Any:
        return self.inner.config

    @config.setter
    def config(self, value: Any) -> None:
        self.inner.config = value

    def process(self, frame: Any) -> Any:
        self.frames.append(frame)
        out = self.inner.process(frame)
        self.outputs.append(out)
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class Rig:
    """Sensors + listeners around the nodes under test, on one executor (see the module docstring)."""

    def __init__(self, harness: Any, kitti: list[KittiFrame], cameras: tuple[str, ...] = CAMERAS,
                 reliable: bool = True) -> None:
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
        from tf2_msgs.msg import TFMessage

        from perception_nodes.nodes.rclpy_messages import RclpyMessageTypes
        self.harness, self.kitti, self.cameras = harness, kitti, list(cameras)
        self.msgs = RclpyMessageTypes()
        self.node = Node('sensors')
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.nodes: list[Any] = []
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE) if reliable else \
            qos_profile_sensor_data
        self.qos = qos
        self.cloud_pub = self.node.create_publisher(PointCloud2, LIDAR, qos)
        self.image_pubs = [self.node.create_publisher(CompressedImage if t.endswith('/compressed') else Image,
                                                      t, qos) for t in self.cameras]
        self.info_pubs = [self.node.create_publisher(CameraInfo, camera_info_topic(t), qos)
                          for t in self.cameras]
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                             reliability=ReliabilityPolicy.RELIABLE)
        self.tf_pub = self.node.create_publisher(TFMessage, '/tf_static', latched)
        self.tf_pub.publish(tf_static_of(kitti[0], self.msgs))
        self.received: dict[str, list] = {}

    # -- nodes ---------------------------------------------------------------------------------------------
    def start(self, node_class: type, params: dict[str, Any], record: bool = True, **kwargs: Any) -> Any:
        """Construct a node with ``params`` as overrides (its real Pipeline wrapped in a Recording)."""
        from rclpy.parameter import Parameter

        from perception_nodes.nodes.common import default_pipeline
        if record:
            kwargs.setdefault('build_pipeline',
                              lambda config, warn: Recording(default_pipeline(config, warn)))
        node = node_class(parameter_overrides=[Parameter(k, value=v) for k, v in params.items()], **kwargs)
        self.nodes.append(node)
        self.executor.add_node(node)
        self.spin(0.05)       # discovery of /tf_static and the publishers
        return node

    def listen(self, topic: str, msg_type: type, qos: Any = 10) -> list:
        """Subscribe to ``topic``; every message received is appended to the returned list."""
        out = self.received.setdefault(topic, [])
        self.node.create_subscription(msg_type, topic, out.append, qos)
        return out

    # -- inputs --------------------------------------------------------------------------------------------
    def send(self, i: int, stamp: int | None = None, cameras: list[int] | None = None, infos: bool = True,
             cloud: bool = True) -> int:
        """Publish KITTI frame ``i % 3`` stamped ``stamp``: CameraInfo first, then images, then the cloud."""
        frame = self.kitti[i % len(self.kitti)]
        stamp = stamp_of(i) if stamp is None else stamp
        chosen = range(len(self.cameras)) if cameras is None else cameras
        for k in chosen:
            if infos:
                self.info_pubs[k].publish(info_of(frame, stamp, self.msgs))
        self.spin(0.02)            # CameraInfo is not synchronized: let it arrive before the set
        for k in chosen:
            compressed = self.cameras[k].endswith('/compressed')
            self.image_pubs[k].publish(image_of(frame, stamp, self.msgs, compressed))
        if cloud:
            self.cloud_pub.publish(cloud_of(frame, stamp, self.msgs))
        return stamp

    # -- spinning ------------------------------------------------------------------------------------------
    def spin(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.01)

    def spin_until(self, predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
        return self.harness.spin_until(self.executor, predicate, timeout=timeout, step=0.01)

    def close(self) -> None:
        for node in self.nodes:
            self.executor.remove_node(node)
            node.destroy_node()
        self.executor.shutdown()
        self.node.destroy_node()


@pytest.fixture
def rig(ros_harness, rclpy_init, kitti):
    """Make Rigs on the default context; their nodes are destroyed (workers joined) after the test."""
    made: list[Rig] = []

    def make(**kwargs: Any) -> Rig:
        made.append(Rig(ros_harness, kitti, **kwargs))
        return made[-1]
    yield make
    for r in made:
        r.close()


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0, step: float = 0.01) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` seconds pass (for what another thread spins)."""
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            return False
        time.sleep(step)
    return True


def statuses(array: Any) -> dict[str, tuple[int, str, dict[str, str]]]:
    """{status name: (level, message, {key: value})} of a DiagnosticArray."""
    out = {}
    for status in array.status:
        level = status.level[0] if isinstance(status.level, (bytes, bytearray)) else int(status.level)
        out[status.name] = (level, status.message, {v.key: v.value for v in status.values})
    return out


@pytest.fixture(scope='session')
def kit():
    """Return this module: helpers and constants (test modules cannot import a conftest in importlib mode)."""
    return sys.modules[__name__]
