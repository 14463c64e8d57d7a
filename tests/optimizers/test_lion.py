"""Lion against the Keras goldens (notes §2.12, §5.1–§5.4)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from optcheck.reference import IndexedSlices, Variable
from optcheck.reference.optimizers.lion import Lion


@pytest.mark.parametrize(("profile", "lr"), [("keras2", 1e-4), ("keras3", 1e-3)])
def test_default_learning_rate(profile, lr):
    opt = Lion(profile=profile)
    assert opt.learning_rate.numpy() == np.float32(lr)
    assert opt.get_config()["learning_rate"] == np.float32(lr)


def _lion_update_numpy(params, grads, momentums, lr=0.0001, beta_1=0.9, beta_2=0.99):
    """tf-keras ``lion_test.lion_update_numpy``."""
    params = params - lr * np.sign(beta_1 * momentums + (1 - beta_1) * grads)
    momentums = beta_2 * momentums + (1 - beta_2) * grads
    return params, momentums


TOLERANCE = {"float16": 1e-3, "float32": 1e-6, "float64": 1e-6}  # assertAllCloseAccordingToType


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_tfk_lion_test(dtype, sparse):
    # tf-keras lion_test.py testDense / testSparse: 3 steps, checked after each.
    var0_np, var1_np = np.array([1.0, 2.0], dtype), np.array([3.0, 4.0], dtype)
    grads0_np, grads1_np = np.array([0.9, 0.0], dtype), np.array([0.1, 0.0], dtype)
    m0_np, m1_np = np.zeros(2, dtype), np.zeros(2, dtype)
    var0, var1 = Variable(var0_np), Variable(var1_np)
    if sparse:
        grads0 = IndexedSlices(grads0_np[[0]], np.array([0], np.int32), (2,))
        grads1 = IndexedSlices(grads1_np[[0]], np.array([0], np.int32), (2,))
    else:
        grads0, grads1 = grads0_np, grads1_np
    opt = Lion(learning_rate=0.0001, beta_1=0.9, beta_2=0.99)
    tol = TOLERANCE[dtype]
    for _ in range(3):
        opt.apply_gradients([(grads0, var0), (grads1, var1)])
        var0_np, m0_np = _lion_update_numpy(var0_np, grads0_np, m0_np)
        var1_np, m1_np = _lion_update_numpy(var1_np, grads1_np, m1_np)
        np.testing.assert_allclose(var0.numpy(), var0_np, rtol=tol, atol=tol)
        np.testing.assert_allclose(var1.numpy(), var1_np, rtol=tol, atol=tol)
    if dtype != "float16":
        # sign(0) = 0: the second elements never move.
        np.testing.assert_allclose(var0.numpy(), [0.9997, 2.0], rtol=1e-6)
        np.testing.assert_allclose(var1.numpy(), [2.9997, 4.0], rtol=1e-6)
        assert var0.numpy()[1] == 2.0 and var1.numpy()[1] == 4.0


def test_one_minus_beta_in_variable_dtype():
    # 1.0 − cast(β2) is computed in float32 (0.00999999), not float32(1 − 0.99).
    opt = Lion(learning_rate=0.1)
    v = Variable(np.zeros(3, np.float32))
    g = np.array([1.0, 3.0, 7.0], np.float32)
    opt.apply_gradients([(g, v)])
    m = opt.get_slot(v, "m").numpy()
    np.testing.assert_array_equal(m, g * (np.float32(1.0) - np.float32(0.99)))
    assert not np.array_equal(m, g * np.float32(1 - 0.99))


def test_sparse_path_rounding_is_tfk():
    # Sparse: m ← (m·β1 + g(1 − β1)) then (m·β2)/β1 + g(1 − β2/β1) on the touched rows.
    f = np.float32
    opt = Lion(learning_rate=0.1)
    v = Variable(np.zeros(2, f))
    g = IndexedSlices(np.array([3.0], f), np.array([1]), (2,))
    opt.apply_gradients([(g, v)])
    b1, b2 = f(0.9), f(0.99)
    buf = f(0) * b1 + f(3.0) * (f(1) - b1)
    expected = buf * b2 / b1 + f(3.0) * (f(1) - b2 / b1)
    assert opt.get_slot(v, "m").numpy()[1] == expected
    assert opt.get_slot(v, "m").numpy()[0] == 0.0
    np.testing.assert_array_equal(v.numpy(), [0.0, -np.float32(0.1)])


@pytest.mark.parametrize("profile", ["keras2", "keras3"])
def test_variables_listing(profile):
    opt = Lion(profile=profile)
    v = Variable([1.0, 2.0])
    opt.apply_gradients([(np.ones(2, np.float32), v)])
    names = [x.name for x in opt.variables]
    expected = {"keras2": ["iteration", "m/Variable"],
                "keras3": ["iteration", "learning_rate", "Variable_momentum"]}  # fmt: skip
    assert names == expected[profile]


BAD_INPUTS = [
    (dict(beta_1=0), "keras2", ValueError,
     re.escape("`beta_1`=0 must be between ]0, 1]. Otherwise, the optimizer degenerates "
               "to SignSGD.")),
    (dict(beta_1=1.5), "keras2", ValueError, re.escape("`beta_1`=1.5 must be between ]0, 1]")),
    (dict(beta_1=-0.1), "keras3", ValueError,
     re.escape("Argument `beta_1` must be in the [0, 1] range. Otherwise, the optimizer "
               "degenerates to SignSGD. Received: beta_1=-0.1.")),
    (dict(beta_1=0.0), "keras3", ValueError, re.escape("Received: beta_1=0.0.")),
    (dict(foo=1), "keras2", TypeError, "foo is not a valid argument"),
    (dict(learning_rate=1), "keras3", ValueError, "Argument `learning_rate` should be float"),
]  # fmt: skip


@pytest.mark.parametrize(("kwargs", "profile", "error", "match"), BAD_INPUTS)
def test_bad_inputs(kwargs, profile, error, match):
    with pytest.raises(error, match=match):
        Lion(**kwargs, profile=profile)


def test_beta_1_of_one_is_accepted():
    assert Lion(beta_1=1.0).beta_1 == 1.0
