"""AdamW against the Keras goldens (notes §1.7, §2.4, §5.1–§5.4)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from optcheck.reference import IndexedSlices, Variable
from optcheck.reference.optimizers.adam import Adam
from optcheck.reference.optimizers.adamw import AdamW
from tests.helpers import (
    config_round_trip_equal,
    k3_golden_trajectory,
    k3_single_step,
    k3_weight_decay,
    sparse_vs_dense,
)

GOLDEN = np.array(
    [
        [0.4998] * 10,
        [0.2486, 0.2475, 0.2463, 0.2451, 0.244, 0.2428, 0.2417, 0.2405, 0.2394, 0.2382],
        [0.1223, 0.1198, 0.1174, 0.1149, 0.1124, 0.11, 0.1075, 0.1051, 0.1027, 0.1003],
        [0.0586, 0.0549, 0.0512, 0.0475, 0.0439, 0.0402, 0.0366, 0.033, 0.0294, 0.0258],
        [0.0263, 0.0215, 0.0167, 0.012, 0.0073, 0.0026, -0.0021, -0.0067, -0.0113, -0.0159],
    ]
)

BASE_KEYS = {
    "keras2": {"name", "weight_decay", "clipnorm", "global_clipnorm", "clipvalue", "use_ema",
               "ema_momentum", "ema_overwrite_frequency", "jit_compile", "is_legacy_optimizer",
               "learning_rate"},
    "keras3": {"name", "learning_rate", "weight_decay", "clipnorm", "global_clipnorm",
               "clipvalue", "use_ema", "ema_momentum", "ema_overwrite_frequency",
               "loss_scale_factor", "gradient_accumulation_steps"},
}  # fmt: skip


@pytest.mark.parametrize("profile", ["keras2", "keras3"])
def test_correctness_with_golden(profile):
    opt = AdamW(learning_rate=1.0, weight_decay=0.5, epsilon=2, profile=profile)
    rows = k3_golden_trajectory(opt, "float32")
    np.testing.assert_allclose(rows, GOLDEN, rtol=5e-4, atol=5e-4)


@pytest.mark.parametrize("profile", ["keras2", "keras3"])
def test_single_step(profile):
    out = k3_single_step(AdamW(learning_rate=0.5, profile=profile))
    np.testing.assert_allclose(out, [0.4980, 1.4960, 2.494, 3.492], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("profile", ["keras2", "keras3"])
def test_weight_decay(profile):
    var1, var2, var3 = k3_weight_decay(
        lambda: AdamW(learning_rate=1.0, weight_decay=0.004, profile=profile)
    )
    np.testing.assert_almost_equal(var1, 1.9760959, decimal=6)
    assert var2 == 2.0 and var3 == 2.0


def test_decay_uses_variable_before_update():
    # lr 1, wd 0.5, zero gradient: m = v = 0, so only the decay acts: 2 → 2 − 2·0.5·1 = 1.
    opt = AdamW(learning_rate=1.0, weight_decay=0.5)
    v = Variable(2.0)
    opt.apply_gradients([(np.float32(0.0), v)])
    assert v.numpy() == np.float32(1.0)


def _tfk_compare_procedure(opt):
    """tf-keras ``OptimizerRegressionTest._compare_numerical`` inputs (notes §5.4)."""
    x = Variable(np.ones(10), dtype="float64")
    opt.apply_gradients([(np.full(10, 0.01), x)])
    for _ in range(5):
        opt.apply_gradients([(np.arange(0.1, 1.1, 0.1), x)])
    sparse = IndexedSlices(np.array([0.0, 0.2, 0.4, 0.8, 0.8]), np.array([0, 2, 4, 6, 6]), (10,))
    for _ in range(5):
        opt.apply_gradients([(sparse, x)])
    return x.numpy()


@pytest.mark.parametrize("profile", ["keras2", "keras3"])
def test_adamw_is_adam_with_weight_decay(profile):
    # tf-keras regression: Adam(lr=1, weight_decay=0.5, epsilon=0) ≡ AdamW(same); bitwise here.
    # (lr 1.0: Keras 3 rejects an int learning rate.)
    kwargs = {"learning_rate": 1.0, "weight_decay": 0.5, "epsilon": 0, "profile": profile}
    adam = _tfk_compare_procedure(Adam(**kwargs))
    adamw = _tfk_compare_procedure(AdamW(**kwargs))
    np.testing.assert_array_equal(adam, adamw)
    # ... and the decay really acted: plain Adam differs.
    plain = _tfk_compare_procedure(Adam(learning_rate=1.0, epsilon=0, profile=profile))
    assert not np.allclose(plain, adamw)


def test_defaults_and_subclass():
    opt = AdamW()
    assert isinstance(opt, Adam)
    defaults = (opt.weight_decay, opt.beta_1, opt.beta_2, opt.epsilon, opt.amsgrad)
    assert defaults == (0.004, 0.9, 0.999, 1e-7, False)
    assert opt.learning_rate.numpy() == np.float32(0.001)
    assert opt.name == "AdamW"
    # weight_decay is the second positional argument in both sources.
    assert AdamW(0.01, 0.2).weight_decay == 0.2


@pytest.mark.parametrize("amsgrad", [False, True])
def test_sparse_equals_dense(amsgrad):
    dense, sparse = sparse_vs_dense(lambda: AdamW(amsgrad=amsgrad, weight_decay=0.1))
    np.testing.assert_allclose(dense, sparse, rtol=1e-12)


@pytest.mark.parametrize("profile", ["keras2", "keras3"])
def test_config_round_trip(profile):
    kwargs = {"learning_rate": 0.05, "weight_decay": 0.3, "beta_1": 0.7, "beta_2": 0.77,
              "epsilon": 1e-3, "amsgrad": True, "clipnorm": 0.5, "use_ema": True,
              "ema_momentum": 0.5, "ema_overwrite_frequency": 2}  # fmt: skip
    a, b = config_round_trip_equal(AdamW, kwargs, profile)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("profile", ["keras2", "keras3"])
def test_get_config_keys(profile):
    config = AdamW(weight_decay=0.3, profile=profile).get_config()
    assert set(config) == BASE_KEYS[profile] | {"beta_1", "beta_2", "epsilon", "amsgrad"}
    assert config["weight_decay"] == 0.3 and config["name"] == "AdamW"


@pytest.mark.parametrize("profile", ["keras2", "keras3"])
def test_variables_listing(profile):
    opt = AdamW(amsgrad=True, profile=profile)
    v = Variable([1.0, 2.0])
    opt.apply_gradients([(np.ones(2, np.float32), v)])
    names = [x.name for x in opt.variables]
    if profile == "keras2":
        assert names == ["iteration", "m/Variable", "v/Variable", "vhat/Variable"]
    else:
        assert names == ["iteration", "learning_rate", "Variable_momentum",
                         "Variable_velocity", "Variable_velocity_hat"]  # fmt: skip


BAD_INPUTS = [
    (dict(weight_decay=None), "keras2", ValueError,
     re.escape("Missing value of `weight_decay` which is required and must be a float value.")),
    (dict(weight_decay=None), "keras3", ValueError,
     re.escape("Argument `weight_decay` must be a float. Received: weight_decay=None")),
    (dict(weight_decay="0.1"), "keras2", TypeError, "`weight_decay` must be a float or None"),
    (dict(learning_rate=1), "keras3", ValueError, "Argument `learning_rate` should be float"),
    (dict(decay=0.1), "keras2", ValueError, "decay is deprecated"),
    (dict(amsgrad=True, foo=1), "keras3", ValueError, re.escape("Argument(s) not recognized")),
]  # fmt: skip


@pytest.mark.parametrize(("kwargs", "profile", "error", "match"), BAD_INPUTS)
def test_bad_inputs(kwargs, profile, error, match):
    with pytest.raises(error, match=match):
        AdamW(**kwargs, profile=profile)


def test_missing_weight_decay_tfk():
    # tf-keras testPassingMissingWDError.
    with pytest.raises(ValueError, match="Missing value of"):
        AdamW(0.01, weight_decay=None)
