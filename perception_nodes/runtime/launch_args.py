"""Launch arguments -> node parameter overrides (ROS-free, used by launch/perception.launch.py)."""
from __future__ import annotations

from typing import Any

MODES = {'fusion': ['fusion_node'], 'student': ['student_node'], 'both': ['fusion_node', 'student_node']}
# The labeller each executable runs unless its parameters say otherwise.
NODE_LABELLERS = {'fusion_node': 'teacher', 'student_node': 'student'}


def nodes_for_mode(mode: str) -> list[str]:
    """Return the nodes a ``mode`` launch argument starts."""
    try:
        return list(MODES[mode.strip()])
    except KeyError:
        raise ValueError(f'mode must be one of {sorted(MODES)}, got {mode!r}') from None


def camera_topics(spec: str) -> list[str]:
    """Image topics from a comma-separated launch argument (image_transport naming).

    ``/cam_front/image_raw`` is a sensor_msgs/Image whose CameraInfo is ``/cam_front/camera_info``;
    ``/cam_left/image_raw/compressed`` a CompressedImage. Each topic needs a namespace (to find its
    CameraInfo) and two topics may not share one.
    """
    topics = [t.strip() for t in spec.replace(';', ',').split(',') if t.strip()]
    seen: set[str] = set()
    out = []
    for topic in topics:
        if not topic.startswith('/'):
            topic = '/' + topic
        parts = topic.strip('/').split('/')
        if parts[-1] == 'compressed':
            parts = parts[:-1]
        if len(parts) < 2:
            raise ValueError(f'camera topic {topic!r} needs a namespace (e.g. /camera/image_raw) so that its '
                             'CameraInfo topic (/camera/camera_info) can be derived')
        namespace = '/'.join(parts[:-1])
        if namespace in seen:
            raise ValueError(f'two camera topics share the namespace {namespace!r}')
        seen.add(namespace)
        out.append(topic)
    return out


def launch_overrides(node: str, lidar_topic: str = '', cameras: str = '', input_qos: str = '',
                     use_sim_time: str | bool = False, student_model: str = '') -> dict[str, Any]:
    """Parameter overrides for one node from the launch arguments (empty arguments keep the params file)."""
    out: dict[str, Any] = {'use_sim_time': str(use_sim_time).strip().lower() in ('true', '1', 'yes')}
    if lidar_topic.strip():
        out['inputs.lidar_topic'] = lidar_topic.strip()
    if input_qos.strip():
        out['node.input_qos'] = input_qos.strip()
    if cameras.strip():
        out['inputs.camera_topics'] = camera_topics(cameras)
    if student_model.strip():
        out['labeller.student'] = student_model.strip()
    return out
