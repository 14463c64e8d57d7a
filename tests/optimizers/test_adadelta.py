"""Adadelta against the Keras goldens (notes §2.6, §5.1, §5.2, §5.3, §5.4)."""

from __future__ import annotations

import numpy as np
import pytest

from optcheck.reference import IndexedSlices, Variable
from optcheck.reference.optimizers.adadelta import Adadelta

PROFILES = ["keras2", "keras3"]


# float32 gradients for which ((1 − ρ)·g)·g and (1 − ρ)·(g·g) round differently.
G = np.random.default_rng(0).standard_normal(20).astype(np.float32)


@pytest.mark.parametrize("profile", PROFILES)
def test_one_step_formula_bitwise(profile):
    f32 = np.float32
    rho, c, eps, lr = f32(0.95), f32(1 - 0.95), f32(1e-7), f32(0.7)
    v = Variable(np.ones(20, np.float32))
    opt = Adadelta(learning_rate=0.7, profile=profile)
    opt.apply_gradients([(G, v)])
    scaled_square = (lambda x: c * x * x) if profile == "keras2" else (lambda x: c * np.square(x))
    acc_grad = rho * f32(0) + scaled_square(G)
    delta = -np.sqrt(f32(0) + eps) * G / np.sqrt(acc_grad + eps)
    acc_delta = rho * f32(0) + scaled_square(delta)
    np.testing.assert_array_equal(opt.get_slot(v, "accumulated_grad").numpy(), acc_grad)
    np.testing.assert_array_equal(opt.get_slot(v, "accumulated_delta_var").numpy(), acc_delta)
    np.testing.assert_array_equal(v.numpy(), f32(1) + lr * delta)


def test_profiles_differ_in_scaled_square():
    slots = {}
    for profile in PROFILES:
        v = Variable(np.ones(20, np.float32))
        opt = Adadelta(learning_rate=0.7, profile=profile)
        opt.apply_gradients([(G, v)])
        slots[profile] = opt.get_slot(v, "accumulated_grad").numpy()
    assert not np.array_equal(slots["keras2"], slots["keras3"])
    np.testing.assert_allclose(slots["keras2"], slots["keras3"], rtol=1e-6)


def test_sparse_decays_all_rows_of_accumulated_grad():
    # Eg² ← Eg² + (ρ − 1)·Eg² on every row, then the rows idx receive (1 − ρ)·g².
    opt = Adadelta(learning_rate=1.0, rho=0.9)
    v = Variable(np.ones(3))
    opt.apply_gradients([(np.array([1.0, 2.0, 3.0]), v)])
    before = opt.get_slot(v, "accumulated_grad").numpy()
    opt.apply_gradients([(IndexedSlices(np.array([4.0]), np.array([1]), (3,)), v)])
    after = opt.get_slot(v, "accumulated_grad").numpy()
    decayed = before + (0.9 - 1) * before
    np.testing.assert_array_equal(after[[0, 2]], decayed[[0, 2]])
    assert after[1] == decayed[1] + (1 - 0.9) * 16.0


BAD_INPUTS = [
    ("keras2", {"decay": 0.1}, ValueError, "decay is deprecated"),
    ("keras2", {"rho_": 0.9}, TypeError, "rho_ is not a valid argument"),
    ("keras3", {"rho_": 0.9}, ValueError, r"Argument\(s\) not recognized"),
    ("keras3", {"learning_rate": 1}, ValueError, "Argument `learning_rate` should be float"),
    ("keras3", {"clipnorm": 1.0, "clipvalue": 1.0}, ValueError, "Only one of"),
]


@pytest.mark.parametrize(("profile", "kwargs", "error", "match"), BAD_INPUTS)
def test_bad_inputs(profile, kwargs, error, match):
    with pytest.raises(error, match=match):
        Adadelta(**kwargs, profile=profile)
