"""The rclpy nodes in-process (ROS 2 machines only; skipped here with the reason when rclpy is absent)."""
from __future__ import annotations

import pytest

rclpy = pytest.importorskip('rclpy', reason='rclpy is not installed (not a ROS 2 machine)')


@pytest.fixture
def fusion_node(tmp_path):
    from rclpy.parameter import Parameter

    from perception_nodes.nodes.fusion_node import FusionNode
    config = tmp_path / 'pipeline.yaml'
    config.write_text(f'teacher:\n  clip_model: ovp-tiny\n  clip_pretrained: none\n  cache_dir: {tmp_path}\n')
    rclpy.init()
    overrides = [Parameter('pipeline_config', value=str(config)), Parameter('lidar_topic', value='/points'),
                 Parameter('camera_names', value=['cam']),
                 Parameter('camera_image_topics', value=['/cam/image_raw']),
                 Parameter('camera_info_topics', value=['/cam/camera_info']),
                 Parameter('vocabulary', value=['car', 'road'])]
    node = FusionNode(parameter_overrides=overrides)
    yield node
    node.destroy_node()
    rclpy.shutdown()


def test_parameters_are_declared_documented_and_guarded(fusion_node):
    from rclpy.parameter import Parameter

    from perception_nodes.runtime.params import specs_for
    for spec in specs_for('fusion_node'):
        assert fusion_node.has_parameter(spec.name)
        descriptor = fusion_node.describe_parameter(spec.name)
        assert descriptor.description == spec.description and descriptor.read_only == (not spec.live)
    assert fusion_node.get_parameter('camera_names').value == ['cam']
    (ok,) = fusion_node.set_parameters([Parameter('vocabulary', value=['person', 'tree'])])
    assert ok.successful
    (bad,) = fusion_node.set_parameters([Parameter('vocabulary', value=['/missing/vocabulary.yaml'])])
    assert not bad.successful and 'vocabulary' in bad.reason
    (read_only,) = fusion_node.set_parameters([Parameter('slop', value=0.2)])
    assert not read_only.successful


def test_topics(fusion_node):
    names = {name for name, _ in fusion_node.get_publisher_names_and_types_by_node('fusion_node', '/')}
    outputs = {'/fusion_node/labeled_points', '/fusion_node/occupancy', '/fusion_node/semantic_voxels',
               '/fusion_node/similarity', '/fusion_node/classes', '/fusion_node/overlay/cam', '/diagnostics'}
    assert outputs <= names
    subs = {name for name, _ in fusion_node.get_subscriber_names_and_types_by_node('fusion_node', '/')}
    assert {'/points', '/cam/image_raw', '/cam/camera_info', '/fusion_node/query'} <= subs
