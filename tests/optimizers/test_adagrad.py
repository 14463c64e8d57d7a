"""Adagrad against the Keras goldens (notes §2.5, §5.1, §5.2, §5.3, §5.4)."""

from __future__ import annotations

import numpy as np
import pytest

from optcheck.reference import IndexedSlices, Variable
from optcheck.reference.optimizers.adagrad import Adagrad
from tests.helpers import (
    config_round_trip_equal,
    k3_golden_trajectory,
    k3_single_step,
    k3_weight_decay,
    sparse_vs_dense,
)

PROFILES = ["keras2", "keras3"]

# K3 adagrad_test.py: Adagrad(learning_rate=0.2, initial_accumulator_value=0.3, epsilon=1e-6).
GOLDEN = np.array(
    [
        [0.9963] * 10,
        [0.9604, 0.9278, 0.9003, 0.8784, 0.8615, 0.8487, 0.8388, 0.8313, 0.8255, 0.8209],
        [0.9251, 0.8629, 0.8137, 0.7768, 0.7497, 0.7298, 0.7151, 0.704, 0.6956, 0.6891],
        [0.8903, 0.8012, 0.7342, 0.6862, 0.6521, 0.6277, 0.6099, 0.5967, 0.5867, 0.579],
        [0.856, 0.7422, 0.6604, 0.6037, 0.5644, 0.5367, 0.5168, 0.5021, 0.491, 0.4825],
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
    opt = Adagrad(learning_rate=0.2, initial_accumulator_value=0.3, epsilon=1e-6, profile=profile)
    rows = k3_golden_trajectory(opt, "float64")
    np.testing.assert_allclose(rows, GOLDEN, rtol=5e-4, atol=5e-4)


@pytest.mark.parametrize("profile", PROFILES)
def test_single_step(profile):
    out = k3_single_step(Adagrad(learning_rate=0.5, profile=profile))
    np.testing.assert_allclose(out, [0.5233, 1.5007, 2.5005, 3.5061], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("profile", PROFILES)
def test_weight_decay(profile):
    var1, var2, var3 = k3_weight_decay(
        lambda: Adagrad(learning_rate=1.0, weight_decay=0.004, profile=profile)
    )
    np.testing.assert_almost_equal(var1, 1.9760959, decimal=6)
    assert var2 == 2.0 and var3 == 2.0


@pytest.mark.parametrize("profile", PROFILES)
def test_first_step_formula_bitwise(profile):
    # acc = 0.1 + g·g; var -= (lr·g) / sqrt(acc + ε): ε inside the root, lr·g first.
    g = np.array([0.3, -1.7, 2.9, 0.01], np.float32)
    v = Variable(np.array([1.0, 2.0, 3.0, 4.0], np.float32))
    Adagrad(learning_rate=0.3, epsilon=0.05, profile=profile).apply_gradients([(g, v)])
    f32 = np.float32
    acc = f32(0.1) + g * g
    expected = np.array([1, 2, 3, 4], f32) - (f32(0.3) * g) / np.sqrt(acc + f32(0.05))
    np.testing.assert_array_equal(v.numpy(), expected)
    legacy = np.array([1, 2, 3, 4], f32) - (f32(0.3) * g) / (np.sqrt(acc) + f32(0.05))
    assert not np.array_equal(expected, legacy)


def test_initial_accumulator_conversion_per_profile():
    # tf-keras: tf.constant(0.1, float64); Keras 3: ops.cast(0.1, float64) via float32.
    v = Variable(np.ones(3), dtype="float64")
    k2, k3 = Adagrad(profile="keras2"), Adagrad(profile="keras3")
    k2.build([v])
    k3.build([v])
    np.testing.assert_array_equal(k2.get_slot(v, "accumulator").numpy(), np.full(3, 0.1))
    np.testing.assert_array_equal(
        k3.get_slot(v, "accumulator").numpy(), np.full(3, float(np.float32(0.1)))
    )
    assert float(np.float32(0.1)) != 0.1


def test_sparse_equals_dense():
    dense, sparse = sparse_vs_dense(lambda: Adagrad(learning_rate=0.1))
    np.testing.assert_allclose(dense, sparse, rtol=1e-12)
    assert not np.array_equal(dense, np.ones(5))


def test_sparse_touches_only_given_rows():
    opt = Adagrad(learning_rate=0.5)
    v = Variable(np.arange(8.0).reshape(4, 2))
    g = IndexedSlices(np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([2, 0]), (4, 2))
    opt.apply_gradients([(g, v)])
    acc = opt.get_slot(v, "accumulator").numpy()
    np.testing.assert_array_equal(acc[[1, 3]], np.full((2, 2), 0.1))
    np.testing.assert_array_equal(acc[2], 0.1 + np.array([1.0, 4.0]))
    np.testing.assert_array_equal(v.numpy()[[1, 3]], [[2.0, 3.0], [6.0, 7.0]])
    lr = float(np.float32(0.5))
    np.testing.assert_array_equal(v.numpy()[0], [0.0, 1.0] + (-lr * np.array([3.0, 4.0]))
                                  / np.sqrt(0.1 + np.array([9.0, 16.0]) + 1e-7))  # fmt: skip


@pytest.mark.parametrize("profile", PROFILES)
def test_config_round_trip(profile):
    kwargs = {"learning_rate": 0.5, "initial_accumulator_value": 0.2, "epsilon": 1e-5,
              "clipnorm": 0.5}  # fmt: skip
    a, b = config_round_trip_equal(Adagrad, kwargs, profile)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("profile", PROFILES)
def test_get_config_keys(profile):
    config = Adagrad(initial_accumulator_value=0.2, epsilon=1e-5, profile=profile).get_config()
    assert list(config) == BASE_KEYS[profile] + ["initial_accumulator_value", "epsilon"]
    assert config["initial_accumulator_value"] == 0.2 and config["epsilon"] == 1e-5
    assert config["name"] == "Adagrad"


BAD_INPUTS = [
    ("keras2", {"decay": 0.1}, ValueError, "decay is deprecated"),
    ("keras2", {"foo": 1}, TypeError, "foo is not a valid argument"),
    ("keras3", {"foo": 1}, ValueError, r"Argument\(s\) not recognized"),
    ("keras2", {"learning_rate": "0.1"}, TypeError, "`learning_rate` must be a float"),
    ("keras3", {"learning_rate": 1}, ValueError, "Argument `learning_rate` should be float"),
    ("keras3", {"jit_compile": True}, ValueError, r"Argument\(s\) not recognized"),
    ("keras2", {"clipnorm": 1.0, "global_clipnorm": 1.0}, ValueError, "At most one of"),
]


@pytest.mark.parametrize(("profile", "kwargs", "error", "match"), BAD_INPUTS)
def test_bad_inputs(profile, kwargs, error, match):
    with pytest.raises(error, match=match):
        Adagrad(**kwargs, profile=profile)
