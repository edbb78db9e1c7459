"""``python -m bgekit.evaluation.custom`` (and ``torchrun -m``): local-folder evaluation with FlagEmbedding's arguments."""
import sys

from bgekit.evaluation.cli import main

if __name__ == "__main__":
    sys.exit(main("custom"))
