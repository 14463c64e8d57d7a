"""Adafactor against the Keras goldens (notes §1.10, §2.11, §5.1–§5.3)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from optcheck.reference import Variable, dtypes
from optcheck.reference.optimizers.adafactor import Adafactor
from optcheck.reference.schedules import ExponentialDecay
from tests.helpers import (
    k3_single_step,
)


@pytest.mark.parametrize("profile", ["keras2", "keras3"])
def test_single_step_1d(profile):
    out = k3_single_step(Adafactor(learning_rate=0.5, profile=profile))
    np.testing.assert_allclose(out, [-0.3693, 0.6307, 1.6307, 2.6307], rtol=1e-4, atol=1e-4)


def _factored_oracle(x, grads, lr, d=-0.8, eps1=1e-30, eps2=1e-3, clip=1.0):
    """Float64 textbook form of the rank ≥ 2 update (notes §2.11)."""
    r = np.zeros(x.shape[:-1])
    c = np.zeros(x.shape[:-2] + x.shape[-1:])
    for t, g in enumerate(grads, start=1):
        rho = min(lr, 1 / np.sqrt(t))
        alpha = max(eps2, np.sqrt(np.mean(x**2))) * rho
        big_g = g**2 + eps1
        b = 1 - t**d
        r = b * r + (1 - b) * big_g.mean(axis=-1)
        c = b * c + (1 - b) * big_g.mean(axis=-2)
        v = (r / r.mean(axis=-1, keepdims=True))[..., :, None] * c[..., None, :]
        u = g / np.sqrt(v)
        u = u / max(1.0, np.sqrt(np.mean(u**2)) / clip)
        x = x - alpha * u
    return x, r, c, v


@pytest.mark.parametrize("profile", ["keras2", "keras3"])
def test_rank3_factored_path_matches_formula(profile):
    rng = np.random.default_rng(1)
    x0 = rng.standard_normal((2, 3, 4))
    grads = [rng.standard_normal((2, 3, 4)) for _ in range(4)]
    opt = Adafactor(learning_rate=0.05, profile=profile)
    var = Variable(x0, name="w")
    for g in grads:
        opt.apply_gradients([(g, var)])
    lr = float(np.float32(0.05))
    x, r, c, v = _factored_oracle(x0, grads, lr)
    np.testing.assert_allclose(var.numpy(), x, rtol=1e-12)
    assert opt.get_slot(var, "r").shape == (2, 3)
    assert opt.get_slot(var, "c").shape == (2, 4)
    np.testing.assert_allclose(opt.get_slot(var, "r").numpy(), r, rtol=1e-12)
    np.testing.assert_allclose(opt.get_slot(var, "c").numpy(), c, rtol=1e-12)
    np.testing.assert_allclose(opt.get_slot(var, "v").numpy(), v, rtol=1e-12)


def test_first_step_forgets_history():
    # β2_t = 1 − 1^d = 0 at t = 1: v = g² + ε1 exactly.
    opt = Adafactor()
    var = Variable(np.array([1.0, 2.0]))
    opt.apply_gradients([(np.array([3.0, -4.0]), var)])
    np.testing.assert_array_equal(opt.get_slot(var, "v").numpy(), np.array([9.0, 16.0]) + 1e-30)


def test_relative_step_has_no_effect():
    # ρ_t = min(lr, 1/sqrt(t)) already; the relative-step clamp is idempotent (both sources).
    finals = []
    for relative_step in (True, False):
        var = Variable(np.array([[1.0, 2.0], [3.0, 4.0]]))
        opt = Adafactor(learning_rate=0.9, relative_step=relative_step)
        for _ in range(5):
            opt.apply_gradients([(np.array([[0.5, -1.0], [2.0, 0.1]]), var)])
        finals.append(var.numpy())
    np.testing.assert_array_equal(finals[0], finals[1])


def test_step_size_capped_by_inverse_sqrt_step():
    # lr 10 vs lr 1 give the same trajectory while 1/sqrt(t) ≤ 1 (schedule or float).
    finals = []
    for lr in (10.0, 1.0, ExponentialDecay(10.0, decay_steps=1000, decay_rate=0.99)):
        var = Variable(np.array([1.0, -2.0, 0.5]))
        opt = Adafactor(learning_rate=lr)
        for _ in range(3):
            opt.apply_gradients([(np.array([0.3, 0.2, -0.1]), var)])
        finals.append(var.numpy())
    np.testing.assert_array_equal(finals[0], finals[1])
    np.testing.assert_array_equal(finals[0], finals[2])


def test_update_clipped_by_rms():
    # Step 1, rank 1: u = g/sqrt(g²+ε1) = ±1, RMS(u) = 1; clip_threshold 0.5 halves the step.
    moves = []
    for clip in (1.0, 0.5):
        var = Variable(np.array([2.0, 2.0]))
        Adafactor(learning_rate=0.1, clip_threshold=clip).apply_gradients(
            [(np.array([1.0, -3.0]), var)]
        )
        moves.append(var.numpy() - 2.0)
    # α = max(1e-3, RMS(var) = 2)·min(lr, 1) = 2·float32(0.1)
    alpha = 2 * float(np.float32(0.1))
    np.testing.assert_allclose(moves[0], [-alpha, alpha], rtol=1e-12)
    np.testing.assert_allclose(moves[1], [-alpha / 2, alpha / 2], rtol=1e-12)


@pytest.mark.parametrize("profile", ["keras2", "keras3"])
def test_variables_listing(profile):
    opt = Adafactor(profile=profile)
    a = Variable([1.0, 2.0], name="a")
    b = Variable([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], name="b")
    opt.apply_gradients([(np.ones(2, np.float32), a), (np.ones((2, 3), np.float32), b)])
    names = [x.name for x in opt.variables]
    if profile == "keras2":
        # rank 1: no r/c variables (tf-keras keeps untracked placeholders); rank 2: r, c, v.
        assert names == ["iteration", "v/a", "r/b", "c/b", "v/b"]
    else:
        assert names == ["iteration", "learning_rate", "a_velocity", "b_r", "b_c", "b_velocity"]
    assert opt.slots(a).keys() == {"v"}
    assert opt.slots(b).keys() == {"r", "c", "v"}
    assert opt.get_slot(b, "r").shape == (2,) and opt.get_slot(b, "c").shape == (3,)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_low_precision_dtypes_stay_in_dtype(dtype):
    x0 = np.array([[1.0, 2.0], [3.0, 4.0]])
    g = np.array([[1.0, 6.0], [7.0, 2.0]])
    ref = Variable(x0)
    Adafactor(learning_rate=0.5).apply_gradients([(g, ref)])
    var = Variable(x0, dtype=dtype)
    opt = Adafactor(learning_rate=0.5)
    opt.apply_gradients([(g.astype(var.dtype), var)])
    assert var.dtype == dtypes.as_dtype(dtype)
    assert opt.get_slot(var, "r").dtype == opt.get_slot(var, "v").dtype == var.dtype
    tol = {"float16": 1e-2, "bfloat16": 5e-2, "float32": 1e-5}[dtype]
    np.testing.assert_allclose(var.numpy().astype(np.float64), ref.numpy(), atol=tol)


def test_float16_zero_gradient_is_nan():
    # ε1 = 1e-30 underflows to 0 in float16: v = 0 where g = 0, u = 0·inf = NaN (derived).
    var = Variable(np.array([1.0, 2.0]), dtype="float16")
    Adafactor().apply_gradients([(np.array([0.5, 0.0], np.float16), var)])
    assert np.isnan(var.numpy()).all()
    var32 = Variable(np.array([1.0, 2.0]), dtype="float32")
    Adafactor().apply_gradients([(np.array([0.5, 0.0], np.float32), var32)])
    assert np.isfinite(var32.numpy()).all()


BAD_INPUTS = [
    (dict(foo=1), "keras2", TypeError, "foo is not a valid argument"),
    (dict(foo=1), "keras3", ValueError, re.escape("Argument(s) not recognized")),
    (dict(learning_rate="0.1"), "keras2", TypeError, "`learning_rate` must be a float"),
    (dict(learning_rate=1), "keras3", ValueError, "Argument `learning_rate` should be float"),
    (dict(clipnorm=1.0, global_clipnorm=1.0), "keras2", ValueError,
     "At most one of `clipnorm` and `global_clipnorm`"),
]  # fmt: skip


@pytest.mark.parametrize(("kwargs", "profile", "error", "match"), BAD_INPUTS)
def test_bad_inputs(kwargs, profile, error, match):
    with pytest.raises(error, match=match):
        Adafactor(**kwargs, profile=profile)
