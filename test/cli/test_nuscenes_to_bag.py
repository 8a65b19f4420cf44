"""`ovp nuscenes-to-bag`: converts, reports, and fails cleanly on bad input."""
from __future__ import annotations

from perception_nodes.cli.main import main
from perception_nodes.io.bags import bag_summary


def test_convert_and_report(tmp_path, build_nuscenes, capsys):
    build_nuscenes(tmp_path / 'nuscenes')
    out = tmp_path / 'bag'
    assert main(['nuscenes-to-bag', str(tmp_path / 'nuscenes'), str(out), '--quiet', '--max-samples',
                 '1']) == 0
    printed = capsys.readouterr().out
    assert 'nuScenes v1.0-mini, 1 scene(s), 1 keyframe sample(s), 0 sweep record(s), 34688 points' in printed
    assert '/lidar_top/points: 1' in printed and '/cam_back_left/image_raw/compressed: 1' in printed
    summary = bag_summary(out)
    assert summary.message_count == 1 + 7 + 1 + 12 and summary.storage == 'mcap'
    assert 0.043 < summary.duration_s < 0.044          # CAM_FRONT_LEFT fires 43 ms before the LiDAR
    assert main(['nuscenes-to-bag', str(tmp_path / 'nuscenes'), str(out), '--quiet']) == 2
    assert 'exists' in capsys.readouterr().err


def test_bad_source_is_a_user_error(tmp_path, capsys):
    assert main(['nuscenes-to-bag', str(tmp_path), str(tmp_path / 'out'), '--quiet']) == 2
    err = capsys.readouterr().err
    assert err.startswith('ovp nuscenes-to-bag: error:') and 'not a nuScenes dataroot' in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / 'out').exists()
