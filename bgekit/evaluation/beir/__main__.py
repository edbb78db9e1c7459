"""``python -m bgekit.evaluation.beir`` (and ``torchrun -m``): BEIR evaluation with FlagEmbedding's arguments."""
import sys

from bgekit.evaluation.cli import main

if __name__ == "__main__":
    sys.exit(main("beir"))
