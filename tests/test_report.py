"""The report: built from synthetic results folders; every study section, embedded images, byte-identical rebuilds."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
from pathlib import Path

import pytest
from PIL import Image

from src import report
from src.studies import toys

HEADER = ["job", "name", "overrides", "status", "run_id", "config_hash", "train_acc", "val_acc", "test_acc",
          "test_acc_ci95", "train_loss", "val_loss", "test_loss", "epochs_used", "best_epoch", "diverged_fraction",
          "stopped_early_fraction", "replicas", "wall_time_s", "error"]


def _write_grid(d: Path, jobs: list[tuple[str, float, float, float]], status: dict[str, str] | None = None) -> None:
    """runs.csv like src.lab.results writes it, plus curves.csv; jobs = (name, test_acc, ci, diverged)."""
    d.mkdir(parents=True)
    curves = ["config,epoch,train_loss,val_loss,train_acc,val_acc"]
    with open(d / "runs.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(HEADER)
        for i, (name, acc, ci, div) in enumerate(jobs):
            st = (status or {}).get(name, "finished")
            w.writerow([i, name, name.replace(",", " "), st, "", f"h{i}", min(1.0, acc + 0.03), acc, acc, ci,
                        0.3, 0.35, 0.36, 200, 180, div, 0, 5, 1.5 + i, "boom\nline 2" if st == "failed" else ""])
            for e in range(0, 201, 20):
                curves.append(f'"{name}",{e},{1 / (e + 1):.6g},{1.1 / (e + 1):.6g},{acc * e / 200:.6g},'
                              f"{acc * e / 200:.6g}")
    (d / "curves.csv").write_text("\n".join(curves) + "\n")
    (d / "metrics.json").write_text(json.dumps({"configs": len(jobs), "failed": 0, "diverged": 0}))
    with open(d / "replicas.csv", "w", newline="") as f:  # 5 seeds per job, a seed effect shared by all jobs
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["job", "name", "stage", "role", "lr", "seed", "diverged", "train_acc", "val_acc", "test_acc",
                    "chance"])
        for i, (name, acc, _, div) in enumerate(jobs):
            for seed in range(5):
                a = "" if div else f"{min(1.0, acc + 0.01 * (seed - 2) + 0.001 * (i % 3)):.6g}"
                w.writerow([i, name, "report", "shared", 0.01, seed, int(div), a, a, a, 0.5])
    (d / "tuning.csv").write_text("job,name\n")


def _tune(d: Path, arms: dict[str, tuple[float, float, float]]) -> None:
    """Turn a grid written by _write_grid into a tuned one: {arm: (tuned lr, its test acc, val acc at it)}."""
    with open(d / "replicas.csv") as f:
        rows = list(csv.DictReader(f))
    with open(d / "replicas.csv", "a", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        for r in rows:
            lr, acc, _ = arms[r["name"]]
            a = f"{acc + 0.01 * (int(r['seed']) - 2):.6g}"
            w.writerow([r["job"], r["name"], "report", "tuned", lr, r["seed"], 0, a, a, a, 0.5])
            w.writerow([r["job"], r["name"], "tune", "grid", lr, 1000 + int(r["seed"]), 0, a, a, a, 0.5])
    with open(d / "tuning.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["job", "name", "lr", "val_acc", "val_acc_ci95", "val_loss", "val_loss_ci95", "train_loss",
                    "train_loss_ci95", "diverged", "n", "chosen", "at_edge"])
        for i, (name, (lr, _, val)) in enumerate(arms.items()):
            for x in (0.001, 0.01, 0.1, 1.0):
                w.writerow([i, name, x, val if x == lr else val - 0.2, 0.05, 0.3, 0.02, 0.2, 0.02, 0, 3,
                            int(x == lr), int(x == lr == 1.0)])


def _png(path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(2, 1.5), dpi=50)
    fig.add_subplot(1, 1, 1).plot([0, 1], [1, 0])
    fig.savefig(path)
    plt.close(fig)


def make_results(root: Path) -> Path:
    """A results/ folder with grid studies, the three no-grid studies and an unregistered one."""
    res = root / "results"
    _write_grid(res / "s1_init", [("init=zeros", 0.5, 0.0, 0.0), ("init=he_normal", 0.96, 0.01, 0.0),
                                  ("init=randn_x10", 0.72, 0.1, 0.0), ("init=xavier_normal", 0.95, 0.02, 0.0)])
    bn_jobs = [(f"model.batchnorm={bn},init.std={s}" if bn == "true" else f"init.std={s},model.batchnorm={bn}",
                acc, 0.01, 0.0) for s in ("1", "0.1", "0.01", "0.0001") for bn, acc in (("true", 0.95), ("false", 0.3))]
    _write_grid(res / "s6_bn", bn_jobs)
    _write_grid(res / "s4_clip", [("clip=none", float("nan"), float("nan"), 1.0), ("clip=value_1", 0.9, 0.02, 0.0)],
                status={"clip=none": "diverged"})
    _write_grid(res / "default", [("data=moons,init=he", 0.9, 0.02, 0.0), ("data=moons,init=zeros", 0.5, 0.0, 0.0),
                                  ("data=flower,init=he", 0.0, 0.0, 0.0)], status={"data=flower,init=he": "failed"})
    s2 = res / "s2_activations"
    s2.mkdir()
    (s2 / "metrics.json").write_text(json.dumps({
        "tanh_std001_last_std": 3e-7, "tanh_std1_saturated_mean": 0.9, "tanh_xavier_layer1_std": 0.63,
        "relu_he_last_over_first_std": 1.0, "deep_sigmoid_xavier_grad_factor_per_layer": 0.23,
        "deep_relu_he_grad_factor_per_layer": 1.0}))
    with open(s2 / "layer_stats.csv", "w") as f:
        f.write("net,activation,layers,width,init,layer,replicas,act_mean,act_mean_ci95,act_std,act_std_ci95,"
                "saturated,saturated_ci95,dead,dead_ci95,grad_norm,grad_norm_ci95,dz_norm,dz_norm_ci95\n")
        for layer in (1, 2):
            f.write(f"tanh_10x500,tanh,2,500,xavier,{layer},2,0,0,0.6,0.01,0,0,0,0,0.2,0.01,0.3,0.01\n")
    for name in ("histograms_tanh_10x500.png", "grad_norms.png"):
        _png(s2 / name)
    toys.run(res / "toys")
    s7 = res / "s7_gradcheck"
    s7.mkdir()
    (s7 / "metrics.json").write_text(json.dumps({"max_rel_error": 3e-9, "nets_failed": 0, "threshold": 1e-7}))
    (s7 / "gradcheck.csv").write_text("net,overrides,param,shape,rel_error,eps,threshold,passed\n"
                                      "relu,,W1,2x2x10,3e-09,1e-07,1e-07,1\nrelu,,b1,2x10,2e-09,1e-07,1e-07,1\n")
    _write_grid(res / "s3_optim", [("optimizer=sgd", 0.86, 0.02, 0.0), ("optimizer=adam", 0.95, 0.01, 0.0),
                                   ("optimizer=momentum", 0.90, 0.02, 0.0)])
    _tune(res / "s3_optim", {"optimizer=sgd": (1.0, 0.95, 0.9), "optimizer=adam": (0.01, 0.95, 0.9),
                             "optimizer=momentum": (0.1, 0.951, 0.9)})
    _write_grid(res / "smoke", [("init=he", 0.9, 0.02, 0.0)])  # no registered study: numbers only
    (res / "unrelated").mkdir()  # a folder without results: ignored
    return res


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("rep")
    res = make_results(root)
    out = root / "reports"
    report.build(res, out)
    return res, out


STUDIES = ("s1_init", "s2_activations", "toys", "s3_optim", "s4_clip", "s6_bn", "s7_gradcheck", "default")


def test_files_exist(built: tuple[Path, Path]) -> None:
    _, out = built
    assert (out / "index.html").stat().st_size > 10_000
    for s in STUDIES:
        md = (out / f"{s}.md").read_text()
        assert md.startswith("# ")
        for fig in re.findall(r"\]\((figures/[^)]+)\)", md):
            with Image.open(out / fig) as im:
                assert im.format == "PNG" and min(im.size) > 50
    assert not (out / "unrelated.md").exists()


def test_html_sections_verdicts_and_images(built: tuple[Path, Path]) -> None:
    _, out = built
    page = (out / "index.html").read_text()
    for s in STUDIES:
        assert f'<section id="{s}">' in page
    assert page.index('id="s1_init"') < page.index('id="s2_activations"') < page.index('id="default"')
    for verdict in ("CONFIRMED",):
        assert verdict in page
    assert "No claim is registered" in page  # smoke
    assert '<h2 id="how-verdicts">How verdicts are computed</h2>' in page and "Holm" in page
    assert "Not in this report" in page and "s5_early" in page
    imgs = re.findall(r'<img src="data:image/png;base64,([^"]+)"', page)
    assert len(imgs) >= 12
    for data in imgs:
        with Image.open(io.BytesIO(base64.b64decode(data))) as im:
            assert im.format == "PNG" and min(im.size) > 50
    assert "job data=flower,init=he failed: boom" in page
    assert "0.960 ± 0.010" in page


def test_study_pages_carry_the_verdicts(built: tuple[Path, Path]) -> None:
    _, out = built
    assert "**Verdict: CONFIRMED.**" in (out / "s1_init.md").read_text()
    assert "**Verdict: CONFIRMED.**" in (out / "s6_bn.md").read_text()  # overrides in either order
    assert "**Verdict: CONFIRMED.**" in (out / "s4_clip.md").read_text()
    toys_md = (out / "toys.md").read_text()
    assert toys_md.count("**Verdict:") == 2 and "-390" in toys_md
    assert "| test acc (mean ± 95% CI) |" in (out / "s1_init.md").read_text()
    assert "s6_bn_by_scale.png" in (out / "s6_bn.md").read_text()
    assert "_How this verdict is computed._" in (out / "s6_bn.md").read_text()
    assert "Test accuracy per job (all 4 jobs" in (out / "s1_init.md").read_text()  # every job drawn, said so
    assert (out / "how_verdicts.md").read_text().startswith("# How verdicts are computed")


def test_tuned_study_shows_both_rankings_and_sensitivity(built: tuple[Path, Path]) -> None:
    _, out = built
    md = (out / "s3_optim.md").read_text()
    assert "## Ranking at the shared lr and at each arm's tuned lr" in md
    assert "| optimizer=sgd | 0.01 | 0.860 ± 0.020 | 3 | 1 (edge) | 0.950 ± 0.020 |" in md
    assert "does not survive tuning" in md and "**Verdict: REFUTED.**" in md
    assert "s3_optim_sensitivity.png" in md and "s3_optim_rankings.png" in md
    assert "4 learning rates over 3.0 decades" in md and "fewer than SPEC's 7 values" in md


def test_two_builds_are_byte_identical(built: tuple[Path, Path], tmp_path: Path) -> None:
    res, out = built
    again = tmp_path / "again"
    report.build(res, again)
    files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for rel in files:
        assert (out / rel).read_bytes() == (again / rel).read_bytes(), rel


def test_builds_from_whatever_exists(tmp_path: Path) -> None:
    res = tmp_path / "results"
    _write_grid(res / "default", [("init=he", 0.9, 0.02, 0.0)])
    assert report.main(["--results", str(res), "--out", str(tmp_path / "r")]) == 0
    page = (tmp_path / "r" / "index.html").read_text()
    assert 'id="default"' in page and "s1_init" in page  # listed as not run
    with pytest.raises(SystemExit, match="dvc repro"):
        report.build(tmp_path / "empty", tmp_path / "r2")


def test_rebuild_removes_only_what_the_report_wrote(built: tuple[Path, Path], tmp_path: Path) -> None:
    """A second build into the same --out replaces the report's own pages and figures and leaves a user's files
    (before: every *.md and the whole figures/ folder were deleted)."""
    import shutil

    res, out = built
    again = tmp_path / "out"
    shutil.copytree(out, again)
    (again / "notes.md").write_text("mine")
    (again / "figures" / "mine.png").write_bytes(b"mine")
    (again / "figures" / "s1_init_stale.png").write_bytes(b"an old figure of the report")
    report.build(res, again)
    assert (again / "notes.md").read_text() == "mine" and (again / "figures" / "mine.png").read_bytes() == b"mine"
    assert not (again / "figures" / "s1_init_stale.png").exists()
    assert (again / "s1_init.md").read_bytes() == (out / "s1_init.md").read_bytes()


def test_a_big_sweep_prints_its_top_rows_counts_and_where_the_rest_is(tmp_path: Path) -> None:
    """A 1,000-job leaderboard printed whole is unreadable: the console gets the first rows by validation
    accuracy, the count by status and the files; a short sweep still gets every row."""
    from src.lab.results import CONSOLE_TOP, console_leaderboard, leaderboard_rows

    rows = [{"name": f"job{i}", "status": "failed" if i % 100 == 7 else "finished",
             "metrics": {} if i % 100 == 7 else {"val_acc": i / 1000, "test_acc": 0.5, "test_acc_ci95": 0.01,
                                                  "train_acc": 0.5, "epochs_used": 10, "diverged_fraction": 0.0}}
            for i in range(1000)]
    table = leaderboard_rows(rows)
    text = console_leaderboard(table, tmp_path)
    body = [ln for ln in text.splitlines() if ln.startswith("| ") and not ln.startswith("| #")]
    assert len(body) == CONSOLE_TOP
    assert "| 1 | job999 |" in text and "job998" in text and "job0 |" not in text  # best validation first
    assert "990 finished, 10 failed" in text and str(tmp_path / "leaderboard.md") in text
    short = console_leaderboard(table[:5], tmp_path)
    assert len(short.splitlines()) == 2 + 5 and "leaderboard.md" not in short


def test_sections_drawn_by_workers_equal_those_drawn_in_this_process(built: tuple[Path, Path], tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    build_mod = sys.modules["src.report.build"]
    pools: list[int] = []

    class Spy(build_mod.ProcessPoolExecutor):
        def __init__(self, workers: int, **kw: object) -> None:
            pools.append(workers)
            super().__init__(workers, **kw)

    monkeypatch.setattr(build_mod, "ProcessPoolExecutor", Spy)
    monkeypatch.setattr(build_mod, "_usable_cores", lambda: 2)  # a 2-core machine
    res, _ = built
    pooled = tmp_path / "pooled"
    report.build(res, pooled)
    assert pools == ([2] if sys.platform.startswith("linux") else [])  # forked workers where fork is cheap
    monkeypatch.setattr(build_mod, "MAX_WORKERS", 1)
    alone = tmp_path / "alone"
    report.build(res, alone)
    assert len(pools) <= 1  # one worker: no pool
    files = sorted(p.relative_to(alone) for p in alone.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(pooled) for p in pooled.rglob("*") if p.is_file())
    for rel in files:
        assert (alone / rel).read_bytes() == (pooled / rel).read_bytes(), rel
