#!/usr/bin/env python
"""Train a model from a YAML config: the same as ``deepsphere train``.

    python scripts/train.py configs/quickstart.yaml [--set trainer.epochs=5] [--resume] [--out DIR]

Under torchrun (``torchrun --nproc_per_node=2 scripts/train.py CONFIG``) the processes share
the work (DistributedDataParallel); ``trainer.batch_size`` is the global batch.
"""
import sys

from deepsphere.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
