"""``python -m bgekit.evaluation.bright`` (and ``torchrun -m``): BRIGHT evaluation with FlagEmbedding's arguments."""
import sys

from bgekit.evaluation.cli import main

if __name__ == "__main__":
    sys.exit(main("bright"))
