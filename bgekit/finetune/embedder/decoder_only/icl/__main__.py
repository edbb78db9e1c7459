"""``torchrun [--nproc_per_node N] -m bgekit.finetune.embedder.decoder_only.icl ARGS`` (or ``python -m``), FlagEmbedding's arguments."""
import sys

from bgekit.finetune.cli import main

if __name__ == "__main__":
    sys.exit(main("embedder.decoder_only.icl"))
