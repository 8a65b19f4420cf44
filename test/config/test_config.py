"""The configuration model: declarations, loading (plain and ROS params files), bounds, overrides, docs."""
from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import pytest
import yaml

from perception_nodes.config import (CLI_KEYS, PerceptionConfig, config_from_dict, config_to_dict, flatten,
                                     keys, load_config, with_overrides)
from perception_nodes.config.docs import SHIPPED, render_markdown, render_yaml
from perception_nodes.config.schema import coerce, ros_kind

ROOT = Path(__file__).resolve().parents[2]


def test_every_key_is_documented_typed_and_its_default_valid():
    infos = keys()
    assert len({k.name for k in infos}) == len(infos)
    for k in infos:
        assert len(k.doc) > 10, k.name
        assert k.kind in ('bool', 'integer', 'double', 'string', 'string_array', 'double_array',
                          'integer_array'), k.name
        if k.choices:
            assert k.default in k.choices, k.name
    # durations are seconds and distances metres: no key hides a unit in its name
    assert not [k.name for k in infos if re.search(r'_(ms|ns|mm|cm)$', k.name)]
    assert all(k.unit in ('', 's', 'm', 'px', 'cells') for k in infos)
    config_from_dict(None)       # the defaults pass their own rules


def test_shipped_params_file_is_generated_from_the_model():
    assert (ROOT / 'config' / 'perception.yaml').read_text() == render_yaml(), (
        'regenerate: python -m perception_nodes.config.docs yaml > config/perception.yaml')
    fusion = load_config(ROOT / 'config' / 'perception.yaml', 'fusion_node')
    assert fusion.labeller.kind == 'teacher' and fusion.inputs.lidar_topic == SHIPPED['inputs.lidar_topic']
    assert fusion.inputs.camera_topics == SHIPPED['inputs.camera_topics']
    defaults = flatten(config_to_dict(PerceptionConfig()))
    loaded = flatten(config_to_dict(fusion))
    assert {k for k in defaults if defaults[k] != loaded[k]} == set(SHIPPED)
    # the student node needs its model: the file says so by failing without one
    with pytest.raises(ValueError, match='needs labeller.student'):
        load_config(ROOT / 'config' / 'perception.yaml', 'student_node')


def test_docs_table_is_generated_from_the_model():
    assert render_markdown() in (ROOT / 'docs' / 'ros.md').read_text(), (
        'regenerate the parameter table of docs/ros.md: python -m perception_nodes.config.docs markdown')


def test_plain_file_round_trip_and_partial_files(tmp_path):
    cfg = with_overrides(PerceptionConfig(), {'fusion.visibility': 'superpixel',
                                              'teacher.input_size': [112, 208],
                                              'inputs.camera_topics': ['/a/image', '/b/image']})
    path = tmp_path / 'c.yaml'
    path.write_text(yaml.safe_dump(config_to_dict(cfg)))
    assert load_config(path) == cfg and load_config(path).teacher.input_size == (112, 208)
    path.write_text('labeller:\n  unknown_threshold: 0.5\n')
    partial = load_config(path)
    assert partial.labeller.unknown_threshold == 0.5 and partial.teacher == PerceptionConfig().teacher


def test_ros_params_layout_merges_wildcard_and_node_sections(tmp_path):
    path = tmp_path / 'p.yaml'
    path.write_text('/**:\n  ros__parameters:\n    use_sim_time: true\n    labeller: {logit_scale: 50.0}\n'
                    'fusion_node:\n  ros__parameters:\n    labeller: {unknown_threshold: 0.3}\n'
                    'other_node:\n  ros__parameters:\n    labeller: {unknown_threshold: 0.9}\n')
    cfg = load_config(path, 'fusion_node')
    assert cfg.labeller.logit_scale == 50.0 and cfg.labeller.unknown_threshold == 0.3
    assert load_config(path).labeller.unknown_threshold == 0.0       # only /** without a node name


@pytest.mark.parametrize('data, message', [
    ({'fusion': {'visiblity': 'none'}}, "unknown key(s) ['visiblity']"),
    ({'labeller': {'kind': 'sam'}}, "labeller.kind must be one of"),
    ({'labeller': {'unknown_threshold': 2}}, 'labeller.unknown_threshold must be <= 1'),
    ({'labeller': {'logit_scale': float('nan')}}, 'labeller.logit_scale: must be a finite number'),
    ({'labeller': {'logit_scale': 0}}, 'labeller.logit_scale must be > 0'),
    ({'fusion': {'visibility_relative_threshold': -1}}, 'visibility_relative_threshold must be >= 0'),
    ({'inputs': {'sync_slop': -0.1}}, 'inputs.sync_slop must be > 0'),
    ({'replay': {'max_frames': 'three'}}, 'replay.max_frames: expected an integer'),
    ({'teacher': {'input_size': [224]}}, 'teacher.input_size: expected 2 values'),
    ({'teacher': {'input_size': [224, 60000]}}, 'teacher.input_size[1] must be <= 4096'),
    ({'overlay': {'enabled': 'yes'}}, 'overlay.enabled: expected true or false'),
    ({'overlay': {'unknown_color': [300, 0, 0]}}, 'overlay.unknown_color[0] must be <= 255'),
    ({'overlay': {'point_radius': 100000}}, 'overlay.point_radius must be <= 20'),
    ({'grids': {'nav_resolution': 0.001}}, 'grids.nav_resolution must be >= 0.01'),
    ({'grids': {'nav_size': [2000, 2000], 'nav_resolution': 0.05}}, 'MiB per frame'),
    ({'grids': {'voxel_shape': [10000, 10000, 40]}}, 'voxels (~'),
    ({'grids': {'voxel_lower': [0, 0, float('inf')]}}, 'must be a finite number'),
    ({'segments': {'voxel_size': 0}}, 'segments.voxel_size must be >= 0.02'),
    ({'runtime': {'device': 'gpu'}}, 'runtime.device must be cpu, cuda or cuda:N'),
    ({'replay': {'storage': 'rosbag1'}}, 'replay.storage must be one of'),
    ({'inputs': {'camera_topics': ['/a/image'], 'camera_names': ['front left']}}, 'not a valid topic token'),
    ({'inputs': {'camera_topics': ['/a/image'], 'camera_names': ['x', 'y']}}, 'has 2 entries for 1'),
    ({'inputs': {'lidar_topic': '/velo points'}}, 'not a valid ROS topic name'),
    ({'labeller': {'kind': 'student'}}, 'needs labeller.student'),
])
def test_bad_values_are_one_line_errors_naming_the_key(data, message):
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        config_from_dict(data)
    assert '\n' not in str(info.value)


def test_bad_files(tmp_path):
    with pytest.raises(ValueError, match='not found'):
        load_config(tmp_path / 'missing.yaml')
    bad = tmp_path / 'bad.yaml'
    bad.write_text('teacher: [unclosed\n')
    with pytest.raises(ValueError, match='invalid YAML'):
        load_config(bad)
    top = tmp_path / 'list.yaml'
    top.write_text('- 1\n- 2\n')
    with pytest.raises(ValueError, match='mapping'):
        load_config(top)
    bomb = tmp_path / 'bomb.yaml'      # the billion-laughs shape: refused before any expansion
    bomb.write_text('a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n'
                    'c: [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n')
    with pytest.raises(ValueError, match='anchor|alias'):
        load_config(bomb)


def test_every_cli_key_exists_and_overrides():
    names = {k.name for k in keys()}
    assert set(CLI_KEYS.values()) <= names
    cfg = PerceptionConfig()
    new = with_overrides(cfg, {'teacher.clip_model': 'ovp-tiny', 'replay.max_frames': '2',
                               'inputs.camera_topics': '/c1/image, /c2/image', 'runtime.device': None})
    assert new.teacher.clip_model == 'ovp-tiny' and new.replay.max_frames == 2
    assert new.inputs.camera_topics == ['/c1/image', '/c2/image']
    assert cfg.teacher.clip_model == 'ViT-B-32'   # original untouched
    with pytest.raises(ValueError, match=re.escape("unknown config key(s) ['teacher.model']")):
        with_overrides(cfg, {'teacher.model': 'x'})


def test_forms_that_ros2_param_set_sends_are_accepted():
    # `ros2 param set /n vocabulary.classes nuscenes` sends a STRING; `"[]"` a BOOL_ARRAY; ints for doubles
    assert coerce('nuscenes', list[str], 'k') == ['nuscenes']
    assert coerce('[car, person]', list[str], 'k') == ['car', 'person']
    assert coerce([], list[str], 'k') == [] and coerce([], list[float], 'k') == []
    assert coerce(3, float, 'k') == 3.0 and coerce([1, 2], tuple[float, float], 'k') == (1.0, 2.0)
    with pytest.raises(ValueError, match='expected an integer'):
        coerce(True, int, 'k')
    with pytest.raises(ValueError, match='finite'):
        coerce(math.inf, float, 'k')
    assert ros_kind(list[str]) == 'string_array' and ros_kind(tuple[int, int, int]) == 'integer_array'


def test_config_is_plain_dataclasses_with_the_documented_sections():
    d = config_to_dict(PerceptionConfig())
    assert isinstance(d['teacher']['input_size'], list)
    sections = {f.name for f in dataclasses.fields(PerceptionConfig)}
    assert sections == {'inputs', 'labeller', 'teacher', 'vocabulary', 'fusion', 'segments', 'grids',
                        'overlay', 'outputs', 'runtime', 'node', 'replay'}
    node_only = {k.name for k in keys() if k.scope == 'node'}
    assert node_only and all(n.startswith('node.') for n in node_only)
    assert {k.name for k in keys('node')}.isdisjoint({k.name for k in keys() if k.scope == 'offline'})
