"""`ovp scannet-to-bag`: converts, reports, and fails cleanly on bad input."""
from __future__ import annotations

from perception_nodes.cli.main import main
from perception_nodes.io.bags import bag_summary


def test_convert_and_report(tmp_path, scannet_scene_dir, capsys):
    out = tmp_path / 'bag'
    assert main(['scannet-to-bag', str(scannet_scene_dir), str(out), '--quiet', '--once', '--rate',
                 '15']) == 0
    printed = capsys.readouterr().out
    assert 'ScanNet scene0000_00, 81369 points (labels: nyu40), 3 posed frame(s) (0 skipped' in printed
    assert '/scene/points: 1' in printed and '/camera/image_raw/compressed: 3' in printed
    summary = bag_summary(out)
    assert summary.message_count == 1 + 3 + 3 + 3 + 1 and summary.duration_s == 102 / 15


def test_bad_source_is_a_user_error(tmp_path, capsys):
    assert main(['scannet-to-bag', str(tmp_path), str(tmp_path / 'out'), '--quiet']) == 2
    err = capsys.readouterr().err
    assert err.startswith('ovp scannet-to-bag: error:') and 'not a ScanNet scene folder' in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / 'out').exists()
