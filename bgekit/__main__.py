"""``python -m bgekit``: the same command line as ``bgekit``."""
import sys

from bgekit.cli import main

sys.exit(main())
