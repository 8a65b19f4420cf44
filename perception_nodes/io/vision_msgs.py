"""vision_msgs/LabelInfo and VisionClass (vision_msgs 4, ROS 2 Humble / Jazzy) for the rosbags typestore.

rosbags' bundled typestores carry common_interfaces but not vision_msgs; these are the upstream message
definitions (field names and types), registered so bags can hold the class map the nodes publish.
LabelInfo's convention matches ours: class id 65535 is the "UNLABELED" class (our unknown label).
"""
from __future__ import annotations

from typing import Any

VISION_CLASS = """
uint16 class_id
string class_name
"""

LABEL_INFO = """
std_msgs/Header header
vision_msgs/VisionClass[] class_map
float32 threshold
"""

DEFINITIONS = {'vision_msgs/msg/VisionClass': VISION_CLASS, 'vision_msgs/msg/LabelInfo': LABEL_INFO}


def register(typestore: Any) -> None:
    """Add the vision_msgs types to a rosbags typestore (no-op when present)."""
    from rosbags.typesys import get_types_from_msg

    types: dict[str, Any] = {}
    for name, text in DEFINITIONS.items():
        if name not in typestore.types:
            types.update(get_types_from_msg(text, name))
    if types:
        typestore.register(types)
