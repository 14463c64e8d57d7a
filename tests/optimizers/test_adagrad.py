"""Adagrad against the Keras goldens (notes §2.5, §5.1, §5.2, §5.3, §5.4)."""

from __future__ import annotations

import numpy as np
import pytest

from optcheck.reference import IndexedSlices, Variable
from optcheck.reference.optimizers.adagrad import Adagrad

PROFILES = ["keras2", "keras3"]


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
