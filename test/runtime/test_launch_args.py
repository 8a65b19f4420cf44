"""Launch arguments -> parameter overrides."""
from __future__ import annotations

import pytest

from perception_nodes.config import PerceptionConfig, with_overrides
from perception_nodes.runtime.launch_args import camera_topics, launch_overrides, nodes_for_mode


def test_modes():
    assert nodes_for_mode('both') == ['fusion_node', 'student_node']
    assert nodes_for_mode(' student ') == ['student_node']
    with pytest.raises(ValueError, match='mode must be one of'):
        nodes_for_mode('all')


def test_camera_topics_follow_image_transport_naming():
    topics = camera_topics('/cam_front/image_raw, stereo/left/image_rect/compressed')
    assert topics == ['/cam_front/image_raw', '/stereo/left/image_rect/compressed']
    config = with_overrides(PerceptionConfig(), {'inputs.camera_topics': topics})
    from perception_nodes.runtime.core import node_cameras
    cams = node_cameras(config, uses_cameras=True)
    assert [c.name for c in cams] == ['cam_front', 'stereo_left']
    assert [c.info_topic for c in cams] == ['/cam_front/camera_info', '/stereo/left/camera_info']
    assert [c.image_type for c in cams] == ['sensor_msgs/msg/Image', 'sensor_msgs/msg/CompressedImage']
    with pytest.raises(ValueError, match='namespace'):
        camera_topics('/image_raw')
    with pytest.raises(ValueError, match='share the namespace'):
        camera_topics('/cam/image_raw,/cam/image_rect')


def test_empty_arguments_keep_the_params_file():
    assert launch_overrides('fusion_node') == {'use_sim_time': False}
    over = launch_overrides('fusion_node', lidar_topic='/velo', cameras='/cam/image_raw',
                            input_qos='reliable', use_sim_time='true', student_model='/m/student.onnx')
    assert over == {'use_sim_time': True, 'inputs.lidar_topic': '/velo', 'node.input_qos': 'reliable',
                    'inputs.camera_topics': ['/cam/image_raw'], 'labeller.student': '/m/student.onnx'}
    with_overrides(PerceptionConfig(), {k: v for k, v in over.items() if k != 'use_sim_time'})
