"""``ovp demo``: the README's main job. Builds sample bags and replays them through both labellers.

1. a synthetic-world bag (``DIR/inputs/sim_bag``: LiDAR + cameras + CameraInfo + /tf_static), and the
   KITTI raw sample bag (``DIR/inputs/kitti_bag``) when the shared data is present ($OVP_DATA);
2. the teacher labeller: the configured CLIP (default ViT-B-32 / openai) read offline. Without its weights
   the demo runs geometry only (visibility, instances, grids and voxels are real; every label "unknown") and
   says which file to place where; it never invents labels. ``--clip-model ovp-tiny --clip-pretrained none``
   runs the whole path with a tiny random CLIP instead, flagged as meaningless everywhere;
3. the student labeller: a fresh (untrained) deployable student exported to ONNX and run with ONNX Runtime,
   exactly as ``student_node`` runs it. Its labels are meaningless until it is trained (``ovp train``), and
   every summary says so;
4. each run writes ``DIR/<bag>_<labeller>/`` (an output bag with summary.json, legend.png, overlays/);
   ``DIR/summary.json`` collects everything.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

from perception_nodes.cli.main import CliError
from perception_nodes.cli.replay import add_pipeline_arguments, build_config

DEFAULT_OUT = 'ovp-demo'
# vocabulary per sample bag when none is given on the command line / in the config file
SAMPLE_VOCABULARIES = {'sim': 'sim', 'kitti': 'semantickitti'}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--out', default=DEFAULT_OUT, help=f'output folder (default ./{DEFAULT_OUT})')
    add_pipeline_arguments(parser)
    parser.add_argument('--sim-frames', type=int, default=3, help='synthetic frames (default 3)')
    parser.add_argument('--sim-cameras', type=int, default=2, help='synthetic cameras (default 2)')
    parser.add_argument('--kitti-frames', type=int, default=3, help='KITTI raw frames (default 3; 0 = skip)')
    parser.add_argument('--no-student', action='store_true', help='skip the student labeller')
    parser.add_argument('--quiet', action='store_true', help='no progress bars')


def _teacher_pipeline(config: Any) -> tuple[Any, str, str | None]:
    """(pipeline, mode, weights help): mode 'clip', 'random' or 'geometry-only'."""
    from perception_nodes.pipeline import Pipeline
    from perception_nodes.teacher.clip_models import WeightsUnavailableError
    if config.labeller.kind == 'none':
        return Pipeline(config), 'geometry-only', None
    try:
        pipeline = Pipeline(config)
    except WeightsUnavailableError as exc:
        geometry = dataclasses.replace(config, labeller=dataclasses.replace(config.labeller, kind='none'))
        return Pipeline(geometry), 'geometry-only', str(exc)
    except (ValueError, OSError) as exc:
        raise CliError(str(exc)) from None
    return pipeline, ('clip' if pipeline.meaningful else 'random'), None


def _inputs(out: Path, args: argparse.Namespace, storage: str, progress: bool) -> dict[str, Path]:
    from perception_nodes.io.kitti import shared_data_dir
    from perception_nodes.io.sample_bags import sim_frames, write_kitti_sample_bag, write_sim_bag

    inputs = out / 'inputs'
    inputs.mkdir(parents=True, exist_ok=True)
    bags: dict[str, Path] = {}
    if args.sim_frames > 0:
        if progress:
            print(f'building a synthetic-world bag ({args.sim_frames} frames, {args.sim_cameras} '
                  'cameras) ...')
        frames = sim_frames(args.sim_frames, num_cameras=args.sim_cameras, image_size='small', beams=(32,
                                                                                                      1024))
        write_sim_bag(inputs / 'sim_bag', frames, storage=storage, overwrite=True)
        bags['sim'] = inputs / 'sim_bag'
    kitti = shared_data_dir() / 'kitti_raw_2011_09_26_seq'
    if args.kitti_frames > 0 and kitti.is_dir():
        if progress:
            print(f'building the KITTI raw sample bag from {kitti} ({args.kitti_frames} frames) ...')
        write_kitti_sample_bag(kitti, inputs / 'kitti_bag', max_frames=args.kitti_frames, storage=storage,
                               overwrite=True)
        bags['kitti'] = inputs / 'kitti_bag'
    elif args.kitti_frames > 0 and progress:
        print(f'KITTI sample not found at {kitti} (set $OVP_DATA): synthetic bag only')
    return bags


def fresh_student(out: Path, embed_dim: int) -> Path:
    """Return a fresh, untrained deployable student exported to ONNX (``out/student_untrained.onnx``)."""
    import torch

    from perception_nodes.student.config import StudentConfig
    from perception_nodes.student.export import export_onnx
    from perception_nodes.student.model import build_student

    torch.manual_seed(0)
    config = StudentConfig.deployable(embed_dim=embed_dim, provenance={
        'trained': False, 'labels_meaningful': False,
        'note': 'fresh random student made by ovp demo: its labels mean nothing until `ovp train`'})
    return export_onnx(build_student(config).eval(), out / 'student_untrained.onnx')


def _replay(name: str, bag: Path, config: Any, pipeline: Any, out: Path, progress: bool) -> dict[str, Any]:
    from perception_nodes.replay import replay_bag
    result = replay_bag(bag, out, pipeline, config, progress=progress, overwrite=True)
    return {'input': str(bag), 'output': result['output'], 'labeller': result['labeller']['labeller'],
            'frames': result['frames'], 'frames_per_s': result['frames_per_s'],
            'labels_meaningful': result['labels_meaningful'], 'vocabulary': config.vocabulary.classes,
            'latency_ms_p50': {k: v.get('p50') for k, v in result['latency_ms'].items()},
            'summary_json': str(out / 'summary.json'), 'legend_png': result['legend_png'],
            'overlay_pngs': result['overlay_pngs'], 'notes': result['notes']}


def run(args: argparse.Namespace) -> int:
    from perception_nodes.config import VocabularyConfig, with_overrides
    from perception_nodes.pipeline import Pipeline

    base = build_config(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    progress = not args.quiet
    vocabulary_given = args.vocabulary is not None or (
        args.config is not None and base.vocabulary.classes != VocabularyConfig().classes)
    bags = _inputs(out, args, base.replay.storage, progress)
    if not bags:
        raise CliError('nothing to replay: --sim-frames is 0 and the KITTI sample is absent')
    report: dict[str, Any] = {'out': str(out), 'runs': {}}
    teacher_base = dataclasses.replace(base, labeller=dataclasses.replace(base.labeller, kind='teacher'))
    student_clip = None
    for name, bag in bags.items():
        config = teacher_base
        if not vocabulary_given:
            config = with_overrides(config, {'vocabulary.classes': [SAMPLE_VOCABULARIES[name]]})
        pipeline, mode, weights_help = _teacher_pipeline(config)
        report['mode'], report['weights_help'] = mode, weights_help
        student_clip = pipeline.clip or student_clip
        report['runs'][f'{name}_teacher'] = _replay(name, bag, pipeline.config, pipeline,
                                                    out / f'{name}_teacher', progress)
        pipeline.close()
    if not args.no_student:
        if student_clip is None:      # no CLIP weights: the (meaningless) student gets a tiny random CLIP
            from perception_nodes.teacher.clip_models import ClipSpec, load_clip
            student_clip = load_clip(ClipSpec(model='ovp-tiny', pretrained='none'))
        model = fresh_student(out, student_clip.embed_dim)
        for name, bag in bags.items():
            overrides = {'labeller.kind': 'student', 'labeller.student': str(model),
                         'labeller.backend': 'onnxruntime'}
            if not vocabulary_given:
                overrides['vocabulary.classes'] = [SAMPLE_VOCABULARIES[name]]
            config = with_overrides(base, overrides)
            try:
                pipeline = Pipeline(config, clip=student_clip)
            except (ValueError, OSError) as exc:
                raise CliError(str(exc)) from None
            report['runs'][f'{name}_student'] = _replay(name, bag, config, pipeline, out / f'{name}_student',
                                                        progress)
            pipeline.close()
        report['student_model'] = str(model)
    report['labels'] = {
        'clip': f'teacher: open-vocabulary labels from {base.teacher.clip_model} '
                f'({base.teacher.clip_pretrained})',
        'random': 'teacher: labels from RANDOM CLIP weights: the pipeline runs end to end, the labels mean '
                  'nothing',
        'geometry-only': 'teacher: no CLIP weights, geometry only (visibility, instances, occupancy, '
                         'voxels); '
                         'every label is "unknown"',
    }[report['mode']]
    if not args.no_student:
        report['labels'] += ('; student: a fresh UNTRAINED student (ONNX Runtime, as student_node runs it): '
                             'its '
                             'labels mean nothing until it is trained with ovp train')
    summary_path = out / 'summary.json'
    tmp = summary_path.with_name('.summary.json.tmp')
    tmp.write_text(json.dumps(report, indent=2) + '\n', encoding='utf-8')
    tmp.replace(summary_path)
    _print_report(report, summary_path)
    return 0


def _print_report(report: dict[str, Any], summary_path: Path) -> None:
    width = shutil.get_terminal_size((100, 20)).columns
    print('=' * min(width, 100))
    print(f'ovp demo: {report["labels"]}')
    for name, info in report['runs'].items():
        total = info['latency_ms_p50'].get('total')
        print(f'  {name:14s} {info["frames"]} frames -> {info["output"]}  '
              f'({info["frames_per_s"]} frames/s, p50 {total} ms/frame)')
        for png in info['overlay_pngs'][:1]:
            print(f'                 overlay {png}')
    if report['weights_help']:
        print('\nTo get open-vocabulary labels, supply CLIP weights:\n  ' + report['weights_help'])
        print('  (or exercise the pipeline with random weights, labels meaningless: '
              'ovp demo --clip-model ovp-tiny --clip-pretrained none)')
    print(f'summary: {summary_path}')
