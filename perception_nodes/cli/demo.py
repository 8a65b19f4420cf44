"""``ovp demo``: the README's main job, the whole offline loop from bags to a trained student and its report.

Stages (each one's artefacts under ``DIR``; ``DIR/summary.json`` collects them):

1. ``inputs/``: synthetic-world bags with their ground truth (street sequences of
   :mod:`perception_nodes.geometry.sim.street`, 11 classes, ``--sim-cameras`` cameras, odom poses, truth
   rasters): ``train/`` (``--train-seqs`` streets, seeds 1, 2, ...) and ``heldout/`` (``--heldout-seqs``
   other streets, seeds 101, ...), ``--sim-frames`` sweeps each; and the KITTI raw sample bag
   (``kitti_bag``) when the shared data is present ($OVP_DATA).
2. ``store/``, ``store_heldout/``: ``ovp pseudo-label --teacher synthetic`` of the training bags (and of the
   held-out ones, to score the pseudo-labels themselves), with the methods the recipe needs.
3. ``train/``: ``ovp train`` of the deployable student (range_unet, proj_dim 64) with the ``--recipe``
   (default affinity3d without its training-only image branch; why: ``training/loop.py``) for
   ``--train-steps`` steps; ``train/student/`` is the checkpoint (with its trained vocabulary and text
   embeddings), ``train/summary.json`` the run (with the validation on the held-out store).
4. ``student.onnx``: ``ovp export`` of that checkpoint.
5. ``heldout_teacher/``, ``heldout_student/``: ``ovp replay`` of the first held-out bag with the synthetic
   teacher (``teacher.source: synthetic``) and with the student on ONNX Runtime
   (``labeller.text_source: student``: its own text embeddings, no CLIP); ``eval/teacher/``,
   ``eval/student/``: ``ovp eval`` of both on every held-out bag (report.json, report.md, PNGs). The
   student's grids and voxels come from the LiDAR geometry unless the recipe trains its occupancy head
   (pop3d). The
   summary's table puts side by side the mIoU of the pseudo-labels, the teacher and the student on all
   points, on the points a camera sees and on the points no camera sees.
6. ``kitti_teacher/`` (or ``kitti_geometry/``), ``kitti_student/``: the real KITTI bag through the 2D
   teacher with the configured CLIP when its weights are here (``--clip-pretrained PATH``), else geometry
   only (never invented labels; the demo says which file to place where), and through the student (its
   trained classes; flagged: trained on synthetic data).

The synthetic runs always use the ``street`` vocabulary (the truth rasters' class order); ``--vocabulary``
and the CLIP flags apply to the KITTI teacher run. Without CLIP weights every semantic number comes from
the synthetic teacher (CLIP-like mistakes made on the
synthetic world's ground truth), never from CLIP, and the summary says so. ``--no-student`` skips stages 2-4
and the student runs (a quick look at the teacher and the inputs).
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

from perception_nodes.cli.main import CliError, import_training
from perception_nodes.cli.replay import add_pipeline_arguments, build_config

DEFAULT_OUT = 'ovp-demo'
LOOP_ENTRY = 'training.loop'
SIM_VOCABULARY = 'street'
KITTI_VOCABULARY = 'semantickitti'
STEP_M = 1.5                      # ego motion per sweep of the synthetic streets (m)
SIM_IMAGE = (120, 400)            # synthetic camera images (H, W)
SIM_BEAMS = (32, 1024)            # synthetic LiDAR beams x azimuth steps
TRAIN_SEED0, HELDOUT_SEED0 = 1, 101
# the synthetic runs' settings: ~400 px wide images want 2-px depth-buffer cells
SIM_SETTINGS = {'fusion.visibility_block': 2}
SYNTHETIC_STATEMENT = ('Without CLIP weights the semantic numbers come from the SYNTHETIC teacher '
                       '(perception_nodes.teacher.oracle.ClipLikeTeacher: CLIP-like mistakes made on the '
                       "synthetic world's ground-truth rasters), not from CLIP.")
TABLE_ROWS = (('all points', 'all'), ('camera-visible points', 'visible'),
              ('camera-invisible points', 'invisible'))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--out', default=DEFAULT_OUT, help=f'output folder (default ./{DEFAULT_OUT})')
    add_pipeline_arguments(parser)
    parser.add_argument('--train-seqs', type=int, default=2, help='synthetic training streets (default 2)')
    parser.add_argument('--heldout-seqs', type=int, default=1, help='held-out synthetic streets (default 1)')
    parser.add_argument('--sim-frames', type=int, default=8, help='sweeps per synthetic street (default 8)')
    parser.add_argument('--sim-cameras', type=int, default=2, help='cameras of the synthetic car (default 2)')
    parser.add_argument('--kitti-frames', type=int, default=3, help='KITTI raw frames (default 3; 0 = skip)')
    parser.add_argument('--recipe', choices=('affinity3d', 'pop3d'), default='affinity3d',
                        help='training recipe (default affinity3d, without its image branch)')
    parser.add_argument('--train-steps', type=int, default=1000, help='training steps (default 1000)')
    parser.add_argument('--no-student', action='store_true', help='skip pseudo-labelling, training and the '
                                                                  'student (teacher and inputs only)')
    parser.add_argument('--quiet', action='store_true', help='no progress bars')


# ------------------------------------------------------------------------------------------------- inputs
def _sim_bags(folder: Path, seed0: int, count: int, args: argparse.Namespace, storage: str) -> list[Path]:
    import numpy as np

    from perception_nodes.geometry.sim.lidar import LidarBeamModel
    from perception_nodes.geometry.sim.street import street_sequence
    from perception_nodes.io.sample_bags import write_sim_bag

    bags = []
    for seed in range(seed0, seed0 + count):
        frames = street_sequence(seed, args.sim_frames, step=STEP_M, num_cameras=args.sim_cameras,
                                 image_size=SIM_IMAGE,
                                 beam_model=LidarBeamModel(n_beams=SIM_BEAMS[0], n_azimuth=SIM_BEAMS[1]))
        poses = []
        for i in range(len(frames)):
            pose = np.eye(4)
            pose[0, 3] = STEP_M * i                       # the ego drives STEP_M metres along x per sweep
            poses.append(pose)
        bag = folder / f'street{seed}'
        write_sim_bag(bag, frames, storage=storage, overwrite=True, truth=True, poses=poses)
        bags.append(bag)
    return bags


def _inputs(out: Path, args: argparse.Namespace, storage: str, say: Any) -> dict[str, Any]:
    from perception_nodes.io.kitti import shared_data_dir
    from perception_nodes.io.sample_bags import write_kitti_sample_bag

    inputs = out / 'inputs'
    inputs.mkdir(parents=True, exist_ok=True)
    found: dict[str, Any] = {'train': [], 'heldout': [], 'kitti': None}
    if args.sim_frames > 0:
        train = 0 if args.no_student else args.train_seqs
        say(f'building the synthetic-world bags: {train} training and {args.heldout_seqs} held-out '
            f'streets x {args.sim_frames} sweeps, {args.sim_cameras} cameras, with ground truth ...')
        found['train'] = _sim_bags(inputs / 'train', TRAIN_SEED0, train, args, storage)
        found['heldout'] = _sim_bags(inputs / 'heldout', HELDOUT_SEED0, args.heldout_seqs, args, storage)
    kitti = shared_data_dir() / 'kitti_raw_2011_09_26_seq'
    if args.kitti_frames > 0 and kitti.is_dir():
        say(f'building the KITTI raw sample bag from {kitti} ({args.kitti_frames} frames) ...')
        write_kitti_sample_bag(kitti, inputs / 'kitti_bag', max_frames=args.kitti_frames, storage=storage,
                               overwrite=True)
        found['kitti'] = inputs / 'kitti_bag'
    elif args.kitti_frames > 0:
        say(f'KITTI sample not found at {kitti} (set $OVP_DATA): synthetic bags only')
    return found


# ------------------------------------------------------------------------------------------------ helpers
def _pipeline(config: Any) -> Any:
    from perception_nodes.pipeline import Pipeline
    try:
        return Pipeline(config)
    except (ValueError, OSError) as exc:
        raise CliError(str(exc)) from None


def _teacher_pipeline(config: Any) -> tuple[Any, str, str | None]:
    """(pipeline, mode, weights help) of the CLIP teacher: mode 'clip', 'random' or 'geometry-only'."""
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


def _replay(bag: Path, pipeline: Any, out: Path, progress: bool) -> dict[str, Any]:
    from perception_nodes.replay import replay_bag
    try:
        result = replay_bag(bag, out, pipeline, pipeline.config, progress=progress, overwrite=True)
    except (ValueError, OSError) as exc:
        raise CliError(str(exc)) from None
    return {'input': str(bag), 'output': result['output'], 'labeller': result['labeller']['labeller'],
            'frames': result['frames'], 'frames_per_s': result['frames_per_s'],
            'labels_meaningful': result['labels_meaningful'], 'vocabulary': pipeline.class_names,
            'latency_ms_p50': {k: v.get('p50') for k, v in result['latency_ms'].items()},
            'summary_json': str(out / 'summary.json'), 'legend_png': result['legend_png'],
            'overlay_pngs': result['overlay_pngs'], 'notes': result['notes']}


def _evaluate(bags: list[Path], pipeline: Any, out: Path, progress: bool) -> dict[str, Any]:
    from perception_nodes.evaluation import EvalOptions, evaluate_bags
    options = EvalOptions(progress=progress, resume=False, metrics=('semantic', 'occupancy', 'instances'),
                          bev_frames=1)
    try:
        report = evaluate_bags(bags, pipeline, out, options)
    except (ValueError, OSError) as exc:
        raise CliError(str(exc)) from None
    h = report['headline']
    return {'report_json': str(out / 'report.json'), 'report_md': str(out / 'report.md'),
            'miou': {'all': h['miou_all_points'], 'visible': h['miou_visible'],
                     'invisible': h['miou_invisible'], 'front_view': h['miou_front_view']},
            'fraction_unknown': h['fraction_unknown'], 'frames': h['frames'],
            'frames_per_s': h['frames_per_s'], 'labels_meaningful': report['header']['labels_meaningful']}


def _loop_module() -> Any:
    return import_training(LOOP_ENTRY, 'the demo\'s training half (skip it with `ovp demo --no-student`)')


def _export(checkpoint: Path, onnx: Path) -> Path:
    from perception_nodes.student.checkpoint import load_checkpoint
    from perception_nodes.student.export import export_onnx
    try:
        model, _ = load_checkpoint(checkpoint)
        return export_onnx(model, onnx)
    except ValueError as exc:
        raise CliError(str(exc)) from None


def _student_settings(onnx: Path, report: dict[str, Any]) -> dict[str, Any]:
    """Return the student runs' settings: ONNX Runtime, own text embeddings, occupancy head if trained."""
    recipe = (report['stages'].get('train') or {}).get('recipe')
    return {'labeller.kind': 'student', 'labeller.student': str(onnx), 'labeller.backend': 'onnxruntime',
            'labeller.text_source': 'student',
            'grids.occupancy_source': 'student' if recipe == 'pop3d' else 'geometry'}


def _pct(value: float | None) -> str:
    return '   n/a' if value is None else f'{100 * value:6.1f}'


# ----------------------------------------------------------------------------------------------------- run
def run(args: argparse.Namespace) -> int:
    from perception_nodes.config import VocabularyConfig, with_overrides

    started = time.perf_counter()
    base = build_config(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    progress = not args.quiet
    say = print if progress else (lambda *a, **k: None)
    for name in ('train_seqs', 'heldout_seqs', 'sim_frames', 'sim_cameras', 'kitti_frames', 'train_steps'):
        if getattr(args, name) < 0:
            raise CliError(f'--{name.replace("_", "-")} must be >= 0')
    if not args.no_student and (args.sim_frames < 1 or args.train_seqs < 1 or args.heldout_seqs < 1
                                or args.train_steps < 1):
        raise CliError('the loop needs --sim-frames, --train-seqs, --heldout-seqs and --train-steps >= 1 '
                       '(or --no-student)')
    try:
        from perception_nodes.vocabulary import load_vocabulary
        load_vocabulary(base.vocabulary.classes)             # a bad --vocabulary fails before any work
    except (ValueError, OSError) as exc:
        raise CliError(str(exc)) from None
    vocabulary_given = args.vocabulary is not None or (
        args.config is not None and base.vocabulary.classes != VocabularyConfig().classes)
    seconds: dict[str, float] = {}
    import torch
    if base.runtime.torch_threads > 0:        # as the pipeline does: OpenMP collapses on small shared CPUs
        torch.set_num_threads(base.runtime.torch_threads)
    t = time.perf_counter()
    bags = _inputs(out, args, base.replay.storage, say)
    seconds['inputs'] = time.perf_counter() - t
    if not bags['heldout'] and bags['kitti'] is None:
        raise CliError('nothing to replay: --sim-frames is 0 and the KITTI sample is absent')
    report: dict[str, Any] = {'out': str(out), 'runs': {}, 'stages': {}, 'inputs': {
        'train_bags': [str(b) for b in bags['train']], 'heldout_bags': [str(b) for b in bags['heldout']],
        'kitti_bag': None if bags['kitti'] is None else str(bags['kitti'])}}
    sim = with_overrides(base, {'vocabulary.classes': [SIM_VOCABULARY], 'teacher.source': 'synthetic',
                                **SIM_SETTINGS})
    onnx = None
    if bags['heldout'] and not args.no_student:
        onnx = _train_stages(out, args, sim, bags, report, seconds, progress, say)
    if bags['heldout']:
        _heldout_stages(out, sim, onnx, bags['heldout'], report, seconds, progress, say)
    if bags['kitti'] is not None:
        _kitti_stages(out, base, onnx, bags['kitti'], vocabulary_given, report, seconds, progress, say)
    else:
        report['mode'], report['weights_help'] = None, None
    report['table'] = _table(report)
    report['labels'] = _labels_text(report, base, onnx is not None)
    report['synthetic_statement'] = SYNTHETIC_STATEMENT if report['mode'] != 'clip' else (
        'The synthetic-world numbers come from the synthetic teacher; the KITTI teacher run used CLIP '
        f'{base.teacher.clip_model} ({base.teacher.clip_pretrained}).')
    seconds['total'] = time.perf_counter() - started
    report['seconds'] = {k: round(v, 2) for k, v in seconds.items()}
    summary_path = out / 'summary.json'
    tmp = summary_path.with_name('.summary.json.tmp')
    tmp.write_text(json.dumps(report, indent=2) + '\n', encoding='utf-8')
    tmp.replace(summary_path)
    _print_report(report, summary_path)
    return 0


def _train_stages(out: Path, args: argparse.Namespace, sim: Any, bags: dict[str, Any], report: dict[str, Any],
                  seconds: dict[str, float], progress: bool, say: Any) -> Path:
    """Stages 2-4: pseudo-label store, training, ONNX export; returns the ONNX path."""
    loop = _loop_module()
    t = time.perf_counter()
    say(f'ovp pseudo-label --teacher synthetic: {len(bags["train"])} training bag(s) -> {out / "store"} ...')
    try:
        store = loop.make_store(bags['train'], out / 'store', sim, args.recipe, progress)
        say(f'ovp pseudo-label --teacher synthetic: {len(bags["heldout"])} held-out bag(s) -> '
            f'{out / "store_heldout"} (to score the pseudo-labels) ...')
        heldout = loop.make_store(bags['heldout'], out / 'store_heldout', sim, args.recipe, progress)
    except (ValueError, OSError, RuntimeError) as exc:
        raise CliError(f'pseudo-labelling failed: {exc}') from None
    seconds['pseudo_label'] = time.perf_counter() - t
    report['stages']['pseudo_label'] = {
        'store': str(out / 'store'), 'heldout_store': str(out / 'store_heldout'), 'units': store['units'],
        'heldout_units': heldout['units'], 'methods': sorted(store['methods']), 'teacher': store['teacher'],
        'ignored_fraction': {m: v.get('ignored_fraction') for m, v in store['methods'].items()
                             if 'ignored_fraction' in v}, 'store_hash': store['store_hash']}
    t = time.perf_counter()
    run_dir = out / 'train'
    if run_dir.exists():
        shutil.rmtree(run_dir)                              # a fresh run every time
    say(f'ovp train --config {args.recipe} ({args.train_steps} steps, deployable range student) -> '
        f'{run_dir} ...')
    errors = importlib.import_module('training.train')._errors()
    try:
        summary = loop.train_student(out / 'store', out / 'store_heldout', run_dir, args.recipe,
                                     args.train_steps, progress)
    except errors as exc:
        raise CliError(f'training failed: {exc}') from None
    seconds['train'] = time.perf_counter() - t
    val = summary.get('validation') or {}
    report['stages']['train'] = {
        'run': str(run_dir), 'checkpoint': summary['checkpoint'],
        'summary_json': str(run_dir / 'summary.json'),
        'recipe': args.recipe, 'steps': summary['steps'], 'train_seconds': summary['train_seconds'],
        'frames_per_s': summary['frames_per_s'], 'peak_rss_mb': summary['peak_rss_mb'],
        'validation': {k: {'miou': v.get('miou'), 'points': v.get('points')} for k, v in val.items()
                       if isinstance(v, dict) and 'miou' in v},
        'settings': loop.train_overrides(args.recipe, args.train_steps, progress)}
    t = time.perf_counter()
    onnx = _export(Path(summary['checkpoint']), out / 'student.onnx')
    seconds['export'] = time.perf_counter() - t
    report['stages']['export'] = {'onnx': str(onnx)}
    say(f'ovp export -> {onnx}')
    return onnx


def _heldout_stages(out: Path, sim: Any, onnx: Path | None, heldout: list[Path], report: dict[str, Any],
                    seconds: dict[str, float], progress: bool, say: Any) -> None:
    """Stage 5: replay and eval of the held-out synthetic bags, teacher and student."""
    from perception_nodes.config import with_overrides
    stage: dict[str, Any] = {}
    runs = [('teacher', with_overrides(sim, {'labeller.kind': 'teacher'}))]
    if onnx is not None:
        runs.append(('student', with_overrides(sim, _student_settings(onnx, report))))
    for who, config in runs:
        t = time.perf_counter()
        say(f'ovp replay + ovp eval --labeller {who} on the held-out synthetic bag(s) ...')
        pipeline = _pipeline(config)
        try:
            report['runs'][f'heldout_{who}'] = _replay(heldout[0], pipeline, out / f'heldout_{who}', progress)
            stage[who] = _evaluate(heldout, pipeline, out / 'eval' / who, progress)
        finally:
            pipeline.close()
        seconds[f'heldout_{who}'] = time.perf_counter() - t
    report['stages']['heldout'] = stage


def _kitti_stages(out: Path, base: Any, onnx: Path | None, kitti: Path, vocabulary_given: bool,
                  report: dict[str, Any], seconds: dict[str, float], progress: bool, say: Any) -> None:
    """Stage 6: the real KITTI bag through the CLIP teacher (or geometry only) and the student."""
    from perception_nodes.config import with_overrides
    t = time.perf_counter()
    config = dataclasses.replace(base, labeller=dataclasses.replace(base.labeller, kind='teacher'))
    if not vocabulary_given:
        config = with_overrides(config, {'vocabulary.classes': [KITTI_VOCABULARY]})
    pipeline, mode, weights_help = _teacher_pipeline(config)
    report['mode'], report['weights_help'] = mode, weights_help
    name = 'kitti_geometry' if mode == 'geometry-only' else 'kitti_teacher'
    what = 'geometry only (no CLIP weights)' if mode == 'geometry-only' else f'{mode} CLIP teacher'
    say(f'ovp replay of the real KITTI bag: {what} ...')
    try:
        report['runs'][name] = _replay(kitti, pipeline, out / name, progress)
    finally:
        pipeline.close()
    if onnx is not None:
        # the default vocabulary gives the student's trained classes (a given one must be a subset of them)
        pipeline = _pipeline(with_overrides(base, _student_settings(onnx, report)))
        say('ovp replay --labeller student of the real KITTI bag (trained on SYNTHETIC data) ...')
        try:
            info = _replay(kitti, pipeline, out / 'kitti_student', progress)
        finally:
            pipeline.close()
        info['flag'] = ('student trained on the SYNTHETIC world only: its labels on real KITTI frames show '
                        'the path running, they are not a measurement')
        report['runs']['kitti_student'] = info
    seconds['kitti'] = time.perf_counter() - t


def _table(report: dict[str, Any]) -> dict[str, Any]:
    """Return the teacher-vs-student table: mIoU of pseudo-labels, teacher, student on held-out frames."""
    held = report['stages'].get('heldout') or {}
    val = (report['stages'].get('train') or {}).get('validation') or {}
    pseudo = {'all': 'teacher', 'visible': 'teacher_visible', 'invisible': 'teacher_invisible'}
    rows = []
    for label, key in TABLE_ROWS:
        rows.append({'points': label, 'key': key,
                     'pseudo_labels': (val.get(pseudo[key]) or {}).get('miou'),
                     'teacher': (held.get('teacher') or {}).get('miou', {}).get(key),
                     'student': (held.get('student') or {}).get('miou', {}).get(key)})
    return {'rows': rows, 'columns': {
        'pseudo_labels': 'the store\'s pseudo-labels of the held-out frames (train/summary.json validation)',
        'teacher': 'the synthetic teacher through the pipeline (eval/teacher/report.json)',
        'student': 'the trained student on ONNX Runtime, its own text embeddings (eval/student/report.json)'},
        'frames': (held.get('teacher') or {}).get('frames')}


def _labels_text(report: dict[str, Any], base: Any, trained: bool) -> str:
    mode = report.get('mode')
    kitti = {
        None: '',
        'clip': f'KITTI teacher: open-vocabulary labels from CLIP {base.teacher.clip_model} '
                f'({base.teacher.clip_pretrained})',
        'random': 'KITTI teacher: labels from RANDOM CLIP weights: the pipeline runs end to end, the labels '
                  'mean nothing',
        'geometry-only': 'KITTI: no CLIP weights, geometry only (visibility, instances, occupancy, voxels); '
                         'every label is "unknown"',
    }[mode]
    sim = ('synthetic world: teacher = the SYNTHETIC CLIP-like teacher on ground-truth rasters (not CLIP)'
           + ('; student = trained from its pseudo-labels (ONNX Runtime, its own text embeddings)'
              if trained else ''))
    return '; '.join(p for p in (sim, kitti) if p)


def _print_report(report: dict[str, Any], summary_path: Path) -> None:
    width = min(shutil.get_terminal_size((100, 20)).columns, 100)
    print('=' * width)
    print(f'ovp demo: {report["labels"]}')
    st = report['stages']
    inputs = report['inputs']
    print(f'  inputs: {len(inputs["train_bags"])} training + {len(inputs["heldout_bags"])} held-out '
          f'synthetic bag(s) under {Path(report["out"]) / "inputs"}; '
          f'KITTI: {inputs["kitti_bag"] or "absent"}')
    if 'pseudo_label' in st:
        p = st['pseudo_label']
        print(f'  pseudo-label store: {p["store"]} ({p["units"]} frames; held-out {p["heldout_store"]})')
    if 'train' in st:
        tr = st['train']
        print(f'  trained student:    {tr["checkpoint"]} ({tr["recipe"]}, {tr["steps"]} steps, '
              f'{tr["train_seconds"]:.0f} s)')
    if 'export' in st:
        print(f'  ONNX student:       {st["export"]["onnx"]}')
    for name, info in report['runs'].items():
        total = info['latency_ms_p50'].get('total')
        print(f'  {name:18s} {info["frames"]} frames -> {info["output"]}  ({info["frames_per_s"]} frames/s, '
              f'p50 {total} ms/frame)')
    held = st.get('heldout') or {}
    for who, info in held.items():
        print(f'  eval {who:13s} {info["report_md"]}')
    table = report['table']
    if held:
        print(f'\nmIoU (%) on the held-out synthetic frames ({table["frames"]} frames):')
        print(f'  {"":26s}{"pseudo-labels":>14s}{"teacher":>10s}{"student":>10s}')
        for row in table['rows']:
            print(f'  {row["points"]:26s}{_pct(row["pseudo_labels"]):>14s}{_pct(row["teacher"]):>10s}'
                  f'{_pct(row["student"]):>10s}')
    print(f'\n{report["synthetic_statement"]}')
    if 'kitti_student' in report['runs']:
        print(f'KITTI student: {report["runs"]["kitti_student"]["flag"]}')
    if report.get('weights_help'):
        print('\nTo run the real teacher on KITTI, supply CLIP weights:\n  ' + report['weights_help'])
        print('  (ovp demo --clip-pretrained PATH; or exercise the path with random weights, labels '
              'meaningless: ovp demo --clip-model ovp-tiny --clip-pretrained none)')
    print(f'wall time {report["seconds"]["total"]:.0f} s; summary: {summary_path}')
