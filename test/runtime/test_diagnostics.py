"""Runtime stats and the /diagnostics array (rosbags messages, CDR round trip)."""
from __future__ import annotations

from perception_nodes.io.messages import default_message_types
from perception_nodes import stats as counters
from perception_nodes.runtime.diagnostics import OK, WARN, DiagnosticsReporter, diagnostic_array
from perception_nodes.stats import Stats as RuntimeStats
from perception_nodes.runtime.worker import WorkerCounts


def test_rates_over_the_window(clock):
    stats = RuntimeStats(clock, rate_window_s=5.0)
    for _ in range(21):          # 10 Hz for 2 s
        stats.arrived('/a')
        clock.advance(0.1)
    assert abs(stats.rate('/a') - 10.0) < 0.6
    assert stats.rate('/never') == 0.0
    clock.advance(10.0)          # everything left the window
    assert stats.rate('/a') == 0.0


def test_latency_summary():
    stats = RuntimeStats()
    for ms in (10.0, 20.0, 30.0):
        stats.latency('inference', ms)
    assert stats.latency_summary() == {'inference': (20.0, 30.0)}


def test_statuses_warn_while_errors_grow_and_serialize(clock):
    msgs = default_message_types()
    stats = RuntimeStats(clock)
    reporter = DiagnosticsReporter('fusion_node')
    work = WorkerCounts(submitted=10, processed=7, replaced=3)
    stats.count(counters.BAD_IMAGE, problem='front: ValueError: truncated data')
    entries = reporter.statuses(stats, work, ['/lidar/points'], silent_problem=None, backend='onnxruntime')
    by_name = {e.name: e for e in entries}
    errors = by_name['fusion_node: input errors']
    assert errors.level == WARN and 'truncated data' in errors.message
    assert errors.values['camera/bad_image'] == '1'
    proc = by_name['fusion_node: processing']
    assert proc.level == WARN and proc.values['frames dropped (replaced by newer)'] == '3'
    assert proc.values['backend'] == 'onnxruntime'
    assert by_name['fusion_node: inputs'].level == OK
    # no new errors since the last report -> OK again
    again = {e.name: e for e in reporter.statuses(stats, work, [], silent_problem='silent: /x')}
    assert again['fusion_node: input errors'].level == OK
    assert again['fusion_node: processing'].level == OK          # drops are WARN while they grow
    assert again['fusion_node: inputs'].level == WARN and again['fusion_node: inputs'].message == 'silent: /x'

    array = diagnostic_array(msgs, 1_500_000_000, entries)
    back = msgs.deserialize(msgs.serialize(array), 'diagnostic_msgs/msg/DiagnosticArray')
    assert back.header.stamp.sec == 1 and back.header.stamp.nanosec == 500_000_000
    assert [s.name for s in back.status] == [e.name for e in entries]
    assert [s.level for s in back.status] == [e.level for e in entries]
    kv = {v.key: v.value for v in back.status[2].values}
    assert kv['camera/bad_image'] == '1'
