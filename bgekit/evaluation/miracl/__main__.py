"""``python -m bgekit.evaluation.miracl`` (and ``torchrun -m``): MIRACL evaluation with FlagEmbedding's arguments."""
import sys

from bgekit.evaluation.cli import main

if __name__ == "__main__":
    sys.exit(main("miracl"))
