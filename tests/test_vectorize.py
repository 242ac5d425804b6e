"""Grid vectorisation: a packed job computes exactly what the unpacked jobs compute, and records each config.

The maths test is the contract of src/lab/packing.py: configs that differ only in per-replica numbers (init and
its scale, lr, clipping threshold, patience, L2, seed) give the same final metrics and curves to 1e-12 whether
they run as separate jobs or as one net of n·S replicas.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from omegaconf import DictConfig, open_dict

from src import data
from src.lab import packing
from src.lab.config import to_container
from src.lab.loop import fit
from src.lab.preflight import compose

ROOT = Path(__file__).resolve().parents[1]
BASE = ["data=moons", "train.epochs=60", "train.seeds=2", "train.log_every=5", "tracking.enabled=false",
        "train.progress=false"]
VARIANTS = [
    ["init=he", "train.lr=0.05"],
    ["init=xavier", "train.lr=0.1", "train.clip_norm=0.5"],
    ["init=normal", "init.std=0.5", "train.patience=1", "train.seed=7"],
    ["init=zeros", "model.l2=0.01", "train.clip_value=0.01"],
    ["init=he", "train.lr=0.5", "train.patience=3", "train.clip_norm=2.0"],
]


def _compose(overrides: list[str]) -> DictConfig:
    return compose(overrides)


def _plain(cfg: DictConfig) -> dict[str, Any]:
    return to_container(cfg)


@pytest.fixture(scope="module")
def ds() -> data.Dataset:
    return data.make("moons", n_samples=200)


def test_group_key_packs_per_replica_numbers_only() -> None:
    cfgs = [_plain(_compose(BASE + v)) for v in VARIANTS]
    keys = {packing.group_key(c) for c in cfgs if c["train"]["patience"] is None}
    assert len(keys) == 1 and None not in keys
    stopping = {packing.group_key(c) for c in cfgs if c["train"]["patience"] is not None}
    assert len(stopping) == 2 and not stopping & keys  # patience 1 and 3: each patience packs apart
    same_patience = [["init=he", "train.lr=0.5", "train.patience=3"],
                     ["init=xavier", "train.lr=0.1", "train.patience=3", "train.clip_norm=2.0", "train.seed=4"]]
    assert len({packing.group_key(_plain(_compose(BASE + v))) for v in same_patience}) == 1
    assert packing.group_key(_plain(_compose(BASE + ["optimizer=sgd"]))) not in keys  # another update rule
    assert packing.group_key(_plain(_compose(BASE + ["train.seeds=3"]))) not in keys  # another R per config
    assert packing.group_key(_plain(_compose(BASE + ["data=flower"]))) not in keys
    assert packing.group_key(_plain(_compose(BASE + ["init.course=true"]))) is None  # a fixed draw: alone


@pytest.mark.parametrize("sizes, workers", [([10], 1), ([10], 2), ([10], 3), ([10], 5), ([10], 12), ([6, 2], 4),
                                            ([3, 3, 1], 2), ([1, 1], 4), ([], 3), ([7, 1, 4], 6)])
def test_spread_splits_packs_into_near_equal_parts_for_idle_workers(sizes: list[int], workers: int) -> None:
    """`packing.spread` gives an idle worker a part of a pack: every config stays, once, in order, inside its own
    pack's parts; parts of one pack differ by at most one config; the count is what keeps the workers busy."""
    packs = [[(g, c) for c in range(n)] for g, n in enumerate(sizes)]
    out = packing.spread(packs, workers)
    assert [x for part in out for x in part] == [x for pack in packs for x in pack]
    assert all(part and len({g for g, _ in part}) == 1 for part in out)
    assert len(out) == max(len(packs), min(workers, sum(sizes)))
    for g in range(len(sizes)):
        lengths = [len(part) for part in out if part[0][0] == g]
        assert max(lengths) - min(lengths) <= 1
    if sizes == [10] and workers == 3:
        assert [len(part) for part in out] == [4, 3, 3]


def test_pack_override_round_trip() -> None:
    cfgs = [_compose(BASE + v) for v in VARIANTS]
    hydra_escaped = "tracking.uri=sqlite\\:////tmp/x.db"  # how Hydra itself spells a ':' in an override string
    entries = [packing.pack_entry(i, BASE + v + [hydra_escaped], _plain(c))
               for i, (v, c) in enumerate(zip(VARIANTS, cfgs, strict=True))]
    override = packing.encode(entries)
    assert override.startswith("+pack='")
    job_cfg = _compose(BASE + VARIANTS[0] + [override])  # Hydra's own parser reads it back
    got_entries, subs = packing.sub_configs(job_cfg)
    assert [e["num"] for e in got_entries] == list(range(len(VARIANTS)))
    assert got_entries[0]["overrides"][-1] == hydra_escaped
    for sub, cfg in zip(subs, cfgs, strict=True):
        assert _plain(sub) == _plain(cfg)


def test_packed_fit_equals_separate_fits(ds: data.Dataset) -> None:
    from src.lab import job
    from src.lab.build import build, build_packed

    subs = [_compose(BASE + v) for v in VARIANTS]
    built = build_packed(subs, ds)
    net = built.net
    assert net.replicas == 2 * len(VARIANTS)
    packed = job.train(built)
    for k, cfg in enumerate(subs):
        alone_built = build(cfg, ds)
        alone, alone_net = job.train(alone_built), alone_built.net
        sl = slice(2 * k, 2 * k + 2)
        part = packing.split_result(packed, sl, len(VARIANTS))
        for key, v in alone.final.items():
            np.testing.assert_allclose(part.final[key], v, rtol=0, atol=1e-12, err_msg=f"{VARIANTS[k]} {key}")
        np.testing.assert_array_equal(part.epochs_used, alone.epochs_used)
        np.testing.assert_array_equal(part.stopped_early, alone.stopped_early)
        np.testing.assert_array_equal(part.best_epoch, alone.best_epoch)
        np.testing.assert_array_equal(part.epochs, alone.epochs)
        for key, v in alone.history.items():
            np.testing.assert_allclose(part.history[key], v, rtol=0, atol=1e-12, err_msg=f"{VARIANTS[k]} {key}")
        sub = packing.subnet(net, sl)
        for key, v in alone_net.params.items():
            np.testing.assert_allclose(sub.params[key], v, rtol=0, atol=1e-12)
    assert any(packing.split_result(packed, slice(2 * k, 2 * k + 2), 5).stopped_early.any() for k in (2, 4)), \
        "the grid should exercise per-replica early stopping"


def test_a_pack_of_one_is_the_unpacked_run(ds: data.Dataset) -> None:
    """Configs the sweeper cannot pack (here the course's fixed draw) still go through a packed job, alone: its
    net must be the unpacked job's, bit for bit (the course tables are reproduced to the digit)."""
    from src.lab.build import build, build_packed

    cfg = _compose(BASE + ["init=he_normal", "init.course=true", "train.seed=3"])
    alone, packed = build(cfg, ds).net, build_packed([cfg], ds).net
    assert packed.params.keys() == alone.params.keys()
    for k, v in alone.params.items():
        assert np.asarray(packed.params[k]).tobytes() == np.asarray(v).tobytes(), k
    with pytest.raises(ValueError, match="never packed"):
        build_packed([cfg, cfg], ds)


@pytest.mark.parametrize("shuffle", ["random", "course"])
def test_each_replicas_minibatches_are_its_own_permutation_of_the_rows(ds: data.Dataset, shuffle: str) -> None:
    """An epoch's mini-batches give each replica every training row once, in the order of its own generator's
    permutation (`random`: what that replica alone would draw, so packing changes no number) or the course's
    (`course`: `RandomState(10 + epoch)`, the same for all), in batches of batch_size with a partial last one."""
    from src.lab.loop import LoopConfig, _batches

    m, bs, epoch = ds.X_train.shape[0], 48, 3
    seeds = (3, 7, 11)
    rngs = [np.random.default_rng([s, 2]) for s in seeds]
    batches = list(_batches(ds, None, LoopConfig(batch_size=bs, shuffle=shuffle), epoch, rngs))  # type: ignore[arg-type]
    assert [b[0].shape[-2] for b in batches] == [bs] * (m // bs) + ([m % bs] if m % bs else [])
    X = np.concatenate([b[0] for b in batches], axis=-2)
    y = np.concatenate([b[1] for b in batches], axis=-1)
    if shuffle == "course":
        perm = np.random.RandomState(10 + epoch).permutation(m)
        assert np.array_equal(X, ds.X_train[perm]) and np.array_equal(y, ds.y_train[perm])
        # the shared generator is reseeded per draw: epochs in any order, other sizes between, change nothing
        from src.lab.loop import course_permutation

        for e, n in ((5, m), (1, 7), (5, m), (epoch, m), (4000, 300)):
            assert np.array_equal(course_permutation(e, n), np.random.RandomState(10 + e).permutation(n)), (e, n)
        return
    assert X.shape == (len(seeds), *ds.X_train.shape)
    for r, s in enumerate(seeds):
        perm = np.random.default_rng([s, 2]).permutation(m)
        assert np.array_equal(X[r], ds.X_train[perm]) and np.array_equal(y[r], ds.y_train[perm]), r
    assert not np.array_equal(X[0], X[1])


def test_loop_patience_per_replica(ds: data.Dataset) -> None:
    """inf patience = no early stopping for that replica (and no restoring of best weights)."""
    from src.lab.loop import LoopConfig
    from src.nn import MLP, optimizers, schedules

    def run(patience: Any, R: int = 2) -> Any:
        net = MLP([2, 10, 5, 1], replicas=R, seed=3)
        cfg = LoopConfig(epochs=80, log_every=5, patience=patience)
        return fit(net, optimizers.get("adam", lr=0.5), schedules.get("constant"), ds, cfg)

    mixed = run(np.array([np.inf, 1.0]))
    none, one = run(None), run(1)
    np.testing.assert_allclose(mixed.final["val_loss"][0], none.final["val_loss"][0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(mixed.final["val_loss"][1], one.final["val_loss"][1], rtol=0, atol=1e-12)
    assert not mixed.stopped_early[0]
    with pytest.raises(ValueError, match="patience"):
        run(np.array([1.0, 2.0, 3.0]))


def test_loop_epochs_used_counts_each_replicas_own_epochs(ds: data.Dataset) -> None:
    """A replica that runs out of patience trained up to the log point that stopped it: (patience + 1) evaluations
    after its best one; the others train every epoch."""
    from src.lab.loop import LoopConfig
    from src.nn import MLP, optimizers, schedules

    net = MLP([2, 10, 5, 1], replicas=4, seed=3)
    cfg = LoopConfig(epochs=200, log_every=5, patience=np.array([np.inf, 0.0, 1.0, 3.0]))
    res = fit(net, optimizers.get("adam", lr=0.5), schedules.get("constant"), ds, cfg)
    assert not res.stopped_early[0] and res.epochs_used[0] == 200
    stopped = np.flatnonzero(res.stopped_early)
    assert stopped.size, "lr 0.5 overfits this set: some replica must stop"
    for r in stopped:
        assert res.epochs_used[r] == res.best_epoch[r] + (cfg.patience[r] + 1) * cfg.log_every, r


@pytest.mark.e2e
def test_vectorized_sweep_records_one_child_per_config(project) -> None:  # noqa: ANN001
    from e2e_utils import env_for, py

    repo = project("vec")
    proc = py(["-m", "src.train", "-m", "experiment=smoke", "hydra/sweeper=vectorized", "train.epochs=20",
               "train.lr=0.05,0.1"], repo, timeout=600)
    assert "6 configs packed into 1 jobs" in proc.stdout
    assert not (repo / "results").exists()  # results/ is the pipeline's: a sweep by hand writes its sweep folder
    (table,) = (repo / "multirun/smoke").glob("*/runs.csv")
    rows = list(csv.DictReader(table.read_text().splitlines()))
    assert len(rows) == 6 and {r["status"] for r in rows} == {"finished"}
    assert len({r["run_id"] for r in rows}) == 6
    records = sorted((repo / "multirun/smoke").glob("*/*/result.json"))  # multirun/<study>/<time>/<config>/
    assert len(records) == 6
    assert sorted(json.loads(p.read_text())["num"] for p in records) == list(range(6))
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=env_for(repo)["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("smoke")
    runs = client.search_runs([exp.experiment_id])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 6 and len(runs) == 7
    assert {c.data.params["train.lr"] for c in children} == {"0.05", "0.1"}
    assert all(c.info.status == "FINISHED" for c in children)
    assert all(len(client.get_metric_history(c.info.run_id, "val_loss")) >= 2 for c in children)


def test_sub_configs_drop_the_pack_key() -> None:
    cfg = _compose(BASE + VARIANTS[0])
    with open_dict(cfg):
        cfg["pack"] = json.dumps([packing.pack_entry(0, [], _plain(cfg))])
    _, subs = packing.sub_configs(cfg)
    assert "pack" not in subs[0]


def test_the_sweepers_composer_equals_hydras_composition_of_every_config() -> None:
    """The vectorized sweeper composes once per distinct set of group choices and applies value overrides to a
    copy (src/lab/sweeper.py Composer); for every kind of override each config must equal Hydra's own full
    composition, and a value Hydra refuses must still be refused."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import ConfigCompositionException
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    from src.lab.config import register
    from src.lab.preflight import CONF_DIR
    from src.lab.sweeper import Composer

    register()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        master = loader.load_configuration("config", overrides=["experiment=default"], run_mode=RunMode.MULTIRUN)
        composer = Composer.for_sweep(loader, master)
        # top-level groups are known by name; a nested one (`hydra/launcher=joblib` below) by the "/" in its key
        assert {"init", "optimizer", "data", "model", "experiment"} <= composer.groups
        jobs = [[f"init={i}", f"train.lr={lr}", f"optimizer={o}", "train.clip_norm=null", "model.hidden=[8,4]",
                 "+extra_note=x", "data=moons", "train.patience=10"]
                for i in ("he", "xavier") for lr in (0.1, 1, 0.003) for o in ("sgd", "adam")]
        jobs += [["init=normal", "init.std=0.5", "train.seeds=3"],
                 ["hydra/launcher=joblib", "train.lr=0.2", "++train.epochs=7"]]
        for ov in jobs:
            full = loader.load_sweep_config(master, ov)
            with open_dict(full):
                del full["hydra"]
            assert composer(ov) == OmegaConf.to_container(full, resolve=False), ov
        assert len(composer._base) < len(jobs), "configs that differ only in values share one composition"
        with pytest.raises(ConfigCompositionException):
            composer(["train.not_a_key=1"])


def _sweeper(master: DictConfig, loader: Any) -> Any:
    """The vectorized sweeper as Hydra sets it up for `master`. Not instantiated: Hydra's plugin scan may re-run
    basic_sweeper's module after our import of it, and BasicSweeper.__init__'s super() then fails; plan() needs only
    what Hydra's setup would give it."""
    from hydra.types import HydraContext

    from src.lab import sweeper

    sw = object.__new__(sweeper.VectorizedSweeper)
    sw.config, sw.hydra_context = master, HydraContext(config_loader=loader, callbacks=None)
    sw.params = dict(master.hydra.sweeper.params or {})
    sw.max_replicas, sw.min_jobs = sweeper.counts(master.hydra.sweeper.max_replicas, master.hydra.sweeper.min_jobs)
    return sw


def _plan(args: list[str]) -> list[list[dict[str, Any]]]:
    """The pack entries of every job the vectorized sweeper plans for `python -m src.train -m <args>`."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.utils import setup_globals
    from hydra.types import RunMode

    from src.lab import preflight
    from src.lab.config import register

    register()
    setup_globals()
    with initialize_config_dir(config_dir=str(preflight.CONF_DIR), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        master = loader.load_configuration("config", overrides=args, run_mode=RunMode.MULTIRUN)
        batch = _sweeper(master, loader).plan(list(master.hydra.overrides.task))
    return [packing.decode(next(o for o in job if o.startswith("+pack="))[len("+pack="):].strip("'"))
            for job in batch]


@pytest.mark.parametrize("extra, packs", [([], "workers"), (["hydra/launcher=basic"], 1),
                                          (["hydra/launcher=basic", "hydra.sweeper.min_jobs=3"], 3),
                                          (["hydra.launcher.n_jobs=-1"], "cores")])
def test_a_one_pack_grid_is_split_across_the_launchers_workers(extra: list[str], packs: Any, data_dir: Path) -> None:
    """s1_init's 10 inits are one pack; its preset runs joblib with a worker per usable core (at most 8), so the
    sweeper makes that many packs (4 + 3 + 3 for 3), every config in exactly one; the basic launcher runs one job
    at a time and keeps one pack unless `hydra.sweeper.min_jobs` asks for more; joblib's -1 means every core."""
    import joblib

    want = {"workers": min(8, joblib.cpu_count()), "cores": joblib.cpu_count()}.get(packs, packs)
    plan = _plan(["experiment=s1_init", *extra, f"data.dir={data_dir}", "tracking.enabled=false"])
    assert len(plan) == min(want, 10)
    nums = [e["num"] for entries in plan for e in entries]
    assert nums == list(range(10))
    sizes = [len(entries) for entries in plan]
    assert max(sizes) - min(sizes) <= 1
    assert len({tuple(e["overrides"]) for entries in plan for e in entries}) == 10  # ten inits, one entry each


def test_s6_bn_packs_four_scales_per_job_on_any_launcher(data_dir: Path) -> None:
    """The s6_bn preset caps a pack at 12 replicas (conf/experiment/s6_bn.yaml: this wide mini-batch net trains
    faster per replica in 12-replica nets than in 48-replica ones): 32 configs of 3 seeds in 8 jobs of 4 scales,
    each job one BN setting, every config once, on its joblib launcher and on the basic one alike."""
    for extra in ([], ["hydra/launcher=basic"]):
        plan = _plan(["experiment=s6_bn", *extra, f"data.dir={data_dir}", "tracking.enabled=false"])
        assert [len(entries) for entries in plan] == [4] * 8
        assert sorted(e["num"] for entries in plan for e in entries) == list(range(32))
        for entries in plan:
            bn = {next(o for o in e["overrides"] if o.startswith("model.batchnorm=")) for e in entries}
            assert len(bn) == 1, bn


@pytest.mark.parametrize("argv", [["experiment=s1_init"], ["experiment=s4_clip"], ["experiment=s6_preproc"],
                                  ["init=he,xavier", "optimizer=sgd,adam", "hydra/launcher=joblib", "train.lr=0.1,1"],
                                  ["init=he,xavier", "++train.epochs=7"]])
def test_the_sweeper_plans_the_same_jobs_with_the_preflights_compositions(argv: list[str], data_dir: Path) -> None:
    """`python -m src.train -m` composes every group choice of the sweep in its pre-flight check, then the sweeper
    composed them all again; it now reuses the pre-flight's (src/lab/sweeper.py hand_over). The sweeper's plan
    (every job's overrides and packed values) must be the same as when it composes everything itself, with no
    composition of its own where the pre-flight composed the same group choices (it composes each swept value
    with the others at their first: a 2 x 2 grid of groups leaves one to the sweeper); an override that is neither
    a group choice nor Hydra's own (`++key=`) is composed by the sweeper, as before."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.utils import setup_globals
    from hydra.types import RunMode

    from src.lab import preflight, sweeper
    from src.lab.config import register

    args = [*argv, f"data.dir={data_dir}", "tracking.enabled=false"]
    preflight.check(["-m", *args])
    handed = sweeper._HANDED_OVER.get("configs")
    assert bool(handed) != any(a.startswith("+") for a in argv), "group choices alone are handed over"
    register()
    setup_globals()
    plans, composed = [], []
    with initialize_config_dir(config_dir=str(preflight.CONF_DIR), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        master = loader.load_configuration("config", overrides=args, run_mode=RunMode.MULTIRUN)
        real = loader.load_sweep_config
        for _ in range(2):  # first with what the pre-flight handed over (taken once), then composing everything
            calls: list[list[str]] = []
            loader.load_sweep_config = lambda m, ov, calls=calls: (calls.append(list(ov)), real(m, ov))[1]
            plans.append(_sweeper(master, loader).plan(list(master.hydra.overrides.task)))
            composed.append(calls)
        loader.load_sweep_config = real
    assert plans[0] == plans[1]
    assert composed[1], "the second plan composed its configs itself"
    if any(a.startswith("+") for a in argv):
        assert composed[0] == composed[1], "a `++key=` override is not a group choice: the sweeper composes it"
    elif "optimizer=sgd,adam" in argv:
        assert composed[0] == [["init=xavier", "optimizer=adam"]], "the one pair the pre-flight did not compose"
    else:
        assert composed[0] == [], "every composition came from the pre-flight"
