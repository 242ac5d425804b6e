"""What every study shares: the Study record, verdicts and the rules' row helpers, the report's document types.

A study (one module of this package, see `src/studies/__init__.py`) states a claim of the source articles and
turns its numbers into a :class:`Verdict`: confirmed, refuted or nuanced, with a reason quoting the numbers.

Why rules in code: a report that says "confirmed" because someone looked at a plot is not reproducible. Each rule
is a small pure function over a grid's :class:`Results` (``results/<study>/runs.csv``, one row per job; and
``replicas.csv``, one row per replica, which the paired comparisons of `src/studies/compare.py` use) or over a
measured study's ``metrics.json``. Its docstring states the rule; the report prints it under "How verdicts are
computed". "Significantly better" means a paired test on per-seed differences, Holm-corrected over the verdict's
family of comparisons (src/lab/stats.py); one replica (the course-exact studies) is compared with the reference
cell by cell, never tested.

Job names are the comma-joined sweep overrides (``init.std=0.01,model.batchnorm=true``); :func:`parse_name`
splits them (brackets respected) so rules never depend on the order of the overrides.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONFIRMED, REFUTED, NUANCED, NO_DATA = "confirmed", "refuted", "nuanced", "no data"
Row = Mapping[str, Any]


@dataclass(frozen=True)
class Results:
    """A grid study's results folder, as its rules read it."""

    rows: Sequence[Row] = ()  # runs.csv: one row per job (means and CIs over its replicas)
    replicas: Sequence[Row] = ()  # replicas.csv: one row per replica (seed, lr, role, final metrics)
    tuning: Sequence[Row] = ()  # tuning.csv: one row per job and learning rate (with tune.enabled)
    metrics: Mapping[str, Any] = field(default_factory=dict)  # metrics.json

    @staticmethod
    def of(x: Results | Sequence[Row] | None) -> Results:
        """`x` as Results (a plain list is the runs.csv rows: what the older rules and many tests pass)."""
        return x if isinstance(x, Results) else Results(rows=list(x or []))


@dataclass(frozen=True)
class Verdict:
    claim: str
    verdict: str  # one of CONFIRMED, REFUTED, NUANCED, NO_DATA
    reason: str


@dataclass(frozen=True)
class Table:
    """A table of the report (rendered as Markdown and HTML by src/report)."""

    head: list[str]
    rows: list[list[str]]


@dataclass
class Section:
    """One study's part of the report: title, verdicts, notes, tables and figures (PNG files)."""

    study: str
    title: str
    verdicts: list[Verdict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    tables: list[tuple[str, Table]] = field(default_factory=list)
    figures: list[tuple[str, Path]] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)  # how each verdict is computed (the rules' docstrings)


@dataclass(frozen=True)
class Study:
    """One study: its name (= its module, its preset, its results/<name>/ folder), its title in the report, and
    what turns its results into verdicts and a report section.

    A *grid* study is a Hydra preset, `conf/experiment/<name>.yaml`, run by the DVC stage `train@<name>`; its rules
    take the rows of runs.csv. A *measured* study has no grid: `measure(argv)` is its CLI
    (`python -m src.studies <name> --out results/<name>`, the DVC stage `<name>`); its rules take metrics.json.
    """

    name: str
    title: str
    order: int  # reading order in the report (unregistered result folders come after, by name)
    rules: tuple[Callable[[Any], Verdict], ...] = ()
    measure: Callable[[list[str]], int] | None = None
    # the report section; None: the grid section (jobs table, leaderboard, curves; src/studies/sections.py)
    section: Callable[[Study, Path, Path], Section] | None = None
    in_pipeline: bool = True  # False: a preset only, not a stage of dvc.yaml (e.g. s3_decay)

    @property
    def grid(self) -> bool:
        return self.measure is None

    @property
    def stage(self) -> str:
        """Its DVC stage in dvc.yaml."""
        return f"train@{self.name}" if self.grid else self.name

    def judge(self, rows: Sequence[Row] | Results | None, metrics: Mapping[str, Any] | None) -> list[Verdict]:
        """The verdicts of its rules: a grid's rules get :class:`Results` (`rows` may already be one), a measured
        study's its metrics.json."""
        if self.grid:
            res = rows if isinstance(rows, Results) else Results(list(rows or []), metrics=dict(metrics or {}))
            return [rule(res) for rule in self.rules]
        return [rule(dict(metrics or {})) for rule in self.rules]


# ------------------------------------------------------------------------------------- helpers for the rules


def parse_name(name: str) -> dict[str, str]:
    """``"a=1,b=[2,3]"`` -> ``{"a": "1", "b": "[2,3]"}`` (commas inside brackets or quotes do not split)."""
    out: dict[str, str] = {}
    depth, quote, cur = 0, "", ""
    parts: list[str] = []
    for ch in str(name or ""):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        cur += ch
    parts.append(cur)
    for p in parts:
        p = p.strip()
        if "=" in p:
            k, v = p.split("=", 1)
            out[k.strip().lstrip("+~")] = v.strip()
    return out


def value(row: Row | None, key: str) -> float:
    """`row[key]` as a float (NaN when missing or not a number)."""
    if row is None:
        return math.nan
    try:
        return float(row.get(key, math.nan))
    except (TypeError, ValueError):
        return math.nan


def ok(row: Row | None) -> bool:
    """A usable job: present, not failed, with a finite test accuracy."""
    return row is not None and str(row.get("status", "finished")) != "failed" and math.isfinite(value(row, "test_acc"))


def better(a: Row | None, b: Row | None, key: str = "test_acc") -> bool:
    """a's mean is above b's and their 95% CIs do not overlap."""
    if not (ok(a) and ok(b)):
        return False
    ci_a = value(a, f"{key}_ci95") if math.isfinite(value(a, f"{key}_ci95")) else 0.0
    ci_b = value(b, f"{key}_ci95") if math.isfinite(value(b, f"{key}_ci95")) else 0.0
    return value(a, key) - ci_a > value(b, key) + ci_b


def find(rows: Sequence[Row], **match: str | Sequence[str]) -> Row | None:
    """The first row whose parsed name has every `key=value` (a value may be a list of accepted values).
    Keys use ``__`` for dots (``train__patience="null"``)."""
    for r in rows:
        ov = parse_name(str(r.get("name", "")))
        if all(ov.get(k.replace("__", ".")) in ([v] if isinstance(v, str) else list(v)) for k, v in match.items()):
            return r
    return None


def acc(row: Row | None) -> str:
    """Its test accuracy as '0.943 ± 0.012' (for verdict reasons)."""
    if row is None:
        return "n/a"
    ci = value(row, "test_acc_ci95")
    return f"{value(row, 'test_acc'):.3f} ± {ci:.3f}" if math.isfinite(ci) else f"{value(row, 'test_acc'):.3f}"


def missing(claim: str, what: str) -> Verdict:
    """The NO_DATA verdict: `what` the rule needs is not in the results."""
    return Verdict(claim, NO_DATA, f"no usable job for {what}")


NULL = ("null", "none", "None", "~", "")


def truthy(v: str | None) -> bool | None:
    """An override value as a bool (None when absent)."""
    if v is None:
        return None
    return v.lower() in ("true", "1", "yes", "on")


def metric(m: Mapping[str, Any], key: str) -> float:
    """`m[key]` of a metrics.json as a float (NaN when missing or not a number)."""
    try:
        return float(m.get(key, math.nan))
    except (TypeError, ValueError):
        return math.nan


def tally(claim: str, checks: Mapping[str, bool]) -> Verdict:
    """Confirmed when every check holds, refuted when at most half do, nuanced in between."""
    passed = [k for k, v in checks.items() if v]
    failed = [k for k, v in checks.items() if not v]
    text = f"{len(passed)}/{len(checks)} checks hold" + (f"; failing: {'; '.join(failed)}" if failed else "")
    if not failed:
        return Verdict(claim, CONFIRMED, text)
    if len(passed) <= len(checks) / 2:
        return Verdict(claim, REFUTED, text)
    return Verdict(claim, NUANCED, text)
