"""`python -m src.report`: see :mod:`src.report.build`."""

import sys

from src.report.build import main

sys.exit(main())
