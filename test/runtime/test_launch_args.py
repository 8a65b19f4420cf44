"""Launch arguments -> parameter overrides."""
from __future__ import annotations

import pytest

from perception_nodes.runtime.launch_args import cameras_from_topics, launch_overrides, nodes_for_mode
from perception_nodes.runtime.params import NodeParams


def test_modes():
    assert nodes_for_mode('both') == ['fusion_node', 'student_node']
    assert nodes_for_mode(' student ') == ['student_node']
    with pytest.raises(ValueError, match='mode must be one of'):
        nodes_for_mode('all')


def test_camera_topics_follow_image_transport_naming():
    cams = cameras_from_topics('/cam_front/image_raw, /stereo/left/image_rect/compressed')
    assert cams['camera_names'] == ['cam_front', 'stereo_left']
    assert cams['camera_info_topics'] == ['/cam_front/camera_info', '/stereo/left/camera_info']
    assert cams['camera_transports'] == ['raw', 'compressed']
    params = NodeParams.from_dict({k: v for k, v in cams.items()})
    assert [c.image_type for c in params.cameras] == ['sensor_msgs/msg/Image',
                                                      'sensor_msgs/msg/CompressedImage']
    with pytest.raises(ValueError, match='namespace'):
        cameras_from_topics('/image_raw')
    with pytest.raises(ValueError, match='share the namespace'):
        cameras_from_topics('/cam/image_raw,/cam/image_rect')


def test_empty_arguments_keep_the_params_file():
    assert launch_overrides('fusion_node') == {'use_sim_time': False}
    over = launch_overrides('fusion_node', lidar_topic='/velo', cameras='/cam/image_raw',
                            input_qos='reliable', use_sim_time='true')
    assert over['use_sim_time'] is True and over['lidar_topic'] == '/velo' and over['input_qos'] == 'reliable'
    assert over['camera_image_topics'] == ['/cam/image_raw']
    NodeParams.from_dict({k: v for k, v in over.items() if k != 'use_sim_time'})
