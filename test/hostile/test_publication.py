"""Issue 15, items 8-11 and 21: no interruption loses or tears an output.

Ctrl-C, SIGTERM and SIGKILL at chosen instants of a real ``ovp replay`` / ``ovp export``: a complete previous
output stays byte for byte, nothing lands beside OUT but the writer's own hidden temporary, the next run
repairs what a SIGKILL left (a half-done overwrite is rolled back, dead temporaries removed), and a frame
is in the output whole or not at all.
"""
from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys

import pytest

from perception_nodes.io.writer import OutputWriter

PERIOD = 100_000_000
PER_FRAME = ('/ovp/labeled_points', '/ovp/occupancy', '/ovp/semantic_voxels', '/ovp/overlay/camera_2')

# Runs `ovp <args>` and SIGKILLs itself after the first replayed frame (no Python cleanup can run).
KILLED_REPLAY = """
import os, signal, sys
from perception_nodes import replay
original = replay.replay_bag
def killed(*args, **kwargs):
    kwargs['on_frame'] = lambda outputs: os.kill(os.getpid(), signal.SIGKILL)
    return original(*args, **kwargs)
replay.replay_bag = killed
from perception_nodes.cli.main import main
sys.exit(main(sys.argv[1:]))
"""

# Overwrites the bag at argv[1] by the two-rename fallback and SIGKILLs itself between the two renames.
KILLED_BETWEEN_RENAMES = """
import os, signal, sys
from pathlib import Path
from perception_nodes.io import bags
from perception_nodes.io.messages import default_message_types
out = Path(sys.argv[1]).resolve()
bags._exchange = lambda a, b: False
real_replace = os.replace
def replace(src, dst):
    if Path(dst).resolve() == out:          # the second rename: publishing the new output
        os.kill(os.getpid(), signal.SIGKILL)
    return real_replace(src, dst)
os.replace = replace
msgs = default_message_types()
with bags.BagWriter(out, overwrite=True) as writer:
    writer.write('/chatter', 'std_msgs/msg/String', msgs.new('std_msgs/msg/String', data='new'), 1)
"""

# `ovp export` SIGKILLed while torch writes the ONNX temporary.
KILLED_EXPORT = """
import os, signal, sys
import torch.onnx
def killed(model, args, path, **kwargs):
    open(path, 'wb').close()
    os.kill(os.getpid(), signal.SIGKILL)
torch.onnx.export = killed
from perception_nodes.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def _python(script: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    full = {**os.environ, 'PYTHONPATH': str(root), **(env or {})}
    return subprocess.run([sys.executable, '-c', script, *args], cwd=root, env=full, capture_output=True,
                          text=True, timeout=300)


def _stop_after(monkeypatch, frames: int, stop) -> None:
    """Make the CLI's replay call ``stop()`` from ``on_frame`` once ``frames`` frames were written."""
    from perception_nodes import replay
    original = replay.replay_bag

    def patched(*args, **kwargs):
        done = []

        def on_frame(outputs):
            done.append(outputs.stamp_ns)
            if len(done) == frames:
                stop()
        kwargs['on_frame'] = on_frame
        return original(*args, **kwargs)
    monkeypatch.setattr(replay, 'replay_bag', patched)


def _previous_output(kit, hostile):
    """A complete earlier output at ``OUT`` (1 frame) and its digest."""
    out = kit.tmp / 'OUT'
    first = kit.replay(kit.clean, out, '--labeller', 'none', '--max-frames', '1')
    assert first.rc == 0 and first.frame_stamps() == [0]
    return out, hostile.tree_digest(out)


def _keyboard_interrupt():
    raise KeyboardInterrupt


@pytest.mark.parametrize('frames', [1, 3])
def test_item08_ctrl_c_during_overwrite_keeps_the_previous_output(kit, hostile, monkeypatch, frames):
    out, before = _previous_output(kit, hostile)
    names = hostile.listing(kit.tmp)
    _stop_after(monkeypatch, frames, _keyboard_interrupt)      # after 1 frame / after the last one
    run = kit.replay(kit.clean, out, '--labeller', 'none', '--overwrite')
    assert run.rc == 130 and run.err == ['ovp replay: interrupted']
    assert hostile.tree_digest(out) == before                  # every byte of the previous output
    assert hostile.listing(kit.tmp) == names                   # and nothing beside it


def test_item09_killed_run_leaves_nothing_beside_out_and_the_next_run_cleans_its_temporary(
        kit, hostile, clip_cache):
    out, before = _previous_output(kit, hostile)
    names = hostile.listing(kit.tmp)
    killed = _python(KILLED_REPLAY, 'replay', '--bag', str(kit.clean), '--out', str(out), '--config',
                     str(kit.config), *hostile.TINY, '--overwrite', env={'OVP_CLIP_CACHE': str(clip_cache)})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert hostile.tree_digest(out) == before
    left = sorted(set(hostile.listing(kit.tmp)) - set(names))
    # the side outputs (summary, legend, overlays) were staged inside the writer's own hidden folder
    assert len(left) == 1 and left[0].startswith('.OUT.') and left[0].endswith('.partial'), left
    staged = kit.tmp / left[0] / 'OUT'
    assert (staged / 'overlays' / 'frame0000_camera_2.png').is_file()
    assert not any(p.name.startswith('OUT.') for p in kit.tmp.iterdir())

    run = kit.replay(kit.clean, out, '--labeller', 'none', '--overwrite')
    assert run.rc == 0 and run.frame_stamps() == [0, PERIOD, 2 * PERIOD]
    assert run.err == [f'ovp replay: removed {left[0]}, the unfinished output of a killed run']
    assert run.summary['recovered'] == [f'removed {left[0]}, the unfinished output of a killed run']
    assert hostile.listing(kit.tmp) == names


def test_item10_sigterm_unwinds_like_ctrl_c(kit, hostile, monkeypatch):
    out, before = _previous_output(kit, hostile)
    names = hostile.listing(kit.tmp)

    def sigterm():
        # without the CLI's handler SIGTERM would end this test process: say so instead
        assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN, None), \
            'ovp installs no SIGTERM handler: SIGTERM would kill it without cleaning up'
        os.kill(os.getpid(), signal.SIGTERM)
    _stop_after(monkeypatch, 2, sigterm)
    run = kit.replay(kit.clean, out, '--labeller', 'none', '--overwrite')
    assert run.rc == 143 and run.err == ['ovp replay: terminated (SIGTERM)']
    assert hostile.tree_digest(out) == before and hostile.listing(kit.tmp) == names
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL      # the handler was only lent


def test_item10_kill_between_the_two_renames_is_rolled_back(kit, hostile):
    out, before = _previous_output(kit, hostile)
    names = hostile.listing(kit.tmp)
    killed = _python(KILLED_BETWEEN_RENAMES, str(out))
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not out.exists()                                       # the crash window the issue describes
    left = sorted(set(hostile.listing(kit.tmp)) - set(names))
    assert sorted(n.rsplit('.', 1)[1] for n in left) == ['old', 'partial'], left

    run = kit.replay(kit.clean, out, '--labeller', 'none')        # no --overwrite: OUT is back
    assert run.rc == 2
    assert run.err[-1] == f'ovp replay: error: {out} exists already (restored from an interrupted ' \
                          'overwrite) (use --overwrite to replace it)'
    assert hostile.tree_digest(out) == before
    assert hostile.listing(kit.tmp) == names


def test_item10_overwrite_swaps_in_one_step(kit, hostile, monkeypatch):
    """Where the OS can exchange two folders, OUT is never missing: no rename leaves it absent."""
    from perception_nodes.io import bags
    out, _ = _previous_output(kit, hostile)
    real = os.replace
    missing = []

    def watch(src, dst):
        real(src, dst)
        missing.append(not out.exists())
    monkeypatch.setattr(os, 'replace', watch)
    exchanged = []
    monkeypatch.setattr(bags, '_exchange', lambda a, b, f=bags._exchange: exchanged.append(f(a, b)) or
                        exchanged[-1])
    run = kit.replay(kit.clean, out, '--labeller', 'none', '--overwrite', '--max-frames', '2')
    assert run.rc == 0 and run.frame_stamps() == [0, PERIOD]
    if exchanged != [True]:
        pytest.skip('this filesystem cannot exchange two folders (renameat2); the fallback is rolled back')
    assert not any(missing)


def test_item10_killed_export_leaves_a_temporary_the_next_export_removes(tmp_path, hostile):
    import torch
    from perception_nodes.cli.main import main
    from perception_nodes.geometry.voxels import GridSpec
    from perception_nodes.student.checkpoint import save_checkpoint
    from perception_nodes.student.config import StudentConfig
    from perception_nodes.student.model import build_student
    cfg = StudentConfig(arch='range_unet', widths=(8, 16), depths=(1, 1), embed_dim=16, point_width=8,
                        head_hidden=8, voxel_width=2, range_height=16, range_width=64, max_points=1024,
                        grid=GridSpec((-20.0, -20.0, -3.0), (20.0, 20.0, 3.0), (8, 8, 2)))
    torch.manual_seed(0)
    save_checkpoint(tmp_path / 'ckpt', build_student(cfg))
    onnx = tmp_path / 'models' / 'student.onnx'
    args = ['export', '--checkpoint', str(tmp_path / 'ckpt'), '--onnx', str(onnx)]
    killed = _python(KILLED_EXPORT, *args)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    (left,) = hostile.listing(onnx.parent)
    assert left.startswith('.student.onnx.') and left.endswith('.onnx')
    assert (onnx.parent / left).stat().st_size == 0 and not onnx.exists()

    assert main(args) == 0
    assert hostile.listing(onnx.parent) == ['student.onnx']


def test_item11_a_frame_the_bag_cannot_store_is_skipped_whole(kit, hostile, monkeypatch):
    """Frame 1's overlay gets a header stamp the bag cannot serialize: none of frame 1 is written.

    Hostile input cannot produce such a message any more (invalid stamps are refused when the frame is
    assembled, item 1), so the broken message is injected where the frame's messages are built.
    """
    original = OutputWriter.frame_messages
    calls = []

    def broken(self, outputs, *args, **kwargs):
        messages = original(self, outputs, *args, **kwargs)
        calls.append(len(messages))
        if len(calls) == 2:
            messages[-1].msg.header.stamp.sec = 2**40           # not an int32
        return messages
    monkeypatch.setattr(OutputWriter, 'frame_messages', broken)
    run = kit.replay(kit.clean, None, '--labeller', 'none')
    assert run.rc == 0, run.err
    assert calls == [4, 4, 4]
    for topic in PER_FRAME:
        assert run.frame_stamps(topic) == [0, 2 * PERIOD], topic
    (skip,) = run.skipped('frame_failed')
    assert skip['where'] == 'kitti cloud 1' and skip['why'].startswith('BagWriteError: /ovp/overlay/camera_2')
    assert run.summary['frames'] == 2


def test_item11_ctrl_c_mid_frame_publishes_nothing(kit, hostile, monkeypatch):
    from perception_nodes.io.bags import BagWriter
    original = BagWriter.write_raw
    writes = []

    def write_raw(self, topic, *args):
        writes.append(topic)
        if len(writes) == 1 + 5 + 2:              # tf_static, frame 0 (4 + label_info), 2 of frame 1
            raise KeyboardInterrupt
        return original(self, topic, *args)
    monkeypatch.setattr(BagWriter, 'write_raw', write_raw)
    out = kit.tmp / 'OUT'
    names = hostile.listing(kit.tmp)
    run = kit.replay(kit.clean, out, '--labeller', 'none')
    assert run.rc == 130 and writes[-1] == '/ovp/occupancy'
    assert not out.exists() and hostile.listing(kit.tmp) == names


def test_item21_every_published_file_gets_the_umask_mode(kit, hostile, tmp_path, monkeypatch):
    monkeypatch.setenv('OVP_CLIP_CACHE', str(tmp_path / 'cache'))
    old = os.umask(0o027)
    try:
        run = kit.replay(kit.clean, None, '--max-frames', '1')
    finally:
        os.umask(old)
    assert run.rc == 0, run.err
    paths = [run.out, *run.out.rglob('*'), *(tmp_path / 'cache').rglob('*')]
    files = {p.relative_to(tmp_path): stat.S_IMODE(p.stat().st_mode) for p in paths if p.is_file()}
    folders = {p.relative_to(tmp_path): stat.S_IMODE(p.stat().st_mode) for p in paths if p.is_dir()}
    kinds = {p.suffix for p in files}
    assert {'.mcap', '.yaml', '.json', '.png', '.safetensors'} <= kinds
    assert set(files.values()) == {0o640}, files
    assert set(folders.values()) == {0o750}, folders
