"""``python -m bgekit.cli``: the same as ``bgekit`` (and ``python -m bgekit``)."""
import sys

from bgekit.cli import main

sys.exit(main())
