"""RMSprop against the Keras goldens (notes §2.10, §5.1–§5.4)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from optcheck.reference import Variable
from optcheck.reference.optimizers.rmsprop import RMSprop


def test_docstring_golden():
    # tf-keras rmsprop.py docstring: RMSprop(0.1), var 10, loss var²/2 → 9.683772.
    opt = RMSprop(learning_rate=0.1)
    var1 = Variable(10.0)
    loss = lambda: (var1**2) / 2.0  # noqa: E731
    opt.minimize(loss, [var1])
    assert var1.numpy() == pytest.approx(9.683772, abs=1e-6)


@pytest.mark.parametrize(("profile", "form"), [("keras2", "rsqrt"), ("keras3", "divide")])
def test_reciprocal_sqrt_form_is_bitwise(profile, form):
    # keras2: (lr·g)·(1/sqrt(den)) (tf.math.rsqrt); keras3: (lr·g)/sqrt(den).
    g = np.array([1.0, 6.0, 7.0, 2.0, 0.3, 11.0], np.float32)
    v = Variable(np.zeros(6, np.float32))
    RMSprop(learning_rate=0.5, profile=profile).apply_gradients([(g, v)])
    f = np.float32
    lr_g = f(0.5) * g
    den = f(0.9) * np.zeros(6, f) + f(1 - 0.9) * np.square(g) + f(1e-7)
    inc = lr_g * (f(1) / np.sqrt(den)) if form == "rsqrt" else lr_g / np.sqrt(den)
    np.testing.assert_array_equal(v.numpy(), np.zeros(6, f) + (-inc))


def test_momentum_and_centered_by_hand():
    # Two float64 steps of the tf-keras formula with momentum and centering.
    lr, rho, mu, eps = 0.1, 0.8, 0.5, 1e-7
    grads = [np.array([1.0, -2.0]), np.array([0.5, 3.0])]
    opt = RMSprop(learning_rate=lr, rho=rho, momentum=mu, epsilon=eps, centered=True)
    v = Variable(np.array([1.0, 1.0]))
    ms, mg, mom, x = np.zeros(2), np.zeros(2), np.zeros(2), np.ones(2)
    lr = float(np.float32(lr))
    for g in grads:
        opt.apply_gradients([(g, v)])
        ms = rho * ms + (1 - rho) * g**2
        mg = rho * mg + (1 - rho) * g
        mom = mu * mom + lr * g / np.sqrt(ms - mg**2 + eps)
        x = x - mom
    np.testing.assert_allclose(v.numpy(), x, rtol=1e-14)
    np.testing.assert_allclose(opt.get_slot(v, "momentum").numpy(), mom, rtol=1e-14)
    np.testing.assert_allclose(opt.get_slot(v, "average_gradient").numpy(), mg, rtol=1e-14)


def test_sparse_leaves_other_rows_without_momentum():
    from optcheck.reference import IndexedSlices

    opt = RMSprop(learning_rate=0.1)
    v = Variable(np.ones(3))
    opt.apply_gradients([(IndexedSlices(np.array([2.0]), np.array([1]), (3,)), v)])
    assert v.numpy()[0] == 1.0 and v.numpy()[2] == 1.0 and v.numpy()[1] < 1.0


@pytest.mark.parametrize(("profile", "expected"), [("keras2", 100), ("keras3", None)])
def test_ema_overwrite_frequency_default(profile, expected):
    assert RMSprop(profile=profile).ema_overwrite_frequency == expected
    assert RMSprop(profile=profile).get_config()["ema_overwrite_frequency"] == expected
    assert RMSprop(ema_overwrite_frequency=7, profile=profile).ema_overwrite_frequency == 7


def test_keras2_default_frequency_overwrites_at_step_100():
    opt = RMSprop(learning_rate=0.01, use_ema=True, ema_momentum=0.9)
    v = Variable(np.array([1.0, 2.0]))
    g = np.array([0.5, -0.5])
    for _ in range(99):
        opt.apply_gradients([(g, v)])
    average = opt.get_slot(v, "average")
    assert not np.array_equal(v.numpy(), average.numpy())
    opt.apply_gradients([(g, v)])
    np.testing.assert_array_equal(v.numpy(), average.numpy())


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({}, ["velocity"]),
        ({"momentum": 0.9}, ["velocity", "momentum"]),
        ({"centered": True}, ["velocity", "average_gradient"]),
        ({"momentum": 0.5, "centered": True}, ["velocity", "momentum", "average_gradient"]),
    ],
)
def test_slots(kwargs, names):
    opt = RMSprop(**kwargs)
    a, b = Variable([1.0, 2.0], name="a"), Variable([3.0], name="b")
    opt.apply_gradients([(np.ones(2, np.float32), a), (np.ones(1, np.float32), b)])
    assert opt.get_slot_names() == names
    # Each slot family is created for every variable in turn.
    assert [x.name for x in opt.variables] == ["iteration"] + [
        f"{n}/{var}" for n in names for var in ("a", "b")
    ]


BAD_INPUTS = [
    (dict(decay=0.9), "keras2", ValueError, "decay is deprecated"),
    (dict(foo=1), "keras2", TypeError, "foo is not a valid argument"),
    (dict(foo=1), "keras3", ValueError, re.escape("Argument(s) not recognized")),
    (dict(learning_rate=1), "keras3", ValueError, "Argument `learning_rate` should be float"),
    (dict(use_ema=True, ema_overwrite_frequency=1.5), "keras2", ValueError,
     "`ema_overwrite_frequency` must be an integer > 1 or None"),
    (dict(jit_compile=True), "keras3", ValueError, re.escape("Argument(s) not recognized")),
    (dict(profile="keras4"), None, ValueError, "Unknown profile"),
]  # fmt: skip


@pytest.mark.parametrize(("kwargs", "profile", "error", "match"), BAD_INPUTS)
def test_bad_inputs(kwargs, profile, error, match):
    kwargs = kwargs if profile is None else {**kwargs, "profile": profile}
    with pytest.raises(error, match=match):
        RMSprop(**kwargs)
