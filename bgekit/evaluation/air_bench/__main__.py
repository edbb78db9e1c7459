"""``python -m bgekit.evaluation.air_bench`` (and ``torchrun -m``): AIR-Bench evaluation with FlagEmbedding's arguments."""
import sys

from bgekit.evaluation.cli import main

if __name__ == "__main__":
    sys.exit(main("air_bench"))
