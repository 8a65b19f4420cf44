"""Silent-topic watchdog with an injected clock."""
from __future__ import annotations

import pytest

from perception_nodes.runtime.watchdog import SilentTopicWatchdog

TOPICS = ['/lidar/points', '/cam/image']


def test_warns_after_timeout_naming_silent_topics(clock):
    dog = SilentTopicWatchdog(TOPICS, timeout_s=5.0, clock=clock)
    clock.advance(4.9)
    assert dog.check() is None
    dog.message('/lidar/points')
    clock.advance(0.2)
    warning = dog.check()
    assert warning is not None and 'since start' in warning
    assert '/cam/image' in warning and '/lidar/points' not in warning and 'QoS' in warning
    assert dog.silent_topics() == ['/cam/image']


def test_all_topics_alive_but_never_synchronized_points_at_stamps(clock):
    dog = SilentTopicWatchdog(TOPICS, timeout_s=2.0, clock=clock)
    for _ in range(5):
        clock.advance(0.5)
        for t in TOPICS:
            dog.message(t)
    assert 'slop' in dog.check()


def test_a_synchronized_set_resets_and_warnings_are_rate_limited(clock):
    dog = SilentTopicWatchdog(TOPICS, timeout_s=1.0, clock=clock)
    clock.advance(1.5)
    assert dog.check() is not None
    clock.advance(0.5)
    assert dog.check() is None            # rate-limited: once per timeout period
    assert dog.problem() is not None      # ... but diagnostics still see it
    dog.synchronized()
    clock.advance(0.5)
    assert dog.problem() is None
    clock.advance(2.0)
    assert 'for 2.5 s' in dog.check()


def test_timeout_must_be_positive():
    with pytest.raises(ValueError, match='timeout_s'):
        SilentTopicWatchdog(TOPICS, 0.0)
