"""The lab: everything between a Hydra config and a recorded run. It knows no study (those are `src.studies`).

    config     the schema (what a user can vary), its ranges (`validate`), the kwargs for src.nn's factories
    preflight  every job of a run or sweep composed and checked before Hydra starts it (one-line errors)
    build      the one builder: a validated config -> dataset, net, optimizer, schedule, loop settings
    loop       `fit`: epochs × mini-batches over R replicas (early stopping, divergence, diagnostics)
    job        one Hydra job: build, train, record (result.json, MLflow child run, artifacts)
    packing    a packed job (`hydra/sweeper=vectorized`): several configs trained as one net, recorded apart
    sweeper    the vectorized sweeper (registered through hydra_plugins/nnlab_sweeper)
    sweep      the Hydra callback around a sweep: parent run, leaderboard, results_dir files
    results    runs.csv, metrics.json, curves.csv and the leaderboard a sweep leaves for DVC and the report
    tracking   the only module that imports MLflow
    signals    Ctrl-C / SIGTERM handling for jobs, sweeps and store creation
    records    a job's record, config hash, final metrics and CSVs
    artifacts  a run's files and figures
    stats      mean, std and 95% CI over replicas
    speed      process-level malloc tuning for the replica-batched loop

Imports point one way: the lab uses `src.nn`, `src.data`, `src.plots` and `src.files`, never `src.studies`,
`src.report` or the CLIs (tests/test_layout.py checks it).
"""
