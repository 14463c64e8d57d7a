"""Adamax against the Keras goldens (notes §2.7, §5.1, §5.2, §5.3, §5.4)."""

from __future__ import annotations

import numpy as np
import pytest

from optcheck.reference import IndexedSlices, Variable
from optcheck.reference.optimizers.adamax import Adamax
from tests.helpers import (
    config_round_trip_equal,
    k3_golden_trajectory,
    k3_single_step,
    k3_weight_decay,
    sparse_vs_dense,
)

PROFILES = ["keras2", "keras3"]

# K3 adamax_test.py: Adamax(learning_rate=0.2, beta_1=0.85, beta_2=0.95, epsilon=1e-6).
GOLDEN = np.array(
    [
        [0.8] * 10,
        [0.6827, 0.6873, 0.6888, 0.6896, 0.6901, 0.6904, 0.6906, 0.6908, 0.6909, 0.691],
        [0.5333, 0.5407, 0.5431, 0.5444, 0.5451, 0.5456, 0.546, 0.5462, 0.5464, 0.5466],
        [0.368, 0.3773, 0.3804, 0.382, 0.3829, 0.3835, 0.384, 0.3843, 0.3846, 0.3848],
        [0.1933, 0.204, 0.2076, 0.2094, 0.2105, 0.2112, 0.2117, 0.2121, 0.2124, 0.2126],
    ]
)

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
    opt = Adamax(learning_rate=0.2, beta_1=0.85, beta_2=0.95, epsilon=1e-6, profile=profile)
    rows = k3_golden_trajectory(opt, "float32")
    np.testing.assert_allclose(rows, GOLDEN, rtol=5e-4, atol=5e-4)


@pytest.mark.parametrize("profile", PROFILES)
def test_single_step(profile):
    out = k3_single_step(Adamax(learning_rate=0.5, profile=profile))
    np.testing.assert_allclose(out, [0.5, 1.5, 2.5, 3.5], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("profile", PROFILES)
def test_weight_decay(profile):
    var1, var2, var3 = k3_weight_decay(
        lambda: Adamax(learning_rate=1.0, weight_decay=0.004, profile=profile)
    )
    np.testing.assert_almost_equal(var1, 1.9760959, decimal=6)
    assert var2 == 2.0 and var3 == 2.0


@pytest.mark.parametrize("profile", PROFILES)
def test_float64_beta_power_uses_tf_cast(profile):
    # β1ᵗ = pow(tf.cast(0.9, float64), t): the Python float goes through float32 first;
    # 1 − β1 in the moment is a Python float converted once.
    g = np.array([0.5, -2.0, 3.0])
    v = Variable(np.zeros(3), dtype="float64")
    Adamax(learning_rate=0.1, epsilon=0.0, profile=profile).apply_gradients([(g, v)])
    lr = float(np.float32(0.1))
    m = g * (1 - 0.9)
    u = np.abs(g)
    beta_1_cast = float(np.float32(0.9))
    np.testing.assert_array_equal(v.numpy(), -((lr * m) / ((1 - beta_1_cast) * u)))
    assert not np.array_equal(v.numpy(), -((lr * m) / ((1 - 0.9) * u)))


def test_sparse_equals_dense():
    dense, sparse = sparse_vs_dense(lambda: Adamax(learning_rate=0.1))
    np.testing.assert_allclose(dense, sparse, rtol=1e-12)
    assert not np.array_equal(dense, np.ones(5))


def test_sparse_infinity_norm_is_a_scatter_add_of_the_increment():
    # u ← u·β2 on every row; u[idx] += max(u[idx], |g|) − u[idx].
    opt = Adamax(learning_rate=0.1, beta_2=0.5)
    v = Variable(np.ones(3))
    opt.apply_gradients([(np.array([4.0, 0.1, 2.0]), v)])
    opt.apply_gradients([(IndexedSlices(np.array([-3.0, 0.5]), np.array([0, 2]), (3,)), v)])
    u = opt.get_slot(v, "u").numpy()
    assert u[1] == 0.1 * 0.5
    assert u[0] == 2.0 + (3.0 - 2.0)
    assert u[2] == 1.0 + (1.0 - 1.0)


@pytest.mark.parametrize("profile", PROFILES)
def test_config_round_trip(profile):
    kwargs = {"learning_rate": 0.5, "beta_1": 0.8, "beta_2": 0.95, "epsilon": 1e-5,
              "use_ema": True, "ema_momentum": 0.5, "ema_overwrite_frequency": 2}  # fmt: skip
    a, b = config_round_trip_equal(Adamax, kwargs, profile)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("profile", PROFILES)
def test_get_config_keys(profile):
    config = Adamax(beta_1=0.8, beta_2=0.95, epsilon=1e-5, profile=profile).get_config()
    assert list(config) == BASE_KEYS[profile] + ["beta_1", "beta_2", "epsilon"]
    assert (config["beta_1"], config["beta_2"], config["epsilon"]) == (0.8, 0.95, 1e-5)


def test_slot_names_per_profile():
    v = Variable([1.0, 2.0])
    k2, k3 = Adamax(), Adamax(profile="keras3")
    k2.build([v])
    k3.build([v])
    assert [x.name for x in k2.variables] == ["iteration", "m/Variable", "u/Variable"]
    assert [x.name for x in k3.variables][2:] == ["Variable_momentum", "Variable_norm"]


BAD_INPUTS = [
    ("keras2", {"decay": 0.1}, ValueError, "decay is deprecated"),
    ("keras2", {"beta": 0.9}, TypeError, "beta is not a valid argument"),
    ("keras3", {"beta": 0.9}, ValueError, r"Argument\(s\) not recognized"),
    ("keras3", {"learning_rate": 1}, ValueError, "Argument `learning_rate` should be float"),
    ("keras2", {"use_ema": True, "ema_momentum": 1.5}, ValueError, "`ema_momentum` must be"),
]


@pytest.mark.parametrize(("profile", "kwargs", "error", "match"), BAD_INPUTS)
def test_bad_inputs(profile, kwargs, error, match):
    with pytest.raises(error, match=match):
        Adamax(**kwargs, profile=profile)
