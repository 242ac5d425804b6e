"""`python -m src` is `python -m src.train`."""

from src.train import cli

cli()
