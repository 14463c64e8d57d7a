"""Ftrl against the Keras goldens (notes §2.1, §2.8, §5.1, §5.2, §5.4)."""

from __future__ import annotations

import numpy as np
import pytest

from optcheck.reference import IndexedSlices, Variable
from optcheck.reference.optimizers.ftrl import Ftrl

PROFILES = ["keras2", "keras3"]

GOLDEN_KWARGS = {
    "learning_rate": 0.05,
    "learning_rate_power": -0.2,
    "initial_accumulator_value": 0.4,
    "l1_regularization_strength": 0.05,
    "l2_regularization_strength": 0.15,
    "l2_shrinkage_regularization_strength": 0.01,
    "beta": 0.3,
}


@pytest.mark.parametrize("profile", PROFILES)
def test_one_step_formula_float64(profile):
    # n' = n + g²; z = ĝ − ((n'^−p − n^−p)/lr)·var; var = (clip(z) − z)/(n'^−p/lr + 2·l2').
    kwargs = dict(GOLDEN_KWARGS, learning_rate=0.5)
    g = np.array([1.0, -6.0, 0.02, 2.0])
    v = Variable(np.array([1.0, 2.0, 3.0, 4.0]))
    opt = Ftrl(**kwargs, profile=profile)
    opt.apply_gradients([(g, v)])
    lr = float(np.float32(0.5))
    n = float(np.float32(0.4))  # tf.cast(tf.fill(shape, 0.4), float64): float32 first
    var = np.array([1.0, 2.0, 3.0, 4.0])
    l2 = 0.15 + 0.3 / (2.0 * lr)
    g_hat = g + (2 * 0.01) * var
    n_new = n + g * g
    z = g_hat - (n_new**0.2 - n**0.2) / lr * var
    q = n_new**0.2 / lr + 2 * l2
    expected = (np.clip(z, -0.05, 0.05) - z) / q
    np.testing.assert_allclose(v.numpy(), expected, rtol=1e-15, atol=0)
    np.testing.assert_array_equal(opt.get_slot(v, "accumulator").numpy(), n_new)
    np.testing.assert_allclose(opt.get_slot(v, "linear").numpy(), z, rtol=1e-15)


@pytest.mark.parametrize("profile", PROFILES)
def test_sparse_is_densified(profile):
    # No sparse branch: rows without a gradient are recomputed (and shrink with l2s > 0).
    kwargs = dict(GOLDEN_KWARGS, l1_regularization_strength=0.0)
    dense_x, sparse_x = Variable(np.ones(5)), Variable(np.ones(5))
    dense_opt, sparse_opt = Ftrl(**kwargs, profile=profile), Ftrl(**kwargs, profile=profile)
    sparse_g = IndexedSlices(np.array([1.0, 1.5]), np.array([1, 2]), (5,))
    for _ in range(3):
        dense_opt.apply_gradients([(np.array([0.0, 1.0, 1.5, 0.0, 0.0]), dense_x)])
        sparse_opt.apply_gradients([(sparse_g, sparse_x)])
    np.testing.assert_array_equal(dense_x.numpy(), sparse_x.numpy())
    assert np.all(sparse_x.numpy()[[0, 3, 4]] != 1.0)


BAD_INPUTS = [
    ({"initial_accumulator_value": -0.1}, ValueError,
     r"^`initial_accumulator_value` needs to be positive or zero\. "
     r"Received: initial_accumulator_value=-0\.1\.$"),
    ({"learning_rate_power": 0.5}, ValueError,
     r"^`learning_rate_power` needs to be negative or zero\. "
     r"Received: learning_rate_power=0\.5\.$"),
    ({"l1_regularization_strength": -1.0}, ValueError,
     r"^`l1_regularization_strength` needs to be positive or zero\. "
     r"Received: l1_regularization_strength=-1\.0\.$"),
    ({"l2_regularization_strength": -1.0}, ValueError,
     r"^`l2_regularization_strength` needs to be positive or zero\. "
     r"Received: l2_regularization_strength=-1\.0\.$"),
    ({"l2_shrinkage_regularization_strength": -1.0}, ValueError,
     r"^`l2_shrinkage_regularization_strength` needs to be positive or zero\. "
     r"Received: l2_shrinkage_regularization_strength=-1\.0\.$"),
]  # fmt: skip


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize(("kwargs", "error", "match"), BAD_INPUTS)
def test_bad_hyperparameters(profile, kwargs, error, match):
    with pytest.raises(error, match=match):
        Ftrl(**kwargs, profile=profile)


def test_hyperparameters_checked_before_learning_rate():
    # tf-keras checks Ftrl's arguments before building the learning rate.
    with pytest.raises(ValueError, match="learning_rate_power"):
        Ftrl(learning_rate="bad", learning_rate_power=1.0)
    with pytest.raises(TypeError, match="learning_rate"):
        Ftrl(learning_rate="bad")


def test_zero_values_are_accepted():
    opt = Ftrl(learning_rate_power=0.0, initial_accumulator_value=0.0)
    v = Variable([1.0, 2.0])
    opt.apply_gradients([(np.array([0.5, -0.5], np.float32), v)])
    assert np.all(np.isfinite(v.numpy()))
