"""Only perception_nodes/nodes/ may import ROS client libraries; everything else runs without ROS."""
from __future__ import annotations

import ast
from pathlib import Path

ROS_CLIENT_MODULES = {'rclpy', 'message_filters', 'sensor_msgs_py', 'tf2_ros', 'launch', 'launch_ros',
                      'launch_testing', 'ament_index_python', 'diagnostic_updater'}
ROOT = Path(__file__).resolve().parents[1]


def imported_top_level_modules(path: Path) -> set[str]:
    """Top-level names of every module imported anywhere in a file (also inside functions)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split('.')[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split('.')[0])
    return names


def test_the_scanner_sees_imports_inside_functions(tmp_path):
    sample = tmp_path / 'sample.py'
    sample.write_text('import os\n\ndef f():\n    from rclpy.node import Node\n    return Node\n')
    assert imported_top_level_modules(sample) == {'os', 'rclpy'}


def test_no_ros_client_imports_outside_nodes():
    offenders = {}
    for folder in ('perception_nodes', 'training'):
        for path in sorted((ROOT / folder).rglob('*.py')):
            rel = path.relative_to(ROOT)
            if rel.parts[:2] == ('perception_nodes', 'nodes'):
                continue
            # ament_index_python is optional (resolves installed share/ paths) and always import-guarded.
            bad = (imported_top_level_modules(path) & ROS_CLIENT_MODULES) - {'ament_index_python'}
            if bad:
                offenders[str(rel)] = sorted(bad)
    assert offenders == {}


def test_training_never_imported_by_the_runtime_package():
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / 'perception_nodes').rglob('*.py')
                 if 'training' in imported_top_level_modules(p)]
    assert offenders == []
