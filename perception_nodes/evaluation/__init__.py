"""``ovp eval``: score any labeller on recorded bags with the metrics the seed papers report.

One module per job:

- :mod:`.options`: :class:`EvalOptions` (what is measured and how) and the CLI spec parsers;
- :mod:`.stream`: the frames of a bag through the one pipeline path (bag source -> frame assembler ->
  ``Pipeline.process``), as an iterator;
- :mod:`.truth`: ground truth from the frames (label map, instances, field of view, ray-cast voxels);
- :mod:`.queries`: retrieval queries (YAML beside the bag, or one per class);
- :mod:`.scoring`: per-frame scoring into the ``perception_nodes.metrics`` accumulators, their state;
- :mod:`.summary`: numbers, protocols and splits from the accumulators; the headline;
- :mod:`.runner`: :func:`evaluate_bags` (resumable per bag) and the report folder;
- :mod:`.report`, :mod:`.figures`, :mod:`.bev`: report.json / report.md, the PNGs, bird's-eye renders;
- :mod:`.compare`: two reports side by side (``ovp eval --compare``).

Function API (the demo calls it)::

    from perception_nodes.evaluation import EvalOptions, evaluate_bags
    report = evaluate_bags(['held_out_bag'], pipeline, 'report_dir', EvalOptions(front_view=True))
    report['headline']['miou']
"""
from __future__ import annotations

from perception_nodes.evaluation.compare import (compare_reports, format_comparison, load_report,
                                                 write_comparison)
from perception_nodes.evaluation.options import EvalOptions, parse_metrics, parse_split
from perception_nodes.evaluation.runner import NoFramesEvaluatedError, evaluate_bags
from perception_nodes.evaluation.truth import MissingTruthError, check_bag_truth

__all__ = ['EvalOptions', 'MissingTruthError', 'NoFramesEvaluatedError', 'check_bag_truth', 'compare_reports',
           'evaluate_bags', 'format_comparison', 'load_report', 'parse_metrics', 'parse_split',
           'write_comparison']
