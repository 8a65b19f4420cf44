"""`ovp export`: a student checkpoint -> static-shape ONNX (-> TensorRT engine).

``ovp export --checkpoint CKPT --onnx OUT.onnx [--engine OUT.engine] [--fp16] [--max-points N]``
exports and checks the ONNX graph; with ``--engine`` it also builds the TensorRT engine.
Build only (no checkpoint): ``ovp export --onnx MODEL.onnx --engine OUT.engine`` builds the engine
from an existing ONNX file, e.g. once at install time so a robot's first start does not stall.
"""
from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--checkpoint', help='student checkpoint (folder, prefix or .safetensors file); '
                        'omit to build an engine from an existing --onnx file')
    parser.add_argument('--onnx', required=True, help='ONNX file to write (or to read when building only)')
    parser.add_argument('--engine', help='also build a TensorRT engine here (needs tensorrt and a GPU)')
    parser.add_argument('--engine-cache-dir', help='build the engine into this cache instead (keyed by '
                        'ONNX sha256 + TensorRT version + GPU name), as the tensorrt backend looks it up')
    parser.add_argument('--fp16', action='store_true', help='build the engine with FP16 kernels allowed')
    parser.add_argument('--workspace-mb', type=int, default=2048, help='TensorRT workspace limit (MiB)')
    parser.add_argument('--max-points', type=int, help='padded point count of the graph '
                        '(default: the checkpoint config max_points)')
    parser.add_argument('--voxel-features', action='store_true',
                        help='also output the (X, Y, Z, C) voxel language features')
    parser.add_argument('--opset', type=int, default=17, help='ONNX opset (>= 17)')


def _build_engine(args: argparse.Namespace, onnx_path: Path) -> Path:
    from perception_nodes.student.backends.engine_cache import cached_engine_path
    from perception_nodes.student.backends.tensorrt_backend import build_engine, current_meta

    if args.engine:
        target = Path(args.engine)
    else:
        target = cached_engine_path(args.engine_cache_dir, current_meta(onnx_path, args.fp16))
    return build_engine(onnx_path, target, fp16=args.fp16, workspace_mb=args.workspace_mb)


def run(args: argparse.Namespace) -> int:
    from perception_nodes.cli.main import CliError

    onnx_path = Path(args.onnx)
    want_engine = bool(args.engine or args.engine_cache_dir)
    if args.max_points is not None and args.max_points <= 0:
        raise CliError(f'--max-points must be positive, got {args.max_points}')
    if args.workspace_mb <= 0:
        raise CliError(f'--workspace-mb must be positive, got {args.workspace_mb}')
    try:
        if args.checkpoint:
            from perception_nodes.student.checkpoint import load_checkpoint
            from perception_nodes.student.export import export_onnx

            model, config = load_checkpoint(args.checkpoint)
            export_onnx(model, onnx_path, max_points=args.max_points, voxel_features=args.voxel_features,
                        opset=args.opset)
            print(f'wrote {onnx_path} ({config.arch}, {args.max_points or config.max_points} points, '
                  f'opset {args.opset}, onnx.checker passed)')
        elif not want_engine:
            raise CliError('give --checkpoint to export, or --engine / --engine-cache-dir to build an engine')
        elif not onnx_path.is_file():
            raise CliError(f'{onnx_path} does not exist (give --checkpoint to export it first)')
        if want_engine:
            engine = _build_engine(args, onnx_path)
            print(f'wrote TensorRT engine {engine}')
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    return 0
