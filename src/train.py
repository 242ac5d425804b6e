"""`python -m src.train`: one Hydra job trains R replicas of one configured net and tracks it in MLflow.

Thin glue on purpose: the config schema is in `src/lab/config.py`, the pre-flight check of a whole sweep in
`src/lab/preflight.py`, a job in `src/lab/job.py`, a packed job (the default `hydra/sweeper=vectorized`) in
`src/lab/packing.py`, the maths in `src/nn/`.

    python -m src.train                                  # one run on the defaults (moons, he, adam)
    python -m src.train -m init=zeros,xavier,he optimizer=sgd,adam   # a 6-config grid (2 packed jobs)
    python -m src.train -m experiment=default            # a study preset with its own grid
"""

from __future__ import annotations

import os
import sys

import hydra
from omegaconf import DictConfig

from src.lab.config import register

register()


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float:
    """One Hydra job: a packed one (several configs, from the vectorized sweeper) or an ordinary one."""
    from src.lab import job, packing, signals

    ctx = job.context()
    if signals.new_jobs_stopped(ctx.sweep_dir):  # a worker of this sweep died: the sweep is stopping
        return float("nan")
    signals.shield_idle_worker()  # a signal between jobs must not kill a worker handing its result to loky
    with signals.interrupts(), signals.job_running(ctx.out_dir):
        try:
            if cfg.get(packing.PACK_KEY):
                return packing.run_packed(cfg)
            return job.run_job(cfg, ctx)
        except KeyboardInterrupt:
            if ctx.multirun:  # in a worker: every record is written; stop the whole sweep through its launcher
                signals.hand_over_to_launcher()
            raise
        except Exception as exc:
            # A single run's failure was already said in one line (and recorded): exit 1 without Hydra's traceback
            # (HYDRA_FULL_ERROR=1 still shows it). An unexpected bug keeps its traceback.
            if getattr(exc, "nnlab_reported", False) and os.environ.get("HYDRA_FULL_ERROR") != "1":
                raise SystemExit(1) from None
            raise


def preload(cfg: DictConfig) -> None:
    """Import what every job of this sweep will import, once, in a launcher that forks its jobs
    (`hydra/launcher=cores`, src/lab/fork_launcher.py): each forked job then starts with it, where it would import
    it again (matplotlib's pyplot alone ~0.3 s per job, measured by py-spy in s6_preproc's eight jobs)."""
    from src.lab import artifacts, job, packing, signals  # noqa: F401

    if cfg.tracking.enabled and cfg.tracking.artifacts and cfg.tracking.figures:
        import matplotlib.pyplot  # noqa: F401


def cli(argv: list[str] | None = None) -> None:
    """Validate every job of the requested run or sweep first (one-line errors), then hand over to Hydra."""
    from src.lab import sweep
    from src.lab.preflight import preflight
    from src.lab.tracking import describe_studies_with
    from src.shutdown import skip_final_collections
    from src.studies import description

    skip_final_collections()
    preflight(sys.argv[1:] if argv is None else argv)
    describe_studies_with(description)  # a study's claims become its MLflow experiment's description
    try:
        main()
    except sweep.SweepAborted as exc:
        print(f"nnlab: error: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)
    except KeyboardInterrupt:
        # Runs were already ended KILLED with their history (src/lab/job.py, src/lab/sweep.py): say so in one line.
        print("nnlab: interrupted: unfinished runs are recorded as KILLED; re-run the same command with "
              "resume=true to finish the sweep", file=sys.stderr, flush=True)
        sys.exit(130)
    if sweep.OUTCOME.get("failed"):
        print(f"nnlab: error: {sweep.OUTCOME['failed']} of {sweep.OUTCOME['jobs']} jobs FAILED (their errors are in "
              "the leaderboard above and in the sweep's runs.csv)", file=sys.stderr, flush=True)
        sys.exit(1)


if __name__ == "__main__":
    cli()
