"""`ovp bag-info`: table and JSON output, truncated and missing bags."""
from __future__ import annotations

import json

import numpy as np

from perception_nodes.cli.main import main
from perception_nodes.io.bags import BagWriter
from perception_nodes.io.pointcloud2 import create_cloud_xyz32
from perception_nodes.io.stamps import header


def make_bag(path, n=20, points=10):
    with BagWriter(path) as bag:
        for i in range(n):
            stamp = 1_000_000_000 + i * 50_000_000                       # 20 Hz from t = 1 s
            bag.write('/points', 'sensor_msgs/msg/PointCloud2',
                      create_cloud_xyz32(header('lidar', stamp), np.zeros((points, 3))), stamp)
        note = bag.msgs.new('std_msgs/msg/String', data='hi')
        bag.write('/note', 'std_msgs/msg/String', note, 1_000_000_000)


def test_table_and_json(tmp_path, capsys):
    make_bag(tmp_path / 'bag')
    assert main(['bag-info', str(tmp_path / 'bag')]) == 0
    out = capsys.readouterr().out
    assert 'storage:   mcap' in out and 'duration:  0.950 s (start 1.000000000 s)' in out
    row = next(line for line in out.splitlines() if line.startswith('/points'))
    assert row.split() == ['/points', 'sensor_msgs/msg/PointCloud2', '20', '20.00']
    assert next(line for line in out.splitlines() if line.startswith('/note')).split()[-1] == '-'
    assert main(['bag-info', str(tmp_path / 'bag'), '--json']) == 0
    data = json.loads(capsys.readouterr().out)
    assert data['message_count'] == 21 and data['duration_s'] == 0.95
    assert {t['name']: t['rate_hz'] for t in data['topics']} == {'/note': None, '/points': 20.0}
    assert main(['bag-info', str(tmp_path / 'bag'), '--json', '--no-scan']) == 0
    assert json.loads(capsys.readouterr().out)['message_count'] == 21


def test_truncated_and_missing(tmp_path, capsys):
    make_bag(tmp_path / 'bag', n=200, points=2000)
    mcap = tmp_path / 'bag' / 'bag.mcap'
    mcap.write_bytes(mcap.read_bytes()[:mcap.stat().st_size // 2])
    assert main(['bag-info', str(tmp_path / 'bag')]) == 1
    out = capsys.readouterr().out
    assert 'error:' in out and 'truncated' in out
    count = int(next(line for line in out.splitlines() if line.startswith('messages:')).split()[1])
    assert 0 < count < 201
    assert main(['bag-info', str(tmp_path / 'nope')]) == 2
    assert 'no such bag' in capsys.readouterr().err
