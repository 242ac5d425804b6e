"""LR schedules: closed forms, the course's two formulas bit for bit, per-replica lr0 arrays, errors."""

import math

import numpy as np
import pytest

from src.nn import optimizers, schedules
from src.nn.schedules import NAMES, get

EPOCHS = [0, 1, 2, 999, 1000, 1001, 2500, 10_000]


def course_update_lr(learning_rate0, epoch_num, decay_rate):
    """The Coursera notebook's ``update_lr`` (week 2, "Optimization Methods"), verbatim formula."""
    return 1 / (1 + decay_rate * epoch_num) * learning_rate0


def course_schedule_lr_decay(learning_rate0, epoch_num, decay_rate, time_interval=1000):
    """The Coursera notebook's ``schedule_lr_decay``, verbatim formula."""
    return 1 / (1 + decay_rate * np.floor(epoch_num / time_interval)) * learning_rate0


@pytest.mark.parametrize("t", EPOCHS)
def test_closed_forms(t):
    lr0 = 0.3
    assert get("constant")(lr0, t) == lr0
    assert get("step", step_size=1000, gamma=0.5)(lr0, t) == pytest.approx(lr0 * 0.5 ** (t // 1000), rel=1e-15)
    assert get("exponential", gamma=0.999)(lr0, t) == pytest.approx(lr0 * 0.999**t, rel=1e-14)
    assert get("inverse_time", decay_rate=0.01)(lr0, t) == pytest.approx(lr0 / (1 + 0.01 * t), rel=1e-15)
    assert get("interval", decay_rate=0.3, time_interval=1000)(lr0, t) == pytest.approx(
        lr0 / (1 + 0.3 * (t // 1000)), rel=1e-15)
    expected_cos = 0.01 + (lr0 - 0.01) * (1 + math.cos(math.pi * min(t, 2000) / 2000)) / 2
    assert get("cosine", t_max=2000, eta_min=0.01)(lr0, t) == pytest.approx(expected_cos, rel=1e-14)


def test_hand_values():
    assert get("step", step_size=10, gamma=0.1)(1.0, 25) == pytest.approx(0.01)
    assert get("exponential", gamma=0.5)(1.0, 3) == 0.125
    assert get("inverse_time", decay_rate=1.0)(0.1, 9) == pytest.approx(0.01)
    assert get("interval", decay_rate=1.0, time_interval=1000)(0.1, 999) == 0.1
    assert get("interval", decay_rate=1.0, time_interval=1000)(0.1, 1000) == pytest.approx(0.05)
    cos = get("cosine", t_max=100, eta_min=0.0)
    assert cos(1.0, 0) == 1.0
    assert cos(1.0, 50) == pytest.approx(0.5)
    assert cos(1.0, 100) == pytest.approx(0.0, abs=1e-16)


@pytest.mark.parametrize("t", EPOCHS)
@pytest.mark.parametrize("decay_rate", [0.0, 0.3, 1.0, 2.5])
def test_course_formulas_bit_for_bit(t, decay_rate):
    for lr0 in (0.1, 0.0007, 0.01):
        assert get("inverse_time", decay_rate=decay_rate)(lr0, t) == course_update_lr(lr0, t, decay_rate)
        for interval in (1, 7, 1000):
            assert get("interval", decay_rate=decay_rate, time_interval=interval)(lr0, t) == \
                course_schedule_lr_decay(lr0, t, decay_rate, interval)


@pytest.mark.parametrize("name", NAMES)
def test_vectorised_lr0_equals_per_replica_calls(name):
    sched = get(name)
    lr0 = np.array([0.001, 0.01, 0.3])
    for t in EPOCHS:
        out = sched(lr0, t)
        assert isinstance(out, np.ndarray) and out.shape == (3,) and out.dtype == np.float64
        np.testing.assert_allclose(out, [sched(float(x), t) for x in lr0], rtol=1e-15, atol=0)
        assert out is not lr0
    scalar = sched(0.1, 5)
    assert isinstance(scalar, float)


def test_default_parameters():
    assert get("step").hparams() == {"step_size": 1000, "gamma": 0.1}
    assert get("exponential").hparams() == {"gamma": 0.99}
    assert get("inverse_time").hparams() == {"decay_rate": 1.0}
    assert get("interval").hparams() == {"decay_rate": 1.0, "time_interval": 1000}
    assert get("cosine").hparams() == {"t_max": 1000, "eta_min": 0.0}
    assert repr(get("cosine", t_max=10)) == "Cosine(t_max=10, eta_min=0.0)"


def test_cosine_is_monotone_and_holds_eta_min_after_t_max():
    sched = get("cosine", t_max=50, eta_min=0.001)
    lrs = np.array([sched(0.1, t) for t in range(120)])
    assert np.all(np.diff(lrs) <= 0)
    assert lrs[0] == 0.1
    np.testing.assert_allclose(lrs[50:], 0.001, rtol=1e-15)


@pytest.mark.parametrize("name", ["step", "exponential", "inverse_time", "interval", "cosine"])
def test_decaying_schedules_never_increase(name):
    sched = get(name, **({"step_size": 3} if name == "step" else {"time_interval": 3} if name == "interval" else {}))
    lrs = [sched(0.5, t) for t in range(0, 3000, 7)]
    assert all(b <= a for a, b in zip(lrs, lrs[1:], strict=False))
    assert lrs[-1] < lrs[0]


def test_drives_an_optimizer_per_epoch_like_the_loop():
    """The loop's use: lr0 = opt.lr once, then opt.lr = schedule(lr0, epoch) each epoch (cosine reaches 0)."""
    opt = optimizers.get("sgd", lr=np.array([0.1, 0.2]))
    sched = get("cosine", t_max=4, eta_min=0.0)
    lr0 = opt.lr
    seen = []
    for epoch in range(6):
        opt.lr = sched(lr0, epoch)
        seen.append(np.asarray(opt.lr).copy())
    np.testing.assert_allclose(seen[0], [0.1, 0.2])
    np.testing.assert_allclose(seen[2], [0.05, 0.1])
    np.testing.assert_allclose(seen[4], [0.0, 0.0], atol=1e-17)
    np.testing.assert_array_equal(lr0, [0.1, 0.2])  # the schedule never mutates lr0


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError) as exc:
        get("bogus")
    msg = str(exc.value)
    assert "'bogus'" in msg and "\n" not in msg and all(n in msg for n in NAMES)


def test_unknown_kwarg_is_named():
    with pytest.raises(ValueError) as exc:
        get("step", decay_rate=0.5)
    msg = str(exc.value)
    assert "'decay_rate'" in msg and "step_size" in msg and "gamma" in msg and "\n" not in msg
    with pytest.raises(ValueError, match="none"):
        get("constant", gamma=0.5)


@pytest.mark.parametrize(("name", "kwargs", "needle"), [
    ("step", {"step_size": 0}, "step_size"),
    ("step", {"step_size": 2.5}, "step_size"),
    ("step", {"step_size": True}, "step_size"),
    ("step", {"gamma": 0.0}, "gamma"),
    ("step", {"gamma": float("nan")}, "gamma"),
    ("exponential", {"gamma": -0.5}, "gamma"),
    ("exponential", {"gamma": np.array([0.9, 0.99])}, "gamma"),
    ("inverse_time", {"decay_rate": -1.0}, "decay_rate"),
    ("interval", {"time_interval": 0}, "time_interval"),
    ("interval", {"decay_rate": float("inf")}, "decay_rate"),
    ("cosine", {"t_max": 0}, "t_max"),
    ("cosine", {"eta_min": -0.1}, "eta_min"),
])
def test_invalid_values_give_one_line_errors(name, kwargs, needle):
    with pytest.raises(ValueError) as exc:
        get(name, **kwargs)
    msg = str(exc.value)
    assert needle in msg and "valid" in msg and "\n" not in msg


@pytest.mark.parametrize("epoch", [-1, 1.5, True, "3"])
def test_invalid_epoch(epoch):
    with pytest.raises(ValueError, match="epoch"):
        get("constant")(0.1, epoch)


def test_integral_floats_are_accepted_for_integer_parameters():
    assert get("step", step_size=1000.0).step_size == 1000
    assert isinstance(get("cosine", t_max=np.int64(7)).t_max, int)
    assert isinstance(schedules.get("constant"), schedules.Schedule)


def test_live_torch_schedulers_agree_up_to_t_max():
    torch = pytest.importorskip("torch")
    p = torch.nn.Parameter(torch.zeros(1))
    for name, cls, torch_kw, kw in [
        ("step", "StepLR", {"step_size": 7, "gamma": 0.5}, {"step_size": 7, "gamma": 0.5}),
        ("exponential", "ExponentialLR", {"gamma": 0.97}, {"gamma": 0.97}),
        ("cosine", "CosineAnnealingLR", {"T_max": 30, "eta_min": 0.01}, {"t_max": 30, "eta_min": 0.01}),
    ]:
        opt = torch.optim.SGD([p], lr=0.3)
        sched = getattr(torch.optim.lr_scheduler, cls)(opt, **torch_kw)
        ours = get(name, **kw)
        for epoch in range(31):
            assert ours(0.3, epoch) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12), (name, epoch)
            opt.step()
            sched.step()
