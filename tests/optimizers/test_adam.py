"""Adam against the Keras goldens (notes §5.1, §5.2, §5.3, §5.4)."""

from __future__ import annotations

import numpy as np
import pytest

from optcheck.reference import Adam, Variable
from tests.helpers import (
    config_round_trip_equal,
    k3_golden_trajectory,
    k3_single_step,
    k3_weight_decay,
    sparse_vs_dense,
)

GOLDEN = np.repeat(np.array([[0.999], [0.9982], [0.9974], [0.9965], [0.9955]]), 10, axis=1)


@pytest.mark.parametrize("profile", ["keras2", "keras3"])
def test_correctness_with_golden(profile):
    rows = k3_golden_trajectory(Adam(amsgrad=True, profile=profile), "float32")
    np.testing.assert_allclose(rows, GOLDEN, rtol=5e-4, atol=5e-4)


@pytest.mark.parametrize("profile", ["keras2", "keras3"])
def test_single_step(profile):
    out = k3_single_step(Adam(learning_rate=0.5, profile=profile))
    np.testing.assert_allclose(out, [0.5, 1.5, 2.5, 3.5], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("profile", ["keras2", "keras3"])
def test_weight_decay(profile):
    var1, var2, var3 = k3_weight_decay(
        lambda: Adam(learning_rate=1.0, weight_decay=0.004, profile=profile)
    )
    np.testing.assert_almost_equal(var1, 1.9760959, decimal=6)
    assert var2 == 2.0 and var3 == 2.0


def test_clip_norm_golden():
    # tf-keras testClipNorm: Adam(clipnorm=1), g = [100, 100] -> clipped [√2/2, √2/2].
    opt = Adam(clipnorm=1)
    grad = np.array([100.0, 100.0], np.float32)
    (clipped,) = opt._clip_gradients([grad])
    np.testing.assert_allclose(clipped, [2**0.5 / 2] * 2, rtol=1e-6)


def test_first_step_moves_by_lr_times_sign():
    # Bias correction makes the first Adam step ≈ lr·g/(|g| + ε/sqrt(1-β2)).
    opt = Adam(learning_rate=0.1)
    v = Variable(np.array([1.0, -1.0], np.float64))
    opt.apply_gradients([(np.array([3.0, -0.5]), v)])
    np.testing.assert_allclose(v.numpy(), [0.9, -0.9], atol=1e-5)


@pytest.mark.parametrize("amsgrad", [False, True])
def test_sparse_equals_dense(amsgrad):
    dense, sparse = sparse_vs_dense(lambda: Adam(amsgrad=amsgrad))
    np.testing.assert_allclose(dense, sparse, rtol=1e-12)


@pytest.mark.parametrize("profile", ["keras2", "keras3"])
def test_config_round_trip(profile):
    kwargs = {"learning_rate": 0.05, "beta_1": 0.7, "beta_2": 0.77, "epsilon": 1e-3,
              "amsgrad": True, "clipnorm": 0.5, "use_ema": True, "ema_momentum": 0.5,
              "ema_overwrite_frequency": 2}  # fmt: skip
    a, b = config_round_trip_equal(Adam, kwargs, profile)
    np.testing.assert_array_equal(a, b)


def test_get_config_values_k29():
    # tf-keras testGetAndFromConfig: learning_rate np.float64(0.05) comes back as np.float32.
    opt = Adam(learning_rate=np.float64(0.05), beta_1=0.7, beta_2=0.77, amsgrad=True,
               epsilon=1e-3, clipnorm=0.5, use_ema=True, ema_momentum=0.5,
               ema_overwrite_frequency=50)  # fmt: skip
    config = opt.get_config()
    assert type(config["learning_rate"]) is np.float32
    assert config["learning_rate"] == np.float32(0.05)
    expected = {"beta_1": 0.7, "beta_2": 0.77, "amsgrad": True, "epsilon": 1e-3,
                "clipnorm": 0.5, "use_ema": True, "ema_momentum": 0.5,
                "ema_overwrite_frequency": 50, "name": "Adam",
                "is_legacy_optimizer": False}  # fmt: skip
    assert {k: config[k] for k in expected} == expected
    assert Adam.from_config(config).get_config() == config


def test_variables_listing():
    opt = Adam()
    v = Variable([1.0, 2.0])
    opt.apply_gradients([(np.ones(2, np.float32), v)])
    assert [x.name for x in opt.variables] == ["iteration", "m/Variable", "v/Variable"]
    k3 = Adam(profile="keras3")
    k3.apply_gradients([(np.ones(2, np.float32), v)])
    assert [x.name for x in k3.variables] == [
        "iteration",
        "learning_rate",
        "Variable_momentum",
        "Variable_velocity",
    ]
    assert k3.get_slot(v, "m").name == "Variable_momentum"
