"""No node class may overwrite an attribute that rclpy's ``Node`` keeps on ``self`` (from the real source).

rclpy's ``Node.__init__`` sets ``self._publishers = []`` and ``create_publisher`` appends to it, so a
subclass that assigns ``self._publishers = {...}`` crashes at its first ``create_publisher``. The audit
parses rclpy/node.py (the Jazzy source in shared/ros2-python) for every name it assigns on ``self`` and
every method/property it defines, and every class in perception_nodes/nodes/ deriving from Node (directly
or through another node class) for the names it assigns on ``self`` or defines.
"""
from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NODES = ROOT / 'perception_nodes' / 'nodes'
# Methods a subclass is meant to override (rclpy calls them polymorphically).
OVERRIDABLE = {'destroy_node', '__init__'}


def rclpy_node_source() -> Path:
    base = Path(os.environ.get('OVP_ROS2_PYTHON') or (ROOT / '..' / 'shared' / 'ros2-python'))
    path = base.resolve() / 'rclpy' / 'node.py'
    if not path.is_file():
        pytest.skip(f'rclpy sources not found at {path} (set $OVP_ROS2_PYTHON)')
    return path


def _self_assignments(func: ast.AST) -> set[str]:
    """Names assigned as ``self.NAME = ...`` (also augmented / annotated / tuple targets) in a function."""
    names = set()
    for node in ast.walk(func):
        targets: list[ast.AST] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        for target in targets:
            for leaf in ast.walk(target):
                if (isinstance(leaf, ast.Attribute) and isinstance(leaf.value, ast.Name)
                        and leaf.value.id == 'self'):
                    names.add(leaf.attr)
    return names


def class_attributes(cls: ast.ClassDef) -> dict[str, int]:
    """``{attribute: line}`` for what a class defines: methods, class-level names, ``self.X`` assignments."""
    found: dict[str, int] = {}
    for item in cls.body:
        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found.setdefault(item.name, item.lineno)
            for name in _self_assignments(item):
                line = next(n.lineno for n in ast.walk(item)
                            if isinstance(n, ast.Attribute) and n.attr == name)
                found.setdefault(name, line)
        elif isinstance(item, (ast.Assign, ast.AnnAssign)):
            for target in (item.targets if isinstance(item, ast.Assign) else [item.target]):
                if isinstance(target, ast.Name):
                    found.setdefault(target.id, item.lineno)
    return found


def rclpy_node_attributes(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding='utf-8'), str(path))
    (node_cls,) = [c for c in tree.body if isinstance(c, ast.ClassDef) and c.name == 'Node']
    names = set(class_attributes(node_cls))
    # name-mangled privates (self.__node) become _Node__node: a subclass cannot clash with them by accident
    return {('_Node' + n) if n.startswith('__') and not n.endswith('__') else n for n in names}


def node_subclasses(folder: Path) -> list[tuple[Path, ast.ClassDef]]:
    """Every class in ``folder`` whose bases lead to ``Node`` (by name, across the folder's modules)."""
    classes = {}
    for path in sorted(folder.glob('*.py')):
        for cls in ast.parse(path.read_text(encoding='utf-8'), str(path)).body:
            if isinstance(cls, ast.ClassDef):
                bases = [b.id if isinstance(b, ast.Name) else getattr(b, 'attr', '') for b in cls.bases]
                classes[cls.name] = (path, cls, bases)

    def is_node(name: str, seen: frozenset = frozenset()) -> bool:
        if name == 'Node':
            return True
        if name not in classes or name in seen:
            return False
        return any(is_node(b, seen | {name}) for b in classes[name][2])

    return [(path, cls) for name, (path, cls, bases) in classes.items() if any(is_node(b) for b in bases)]


def clashes(folder: Path, rclpy_names: set[str]) -> list[str]:
    out = []
    for path, cls in node_subclasses(folder):
        for name, line in sorted(class_attributes(cls).items(), key=lambda kv: kv[1]):
            if name in rclpy_names and name not in OVERRIDABLE:
                where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
                out.append(f'{where}:{line}: {cls.name} sets `self.{name}`, which rclpy Node uses')
    return out


def test_the_audit_reads_rclpy_node_attributes():
    names = rclpy_node_attributes(rclpy_node_source())
    assert {'_publishers', '_subscriptions', '_timers', '_parameters', '_clock', '_logger', 'publishers',
            'create_publisher', 'get_logger', 'handle', 'executor', '_Node__node'} <= names


def test_the_audit_finds_the_publishers_clash(tmp_path):
    """What perception_nodes/nodes/common.py had before the fix must be reported."""
    (tmp_path / 'common.py').write_text(
        'from rclpy.node import Node\n\n\nclass PerceptionNode(Node):\n    def __init__(self):\n'
        '        super().__init__("x")\n        self._publishers = {}\n        self.outputs = {}\n')
    (tmp_path / 'fusion.py').write_text('class FusionNode(PerceptionNode):\n    def run(self):\n'
                                        '        self._timers = None\n')
    found = clashes(tmp_path, rclpy_node_attributes(rclpy_node_source()))
    assert len(found) == 2
    assert 'PerceptionNode sets `self._publishers`' in found[0]
    assert 'FusionNode sets `self._timers`' in found[1]


def test_node_classes_do_not_clash_with_rclpy_node():
    rclpy_names = rclpy_node_attributes(rclpy_node_source())
    assert node_subclasses(NODES), 'no Node subclass found in perception_nodes/nodes'
    assert clashes(NODES, rclpy_names) == []


def _reverted_common(tmp_path: Path) -> Path:
    """perception_nodes/nodes with common.py as before the fix: the outputs kept in ``self._publishers``."""
    folder = tmp_path / 'nodes'
    folder.mkdir()
    for path in NODES.glob('*.py'):
        text = path.read_text(encoding='utf-8')
        if path.name == 'common.py':
            assert 'self.ovp_outputs' in text
            text = text.replace('self.ovp_outputs', 'self._publishers')
        (folder / path.name).write_text(text, encoding='utf-8')
    return folder


def test_reverting_the_fix_is_reported(tmp_path):
    found = clashes(_reverted_common(tmp_path), rclpy_node_attributes(rclpy_node_source()))
    assert found and all('PerceptionNode sets `self._publishers`' in f for f in found)


def test_reverting_the_fix_crashes_the_real_rclpy_node(ros_harness, rclpy_init, tmp_path, base_params):
    """The clash is not hypothetical: rclpy's create_publisher appends to ``self._publishers``."""
    import importlib.util

    from rclpy.parameter import Parameter
    path = _reverted_common(tmp_path) / 'common.py'
    spec = importlib.util.spec_from_file_location('perception_nodes.nodes.reverted_common', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(AttributeError, match="'dict' object has no attribute 'append'"):
        module.PerceptionNode('fusion_node', 'teacher',
                              parameter_overrides=[Parameter(k, value=v) for k, v in base_params.items()])
