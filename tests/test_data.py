"""Tests of src/data/ and src.plots.data.dataset_scatter: recipes, determinism, course exactness, files, errors,
CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from src import data
from src.data import NAMES, Dataset, DatasetError
from src.data.dataset import digest

ROOT = Path(__file__).resolve().parents[1]
SYNTHETIC = ("flower", "moons", "circles", "spiral", "xor", "gauss")


@pytest.fixture(scope="module")
def made() -> dict[str, Dataset]:
    """Every dataset with default arguments, made once (digits costs the sklearn import)."""
    return {name: data.make(name) for name in NAMES}


@pytest.fixture
def global_rng_guard():
    """Tests that use the legacy global RNG restore it, so test order can never matter."""
    state = np.random.get_state()
    try:
        yield
    finally:
        np.random.set_state(state)


def _assert_one_line(msg: str, *must: str) -> None:
    assert "\n" not in msg, msg
    for m in must:
        assert m in msg, f"{m!r} not in {msg!r}"


# ------------------------------------------------------------------------------------------------- make


@pytest.mark.parametrize("name", NAMES)
def test_every_name_makes_a_well_formed_dataset(made: dict[str, Dataset], name: str) -> None:
    ds = made[name]
    d, k = (64, 10) if name == "digits" else (2, 2)
    assert ds.name == name and ds.n_features == d and ds.n_classes == k
    for s in ("train", "val", "test"):
        X, y = getattr(ds, f"X_{s}"), getattr(ds, f"y_{s}")
        assert X.dtype == np.float64 and y.dtype == np.int64
        assert X.ndim == 2 and X.shape == (len(y), d) and len(y) > 0
        assert np.isfinite(X).all() and y.min() >= 0 and y.max() < k
        assert not X.flags.writeable and not y.flags.writeable
    assert set(np.unique(ds.y_train)) == set(range(k))
    card = ds.card
    json.dumps(card)  # JSON-serialisable
    assert card["name"] == name and card["n_classes"] == k and card["schema_version"] == data.SCHEMA_VERSION
    assert card["sha256"] == ds.digest()
    assert card["sizes"] == {s: len(getattr(ds, f"y_{s}")) for s in ("train", "val", "test")}
    assert [sum(card["class_balance"][s]) for s in ("train", "val", "test")] == list(card["sizes"].values())
    assert {"recipe", "seed", "standardized", "mean", "std", "val_is_test"} <= card.keys()
    assert name in repr(ds)


def test_default_sizes_and_stratified_split(made: dict[str, Dataset]) -> None:
    totals = {n: sum(made[n].card["sizes"].values()) for n in NAMES}
    assert totals == {"flower": 400, "moons": 400, "circles": 400, "spiral": 500, "xor": 500, "gauss": 500,
                      "digits": 1797, "moons_noisy": 200, "circles_course": 500, "moons_course": 900,
                      "flower_course": 1200}
    moons = made["moons"]
    assert moons.card["sizes"] == {"train": 240, "val": 80, "test": 80}
    assert moons.card["split"]["stratified"] is True
    assert moons.card["class_balance"] == {"train": [120, 120], "val": [40, 40], "test": [40, 40]}


@pytest.mark.parametrize("name", [*SYNTHETIC, "digits"])
def test_same_seed_identical_different_seed_different(name: str) -> None:
    kw = {"n_samples": 300} if name == "digits" else {}
    a, b, c = data.make(name, seed=3, **kw), data.make(name, seed=3, **kw), data.make(name, seed=4, **kw)
    for key in ("X_train", "y_train", "X_val", "X_test"):
        assert np.array_equal(getattr(a, key), getattr(b, key))
    assert a.digest() == b.digest() and a.card == b.card
    assert a.digest() != c.digest()
    assert not np.array_equal(a.X_train, c.X_train)


def test_course_variants_ignore_seed() -> None:
    for name in data.COURSE_NAMES:
        assert data.make(name, seed=0).digest() == data.make(name, seed=7).digest()
        assert data.make(name).card["seed"] is None


@pytest.mark.parametrize("name", ["moons", "digits"])
def test_standardisation_fitted_on_train_only(name: str) -> None:
    ds, raw = data.make(name, seed=1), data.make(name, seed=1, standardize=False)
    mean, std = np.array(ds.card["mean"]), np.array(ds.card["std"])
    assert ds.card["standardized"] is True and raw.card["standardized"] is False and raw.card["mean"] is None
    assert np.allclose(ds.X_train.mean(axis=0), 0, atol=1e-12)
    varying = raw.X_train.std(axis=0) > 0
    assert np.allclose(ds.X_train.std(axis=0)[varying], 1)
    assert np.all(std[~varying] == 1)  # constant columns: std 0 replaced by 1, never a division by zero
    assert np.allclose(mean, raw.X_train.mean(axis=0))
    assert np.allclose(std[varying], raw.X_train.std(axis=0)[varying])
    assert not np.allclose(ds.X_val.mean(axis=0)[varying], 0, atol=1e-12)  # val uses train's statistics
    for s in ("train", "val", "test"):
        assert np.allclose(getattr(ds, f"X_{s}") * std + mean, getattr(raw, f"X_{s}"))
        assert np.array_equal(getattr(ds, f"y_{s}"), getattr(raw, f"y_{s}"))


def test_options_n_samples_noise_fractions() -> None:
    ds = data.make("spiral", n_samples=200, noise=0.3, val_fraction=0.1, test_fraction=0.3)
    assert ds.card["sizes"] == {"train": 120, "val": 20, "test": 60}
    assert ds.card["recipe"]["noise"] == 0.3 and ds.card["recipe"]["n_samples"] == 200
    assert sum(data.make("digits", n_samples=200).card["sizes"].values()) == 200


# -------------------------------------------------------------------------------------------- recipes


def test_flower_matches_the_course_formula_with_a_generator() -> None:
    ds = data.make("flower", seed=5, standardize=False)
    X = np.concatenate([ds.X_train, ds.X_val, ds.X_test])
    rng = np.random.default_rng(5)
    expected = []
    for j in range(2):
        t = np.linspace(j * 3.12, (j + 1) * 3.12, 200) + rng.standard_normal(200) * 0.2
        r = 4 * np.sin(4 * t) + rng.standard_normal(200) * 0.2
        expected.append(np.c_[r * np.sin(t), r * np.cos(t)])
    exp = np.concatenate(expected)
    key = np.lexsort(X.T)
    assert np.array_equal(X[key], exp[np.lexsort(exp.T)])


def test_playground_generators_follow_their_formulas() -> None:
    sp = data.make("spiral", noise=0.0, standardize=False)
    X = np.concatenate([sp.X_train, sp.X_val, sp.X_test])
    y = np.concatenate([sp.y_train, sp.y_val, sp.y_test])
    radius = np.hypot(X[:, 0], X[:, 1])
    assert radius.max() < 5 and np.isclose(np.sort(radius[y == 1])[-1], 249 / 250 * 5)
    xo = data.make("xor", noise=0.0, standardize=False)
    X, y = xo.X_train, xo.y_train
    assert np.array_equal(y, (X[:, 0] * X[:, 1] >= 0).astype(np.int64))  # noise 0: the clean XOR label
    assert np.abs(X).min() >= 0.3 and np.abs(X).max() <= 5.3  # padded away from the axes
    noisy = data.make("xor", noise=0.5, standardize=False)
    clean = (noisy.X_train[:, 0] * noisy.X_train[:, 1] >= 0).astype(np.int64)
    assert not np.array_equal(noisy.y_train, clean)  # noise flips labels near the axes
    ga = data.make("gauss", noise=0.0, n_samples=4000, standardize=False)
    X, y = ga.X_train, ga.y_train
    assert np.allclose(X[y == 1].mean(axis=0), [2, 2], atol=0.1)
    assert np.allclose(X[y == 0].mean(axis=0), [-2, -2], atol=0.1)
    assert np.allclose(X[y == 1].var(axis=0), 0.5, rtol=0.15)  # variance 0.5 at noise 0
    wide = data.make("gauss", noise=0.5, n_samples=4000, standardize=False)
    assert np.allclose(wide.X_train[wide.y_train == 0].var(axis=0), 4.0, rtol=0.15)  # variance 4 at noise 0.5


# ------------------------------------------------------------------------------------- course exactness


def test_circles_course_is_the_notebook_global_rng_call(global_rng_guard) -> None:
    from sklearn.datasets import make_circles

    np.random.seed(1)
    X_tr, y_tr = make_circles(n_samples=300, noise=.05)
    np.random.seed(2)
    X_te, y_te = make_circles(n_samples=100, noise=.05)
    # the equivalence data.py relies on: a RandomState(s) draws what seed(s) + the global RNG draws
    X_rs, y_rs = make_circles(n_samples=300, noise=.05, random_state=np.random.RandomState(1))
    assert np.array_equal(X_tr, X_rs) and np.array_equal(y_tr, y_rs)
    ds = data.make("circles_course")
    assert np.array_equal(ds.X_train, X_tr) and np.array_equal(ds.y_train, y_tr)
    assert np.array_equal(ds.X_test, X_te) and np.array_equal(ds.y_test, y_te)
    assert np.array_equal(ds.X_val, X_te) and ds.X_val is not ds.X_test
    assert ds.card["val_is_test"] is True and ds.card["standardized"] is False


def test_moons_course_is_the_notebook_global_rng_call(global_rng_guard) -> None:
    from sklearn.datasets import make_moons

    np.random.seed(3)
    X, y = make_moons(n_samples=300, noise=.2)
    ds = data.make("moons_course")
    for s in ("train", "val", "test"):
        assert np.array_equal(getattr(ds, f"X_{s}"), X) and np.array_equal(getattr(ds, f"y_{s}"), y)
    assert ds.card["val_is_train"] is True and ds.card["test_is_train"] is True


def test_flower_course_is_the_notebook_loop(global_rng_guard) -> None:
    np.random.seed(1)
    m, N, D, a = 400, 200, 2, 4
    X = np.zeros((m, D))
    Y = np.zeros((m, 1), dtype="uint8")
    for j in range(2):
        ix = range(N * j, N * (j + 1))
        t = np.linspace(j * 3.12, (j + 1) * 3.12, N) + np.random.randn(N) * 0.2
        r = a * np.sin(4 * t) + np.random.randn(N) * 0.2
        X[ix] = np.c_[r * np.sin(t), r * np.cos(t)]
        Y[ix] = j
    ds = data.make("flower_course")
    assert np.array_equal(ds.X_train, X) and np.array_equal(ds.y_train, Y[:, 0].astype(np.int64))
    assert np.array_equal(ds.X_test, X) and ds.card["test_is_train"] is True


def test_making_datasets_leaves_the_global_rng_alone(global_rng_guard) -> None:
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    for name in ("circles_course", "moons_course", "flower_course", "moons", "flower"):
        data.make(name)
    assert np.array_equal(np.random.get_state()[1], before)


# ------------------------------------------------------------------------------------------ make errors


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"name": "bogus"}, "unknown dataset 'bogus'; valid: flower, moons"),
    ({"name": "spiral", "noise": 0.9}, "noise for spiral"),
    ({"name": "moons", "noise": -1.0}, "noise for moons"),
    ({"name": "moons", "noise": float("nan")}, "noise for moons"),
    ({"name": "digits", "noise": 0.1}, "noise does not apply to digits"),
    ({"name": "digits", "n_samples": 5000}, "n_samples must be <= 1797"),
    ({"name": "moons", "n_samples": 3}, "n_samples must be an integer"),
    ({"name": "circles_course", "n_samples": 100}, "fixed recipe"),
    ({"name": "moons", "val_fraction": 0.0}, "val_fraction"),
    ({"name": "moons", "val_fraction": 0.6, "test_fraction": 0.4}, "must be < 1"),
    ({"name": "moons", "seed": -1}, "seed"),
])
def test_make_rejects_bad_arguments_in_one_line(kwargs: dict, needle: str) -> None:
    name = kwargs.pop("name")
    with pytest.raises(DatasetError) as err:
        data.make(name, **kwargs)
    _assert_one_line(str(err.value), needle)


# ------------------------------------------------------------------------------------------- save/load


def test_save_load_round_trip(tmp_path: Path, made: dict[str, Dataset]) -> None:
    for name in ("moons", "digits", "circles_course"):
        ds = made[name]
        paths = data.save(ds, tmp_path / "d")
        assert {k: p.name for k, p in paths.items()} == {"npz": f"{name}.npz", "json": f"{name}.json",
                                                        "png": f"{name}.png"}
        with Image.open(paths["png"]) as im:  # the 5x5 in scatter at dpi 100, not blank
            assert im.format == "PNG" and im.size == (500, 500) and len(set(im.convert("L").getdata())) > 10
        back = data.load(name, tmp_path / "d")
        assert back.digest() == ds.digest() and back.card == ds.card and back.n_classes == ds.n_classes
        for key, arr in ds.arrays().items():
            got = getattr(back, key)
            assert np.array_equal(got, arr) and got.dtype == arr.dtype and not got.flags.writeable
    assert not [p for p in (tmp_path / "d").iterdir() if p.name.startswith(".")]  # no temp files left


def test_generate_all_writes_every_file(tmp_path: Path) -> None:
    lines: list[str] = []
    paths = data.generate_all(tmp_path, names=("xor", "moons_course"), seed=2, echo=lines.append)
    assert sorted(p.name for p in paths) == sorted(f"{n}.{e}" for n in ("xor", "moons_course")
                                                    for e in ("npz", "json", "png"))
    assert all(p.is_file() for p in paths) and len(lines) == 2 and lines[0].startswith("xor")
    assert data.load("xor", tmp_path).card["seed"] == 2


def test_interrupted_save_keeps_the_old_file(tmp_path: Path, made: dict[str, Dataset],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    data.save(made["moons"], tmp_path)
    old = (tmp_path / "moons.npz").read_bytes()

    def boom(f, **arrays):
        f.write(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez_compressed", boom)
    with pytest.raises(KeyboardInterrupt):
        data.save(made["moons"], tmp_path)
    assert (tmp_path / "moons.npz").read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["moons.json", "moons.npz", "moons.png"]


@pytest.fixture
def saved(tmp_path: Path, made: dict[str, Dataset]) -> Path:
    data.save(made["moons"], tmp_path)
    return tmp_path


def _rewrite(folder: Path, fix_card: bool = True, **changes: np.ndarray) -> None:
    """Replace arrays of moons.npz (and, by default, refresh the card's sha256 so only the change is
    caught)."""
    with np.load(folder / "moons.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays.update(changes)
    np.savez_compressed(folder / "moons.npz", **arrays)
    if fix_card:
        card = json.loads((folder / "moons.json").read_text())
        card["sha256"] = digest(arrays)
        (folder / "moons.json").write_text(json.dumps(card))


@pytest.mark.parametrize("suffix", ["npz", "json"])
def test_load_missing_files(saved: Path, suffix: str) -> None:
    with pytest.raises(DatasetError) as err:
        data.load("circles", saved)  # never saved
    _assert_one_line(str(err.value), str(saved / "circles.npz"), "is missing", "dvc repro generate")
    (saved / f"moons.{suffix}").unlink()
    with pytest.raises(DatasetError) as err:
        data.load("moons", saved)
    _assert_one_line(str(err.value), str(saved / f"moons.{suffix}"), "is missing", "dvc repro generate")


def test_load_unknown_name(saved: Path) -> None:
    with pytest.raises(DatasetError) as err:
        data.load("bogus", saved)
    _assert_one_line(str(err.value), "unknown dataset 'bogus'", "flower, moons, circles")


@pytest.mark.parametrize("cut", ["half", "tail", "empty", "garbage"])
def test_load_truncated_or_garbage_npz(saved: Path, cut: str) -> None:
    npz = saved / "moons.npz"
    raw = npz.read_bytes()
    content = {"half": raw[: len(raw) // 2], "tail": raw[:-30], "empty": b"", "garbage": b"not a zip\n" * 10}
    npz.write_bytes(content[cut])
    with pytest.raises(DatasetError) as err:
        data.load("moons", saved)
    _assert_one_line(str(err.value), str(npz), "is corrupt (", "dvc repro generate")
    assert "allow_pickle" not in str(err.value)  # never suggest unpickling


def test_load_refuses_pickled_object_arrays(saved: Path) -> None:
    obj = np.empty(3, dtype=object)
    obj[:] = [1, "a", None]
    _rewrite(saved, fix_card=False, y_train=obj)  # saving objects pickles them; loading must not unpickle
    with pytest.raises(DatasetError) as err:
        data.load("moons", saved)
    _assert_one_line(str(err.value), "moons.npz is corrupt (holds object arrays", "dvc repro generate")


@pytest.mark.parametrize(("change", "needle"), [
    (lambda ds: {"X_train": ds.X_train[:, 0].copy()}, "X_train has 1 dimensions"),
    (lambda ds: {"y_val": ds.y_val[:-1].copy()}, "X_val has 80 rows but y_val has 79"),
    (lambda ds: {"y_train": np.where(ds.y_train == 1, 2, 0).astype(np.int64)},
     "labels in [0, 2], outside [0, 2)"),
    (lambda ds: {"y_test": -ds.y_test}, "outside [0, 2)"),
    (lambda ds: {"X_test": np.full_like(ds.X_test, np.nan)}, "non-finite"),
    (lambda ds: {"X_val": ds.X_val.astype(np.float32)}, "dtype float32, expected float64"),
    (lambda ds: {"y_train": ds.y_train.astype(np.int32)}, "dtype int32, expected int64"),
    (lambda ds: {"X_test": np.zeros((80, 3))}, "X_test has 3 features, X_train has 2"),
])
def test_load_rejects_bad_arrays(saved: Path, made: dict[str, Dataset], change, needle: str) -> None:
    _rewrite(saved, **change(made["moons"]))
    with pytest.raises(DatasetError) as err:
        data.load("moons", saved)
    _assert_one_line(str(err.value), str(saved / "moons.npz"), "is corrupt", needle, "dvc repro generate")


def test_load_rejects_missing_keys_and_digest_mismatch(saved: Path, made: dict[str, Dataset]) -> None:
    _rewrite(saved, fix_card=False, X_train=made["moons"].X_train + 1e-9)  # tampered, card not updated
    with pytest.raises(DatasetError) as err:
        data.load("moons", saved)
    _assert_one_line(str(err.value), "moons.npz is corrupt (sha256", "does not match moons.json")
    np.savez_compressed(saved / "moons.npz", X_train=made["moons"].X_train)
    with pytest.raises(DatasetError) as err:
        data.load("moons", saved)
    _assert_one_line(str(err.value), "missing arrays: y_train, X_val", "dvc repro generate")


def test_load_rejects_bad_card(saved: Path) -> None:
    js = saved / "moons.json"
    card = json.loads(js.read_text())
    js.write_text("{ truncated")
    with pytest.raises(DatasetError) as err:
        data.load("moons", saved)
    _assert_one_line(str(err.value), str(js), "is corrupt", "dvc repro generate")
    js.write_text(json.dumps({**card, "schema_version": 0}))
    with pytest.raises(DatasetError) as err:
        data.load("moons", saved)
    _assert_one_line(str(err.value), str(js), "schema version 0", "dvc repro generate")
    js.write_text(json.dumps({**card, "name": "circles"}))
    with pytest.raises(DatasetError) as err:
        data.load("moons", saved)
    _assert_one_line(str(err.value), "card is for 'circles'", "dvc repro generate")


def test_dataset_scatter_for_a_many_feature_set(tmp_path: Path, made: dict[str, Dataset]) -> None:
    from src.plots.data import dataset_scatter

    out = dataset_scatter(made["digits"], tmp_path / "digits.png")
    assert out == tmp_path / "digits.png"
    with Image.open(out) as im:  # 10 classes in 2 PCA coordinates: many colours on the canvas
        assert im.size == (500, 500) and len(set(im.convert("RGB").getdata())) > 50


# ------------------------------------------------------------------------------------------------- CLI


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "src.data", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def test_cli_help_is_fast_and_light() -> None:
    res = _cli("--help")
    assert res.returncode == 0 and "generate" in res.stdout and "show" in res.stdout
    probe = subprocess.run([sys.executable, "-c", "import sys, src.data; "
                            "print(sorted(m for m in ('sklearn', 'matplotlib') if m in sys.modules))"],
                           cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert probe.stdout.strip() == "[]", probe.stderr


def test_cli_generate_and_show(tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = _cli("generate", "--only", "moons", "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("\n") == 1 and res.stdout.startswith("moons") and "train   240" in res.stdout
    assert sorted(p.name for p in out.iterdir()) == ["moons.json", "moons.npz", "moons.png"]
    shown = _cli("show", "moons", "--data-dir", str(out))
    assert shown.returncode == 0 and json.loads(shown.stdout)["sha256"] == data.load("moons", out).digest()


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    bad = _cli("generate", "--only", "bogus", "--out", str(tmp_path))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "invalid choice: 'bogus'" in bad.stderr
    missing = _cli("show", "moons", "--data-dir", str(tmp_path))
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1
    assert "moons.npz is missing" in missing.stderr and "dvc repro generate" in missing.stderr
    assert _cli().returncode == 2
