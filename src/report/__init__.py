"""The report: `python -m src.report --results results --out reports` (the DVC stage `report`).

    build   walks the study registry over results/<study>/: each study's section (src/studies), the index
    render  those sections as one self-contained reports/index.html and one reports/<study>.md each
"""

from src.report.build import build, main

__all__ = ["build", "main"]
