"""``ros2 run perception_nodes fusion_node``: LiDAR + cameras, labelled by the fused 2D CLIP teacher."""
from __future__ import annotations

from typing import Any

from perception_nodes.nodes.common import PerceptionNode, run


class FusionNode(PerceptionNode):
    """The perception node with ``labeller.kind`` defaulting to ``teacher``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__('fusion_node', 'teacher', **kwargs)


def main(args: list[str] | None = None) -> int:
    return run(FusionNode, args)


if __name__ == '__main__':
    raise SystemExit(main())
