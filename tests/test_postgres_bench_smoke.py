"""Keeps the tracking section of `python -m benchmarks.bench` working, on its SQLite case only (the servers are
exercised by tests/test_postgres_scaleout.py). No timing assertions: the section's figures are ratios measured in
one run on a shared machine; here only what it wrote is checked."""

from __future__ import annotations

import pytest

from benchmarks import tracking

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_tracking_section_writes_what_it_counts() -> None:
    res = tracking.bench_tracking(runs_per_writer=2, rounds=1, writers=(1, 2), stores=("sqlite",),
                                  job_args=("train.epochs=30", "train.seeds=1"))
    per_run = res["per_run"]
    assert per_run["metric_points"] > 0 and per_run["params"] > 0
    written = res["sqlite_written"]  # 1 writer x 2 runs + 2 writers x 2 runs, each with every point of the job
    assert written["runs"] == written["runs_expected"] == 6
    assert written["points"] == written["points_expected"] == 6 * per_run["metric_points"]
    assert set(res["cases"]) == {"sqlite/1", "sqlite/2"}
    assert res["cases"]["sqlite/1"]["vs_baseline"] == pytest.approx(1.0)
    rows = dict(tracking.rows(res))
    assert any("(baseline)" in v for v in rows.values())
