"""``torchrun [--nproc_per_node N] -m bgekit.finetune.embedder.encoder_only.m3 ARGS`` (or ``python -m``), FlagEmbedding's arguments."""
import sys

from bgekit.finetune.cli import main

if __name__ == "__main__":
    sys.exit(main("embedder.encoder_only.m3"))
