"""``python -m bgekit.evaluation.mteb`` (and ``torchrun -m``): MTEB evaluation with FlagEmbedding's arguments."""
import sys

from bgekit.evaluation.cli import main

if __name__ == "__main__":
    sys.exit(main("mteb"))
