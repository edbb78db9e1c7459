"""``python -m bgekit.evaluation.msmarco`` (and ``torchrun -m``): MS MARCO evaluation with FlagEmbedding's arguments."""
import sys

from bgekit.evaluation.cli import main

if __name__ == "__main__":
    sys.exit(main("msmarco"))
