"""``python -m bgekit.evaluation.mldr`` (and ``torchrun -m``): MLDR evaluation with FlagEmbedding's arguments."""
import sys

from bgekit.evaluation.cli import main

if __name__ == "__main__":
    sys.exit(main("mldr"))
