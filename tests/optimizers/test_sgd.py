"""SGD against the Keras goldens (notes §5.1, §5.2, §5.3, §5.4)."""

from __future__ import annotations

import numpy as np
import pytest

from optcheck.reference import SGD, IndexedSlices, Variable
from tests.helpers import (
    config_round_trip_equal,
    k3_golden_trajectory,
    k3_single_step,
    k3_weight_decay,
    sparse_vs_dense,
)

GOLDEN = np.array(
    [
        [0.9999] * 10,
        [0.9989, 0.9979, 0.9969, 0.9959, 0.9949, 0.9939, 0.9929, 0.9919, 0.9909, 0.9899],
        [0.9979, 0.9959, 0.9939, 0.9919, 0.9899, 0.9879, 0.9859, 0.9839, 0.9819, 0.9799],
        [0.9969, 0.9939, 0.9909, 0.9879, 0.9849, 0.9819, 0.9789, 0.9759, 0.9729, 0.9699],
        [0.9959, 0.9919, 0.9879, 0.9839, 0.9799, 0.9759, 0.9719, 0.9679, 0.9639, 0.9599],
    ]
)


@pytest.mark.parametrize("profile", ["keras2", "keras3"])
def test_correctness_with_golden(profile):
    rows = k3_golden_trajectory(SGD(nesterov=True, profile=profile), "float64")
    np.testing.assert_allclose(rows, GOLDEN, rtol=5e-4, atol=5e-4)


@pytest.mark.parametrize("profile", ["keras2", "keras3"])
def test_single_step(profile):
    opt = SGD(learning_rate=0.5, profile=profile)
    np.testing.assert_allclose(k3_single_step(opt), [0.5, -1.0, -0.5, 3.0], rtol=1e-4, atol=1e-4)
    assert int(opt.iterations.numpy()) == 1
    if profile == "keras3":
        # K3: iteration and learning_rate variables only (no slot when momentum == 0).
        assert len(opt.variables) == 2
        assert opt.variables[1].numpy() == np.float32(0.5)


@pytest.mark.parametrize("profile", ["keras2", "keras3"])
def test_weight_decay(profile):
    var1, var2, var3 = k3_weight_decay(
        lambda: SGD(learning_rate=1.0, weight_decay=0.004, profile=profile)
    )
    np.testing.assert_almost_equal(var1, 1.9760959, decimal=6)
    assert var2 == 2.0 and var3 == 2.0


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


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_sparse_equals_dense(momentum, nesterov):
    dense, sparse = sparse_vs_dense(lambda: SGD(momentum=momentum, nesterov=nesterov))
    np.testing.assert_allclose(dense, sparse, rtol=1e-12)


def test_sparse_only_touches_given_rows_without_momentum():
    opt = SGD(learning_rate=1.0)
    v = Variable(np.ones((3, 2)))
    opt.apply_gradients([(IndexedSlices(np.ones((1, 2)), np.array([1]), (3, 2)), v)])
    np.testing.assert_array_equal(v.numpy(), [[1, 1], [0, 0], [1, 1]])


@pytest.mark.parametrize("profile", ["keras2", "keras3"])
def test_config_round_trip(profile):
    a, b = config_round_trip_equal(
        SGD, {"learning_rate": 0.3, "momentum": 0.7, "nesterov": True}, profile
    )
    np.testing.assert_array_equal(a, b)


def test_config_keys():
    assert set(SGD().get_config()) == {
        "name", "weight_decay", "clipnorm", "global_clipnorm", "clipvalue", "use_ema",
        "ema_momentum", "ema_overwrite_frequency", "jit_compile", "is_legacy_optimizer",
        "learning_rate", "momentum", "nesterov",
    }  # fmt: skip
    assert set(SGD(profile="keras3").get_config()) == {
        "name", "learning_rate", "weight_decay", "clipnorm", "global_clipnorm", "clipvalue",
        "use_ema", "ema_momentum", "ema_overwrite_frequency", "loss_scale_factor",
        "gradient_accumulation_steps", "momentum", "nesterov",
    }  # fmt: skip


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
