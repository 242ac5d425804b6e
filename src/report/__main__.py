"""`python -m src.report`: see :mod:`src.report.build`."""

import sys

from src.report.build import main
from src.shutdown import skip_final_collections

skip_final_collections()
sys.exit(main())
