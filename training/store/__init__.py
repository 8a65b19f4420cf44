"""The pseudo-label store: ``ovp pseudo-label`` (bags -> shards on the one perception path) and its Dataset.

One module per job (README.md in this folder describes the command, the files and the sample fields):

- :mod:`~training.store.config`: the method config (``key``-declared; the sections are training.pseudo's).
- :mod:`~training.store.teachers`: the perception pipeline set up for pseudo-labelling, the teacher identity.
- :mod:`~training.store.plan`: bags, units (frames or scenes), chunks and which rank makes which.
- :mod:`~training.store.scenes`: K sweeps accumulated with their tf poses, voxel-downsampled.
- :mod:`~training.store.labeling`: one chunk's units through the methods, from the pipeline's outputs.
- :mod:`~training.store.shards`: hashes, folder layout, safetensors shards and their checksummed records.
- :mod:`~training.store.build`: the rank loop (resume, skips, progress), worker processes.
- :mod:`~training.store.index`: index.json and summary.json, merged from the chunk records.
- :mod:`~training.store.dataset`: :class:`~training.store.dataset.PseudoLabelDataset` and ``StoreMetadata``
  (the index as the store records it; ``reader.trainer_info`` maps it to the trainer's
  ``training.data.StoreInfo``).
- :mod:`~training.store.cli`: the command line (``ovp pseudo-label``, ``python -m training.store``).
"""
