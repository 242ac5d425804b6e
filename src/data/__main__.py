"""``python -m src.data``: see :mod:`src.data.cli`."""

import sys

from src.data.cli import main
from src.shutdown import skip_final_collections

skip_final_collections()
sys.exit(main())
