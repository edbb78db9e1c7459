"""``python -m bgekit.evaluation.mkqa`` (and ``torchrun -m``): MKQA evaluation with FlagEmbedding's arguments."""
import sys

from bgekit.evaluation.cli import main

if __name__ == "__main__":
    sys.exit(main("mkqa"))
