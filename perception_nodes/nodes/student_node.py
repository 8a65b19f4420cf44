"""``ros2 run perception_nodes student_node``: LiDAR-only 3D student (TensorRT on GPU, else ONNX Runtime)."""
from __future__ import annotations

from typing import Any

from perception_nodes.nodes.common import PerceptionNode, run
from perception_nodes.runtime.factory import build_student_core


def _build(params, msgs, lookup, logger: Any, share_dir: str | None):
    return build_student_core(params, msgs, lookup, warn=logger.warning, logger=logger, share_dir=share_dir)


class StudentNode(PerceptionNode):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__('student_node', _build, **kwargs)


def main(args: list[str] | None = None) -> int:
    return run(StudentNode, args)


if __name__ == '__main__':
    raise SystemExit(main())
