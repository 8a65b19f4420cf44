"""`ovp bag-info BAG`: topics, types, counts, rates and duration of a bag (ROS 2 mcap/db3, ROS 1)."""
from __future__ import annotations

import argparse
import json

from perception_nodes.cli.main import CliError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('bag', help='ROS 2 bag folder, .mcap / .db3 file, or ROS 1 .bag')
    parser.add_argument('--json', action='store_true', help='print one JSON object instead of a table')
    parser.add_argument('--no-scan', action='store_true',
                        help='trust the bag index instead of reading every record (faster; rates from the '
                             'overall duration, truncation not detected)')


def _size(n: int) -> str:
    for unit in ('B', 'KiB', 'MiB', 'GiB'):
        if n < 1024 or unit == 'GiB':
            return f'{n:.0f} {unit}' if unit == 'B' else f'{n:.1f} {unit}'
        n /= 1024
    return f'{n} B'


def format_summary(summary) -> str:
    """Format the human-readable table ``ovp bag-info`` prints."""
    start = f'{summary.start_ns / 1e9:.9f} s' if summary.start_ns is not None else '-'
    lines = [f'bag:       {summary.path}',
             f'storage:   {summary.storage} ({_size(summary.size_bytes)})',
             f'duration:  {summary.duration_s:.3f} s (start {start})',
             f'messages:  {summary.message_count}', '']
    rows = [(t.name, t.msgtype, str(t.count), '-' if t.rate_hz is None else f'{t.rate_hz:.2f}')
            for t in summary.topics]
    head = ('topic', 'type', 'count', 'rate (Hz)')
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
    for r in [head, *rows]:
        lines.append(f'{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]:>{widths[3]}}')
    if summary.error:
        lines += ['', f'error: {summary.error}']
    return '\n'.join(lines)


def run(args: argparse.Namespace) -> int:
    from perception_nodes.io.bags import BagError, bag_summary

    try:
        summary = bag_summary(args.bag, scan=not args.no_scan)
    except BagError as exc:
        raise CliError(str(exc)) from None
    print(json.dumps(summary.to_dict()) if args.json else format_summary(summary))
    return 1 if summary.error else 0
