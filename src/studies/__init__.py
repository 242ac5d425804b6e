"""The studies: one module per claim of the source articles, found through one registry.

A study module holds everything about its claim: what it measures (for a study without a Hydra grid), the claim,
the rule that turns its numbers into a verdict, and its section of the report. Each module defines
``STUDY = Study(...)`` (`src/studies/base.py`); :func:`all_studies` finds them with `pkgutil`, so nothing else
lists them. Helper modules (``base``, ``sections``) define no STUDY.

Add a study:
1. write ``src/studies/<name>.py`` with its claim, a ``verdict(rows)`` rule and ``STUDY = Study("<name>", title,
   order=..., rules=(verdict,))``;
2. for a grid study, write the preset ``conf/experiment/<name>.yaml`` (only what differs from conf/config.yaml,
   plus ``hydra.sweeper.params``); for a measured study, give ``Study(measure=main)`` its CLI instead;
3. add ``<name>`` to the ``foreach`` of the train stage in ``dvc.yaml`` (a measured study: a stage ``<name>``
   running ``python -m src.studies <name> --out results/<name>``).
tests/test_registry.py checks that every registered study has its preset and its stage, and says what is missing.
"""

from __future__ import annotations

import importlib
import pkgutil

from src.studies.base import Study

_HELPERS = ("base", "sections", "compare", "tuned")


def all_studies() -> dict[str, Study]:
    """Every registered study by name, in the report's reading order."""
    found: dict[str, Study] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_") or info.name in _HELPERS:
            continue
        study = getattr(importlib.import_module(f"{__name__}.{info.name}"), "STUDY", None)
        if isinstance(study, Study):
            if study.name != info.name:
                raise ValueError(f"src/studies/{info.name}.py registers STUDY.name={study.name!r}; "
                                 f"a study's name is its module's name ({info.name!r})")
            found[study.name] = study
    return dict(sorted(found.items(), key=lambda kv: (kv[1].order, kv[0])))


def description(name: str) -> str | None:
    """A registered study's title and claims, as Markdown: its MLflow experiment's description (None otherwise)."""
    study = all_studies().get(name)
    if study is None:
        return None
    claims = "".join(f"- {v.claim}\n" for v in study.judge([], {}))
    where = (f"Preset `conf/experiment/{name}.yaml`" if study.grid else f"`python -m src.studies {name}`")
    return f"**{study.title}**\n\n{claims}\n{where}; results in `results/{name}/`; verdict in `reports/index.html`."


def get(name: str) -> Study:
    """The study `name`; a one-line KeyError naming the registered ones otherwise."""
    studies = all_studies()
    if name not in studies:
        raise KeyError(f"unknown study {name!r}; registered: {', '.join(studies)}")
    return studies[name]
