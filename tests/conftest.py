"""Shared test setup, kept minimal: make ``import src`` work from a plain checkout (no install needed)."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
