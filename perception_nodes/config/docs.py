"""Render the configuration model as the shipped params file and as the documentation's tables.

``python -m perception_nodes.config.docs yaml > config/perception.yaml`` and
``python -m perception_nodes.config.docs markdown`` (the parameter table of docs/ros.md); the tests check
that both files equal what this renders, so the model stays the one place each key is declared.
"""
from __future__ import annotations

import sys
import textwrap
from typing import Any

from perception_nodes.config import keys
from perception_nodes.config.schema import KeyInfo

# Values of the shipped config/perception.yaml that differ from the defaults: topics of `ovp kitti-to-bag`
# bags (the README's example), and each node's labeller.
SHIPPED: dict[str, Any] = {'inputs.lidar_topic': '/velodyne_points',
                           'inputs.camera_topics': ['/camera_2/image_raw']}
NODE_SECTIONS: dict[str, dict[str, Any]] = {'fusion_node': {'labeller.kind': 'teacher'},
                                            'student_node': {'labeller.kind': 'student'}}

HEADER = """\
# Parameters of the perception nodes (ros2 launch perception_nodes perception.launch.py params_file:=...),
# and a config file for the offline tools (ovp replay / eval / pseudo-label --config config/perception.yaml).
# GENERATED from perception_nodes/config/model.py by `python -m perception_nodes.config.docs yaml`: edit the
# model, not this file (test/config checks they agree). Every key is shown with its default unless noted;
# [live]: changeable while a node runs (ros2 param set /fusion_node vocabulary.classes "[car, person]").
# Units: metres, seconds, pixels. Values here suit bags written by `ovp kitti-to-bag`.
"""


def _yaml_value(value: Any) -> str:
    import yaml
    if isinstance(value, tuple):
        value = list(value)
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return text[:-4].strip() if text.endswith('\n...') else text.removesuffix('...').strip()


def _comment(info: KeyInfo, indent: str) -> list[str]:
    text = info.describe() + (' [live]' if info.live else '')
    return textwrap.wrap(text, 110 - len(indent) - 2, initial_indent=f'{indent}# ',
                         subsequent_indent=f'{indent}# ')


def render_yaml() -> str:
    """Return the shipped params file: ``/**`` with every node key, then each node's own labeller."""
    lines = [HEADER.rstrip('\n'), '', '/**:', '  ros__parameters:']
    section = None
    for info in keys('node'):
        if info.name in ('labeller.kind',):
            continue
        head, name = info.name.split('.', 1)
        if head != section:
            lines.append(f'    {head}:')
            section = head
        indent = '      '
        lines += _comment(info, indent)
        value = SHIPPED.get(info.name, info.default)
        if isinstance(value, (list, tuple)) and not value:
            lines.append(f'{indent}# {name}: []   # default (a ROS 2 params file cannot hold an empty list)')
        else:
            lines.append(f'{indent}{name}: {_yaml_value(value)}')
    for node, values in NODE_SECTIONS.items():
        lines += ['', f'{node}:', '  ros__parameters:']
        for name, value in values.items():
            head, leaf = name.split('.', 1)
            lines += [f'    {head}:', f'      {leaf}: {_yaml_value(value)}']
    return '\n'.join(lines) + '\n'


def render_markdown(scope: str | None = None) -> str:
    """Return a markdown table of the keys: name, type, default, unit, live, where, description."""
    rows = ['| key | type | default | unit | live | where | description |',
            '|---|---|---|---|---|---|---|']
    for info in keys(scope):
        default = _yaml_value(info.default).replace('|', '\\|')
        doc = info.describe().replace('|', '\\|')
        unit = info.unit or ''
        rows.append(f'| `{info.name}` | {info.kind} | `{default}` | {unit} | {"yes" if info.live else ""} | '
                    f'{info.scope} | {doc} |')
    return '\n'.join(rows) + '\n'


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    what = argv[0] if argv else ''
    if what == 'yaml':
        sys.stdout.write(render_yaml())
    elif what == 'markdown':
        sys.stdout.write(render_markdown())
    else:
        sys.stderr.write('usage: python -m perception_nodes.config.docs yaml|markdown\n')
        return 2
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
