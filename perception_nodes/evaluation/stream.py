"""The frames of a bag through a pipeline: the loop ``ovp replay`` runs, as an iterator (one path).

:func:`processed_frames` is the loop of :func:`perception_nodes.replay.replay_bag` without the writer:
the bag's synchronized sets (:class:`~perception_nodes.io.bag_source.BagSource`) through the bag's one
:class:`~perception_nodes.assembly.FrameAssembler` and :meth:`Pipeline.process`; a frame the assembler
refuses is skipped by the assembler (counted in ``stats`` with its reason), a frame whose processing
raises costs that frame only (``frame_failed``), as in replay. A truncated or corrupted bag raises
``BagError`` after every readable frame was yielded.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator

from perception_nodes import stats as reasons
from perception_nodes.frame import Frame
from perception_nodes.io.bag_source import BagSource
from perception_nodes.outputs import Outputs


@dataclass
class ProcessedFrame:
    """One frame of a bag and what the pipeline made of it."""

    index: int                 # position of the cloud in the bag
    frame: Frame
    outputs: Outputs


def processed_frames(source: BagSource, pipeline: Any, max_frames: int = 0, raw_topics: tuple[str, ...] = (),
                     on_raw: Callable[[str, str, Any, int], None] | None = None) -> Iterator[ProcessedFrame]:
    """Yield each processed frame of ``source`` (module docstring); at most ``max_frames`` (0 = all)."""
    assembler = source.assembler()
    done = 0
    for index, synced in source.synced_sets(raw_topics, on_raw):
        if max_frames and done >= max_frames:
            break
        where = f'{source.path.name} cloud {index}'
        frame = assembler.assemble(synced, index, where)
        if frame is None:
            continue
        try:
            outputs = pipeline.process(frame)
        except Exception as exc:  # noqa: BLE001  (one frame's failure costs that frame only)
            source.stats.count(reasons.FRAME_FAILED, problem=f'{type(exc).__name__}: {exc}', where=where)
            continue
        done += 1
        yield ProcessedFrame(index, frame, outputs)


__all__ = ['ProcessedFrame', 'processed_frames']
