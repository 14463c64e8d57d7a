"""Ftrl against the Keras goldens (notes §2.1, §2.8, §5.1, §5.2, §5.4)."""

from __future__ import annotations

import numpy as np
import pytest

from optcheck.reference import IndexedSlices, Variable
from optcheck.reference.optimizers.ftrl import Ftrl
from tests.helpers import config_round_trip_equal, k3_golden_trajectory, k3_single_step

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

# K3 ftrl_test.py with GOLDEN_KWARGS.
GOLDEN = np.array(
    [
        [0.0] * 10,
        [-0.0034, -0.0077, -0.0118, -0.0157, -0.0194, -0.023, -0.0263, -0.0294, -0.0325, -0.0354],
        [-0.0078, -0.0162, -0.0242, -0.0317, -0.0387, -0.0454, -0.0516, -0.0575, -0.0631, -0.0685],
        [-0.0121, -0.0246, -0.0363, -0.0472, -0.0573, -0.0668, -0.0757, -0.0842, -0.0922, -0.0999],
        [-0.0164, -0.0328, -0.0481, -0.0623, -0.0753, -0.0875, -0.099, -0.1098, -0.1201, -0.1299],
    ]
)

HYPER_KEYS = [
    "learning_rate_power",
    "initial_accumulator_value",
    "l1_regularization_strength",
    "l2_regularization_strength",
    "l2_shrinkage_regularization_strength",
    "beta",
]
BASE_KEYS = {
    "keras2": ["name", "weight_decay", "clipnorm", "global_clipnorm", "clipvalue", "use_ema",
               "ema_momentum", "ema_overwrite_frequency", "jit_compile", "is_legacy_optimizer",
               "learning_rate"],
    "keras3": ["name", "learning_rate", "weight_decay", "clipnorm", "global_clipnorm",
               "clipvalue", "use_ema", "ema_momentum", "ema_overwrite_frequency",
               "loss_scale_factor", "gradient_accumulation_steps"],
}  # fmt: skip


@pytest.mark.parametrize("profile", PROFILES)
def test_correctness_with_golden(profile):
    rows = k3_golden_trajectory(Ftrl(**GOLDEN_KWARGS, profile=profile), "float64")
    np.testing.assert_allclose(rows, GOLDEN, rtol=5e-4, atol=5e-4)
    # l1 clipping: after the tiny first gradient |z| ≤ l1, so the variable is exactly 0.
    assert np.all(rows[0] == 0.0)


@pytest.mark.parametrize("profile", PROFILES)
def test_single_step(profile):
    out = k3_single_step(Ftrl(learning_rate=0.5, profile=profile))
    np.testing.assert_allclose(out, [0.2218, 1.3954, 2.3651, 2.8814], rtol=1e-4, atol=1e-4)


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


@pytest.mark.parametrize("profile", PROFILES)
def test_config_round_trip(profile):
    a, b = config_round_trip_equal(Ftrl, GOLDEN_KWARGS, profile)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("profile", PROFILES)
def test_get_config_keys(profile):
    config = Ftrl(**GOLDEN_KWARGS, profile=profile).get_config()
    assert list(config) == BASE_KEYS[profile] + HYPER_KEYS
    assert {k: config[k] for k in HYPER_KEYS} == {
        k: v for k, v in GOLDEN_KWARGS.items() if k != "learning_rate"
    }
    assert config["learning_rate"] == np.float32(0.05)


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
