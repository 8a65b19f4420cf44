"""``ros2 run perception_nodes fusion_node``: LiDAR + cameras -> CLIP features fused onto the points."""
from __future__ import annotations

from typing import Any

from perception_nodes.nodes.common import PerceptionNode, run
from perception_nodes.runtime.factory import build_fusion_core


def _build(params, msgs, lookup, logger: Any, share_dir: str | None):
    return build_fusion_core(params, msgs, lookup, logger=logger, share_dir=share_dir)


class FusionNode(PerceptionNode):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__('fusion_node', _build, **kwargs)


def main(args: list[str] | None = None) -> int:
    return run(FusionNode, args)


if __name__ == '__main__':
    raise SystemExit(main())
