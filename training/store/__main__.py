"""``python -m training.store``: ``ovp pseudo-label`` (torchrun-ready: ``torchrun ... -m training.store``)."""
import sys

from training.store.cli import main

sys.exit(main())
