"""Learning-rate tuning on the replica axis (src/lab/tuning.py) and the paired comparisons it feeds.

The contract: (1) the lr is chosen on validation data only; (2) the shared-lr view is exactly the untuned run
(same replicas, same numbers); (3) the tuned view is exactly a fresh run at the chosen lr on the report seeds;
(4) arms share seeds replica by replica (same initial draw where the initializer family allows, same data order),
so their differences are paired; (5) a planted case where the shared-lr ranking flips after tuning is found.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from src import data
from src.lab import stats, tuning
from src.lab.config import ConfigError, validate
from src.lab.loop import FitResult

BASE = ["data=moons", "train.epochs=40", "train.seeds=3", "train.log_every=10", "tracking.enabled=false",
        "tune.enabled=true", "tune.seeds=2", "tune.lrs=[0.01,0.1,1.0]"]


@pytest.fixture(scope="module")
def ds() -> data.Dataset:
    return data.make("moons", n_samples=200)


def _fit(cfgs: list[Any], ds: data.Dataset) -> list[tuple[FitResult, Any, tuning.Outcome]]:
    from src.lab.job import train

    return tuning.fit_tuned(cfgs, ds, train)


def _result(val_acc: list[float], val_loss: list[float], test_acc: list[float],
            diverged: list[bool] | None = None) -> FitResult:
    R = len(val_acc)
    z = np.zeros(R)
    final = {"val_acc": np.array(val_acc, float), "val_loss": np.array(val_loss, float),
             "test_acc": np.array(test_acc, float), "train_loss": np.array(val_loss, float),
             "train_acc": np.array(val_acc, float), "test_loss": np.array(val_loss, float)}
    return FitResult(np.zeros(1), {}, final, z.astype(int), z.astype(int),
                     np.array(diverged or [False] * R), z.astype(int), np.zeros(R, bool))


def test_choice_uses_validation_never_test() -> None:
    """lr 0.1 is best on validation, lr 1.0 on test: 0.1 is chosen."""
    blocks = tuning._placed([tuning.Block(0, tuning.GRID, lr, (1000, 1001)) for lr in (0.01, 0.1, 1.0)])
    res = _result(val_acc=[0.7, 0.7, 0.9, 0.9, 0.8, 0.8], val_loss=[1] * 6, test_acc=[0.5, 0.5, 0.6, 0.6, 1, 1])
    c = tuning.choose(blocks, res, arm=0, chance=0.5)
    assert c.lr == 0.1 and not c.at_edge
    assert [r.chosen for r in c.table] == [False, True, False]


def test_choice_ties_diverged_and_edges() -> None:
    blocks = tuning._placed([tuning.Block(0, tuning.GRID, lr, (1000, 1001)) for lr in (0.01, 0.1, 1.0)])
    # equal accuracy: the lower validation loss wins
    tie = _result([0.9] * 6, val_loss=[0.5, 0.5, 0.3, 0.3, 0.4, 0.4], test_acc=[0.9] * 6)
    assert tuning.choose(blocks, tie, 0, 0.5).lr == 0.1
    # a replica that diverged scores chance: 1.0 has the best surviving replica but loses
    div = _result([0.8, 0.8, 0.85, 0.85, 0.99, float("nan")], [1] * 6, [0.9] * 6,
                  diverged=[False] * 5 + [True])
    c = tuning.choose(blocks, div, 0, 0.5)
    assert c.lr == 0.1 and c.table[2].diverged == 1 and math.isclose(c.table[2].val_acc, (0.99 + 0.5) / 2)
    # best at the end of the grid and strictly better than its neighbour: flagged; a flat curve is not
    edge = _result([0.5, 0.5, 0.6, 0.6, 0.9, 0.9], [1] * 6, [0.9] * 6)
    assert tuning.choose(blocks, edge, 0, 0.5).at_edge
    flat = _result([0.5] * 6, [0.7] * 6, [0.5] * 6)
    c = tuning.choose(blocks, flat, 0, 0.5)
    assert c.lr == 0.01 and not c.at_edge  # all equal: the smallest lr, no edge warning


def test_stages_keep_tuning_and_report_seeds_apart(compose: Callable[[list[str]], Any]) -> None:
    cfgs = [compose(BASE + ["optimizer=sgd"]), compose(BASE + ["optimizer=sgd", "init=xavier"])]
    b1 = tuning.stage1(cfgs)
    assert [b.start for b in b1] == [0, 2, 4, 6, 9, 11, 13, 15]  # contiguous: 3 lrs x 2 seeds + 3 report seeds
    grid = {s for b in b1 if b.role == tuning.GRID for s in b.seeds}
    report = {s for b in b1 if b.role == tuning.SHARED for s in b.seeds}
    assert grid == {1000, 1001} and report == {0, 1, 2}
    b2 = tuning.stage2(cfgs, {0: 0.01, 1: 1.0})  # arm 0's choice IS its shared lr: reused, not retrained
    assert [(b.arm, b.lr, b.seeds) for b in b2] == [(1, 1.0, (0, 1, 2))]


@pytest.mark.parametrize(("override", "match"), [
    ("tune.seed=1", "tune.seed=1 is invalid"), ("tune.lrs=[0.1,0.1]", "tune.lrs"), ("tune.lrs=[]", "tune.lrs"),
    ("tune.lrs=[-1]", "tune.lrs"), ("tune.seeds=0", "tune.seeds"), ("init.course=true", "tune.enabled")])
def test_bad_tuning_config_is_one_line(compose: Callable[[list[str]], Any], override: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as e:
        validate(compose(BASE + [override]))
    assert "\n" not in str(e.value)


def test_shared_view_is_the_untuned_run_and_tuned_view_a_fresh_run(compose: Callable[[list[str]], Any],
                                                                  ds: data.Dataset) -> None:
    """Both views are exact: the same numbers as training each config alone (1e-12), at its lr / the chosen lr."""
    from src.lab.build import build
    from src.lab.job import train

    cfgs = [compose(BASE + ["optimizer=sgd"]), compose(BASE + ["optimizer=sgd", "init=xavier", "train.lr=0.1"])]
    got = _fit(cfgs, ds)
    for cfg, (shared, _, outcome) in zip(cfgs, got, strict=True):
        alone = train(build(cfg, ds))
        for key, v in alone.final.items():
            np.testing.assert_allclose(shared.final[key], v, rtol=0, atol=1e-12, err_msg=key)
        fresh = train(build(compose(BASE + ["optimizer=sgd", f"init={cfg.init.name}",
                                            f"train.lr={outcome.choice.lr}"]), ds))
        np.testing.assert_allclose(outcome.tuned.final["test_acc"], fresh.final["test_acc"], rtol=0, atol=1e-12)
        roles = {r["role"] for r in outcome.replicas}
        assert roles == ({"grid", "shared"} if outcome.reused else {"grid", "shared", "tuned"})
        assert sum(r["role"] == "grid" for r in outcome.replicas) == 3 * 2
        m = outcome.metrics()
        assert m["tuned_lr"] == outcome.choice.lr and "sensitivity/val_acc/lr_0.1" in m


def test_arms_share_seeds_replica_by_replica(ds: data.Dataset) -> None:
    """Paired seeds: arms at the same seed start from the same draw (scaled by their initializer's std, for the
    normal family) and see the same mini-batches; so two identical arms at the same seed are identical replicas,
    wherever they sit in the pack."""
    from src.lab.loop import LoopConfig, fit
    from src.nn import MLP, initializers, optimizers, schedules

    sizes = [2, 10, 5, 1]
    he = MLP(sizes, init="he_normal", seeds=[7])
    xa = MLP(sizes, init="xavier_normal", seeds=[7])
    for layer in (1, 2, 3):
        ratio = initializers.std_of("he_normal", sizes[layer - 1], sizes[layer]) / initializers.std_of(
            "xavier_normal", sizes[layer - 1], sizes[layer])
        np.testing.assert_allclose(he.params[f"W{layer}"], ratio * xa.params[f"W{layer}"], rtol=1e-12)
    net = MLP(sizes, init=["he_normal", "xavier_normal", "he_normal"], seeds=[3, 4, 3])
    res = fit(net, optimizers.get("sgd", lr=np.array([0.1, 0.1, 0.1])), schedules.get("constant"), ds,
              LoopConfig(epochs=5, batch_size=32, log_every=5))
    np.testing.assert_array_equal(res.final["val_loss"][0], res.final["val_loss"][2])
    assert res.final["val_loss"][0] != res.final["val_loss"][1]


def test_planted_flip_is_found(compose: Callable[[list[str]], Any], ds: data.Dataset) -> None:
    """A tiny real grid: SGD vs Adam at the shared lr 0.01 for 40 full-batch epochs (SGD barely moves), then each
    at its tuned lr. At the shared lr Adam is significantly ahead; once tuned, that advantage is gone."""
    from src.studies.base import Results
    from src.studies.compare import SHARED_VIEW, TUNED_VIEW, pairs, scores

    base = [o for o in BASE if not o.startswith(("train.seeds", "tune.seeds"))] + ["train.seeds=6", "tune.seeds=2"]
    rows = []
    for opt in ("sgd", "adam"):
        cfg = compose(base + [f"optimizer={opt}"])
        (_, _, outcome), = _fit([cfg], ds)
        rows += [{**r, "name": f"optimizer={opt}"} for r in outcome.replicas]
    res = Results(replicas=rows)
    shared = pairs(scores(res.replicas, SHARED_VIEW), [("optimizer=adam", "optimizer=sgd")])[0]
    tuned = pairs(scores(res.replicas, TUNED_VIEW), [("optimizer=adam", "optimizer=sgd")])[0]
    assert shared.outcome == stats.BETTER and shared.diff.mean > 0.1
    assert tuned.outcome != stats.BETTER and abs(tuned.diff.mean) < shared.diff.mean / 3


def test_paired_test_matches_scipy_and_gains_from_pairing() -> None:
    from scipy import stats as st

    rng = np.random.default_rng(0)
    seed_effect = rng.normal(0, 0.05, 10)
    a, b = 0.9 + seed_effect + rng.normal(0, 0.003, 10), 0.89 + seed_effect + rng.normal(0, 0.003, 10)
    p = stats.paired(a, b)
    assert math.isclose(p.p, st.ttest_rel(a, b).pvalue, rel_tol=1e-12)
    assert math.isclose(p.p_wilcoxon, st.wilcoxon(a - b).pvalue, rel_tol=1e-12)
    lo, hi = st.ttest_rel(a, b).confidence_interval(0.95)
    assert math.isclose(p.low, lo, rel_tol=1e-9) and math.isclose(p.high, hi, rel_tol=1e-9)
    assert p.p < 1e-3 < st.ttest_ind(a, b).pvalue  # the shared seed effect hides the gap from an unpaired test
    assert stats.paired({0: 1.0, 1: 2.0, 5: 3.0}, {1: 1.0, 5: 1.0, 7: 9.0}).n == 2  # matched on seeds
    assert stats.paired([0.9], [0.5]).n == 1 and math.isnan(stats.paired([0.9], [0.5]).p)
    same = stats.paired([0.9, 0.8], [0.9, 0.8])
    assert same.p == 1.0 and stats.outcome(same, same.p) == stats.EQUIVALENT


def test_holm_known_values() -> None:
    # Holm 1979: sorted p (0.01, 0.03, 0.04) x (3, 2, 1) = (0.03, 0.06, 0.04) -> running max (0.03, 0.06, 0.06)
    assert stats.holm([0.04, 0.01, 0.03, float("nan")])[:3] == pytest.approx([0.06, 0.03, 0.06])
    assert math.isnan(stats.holm([0.04, float("nan")])[1])
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_outcomes_and_scores() -> None:
    assert stats.outcome(stats.Paired(10, 0.001, 0.0005, 1e-9, 2e-3), 1e-8) == stats.EQUIVALENT  # negligible
    diff = stats.Paired(10, 0.05, 0.01, 1e-5, 2e-3)
    assert stats.outcome(diff, 1e-4) == stats.BETTER
    assert stats.outcome(stats.Paired(10, -0.05, 0.01, 1e-5, 2e-3), 1e-4) == stats.WORSE
    assert stats.outcome(stats.Paired(10, 0.005, 0.01, 0.3, 0.3), 0.3) == stats.EQUIVALENT
    assert stats.outcome(stats.Paired(10, 0.01, 0.03, 0.3, 0.3), 0.3) == stats.INCONCLUSIVE
    assert stats.outcome(stats.Paired(1, 0.4, math.nan, math.nan, math.nan), math.nan) == stats.INCONCLUSIVE
    assert stats.score(float("nan"), True, 0.5) == 0.5 and stats.score(0.9, False, 0.5) == 0.9


def test_sweeper_counts_tuning_replicas_when_it_splits_packs() -> None:
    from src.lab.sweeper import replicas_per_config

    base = {"train": {"seeds": 10}, "tune": {"enabled": False, "lrs": [0.1] * 8, "seeds": 3}}
    assert replicas_per_config(base) == 10
    assert replicas_per_config({**base, "tune": {**base["tune"], "enabled": True}}) == 8 * 3 + 10
