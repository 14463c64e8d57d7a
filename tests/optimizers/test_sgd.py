"""SGD against the Keras goldens (notes §5.1, §5.2, §5.3, §5.4)."""

from __future__ import annotations

import numpy as np
import pytest

from optcheck.reference import SGD, IndexedSlices, Variable


def test_docstring_momentum_deltas():
    # tf-keras sgd.py docstring: SGD(0.1, momentum=0.9) on var²/2 from 1.0: deltas 0.1, 0.18.
    opt = SGD(learning_rate=0.1, momentum=0.9)
    var = Variable(1.0)
    loss = lambda: (var**2) / 2.0  # noqa: E731
    opt.minimize(loss, [var])
    first = 1.0 - var.numpy()
    before = var.numpy()
    opt.minimize(loss, [var])
    assert first == pytest.approx(0.1, abs=1e-7)
    assert before - var.numpy() == pytest.approx(0.18, abs=1e-7)


def test_duplicate_variable_shares_slot():
    # notes §1.8: SGD(lr=1, momentum=0.5), pairs [(1, v), (1, v)] -> v = -2.5, iterations 1.
    opt = SGD(learning_rate=1.0, momentum=0.5)
    v = Variable(0.0)
    opt.apply_gradients([(np.float32(1.0), v), (np.float32(1.0), v)])
    assert v.numpy() == -2.5 and int(opt.iterations.numpy()) == 1


def test_sparse_only_touches_given_rows_without_momentum():
    opt = SGD(learning_rate=1.0)
    v = Variable(np.ones((3, 2)))
    opt.apply_gradients([(IndexedSlices(np.ones((1, 2)), np.array([1]), (3, 2)), v)])
    np.testing.assert_array_equal(v.numpy(), [[1, 1], [0, 0], [1, 1]])


@pytest.mark.parametrize(
    "kwargs, profile, exc, match",
    [
        ({"momentum": 1.5}, "keras2", ValueError, r"`momentum` must be between \[0, 1\]"),
        ({"momentum": -0.1}, "keras2", ValueError, r"`momentum` must be between \[0, 1\]"),
        ({"momentum": "0.9"}, "keras2", TypeError, "momentum"),
        ({"momentum": 0}, "keras3", ValueError, r"`momentum` must be a float between \[0, 1\]"),
        ({"momentum": 1.5}, "keras3", ValueError, r"`momentum` must be a float between \[0, 1\]"),
    ],
)
def test_bad_arguments(kwargs, profile, exc, match):
    with pytest.raises(exc, match=match):
        SGD(**kwargs, profile=profile)


def test_keras3_keeps_no_slot_without_momentum():
    # K3 sgd_test test_single_step: iteration and learning_rate variables only.
    opt = SGD(learning_rate=0.5, profile="keras3")
    opt.apply_gradients([(np.ones(2, np.float32), Variable([1.0, 2.0]))])
    assert [v.name for v in opt.variables] == ["iteration", "learning_rate"]
    assert opt.variables[0].numpy() == 1 and opt.variables[1].numpy() == np.float32(0.5)
