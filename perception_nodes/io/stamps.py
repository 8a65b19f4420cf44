"""Header stamps <-> integer nanoseconds (duck-typed on ``sec`` / ``nanosec``)."""
from __future__ import annotations

from typing import Any

from perception_nodes.io.messages import MessageTypes, default_message_types

__all__ = ['stamp_to_ns', 'ns_to_stamp', 'header']

_NS = 1_000_000_000
_INT32 = 2**31


def stamp_to_ns(stamp: Any) -> int:
    """Nanoseconds of a ``builtin_interfaces/Time`` (sec, nanosec) or a ROS 1 time (secs, nsecs)."""
    if hasattr(stamp, 'sec'):
        return int(stamp.sec) * _NS + int(stamp.nanosec)
    if hasattr(stamp, 'secs'):
        return int(stamp.secs) * _NS + int(stamp.nsecs)
    raise ValueError(f'not a time stamp (no sec/nanosec fields): {stamp!r}')


def ns_to_stamp(ns: int, msgs: MessageTypes | None = None) -> Any:
    """Build a ``builtin_interfaces/msg/Time`` for ``ns`` nanoseconds.

    Negative times keep 0 <= nanosec < 1e9.
    """
    sec, nanosec = divmod(int(ns), _NS)
    if not -_INT32 <= sec < _INT32:
        raise ValueError(f'time {ns} ns does not fit a builtin_interfaces/Time (int32 seconds)')
    return (msgs or default_message_types()).new('builtin_interfaces/msg/Time', sec=sec, nanosec=nanosec)


def header(frame_id: str, stamp_ns: int, msgs: MessageTypes | None = None) -> Any:
    """Build a ``std_msgs/msg/Header``."""
    msgs = msgs or default_message_types()
    return msgs.new('std_msgs/msg/Header', stamp=ns_to_stamp(stamp_ns, msgs), frame_id=frame_id)
