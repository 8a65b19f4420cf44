from __future__ import annotations

import importlib.util
import pickle

import onnx
import pytest
import torch

from perception_nodes.cli.main import main
from perception_nodes.geometry.voxels import GridSpec
from perception_nodes.student.checkpoint import save_checkpoint
from perception_nodes.student.config import StudentConfig
from perception_nodes.student.export import read_onnx_metadata
from perception_nodes.student.model import build_student

HAVE_TRT = importlib.util.find_spec('tensorrt') is not None and torch.cuda.is_available()


def _checkpoint(tmp_path, arch='range_unet'):
    cfg = StudentConfig(arch=arch, widths=(8, 16), depths=(1, 1), embed_dim=16, point_width=8, head_hidden=8,
                        voxel_width=2, range_height=16, range_width=64, max_points=1024,
                        grid=GridSpec((-20.0, -20.0, -3.0), (20.0, 20.0, 3.0), (8, 8, 2)))
    torch.manual_seed(0)
    path = tmp_path / arch
    save_checkpoint(path, build_student(cfg))
    return path


def test_export_writes_a_checked_onnx(tmp_path, capsys):
    ckpt = _checkpoint(tmp_path)
    out = tmp_path / 'out' / 'student.onnx'
    assert main(['export', '--checkpoint', str(ckpt), '--onnx', str(out), '--max-points', '2048']) == 0
    assert 'onnx.checker passed' in capsys.readouterr().out
    onnx.checker.check_model(onnx.load(str(out)))
    _, count, _ = read_onnx_metadata(out)
    assert count == 2048


def test_user_errors_exit_2_with_a_message(tmp_path, capsys):
    ckpt = _checkpoint(tmp_path)
    out = str(tmp_path / 'x.onnx')
    assert main(['export', '--checkpoint', str(tmp_path / 'missing'), '--onnx', out]) == 2
    assert 'not found' in capsys.readouterr().err
    assert main(['export', '--checkpoint', str(ckpt), '--onnx', out, '--max-points', '0']) == 2
    assert main(['export', '--onnx', out]) == 2
    assert 'give --checkpoint' in capsys.readouterr().err
    engine = str(tmp_path / 'e.engine')
    assert main(['export', '--onnx', str(tmp_path / 'none.onnx'), '--engine', engine]) == 2
    assert 'does not exist' in capsys.readouterr().err


def test_sparse_checkpoint_explains_why_it_cannot_export(tmp_path, capsys):
    ckpt = _checkpoint(tmp_path, 'sparse_unet')
    assert main(['export', '--checkpoint', str(ckpt), '--onnx', str(tmp_path / 'x.onnx')]) == 2
    assert 'spconv' in capsys.readouterr().err


def test_pickle_checkpoint_is_refused_not_run(tmp_path, capsys):
    ckpt = _checkpoint(tmp_path)
    marker = tmp_path / 'ran'

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), 'w'))
    (tmp_path / 'range_unet.safetensors').write_bytes(pickle.dumps(Payload()))
    assert main(['export', '--checkpoint', str(ckpt), '--onnx', str(tmp_path / 'x.onnx')]) == 2
    assert 'refusing to unpickle' in capsys.readouterr().err and not marker.exists()


@pytest.mark.skipif(HAVE_TRT, reason='TensorRT and a GPU are present')
def test_engine_build_without_tensorrt_is_a_clear_error(tmp_path, capsys):
    ckpt = _checkpoint(tmp_path)
    code = main(['export', '--checkpoint', str(ckpt), '--onnx', str(tmp_path / 'x.onnx'),
                 '--engine', str(tmp_path / 'x.engine')])
    assert code == 2 and 'tensorrt' in capsys.readouterr().err
    assert (tmp_path / 'x.onnx').is_file() and not (tmp_path / 'x.engine').exists()


@pytest.mark.skipif(not HAVE_TRT, reason='tensorrt is not importable or no CUDA GPU here (CPU-only machine)')
def test_build_only_engine(tmp_path):
    ckpt = _checkpoint(tmp_path)
    onnx_path = tmp_path / 'x.onnx'
    assert main(['export', '--checkpoint', str(ckpt), '--onnx', str(onnx_path)]) == 0
    assert main(['export', '--onnx', str(onnx_path), '--engine', str(tmp_path / 'x.engine'), '--fp16']) == 0
    assert (tmp_path / 'x.engine').stat().st_size > 0 and (tmp_path / 'x.engine.json').is_file()
