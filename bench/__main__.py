"""python -m bench: the whole benchmark in one command (see bench/run.py)."""

import sys

from .run import main

sys.exit(main())
