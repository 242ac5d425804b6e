"""The card's default grid: moons and flower × zeros/xavier/he × SGD/Adam × clipping × early stopping.

48 configs of 5 replicas (`conf/experiment/default.yaml`, the DVC stage `train@default`). It registers no claim:
the report shows its numbers only (the grid section). A run without a preset (`python -m src.train`) is also
recorded under the study name `default`.
"""

from __future__ import annotations

from src.studies.base import Study

STUDY = Study("default", "Study default", order=1000)
