"""Time going back: per-topic stamps and clock jumps, one reset per bag loop."""
from __future__ import annotations

import pytest

from perception_nodes.runtime.time_jump import TimeJumpDetector

S = 1_000_000_000


@pytest.mark.parametrize('first', ['/cloud', '/image'])
def test_a_loop_resets_once_whatever_topic_comes_first(first):
    d = TimeJumpDetector()
    for t in (100, 101, 102):
        assert d.stamp('/cloud', t * S) is None and d.stamp('/image', t * S + S // 50) is None
    second = '/image' if first == '/cloud' else '/cloud'
    assert d.stamp(first, 100 * S) is not None                # > 1 s behind its own previous stamp
    assert d.stamp(second, 100 * S) is None


def test_out_of_order_within_the_threshold_is_not_a_jump():
    d = TimeJumpDetector()
    assert d.stamp('/a', 10 * S) is None
    assert d.stamp('/a', 10 * S - S // 2) is None             # half a second back: jitter, not a loop
    assert d.stamp('/b', 5 * S) is None                       # other topics are not compared


def test_after_a_reset_the_other_topics_start_afresh():
    d = TimeJumpDetector()
    d.stamp('/cloud', 105 * S)
    d.stamp('/image', 105 * S)
    reason = d.stamp('/image', 100 * S)
    assert reason == '/image: stamp went back 5.000 s'
    assert d.stamp('/cloud', 100 * S) is None                 # the same loop: no second reset


def test_clock_jump_resets_only_with_stale_stamps():
    d = TimeJumpDetector()
    assert d.clock(0) is None                                 # nothing seen yet
    d.stamp('/cloud', 105 * S)
    assert d.clock(104 * S + S // 2) is None                  # within 1 s of the newest input
    assert 'clock jumped back to 100.000 s' in d.clock(100 * S)
    assert d.stamp('/cloud', 100 * S) is None                 # the stamps of the new pass follow
    with pytest.raises(ValueError):
        TimeJumpDetector(0)
