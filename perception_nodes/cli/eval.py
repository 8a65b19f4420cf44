"""``ovp eval``: score a labeller on bags with ground truth, or compare two reports (``--compare A B``).

``ovp eval BAG... --out REPORT_DIR [--labeller teacher|student|ensemble|none] [--student PATH]`` streams each
bag through the pipeline (``perception_nodes.evaluation.evaluate_bags``) and writes ``report.json``,
``report.md`` and PNGs to REPORT_DIR; a rerun reuses every bag already completed with the same settings.
Settings: ``--config FILE`` and the pipeline flags as for ``ovp replay`` (``--set KEY=VALUE`` for any key);
``--retrieval`` / ``--queries`` turn on ``outputs.embeddings``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from perception_nodes.cli.main import CliError
from perception_nodes.cli.replay import add_input_arguments, add_pipeline_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('bags', nargs='*', metavar='BAG',
                        help='bags with per-point ground truth (label / instance fields)')
    parser.add_argument('--out', required=True, help='report folder (report.json, report.md, PNGs, per-bag '
                                                     'state for resuming)')
    parser.add_argument('--compare', nargs=2, metavar=('A', 'B'), help='compare two reports (report.json or '
                                                                       'their folders) instead; B - A')
    add_pipeline_arguments(parser)
    add_input_arguments(parser)
    parser.add_argument('--label-map', help='ground-truth ids -> classes: semantickitti, scannet20, '
                                            'scannet200, nuscenes or a YAML file (default: the one named '
                                            'like the vocabulary, else the vocabulary\'s ids)')
    parser.add_argument('--split', help='seen / unseen split for hIoU (Affinity3D Eq. 21): "affinity3d", '
                                        '"none", or the unseen classes "a,b,c" (default: affinity3d for '
                                        'semantickitti, none otherwise)')
    parser.add_argument('--class-counts', help='head / common / tail from class counts when the label map '
                                               'has no official split: a YAML/JSON {class: count} file, or '
                                               '"gt"')
    parser.add_argument('--front-view', action='store_true',
                        help='headline numbers on the points inside a camera\'s field of view (Affinity3D); '
                             'both protocols are always reported')
    parser.add_argument('--metrics', help='comma-separated subset of semantic,occupancy,retrieval,instances '
                                          '(default all)')
    parser.add_argument('--retrieval', action='store_true', help='keep point features (outputs.embeddings) '
                                                                 'for the retrieval AP')
    parser.add_argument('--queries', help='retrieval query YAML (default: queries.yaml beside the bag, else '
                                          'one query per class); implies --retrieval')
    parser.add_argument('--masks', help='.npz of class-agnostic instance masks to score too: "masks" (M, N) '
                                        'bool, "scores" (M,) (e.g. UnScene3D pseudo masks)')
    parser.add_argument('--instance-score', choices=('size', 'uniform', 'label_score'),
                        help='confidence of a pipeline segment for instance AP (default size)')
    parser.add_argument('--bev-frames', type=int, help='bird\'s-eye renders per bag (default 2)')
    parser.add_argument('--restart', action='store_true', help='ignore saved per-bag state (redo every bag)')
    parser.add_argument('--quiet', action='store_true', help='no progress bar')


def _options(args: argparse.Namespace):
    from perception_nodes.evaluation import EvalOptions, parse_metrics, parse_split
    kwargs = {}
    if args.bev_frames is not None:
        kwargs['bev_frames'] = args.bev_frames
    if args.instance_score:
        kwargs['instance_score'] = args.instance_score
    return EvalOptions(label_map=args.label_map, unseen=parse_split(args.split),
                       class_counts=args.class_counts, front_view=args.front_view,
                       metrics=parse_metrics(args.metrics), queries=args.queries, masks=args.masks,
                       resume=not args.restart, progress=not args.quiet, **kwargs)


def _compare(args: argparse.Namespace) -> int:
    from perception_nodes.evaluation import compare_reports, format_comparison, load_report, write_comparison
    if args.bags:
        raise CliError('--compare takes two reports and no bags')
    try:
        cmp = compare_reports(load_report(args.compare[0]), load_report(args.compare[1]))
    except (OSError, ValueError, KeyError) as exc:
        raise CliError(str(exc)) from None
    print(format_comparison(cmp), end='')
    paths = write_comparison(args.out, cmp)
    print(f'wrote {", ".join(paths.values())}')
    return 0


def run(args: argparse.Namespace) -> int:
    if args.compare:
        return _compare(args)
    from perception_nodes.cli.replay import build_config, build_pipeline, check_bag
    from perception_nodes.evaluation import MissingTruthError, check_bag_truth, evaluate_bags
    from perception_nodes.io.bags import BagError
    if not args.bags:
        raise CliError('give at least one BAG (or --compare A B)')
    if args.queries:
        args.retrieval = True
    if args.retrieval:
        args.set = list(args.set or []) + ['outputs.embeddings=true']
    try:
        options = _options(args)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    config = build_config(args)
    for path in (options.queries, options.masks):
        if path and not Path(path).is_file():
            raise CliError(f'file not found: {path}')
    for bag in args.bags:
        check_bag(bag, config)
        try:
            check_bag_truth(bag, config.inputs)
        except MissingTruthError as exc:
            raise CliError(str(exc)) from None
    pipeline = build_pipeline(config)
    try:
        report = evaluate_bags(args.bags, pipeline, args.out, options, config)
    except (BagError, ValueError, OSError) as exc:
        raise CliError(str(exc)) from None
    finally:
        pipeline.close()
    h = report['headline']
    print(json.dumps({k: v for k, v in h.items() if v is not None}, indent=2))
    resumed = [b['path'] for b in report['bags'].values() if b['resumed']]
    if resumed:
        print(f'reused the saved state of {len(resumed)} completed bag(s): {", ".join(resumed)}')
    print(f'report: {Path(args.out) / "report.md"} (every number in {Path(args.out) / "report.json"})')
    if report['header']['meaningless']:
        print(f'NOTE: labels MEANINGLESS: {report["header"]["meaningless"]}')
    if report['header'].get('retrieval_note') and 'retrieval' in options.metrics and args.retrieval:
        print(f'NOTE: retrieval skipped: {report["header"]["retrieval_note"]}')
    return 0
