"""``ros2 run perception_nodes student_node``: LiDAR only, labelled by the distilled 3D student."""
from __future__ import annotations

from typing import Any

from perception_nodes.nodes.common import PerceptionNode, run


class StudentNode(PerceptionNode):
    """The perception node with ``labeller.kind`` defaulting to ``student`` (``ensemble`` adds cameras)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__('student_node', 'student', **kwargs)


def main(args: list[str] | None = None) -> int:
    return run(StudentNode, args)


if __name__ == '__main__':
    raise SystemExit(main())
