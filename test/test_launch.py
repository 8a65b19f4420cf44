"""Launch files, expanded by the real launch / launch_ros (test/ros_harness), processes intercepted.

The launch files run against a stand-in install prefix (``share/perception_nodes`` -> this repository's
``launch/`` and ``config/``; ``lib/perception_nodes/{fusion,student}_node`` and ``lib/rviz2/rviz2`` as
stub executables), as ``ros2 launch perception_nodes ...`` sees them after ``colcon build``. Every action
is visited with a ``LaunchContext``; ``ExecuteLocal.execute`` only prepares the command line and records
the action, so nothing is started.
"""
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
def launch_env(ros_harness_package, tmp_path):
    """Activate the harness over a stand-in install prefix; yield a function that expands a launch file."""
    prefix = tmp_path / 'install'
    share = prefix / 'share' / 'perception_nodes'
    share.mkdir(parents=True)
    for folder in ('launch', 'config'):
        (share / folder).symlink_to(ROOT / folder)
    executables = {'perception_nodes': ['fusion_node', 'student_node'], 'rviz2': ['rviz2']}
    for package, names in executables.items():
        (prefix / 'share' / package).mkdir(exist_ok=True)
        for name in names:
            exe = prefix / 'lib' / package / name
            exe.parent.mkdir(parents=True, exist_ok=True)
            exe.write_text('#!/bin/sh\nexit 0\n')
            exe.chmod(0o755)
    packages = {p: str(prefix / 'share' / p) for p in executables}
    with ros_harness_package.RosHarness(console=False, packages=packages):
        from launch.actions.execute_local import ExecuteLocal
        original = ExecuteLocal.execute
        started = []

        def execute(self, context):         # prepare the command line, start nothing
            self.prepare(context)
            started.append(self)
            return None

        ExecuteLocal.execute = execute
        try:
            yield lambda path, arguments: _expand(path, arguments, started), share
        finally:
            ExecuteLocal.execute = original


def _expand(path: Path, arguments: dict[str, str], started: list) -> dict:
    """Visit a launch file's description as ``ros2 launch FILE name:=value ...`` would; return what ran."""
    import launch
    from launch.actions import TimerAction
    from launch.utilities import type_utils
    started.clear()
    context = launch.LaunchContext()
    context.launch_configurations.update(arguments)
    timers = []

    def visit(entity) -> None:
        if isinstance(entity, TimerAction):
            if entity.condition is None or entity.condition.evaluate(context):
                period = entity._TimerAction__period
                timers.append(type_utils.perform_typed_substitution(context, period, float))
                for action in entity.actions:
                    visit(action)
            return
        for sub in entity.visit(context) or []:
            visit(sub)

    visit(_module(path).generate_launch_description())
    return {'processes': list(started), 'timers': timers, 'context': context}


def _node_params(action) -> tuple[list[str], dict]:
    """(parameter files on the command line, merged ros__parameters of the temporary override files)."""
    from ros_harness.names import parse_params_file      # typed as rcl_yaml_param_parser types them

    cmd = action.process_details['cmd']
    files = [cmd[i + 1] for i, arg in enumerate(cmd) if arg == '--params-file']
    merged = {}
    for file in files:
        if Path(file).name.startswith('launch_params_'):   # launch_ros writes lists as !!python/tuple
            for values in parse_params_file(file).values():
                merged.update(values)
    return files, merged


def _nodes(result) -> dict:
    from launch_ros.actions import Node
    return {a.node_executable: a for a in result['processes'] if isinstance(a, Node)}


CAMERAS = '/cam_front/image_raw,/cam_left/image_raw/compressed'


def _config(overrides: dict, node: str):
    """The configuration a node gets from the shipped params file and the launch overrides (validated)."""
    import yaml

    from perception_nodes.config import config_from_dict, flatten, params_section, unflatten
    data = yaml.safe_load((ROOT / 'config' / 'perception.yaml').read_text())
    flat = flatten(params_section(data, node))
    flat.update({k: v for k, v in overrides.items() if k != 'use_sim_time'})
    return config_from_dict(unflatten(flat))


@pytest.mark.parametrize('mode, expected', [('fusion', {'fusion_node'}), ('student', {'student_node'}),
                                            ('both', {'fusion_node', 'student_node'})])
def test_perception_launch_starts_the_nodes_of_each_mode(launch_env, mode, expected):
    expand, share = launch_env
    result = expand(ROOT / 'launch' / 'perception.launch.py',
                    {'mode': mode, 'lidar_topic': '/velo', 'cameras': CAMERAS, 'use_sim_time': 'true',
                     'student_model': '/models/student.onnx', 'log_level': 'debug', 'rviz': 'false'})
    nodes = _nodes(result)
    assert set(nodes) == expected                                      # rviz:=false starts no rviz2
    for name, action in nodes.items():
        cmd = action.process_details['cmd']
        assert cmd[0].endswith(f'lib/perception_nodes/{name}')
        assert cmd[cmd.index('--log-level') + 1] == 'debug'
        assert f'__node:={name}' in cmd
        files, overrides = _node_params(action)
        assert files[0] == str(share / 'config' / 'perception.yaml')   # params file first, overrides after
        assert overrides == {'use_sim_time': True, 'inputs.lidar_topic': '/velo',
                             'inputs.camera_topics': ['/cam_front/image_raw',
                                                      '/cam_left/image_raw/compressed'],
                             'labeller.student': '/models/student.onnx'}   # empty input_qos: the file's
        config = _config(overrides, name)
        assert config.inputs.lidar_topic == '/velo' and config.labeller.student == '/models/student.onnx'
        assert config.labeller.kind == {'fusion_node': 'teacher', 'student_node': 'student'}[name]


def test_perception_launch_defaults_and_rviz(launch_env):
    expand, share = launch_env
    nodes = _nodes(expand(ROOT / 'launch' / 'perception.launch.py', {}))
    assert set(nodes) == {'fusion_node', 'rviz2'}
    _, overrides = _node_params(nodes['fusion_node'])
    assert overrides == {'use_sim_time': False}                        # everything else from the params file
    rviz = nodes['rviz2'].process_details['cmd']
    assert rviz[rviz.index('-d') + 1] == str(share / 'config' / 'rviz' / 'perception.rviz')
    config = _config(overrides, 'fusion_node')
    assert config.inputs.lidar_topic == '/velodyne_points' and config.inputs.camera_topics == \
        ['/camera_2/image_raw']


@pytest.mark.parametrize('qos', ['sensor_data', 'reliable'])
def test_perception_launch_input_qos(launch_env, qos):
    expand, _ = launch_env
    nodes = _nodes(expand(ROOT / 'launch' / 'perception.launch.py', {'input_qos': qos, 'rviz': 'false'}))
    _, overrides = _node_params(nodes['fusion_node'])
    assert overrides == {'use_sim_time': False, 'node.input_qos': qos}


@pytest.mark.parametrize('arguments, match', [({'mode': 'everything'}, 'mode'),
                                              ({'cameras': '/image_raw'}, 'namespace'),
                                              ({'cameras': '/cam/image_raw,/cam/image_rect'}, 'share'),
                                              ({'input_qos': 'fast'}, 'input_qos')])
def test_perception_launch_rejects_bad_arguments(launch_env, arguments, match):
    expand, _ = launch_env
    with pytest.raises(Exception, match=match):
        expand(ROOT / 'launch' / 'perception.launch.py', arguments)


@pytest.mark.parametrize('loop', ['false', 'true'])
def test_replay_launch_plays_the_bag_with_clock(launch_env, loop):
    expand, share = launch_env
    result = expand(ROOT / 'launch' / 'replay.launch.py',
                    {'bag': '/data/kitti.mcap', 'mode': 'both', 'rate': '0.5', 'loop': loop, 'rviz': 'false',
                     'lidar_topic': '/velodyne_points', 'student_model': '/models/student.onnx'})
    plays = [a for a in result['processes'] if a.process_details['cmd'][:3] == ['ros2', 'bag', 'play']]
    assert len(plays) == 1
    expected = ['ros2', 'bag', 'play', '/data/kitti.mcap', '--clock', '--rate', '0.5']
    assert plays[0].process_details['cmd'] == expected + (['--loop'] if loop == 'true' else [])
    assert result['timers'] == [3.0]                                   # start_delay default
    nodes = _nodes(result)
    assert set(nodes) == {'fusion_node', 'student_node'}
    for name, action in nodes.items():
        files, overrides = _node_params(action)
        assert files[0] == str(share / 'config' / 'perception.yaml')
        assert overrides == {'use_sim_time': True, 'node.input_qos': 'reliable',
                             'inputs.lidar_topic': '/velodyne_points',
                             'labeller.student': '/models/student.onnx'}
        assert _config(overrides, name).node.input_qos == 'reliable'


def test_replay_launch_forwards_sensor_data_qos_and_rviz(launch_env):
    expand, share = launch_env
    result = expand(ROOT / 'launch' / 'replay.launch.py', {'bag': 'b.mcap', 'input_qos': 'sensor_data',
                                                           'start_delay': '0.5'})
    nodes = _nodes(result)
    assert set(nodes) == {'fusion_node', 'rviz2'} and result['timers'] == [0.5]
    assert _node_params(nodes['fusion_node'])[1] == {'use_sim_time': True, 'node.input_qos': 'sensor_data'}


def test_replay_launch_requires_a_bag(launch_env):
    expand, _ = launch_env
    with pytest.raises(Exception, match='bag'):
        expand(ROOT / 'launch' / 'replay.launch.py', {})
