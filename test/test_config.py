"""Pipeline configuration: YAML defaults, strict keys, type checks, CLI overrides."""
from __future__ import annotations

import dataclasses
import re

import pytest
import yaml

from perception_nodes.config import (CLI_KEYS, PipelineConfig, config_from_dict, config_to_dict,
                                     default_config_path, load_config, with_overrides)


def test_documented_yaml_equals_dataclass_defaults():
    assert load_config(default_config_path()) == PipelineConfig()


def test_round_trip_through_yaml(tmp_path):
    cfg = with_overrides(PipelineConfig(), {'fusion.visibility': 'superpixel',
                                            'teacher.input_size': [112, 208],
                                            'replay.camera_topics': ['/a', '/b']})
    path = tmp_path / 'c.yaml'
    path.write_text(yaml.safe_dump(config_to_dict(cfg)))
    back = load_config(path)
    assert back == cfg
    assert back.teacher.input_size == (112, 208)
    assert back.fusion.visibility == 'superpixel'


def test_partial_file_keeps_defaults(tmp_path):
    path = tmp_path / 'c.yaml'
    path.write_text('fusion:\n  unknown_threshold: 0.5\n')
    cfg = load_config(path)
    assert cfg.fusion.unknown_threshold == 0.5
    assert cfg.teacher == PipelineConfig().teacher


@pytest.mark.parametrize('data, message', [
    ({'fusion': {'visiblity': 'none'}}, "unknown key(s) ['visiblity']"),
    ({'teacher': {'kind': 'sam'}}, 'teacher.kind'),
    ({'fusion': {'visibility': 'raycast'}}, 'fusion.visibility'),
    ({'fusion': {'unknown_threshold': 2}}, 'unknown_threshold'),
    ({'replay': {'max_frames': 'three'}}, 'replay.max_frames: expected an integer'),
    ({'teacher': {'input_size': [224]}}, 'teacher.input_size'),
    ({'overlay': {'enabled': 'yes'}}, 'overlay.enabled: expected true/false'),
    ({'replay': {'storage': 'rosbag1'}}, 'replay.storage'),
])
def test_bad_values_name_the_key(data, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        config_from_dict(data)


def test_bad_files(tmp_path):
    with pytest.raises(ValueError, match='not found'):
        load_config(tmp_path / 'missing.yaml')
    bad = tmp_path / 'bad.yaml'
    bad.write_text('teacher: [unclosed\n')
    with pytest.raises(ValueError, match='not valid YAML'):
        load_config(bad)
    top = tmp_path / 'list.yaml'
    top.write_text('- 1\n- 2\n')
    with pytest.raises(ValueError, match='mapping'):
        load_config(top)


def test_every_cli_key_exists_and_overrides():
    cfg = PipelineConfig()
    for dest, key in CLI_KEYS.items():
        node = cfg
        for part in key.split('.'):
            assert hasattr(node, part), (dest, key)
            node = getattr(node, part)
    new = with_overrides(cfg, {'teacher.clip_model': 'ovp-tiny', 'replay.camera_topics': '/c1, /c2',
                               'replay.max_frames': 2, 'device': None})
    assert new.teacher.clip_model == 'ovp-tiny'
    assert new.replay.camera_topics == ['/c1', '/c2']
    assert new.replay.max_frames == 2
    assert cfg.teacher.clip_model == 'ViT-B-32'   # original untouched
    with pytest.raises(ValueError, match="unknown config key 'teacher.model'"):
        with_overrides(cfg, {'teacher.model': 'x'})


def test_config_is_plain_dataclasses():
    d = config_to_dict(PipelineConfig())
    assert isinstance(d['teacher']['input_size'], list)
    sections = {f.name for f in dataclasses.fields(PipelineConfig)
                if dataclasses.is_dataclass(getattr(PipelineConfig(), f.name))}
    assert sections == {'teacher', 'vocabulary', 'fusion', 'grids', 'overlay', 'replay'}
