"""Adamax against the Keras goldens (notes §2.7, §5.1, §5.2, §5.3, §5.4)."""

from __future__ import annotations

import numpy as np
import pytest

from optcheck.reference import IndexedSlices, Variable
from optcheck.reference.optimizers.adamax import Adamax

PROFILES = ["keras2", "keras3"]


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
