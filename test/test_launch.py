"""Launch files: valid Python everywhere; on a ROS machine they build LaunchDescriptions with the
documented arguments and start the right nodes (skipped here, with the reason, when launch is absent)."""
from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_FILES = sorted((ROOT / 'launch').glob('*.launch.py'))


def _module(path: Path):
    spec = importlib.util.spec_from_file_location(path.name.replace('.', '_'), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize('path', LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_files_are_valid_python_with_a_generator(path):
    tree = ast.parse(path.read_text(), str(path))
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert 'generate_launch_description' in functions
    assert {p.name for p in LAUNCH_FILES} == {'perception.launch.py', 'replay.launch.py'}


@pytest.fixture
def ros_launch():
    pytest.importorskip('launch', reason='ROS 2 `launch` is not installed (not a ROS machine)')
    pytest.importorskip('launch_ros', reason='ROS 2 `launch_ros` is not installed (not a ROS machine)')
    import launch
    return launch


def _arguments(description, launch):
    return {e.name: e for e in description.entities if isinstance(e, launch.actions.DeclareLaunchArgument)}


def test_perception_launch_description(ros_launch):
    launch = ros_launch
    description = _module(ROOT / 'launch' / 'perception.launch.py').generate_launch_description()
    args = _arguments(description, launch)
    assert {'mode', 'params_file', 'lidar_topic', 'cameras', 'use_sim_time', 'rviz', 'input_qos'} <= set(args)
    assert args['mode'].default_value[0].perform(launch.LaunchContext()) == 'fusion'


@pytest.mark.parametrize('mode, nodes', [('fusion', ['fusion_node']),
                                         ('both', ['fusion_node', 'student_node'])])
def test_perception_launch_starts_the_nodes_of_the_mode(ros_launch, mode, nodes):
    launch = ros_launch
    from launch_ros.actions import Node
    module = _module(ROOT / 'launch' / 'perception.launch.py')
    context = launch.LaunchContext()
    context.launch_configurations.update({'mode': mode, 'params_file': '/tmp/p.yaml', 'lidar_topic': '/velo',
                                          'cameras': '/cam/image_raw', 'input_qos': 'reliable',
                                          'use_sim_time': 'true', 'log_level': 'info'})
    actions = [a for a in module._nodes(context) if isinstance(a, Node)]
    assert [a.node_executable for a in actions] == nodes


def test_replay_launch_plays_the_bag_with_clock(ros_launch):
    launch = ros_launch
    description = _module(ROOT / 'launch' / 'replay.launch.py').generate_launch_description()
    args = _arguments(description, launch)
    assert {'bag', 'rate', 'loop', 'mode', 'rviz'} <= set(args)
    assert 'bag' in args and not args['bag'].default_value      # required
    assert any(isinstance(e, launch.actions.IncludeLaunchDescription) for e in description.entities)
