"""``main()`` of both nodes: a bad configuration is one line and exit code 2; a run ends without a trace.

``main(args)`` is what ``ros2 run`` / launch start (rclpy.init with the command line, the node, a
MultiThreadedExecutor); here the command lines carry ``--ros-args`` with params files and ``-p`` overrides.
"""
from __future__ import annotations

import threading
from pathlib import Path

import pytest
import yaml

from perception_nodes.config import unflatten

FATAL = 50


def _params_file(path: Path, node: str, params: dict) -> Path:
    path.write_text(yaml.safe_dump({node: {'ros__parameters': unflatten(params)}}))
    return path


def _main(node: str):
    if node == 'fusion_node':
        from perception_nodes.nodes.fusion_node import main
    else:
        from perception_nodes.nodes.student_node import main
    return main


def _one_fatal_line(harness, capfd) -> str:
    fatal = harness.log_messages(FATAL)
    err = capfd.readouterr().err
    assert len(fatal) == 1 and '\n' not in fatal[0], fatal
    assert 'Traceback' not in err and harness.thread_errors == []
    return fatal[0]


@pytest.mark.parametrize('node, params, args, message', [
    ('fusion_node', {'inputs.sync_slop': 'fast'}, [],
     "Trying to set parameter 'inputs.sync_slop' to 'fast' of type 'STRING', expecting type 'DOUBLE'"),
    ('fusion_node', {'inputs.sync_slop': 1}, [], "to '1' of type 'INTEGER', expecting type 'DOUBLE'"),
    ('fusion_node', {'inputs.camera_topics': ['/cam_a/image_raw']}, ['-p', 'inputs.camera_names:=[cam-a]'],
     "inputs.camera_names: 'cam-a' is not a valid topic token"),
    ('fusion_node', {'inputs.lidar_topic': '/velodyne points'}, [], 'is not a valid ROS topic name'),
    ('fusion_node', {'inputs.sync_slop': 0.0}, [], 'inputs.sync_slop must be > 0'),
    ('student_node', {}, [], 'labeller.kind student needs labeller.student'),
    ('student_node', {'labeller.student': '/no/such/student.onnx'}, [], 'no student backend could be loaded'),
    ('fusion_node', {}, ['-p', 'inputs.lidar_topic:=/velodyne_points', '-p', 'labeller.kind:=student'],
     'labeller.kind student needs labeller.student'),
])
def test_a_bad_configuration_is_one_line_and_exit_code_2(ros_harness, capfd, tmp_path, base_params, node,
                                                         params, args, message):
    params = {**{k: v for k, v in base_params.items() if k != 'inputs.camera_topics'}, **params}
    path = _params_file(tmp_path / 'params.yaml', node, params)
    code = _main(node)([node, '--ros-args', '--params-file', str(path), *args])
    line = _one_fatal_line(ros_harness, capfd)
    assert code == 2 and line.startswith('cannot start: ') and message in line, line


@pytest.mark.parametrize('content, message', [
    (None, 'Error opening YAML file'), ('fusion_node: [1, 2', "Couldn't parse params file"),
    ('fusion_node:\n  ros__parameters:\n    a: [1, x]\n', 'Sequence should be of same type')])
def test_an_unreadable_params_file_is_one_line_and_exit_code_2(ros_harness, capfd, tmp_path, content,
                                                               message):
    path = tmp_path / 'params.yaml'
    if content is not None:
        path.write_text(content)
    code = _main('fusion_node')(['fusion_node', '--ros-args', '--params-file', str(path)])
    assert code == 2 and message in _one_fatal_line(ros_harness, capfd)


def test_unknown_keys_in_the_params_file_are_named(rig, base_params):
    from perception_nodes.nodes.fusion_node import FusionNode
    r = rig()
    r.start(FusionNode, {**base_params, 'lidar_topic': '/old/style', 'vocabulary': ['car']}, record=False)
    warnings = [m for m in r.harness.log_messages(30) if 'ignoring unknown parameter' in m]
    assert len(warnings) == 1 and "['lidar_topic', 'vocabulary']" in warnings[0]


def test_main_runs_until_shutdown_and_leaves_no_thread_or_traceback(ros_harness, capfd, tmp_path, base_params,
                                                                    kitti, kit):
    """The node as ``ros2 run`` starts it: frames in, labeled clouds out, then shutdown (Ctrl-C) -> 0."""
    import rclpy
    from sensor_msgs.msg import PointCloud2
    path = _params_file(tmp_path / 'params.yaml', 'fusion_node', base_params)
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(_main('fusion_node')(
        ['fusion_node', '--ros-args', '--params-file', str(path)])), name='main')
    thread.start()
    r = None
    try:
        assert kit.wait_for(lambda: rclpy.ok(), timeout=10)
        r = kit.Rig(ros_harness, kitti)
        clouds = r.listen('/fusion_node/labeled_points', PointCloud2)
        # ~/query is the last subscription the node makes: every input is subscribed by then
        assert r.spin_until(lambda: r.node.count_subscribers('/fusion_node/query') == 1, timeout=20)
        r.send(0)
        assert r.spin_until(lambda: clouds), ros_harness.log_messages(30)
    finally:
        if r is not None:
            r.close()
        rclpy.shutdown()              # what the SIGINT handler of rclpy.init does
        thread.join(10)
    assert result == [0] and not thread.is_alive()
    ros_harness.deactivate()
    assert ros_harness.thread_errors == [] and ros_harness.leaked_threads == []
    assert 'Traceback' not in capfd.readouterr().err


def test_destroy_and_shutdown_leave_no_thread_or_traceback(ros_harness, capfd, base_params, student_onnx):
    import rclpy
    from rclpy.parameter import Parameter

    from perception_nodes.nodes.fusion_node import FusionNode
    from perception_nodes.nodes.student_node import StudentNode
    rclpy.init(args=[])
    nodes = [FusionNode(parameter_overrides=[Parameter(k, value=v) for k, v in base_params.items()]),
             StudentNode(parameter_overrides=[Parameter(k, value=v) for k, v in {
                 **base_params, 'labeller.student': str(student_onnx)}.items()])]
    workers = [n.ovp_core.worker._thread for n in nodes]
    assert all(t.is_alive() for t in workers)
    for node in nodes:
        node.destroy_node()
    rclpy.shutdown()
    ros_harness.deactivate()
    assert not any(t.is_alive() for t in workers)
    assert ros_harness.thread_errors == [] and ros_harness.leaked_threads == []
    assert 'Traceback' not in capfd.readouterr().err


def test_the_shipped_params_file_starts_both_nodes_with_their_declared_types(ros_harness, clip_cache,
                                                                             student_onnx):
    """config/perception.yaml (what the launch files pass) holds every key in its declared parameter type."""
    import rclpy

    from perception_nodes.config import config_from_dict, flatten, params_section
    from perception_nodes.nodes.fusion_node import FusionNode
    from perception_nodes.nodes.student_node import StudentNode
    shipped = Path(__file__).resolve().parents[2] / 'config' / 'perception.yaml'
    tiny = ['-p', 'teacher.clip_model:=ovp-tiny', '-p', 'teacher.clip_pretrained:=none',
            '-p', f'teacher.cache_dir:={clip_cache}', '-p', f'labeller.student:={student_onnx}']
    rclpy.init(args=['node', '--ros-args', '--params-file', str(shipped), *tiny])
    try:
        for cls, name in ((FusionNode, 'fusion_node'), (StudentNode, 'student_node')):
            node = cls()
            try:
                flat = flatten(params_section(yaml.safe_load(shipped.read_text()), name))
                flat.update({'teacher.clip_model': 'ovp-tiny', 'teacher.clip_pretrained': 'none',
                             'teacher.cache_dir': str(clip_cache), 'labeller.student': str(student_onnx)})
                expected = config_from_dict(unflatten(flat))
                assert node.ovp_core.config == expected
                assert expected.labeller.kind == {'fusion_node': 'teacher', 'student_node': 'student'}[name]
            finally:
                node.destroy_node()
    finally:
        rclpy.shutdown()
