"""`ovp kitti-to-bag`: converts, reports, refuses to overwrite, and fails cleanly on bad input."""
from __future__ import annotations

from perception_nodes.cli.main import main
from perception_nodes.io.bags import bag_summary


def test_convert_then_refuse_overwrite(tmp_path, kitti_raw_dir, capsys):
    out = tmp_path / 'bag'
    assert main(['kitti-to-bag', str(kitti_raw_dir), str(out), '--max-frames', '2', '--rate', '5',
                 '--quiet']) == 0
    printed = capsys.readouterr().out
    assert '2 raw frames at 5 Hz' in printed and '/velodyne_points: 2' in printed
    summary = bag_summary(out)
    topics = {t.name: t for t in summary.topics}
    assert topics['/velodyne_points'].count == 2 and topics['/velodyne_points'].rate_hz == 5.0
    assert summary.storage == 'mcap'
    assert main(['kitti-to-bag', str(kitti_raw_dir), str(out), '--quiet']) == 2
    assert 'exists' in capsys.readouterr().err
    assert main(['kitti-to-bag', str(kitti_raw_dir), str(out), '--quiet', '--overwrite', '--max-frames', '1',
                 '--storage', 'sqlite3']) == 0
    assert bag_summary(out).storage == 'sqlite3' and bag_summary(out).message_count == 4


def test_bad_source_is_a_user_error(tmp_path, capsys):
    assert main(['kitti-to-bag', str(tmp_path), str(tmp_path / 'out'), '--quiet']) == 2
    err = capsys.readouterr().err
    assert err.startswith('ovp kitti-to-bag: error:') and 'not a KITTI' in err
    assert not (tmp_path / 'out').exists()
