"""Launch arguments -> node parameter overrides (ROS-free, used by launch/perception.launch.py)."""
from __future__ import annotations

from typing import Any

MODES = {'fusion': ['fusion_node'], 'student': ['student_node'], 'both': ['fusion_node', 'student_node']}


def nodes_for_mode(mode: str) -> list[str]:
    """Return the nodes a ``mode`` launch argument starts."""
    try:
        return list(MODES[mode.strip()])
    except KeyError:
        raise ValueError(f'mode must be one of {sorted(MODES)}, got {mode!r}') from None


def cameras_from_topics(spec: str) -> dict[str, list[Any]]:
    """Camera parameters from a comma-separated list of image topics (image_transport naming).

    ``/cam_front/image_raw`` -> name ``cam_front``, info ``/cam_front/camera_info``, transport raw;
    ``/cam_left/image_raw/compressed`` -> name ``cam_left``, info ``/cam_left/camera_info``, compressed.
    """
    topics = [t.strip() for t in spec.replace(';', ',').split(',') if t.strip()]
    out: dict[str, list[Any]] = {'camera_names': [], 'camera_image_topics': [], 'camera_info_topics': [],
                                 'camera_transports': [], 'camera_time_offsets': []}
    for topic in topics:
        if not topic.startswith('/'):
            topic = '/' + topic
        parts = topic.strip('/').split('/')
        transport = 'raw'
        if parts[-1] == 'compressed':
            transport = 'compressed'
            parts = parts[:-1]
        if len(parts) < 2:
            raise ValueError(f'camera topic {topic!r} needs a namespace (e.g. /camera/image_raw) so that its '
                             'CameraInfo topic (/camera/camera_info) can be derived')
        namespace = parts[:-1]
        name = '_'.join(namespace)
        if name in out['camera_names']:
            raise ValueError(f'two camera topics share the namespace {"/".join(namespace)!r}')
        out['camera_names'].append(name)
        out['camera_image_topics'].append(topic)
        out['camera_info_topics'].append('/' + '/'.join(namespace + ['camera_info']))
        out['camera_transports'].append(transport)
        out['camera_time_offsets'].append(0.0)
    return out


def launch_overrides(node: str, lidar_topic: str = '', cameras: str = '', input_qos: str = '',
                     use_sim_time: str | bool = False) -> dict[str, Any]:
    """Parameter overrides for one node from the launch arguments (empty arguments keep the params file)."""
    out: dict[str, Any] = {'use_sim_time': str(use_sim_time).strip().lower() in ('true', '1', 'yes')}
    if lidar_topic.strip():
        out['lidar_topic'] = lidar_topic.strip()
    if input_qos.strip():
        out['input_qos'] = input_qos.strip()
    if cameras.strip():
        out.update(cameras_from_topics(cameras))
    return out
