"""``python -m src.data``: see :mod:`src.data.cli`."""

import sys

from src.data.cli import main

sys.exit(main())
