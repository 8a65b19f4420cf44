"""Node parameters: defaults, camera lists, vocabulary forms, live updates."""
from __future__ import annotations

import pytest

from perception_nodes.runtime.params import (PARAMETERS, SPECS, NodeParams, parse_vocabulary, specs_for,
                                             validate_update)

CAMS = {'camera_names': ['front', 'left'],
        'camera_image_topics': ['/cam_front/image', '/cam_left/image/compressed'],
        'camera_info_topics': ['/cam_front/info', '/cam_left/info'],
        'camera_transports': ['raw', 'compressed'],
        'camera_time_offsets': [0.0, 0.025]}


def test_defaults_parse_and_round_trip():
    params = NodeParams.from_dict({})
    assert params.cameras == () and params.input_qos == 'sensor_data'
    assert params.vocabulary.source == 'semantickitti' and 'car' in params.vocabulary.names
    assert len(params.vocabulary.colors) == len(params.vocabulary.names)
    assert NodeParams.from_dict(params.to_dict()) == params
    assert set(params.to_dict()) == set(SPECS)


def test_cameras_parallel_lists():
    params = NodeParams.from_dict(CAMS)
    front, left = params.cameras
    assert (left.name, left.transport, left.time_offset_ns) == ('left', 'compressed', 25_000_000)
    assert left.image_type == 'sensor_msgs/msg/CompressedImage'
    assert front.image_type == 'sensor_msgs/msg/Image'
    assert params.input_topics == ['/lidar/points', '/cam_front/image', '/cam_left/image/compressed']
    # transports and offsets may be left empty (raw, 0 s)
    optional = ('camera_transports', 'camera_time_offsets')
    short = NodeParams.from_dict({k: v for k, v in CAMS.items() if k not in optional})
    assert [c.transport for c in short.cameras] == ['raw', 'raw']
    assert [c.time_offset_ns for c in short.cameras] == [0, 0]


@pytest.mark.parametrize('change, message', [
    ({'camera_info_topics': ['/only_one']}, 'one entry per camera'),
    ({'camera_transports': ['raw', 'h264']}, 'camera_transports'),
    ({'input_qos': 'best_effort'}, 'input_qos'),
    ({'queue_size': 0}, 'queue_size'),
    ({'slop': 0.0}, 'slop'),
    ({'slop': 'fast'}, "'slop' must be double"),
    ({'queue_size': 2.5}, "'queue_size' must be integer"),
    ({'backend': 'openvino'}, 'backend'),
    ({'max_frame_age': -1.0}, 'max_frame_age'),
    ({'lidar_topic': ''}, 'lidar_topic'),
    ({'no_such_parameter': 1}, 'unknown parameters'),
    ({'camera_names': ['front', 'front']}, 'repeat'),
])
def test_bad_values_name_the_problem(change, message):
    with pytest.raises(ValueError, match=message):
        NodeParams.from_dict({**CAMS, **change})


def test_vocabulary_forms(tmp_path):
    assert parse_vocabulary(['car', 'tree']).names == ('car', 'tree')
    assert parse_vocabulary(['car', 'tree']).argument() == ['car', 'tree']
    assert parse_vocabulary(['nuscenes']).argument() == 'nuscenes'
    path = tmp_path / 'mine.yaml'
    path.write_text('name: mine\nclasses:\n  - {name: cone, phrases: [traffic cone]}\n  - bollard\n')
    request = parse_vocabulary([str(path)])
    assert request.names == ('cone', 'bollard') and request.argument() == str(path)
    # relative paths resolve against the share folder
    assert parse_vocabulary(['mine.yaml'], share_dir=tmp_path).source == str(path)
    with pytest.raises(ValueError, match='not found'):
        parse_vocabulary([str(tmp_path / 'missing.yaml')])
    with pytest.raises(ValueError, match='vocabulary'):
        parse_vocabulary([])
    with pytest.raises(ValueError, match='prompt_templates'):
        parse_vocabulary(['car'], ['a photo of a car'])
    assert parse_vocabulary(['car'], ['a photo of a {}.']).templates == ('a photo of a {}.',)


def test_live_updates_only_for_live_parameters():
    params = NodeParams.from_dict(CAMS)
    updated = params.updated({'vocabulary': ['cone', 'person'], 'max_frame_age': 0.2})
    assert updated.vocabulary.names == ('cone', 'person') and updated.max_frame_age == 0.2
    assert updated.cameras == params.cameras
    assert 'read-only' in validate_update(params, {'lidar_topic': '/other'})
    assert 'vocabulary' in validate_update(params, {'vocabulary': []})
    assert validate_update(params, {'prompt_templates': ['itap of a {}.']}) is None


def test_specs_are_complete_and_per_node():
    assert {s.name for s in specs_for('fusion_node')} < set(SPECS)
    assert 'backend' in {s.name for s in specs_for('student_node')}
    assert 'backend' not in {s.name for s in specs_for('fusion_node')}
    for spec in PARAMETERS:
        assert spec.description.endswith('.') or spec.description.endswith(')'), spec.name
        NodeParams.from_dict({spec.name: spec.default})   # every default is valid on its own
