"""AdamW against the Keras goldens (notes §1.7, §2.4, §5.1–§5.4)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from optcheck.reference import IndexedSlices, Variable
from optcheck.reference.optimizers.adam import Adam
from optcheck.reference.optimizers.adamw import AdamW


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
