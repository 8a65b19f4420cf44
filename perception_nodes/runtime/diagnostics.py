"""diagnostic_msgs/DiagnosticArray for /diagnostics, built through a message factory (ROS-free).

One array per period with three statuses per node: inputs (rates, synchronized sets, messages the
synchronizer never matched, synchronizer resets, silent topics), processing (frames processed and dropped -
WARN while drops or failures grow -, processing time against ``node.max_processing_time``: WARN on an
overrun, ERROR after :data:`ERROR_AFTER_OVERRUNS` consecutive ones; per-stage latency; backend in use;
outputs skipped for lack of subscribers) and input errors (bad messages and tf failures, WARN while their
counts grow).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from perception_nodes.io.messages import MessageTypes
from perception_nodes.io.stamps import header
from perception_nodes.stats import ERROR_COUNTERS, SYNC_RESETS, SYNC_SETS, Stats
from perception_nodes.runtime.worker import WorkerCounts

# diagnostic_msgs/DiagnosticStatus levels
OK, WARN, ERROR, STALE = 0, 1, 2, 3
ERROR_AFTER_OVERRUNS = 5


@dataclass
class StatusEntry:
    """A DiagnosticStatus before it becomes a message."""

    level: int
    name: str
    message: str
    values: dict[str, str] = field(default_factory=dict)


class DiagnosticsReporter:
    """Turns a node's stats into statuses; remembers the last error counts to flag growth."""

    def __init__(self, node_name: str, hardware_id: str = 'perception_nodes') -> None:
        self.node_name = node_name
        self.hardware_id = hardware_id
        self._last_errors: dict[str, int] = {}
        self._last_worker = (0, 0)        # (dropped, failed) at the previous report

    def statuses(self, stats: Stats, worker: WorkerCounts, topics: list[str],
                 silent_problem: str | None = None, backend: str = '',
                 extra: dict[str, str] | None = None,
                 processing: tuple[float, float, int] | None = None) -> list[StatusEntry]:
        """Three statuses; ``processing`` = (last frame s, max_processing_time s, consecutive overruns)."""
        counts = stats.counts()
        inputs = {f'rate {t} (Hz)': f'{stats.rate(t):.2f}' for t in topics}
        inputs['rate synchronized sets (Hz)'] = f'{stats.rate(SYNC_SETS):.2f}'
        sets = counts.get(SYNC_SETS, 0)
        inputs['synchronized sets'] = str(sets)
        inputs['synchronizer resets (time jumped back)'] = str(counts.get(SYNC_RESETS, 0))
        for t in topics:   # each set uses one message per topic: the rest never matched (slop, QoS, queue)
            inputs[f'synchronizer drops {t}'] = str(max(stats.received(t) - sets, 0))
        if silent_problem:
            status_in = StatusEntry(WARN, f'{self.node_name}: inputs', silent_problem, inputs)
        else:
            status_in = StatusEntry(OK, f'{self.node_name}: inputs', 'receiving', inputs)

        values = {
            'frames submitted': str(worker.submitted), 'frames processed': str(worker.processed),
            'frames dropped (replaced by newer)': str(worker.replaced),
            'frames dropped (too old)': str(worker.too_old), 'frames failed': str(worker.errors),
            'backend': backend or 'n/a',
        }
        for stage, (mean, worst) in sorted(stats.latency_summary().items()):
            values[f'latency {stage} (ms, mean/max)'] = f'{mean:.1f}/{worst:.1f}'
        values.update(extra or {})
        dropped, failed = worker.dropped - self._last_worker[0], worker.errors - self._last_worker[1]
        self._last_worker = (worker.dropped, worker.errors)
        level = WARN if dropped > 0 or failed > 0 else OK
        message = 'processing' if level == OK else (
            f'{dropped} frames dropped, {failed} failed since the last report '
            f'({worker.dropped} dropped, {worker.errors} failed of {worker.submitted} in all)')
        if processing is not None:
            last, limit, overruns = processing
            values.update({'processing time last frame (s)': f'{last:.3f}',
                           'max processing time (s)': f'{limit:.3f}', 'consecutive overruns': str(overruns)})
            if overruns >= ERROR_AFTER_OVERRUNS:
                level = ERROR
                message = f'{overruns} consecutive frames over {limit:.3f} s (last {last:.3f} s)'
            elif overruns:
                level, message = max(level, WARN), f'last frame took {last:.3f} s > {limit:.3f} s'
        status_proc = StatusEntry(level, f'{self.node_name}: processing', message, values)

        errors = {name: str(counts.get(name, 0)) for name in ERROR_COUNTERS}
        grown = [n for n in ERROR_COUNTERS if counts.get(n, 0) > self._last_errors.get(n, 0)]
        self._last_errors = {n: counts.get(n, 0) for n in ERROR_COUNTERS}
        for name, text in sorted(stats.last_problem.items()):
            errors[f'last {name}'] = text
        if grown:
            detail = '; '.join(f'{n}: {stats.last_problem[n]}' if n in stats.last_problem else n
                               for n in grown)
            status_err = StatusEntry(WARN, f'{self.node_name}: input errors', f'new errors: {detail}', errors)
        else:
            status_err = StatusEntry(OK, f'{self.node_name}: input errors', 'no new errors', errors)
        return [status_in, status_proc, status_err]


def diagnostic_array(msgs: MessageTypes, stamp_ns: int, entries: list[StatusEntry],
                     hardware_id: str = 'perception_nodes') -> object:
    """Build a diagnostic_msgs/msg/DiagnosticArray holding ``entries``."""
    statuses = []
    for entry in entries:
        values = [msgs.new('diagnostic_msgs/msg/KeyValue', key=str(k), value=str(v))
                  for k, v in entry.values.items()]
        statuses.append(msgs.new('diagnostic_msgs/msg/DiagnosticStatus', level=int(entry.level),
                                 name=entry.name, message=entry.message, hardware_id=hardware_id,
                                 values=values))
    return msgs.new('diagnostic_msgs/msg/DiagnosticArray', header=header('', stamp_ns, msgs), status=statuses)
