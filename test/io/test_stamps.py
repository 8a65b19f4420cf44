"""Stamp <-> nanosecond helpers."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from perception_nodes.io.stamps import header, ns_to_stamp, stamp_to_ns


@pytest.mark.parametrize('ns', [0, 1, 999_999_999, 1_000_000_000, 1_700_000_000_123_456_789, -1,
                                -1_500_000_000])
def test_round_trip(ns):
    stamp = ns_to_stamp(ns)
    assert 0 <= stamp.nanosec < 1_000_000_000
    assert stamp_to_ns(stamp) == ns


def test_known_values_and_duck_typing():
    stamp = ns_to_stamp(3_000_000_007)
    assert (stamp.sec, stamp.nanosec) == (3, 7)
    assert stamp_to_ns(SimpleNamespace(sec=2, nanosec=5)) == 2_000_000_005
    assert stamp_to_ns(SimpleNamespace(secs=2, nsecs=5)) == 2_000_000_005      # ROS 1 naming
    hdr = header('map', 42)
    assert hdr.frame_id == 'map' and stamp_to_ns(hdr.stamp) == 42


def test_errors():
    with pytest.raises(ValueError, match='not a time stamp'):
        stamp_to_ns(12)
    with pytest.raises(ValueError, match='int32'):
        ns_to_stamp(2**31 * 1_000_000_000)
