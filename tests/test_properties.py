"""Hypothesis properties of the reference itself (metamorphic relations, round trips)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from optcheck.conformance.registry import OPTIMIZERS
from optcheck.reference import Variable, dtypes
from optcheck.reference.optimizers import optimizer_class
from optcheck.reference.run import run
from tests.strategies import configs, problems

NAMES = sorted(OPTIMIZERS)
PROFILES = ["keras2", "keras3"]
SETTINGS = settings(max_examples=15, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])  # fmt: skip


def _spec(name, config):
    return {"class_name": name, "config": config}


def _assert_same(a, b):
    """Bitwise equality, NaN equal to NaN."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    assert np.array_equal(a, b, equal_nan=True), (a, b)


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(data=st.data())
def test_config_round_trip_gives_identical_trajectory(name, profile, data):
    config = data.draw(configs(name))
    _, values, steps = data.draw(problems())
    original = optimizer_class(name)(**config, profile=profile)
    clone = optimizer_class(name).from_config(original.get_config(), profile=profile)
    assert clone.get_config() == original.get_config()
    for a, b in zip(run(original, values, steps), run(clone, values, steps), strict=True):
        for x, y in zip(a.variables, b.variables, strict=True):
            _assert_same(x, y)


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(data=st.data())
def test_ema_momentum_zero_makes_average_equal_variable(name, profile, data):
    config = data.draw(configs(name))
    _, values, steps = data.draw(problems())
    spec = _spec(name, {**config, "use_ema": True, "ema_momentum": 0.0})
    for record in run(spec, values, steps, profile=profile):
        for variable, slots in zip(record.variables, record.slots, strict=True):
            _assert_same(slots["average"], variable)


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("name", [n for n in NAMES if OPTIMIZERS[n].lr_zero_is_identity])
@SETTINGS
@given(data=st.data())
def test_zero_learning_rate_changes_nothing(name, profile, data):
    config = {**data.draw(configs(name)), "learning_rate": 0.0}
    if name == "AdamW":
        config["weight_decay"] = 0.0
    dtype, values, steps = data.draw(problems())
    requires = OPTIMIZERS[name].lr_zero_requires
    assume(requires is None or requires(config, dtype))
    for record in run(_spec(name, config), values, steps, profile=profile):
        for before, after in zip(values, record.variables, strict=True):
            assert np.array_equal(before, after), (before, after)


@pytest.mark.parametrize("profile", PROFILES)
@SETTINGS
@given(data=st.data(), clip=st.floats(1e-3, 1e3))
def test_global_clipnorm_on_one_variable_equals_clipnorm(profile, data, clip):
    """Equal up to rounding: (t·c)/max(n, c) versus t·(c·min(1/n, 1/c)).

    Each form rounds at most four times (norm, product, quotient or reciprocal and
    product), so the two agree within 8 units of roundoff of the gradient dtype.
    """
    _, _, steps = data.draw(problems(max_vars=1, scale=(1e-2, 1e1)))
    from optcheck.reference import SGD

    per_tensor = SGD(clipnorm=clip, profile=profile)
    global_ = SGD(global_clipnorm=clip, profile=profile)
    eps = float(dtypes.finfo(steps[0][0].dtype).eps)
    for (grad,) in steps:
        (a,) = per_tensor._clip_gradients([grad])
        (b,) = global_._clip_gradients([grad])
        a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
        assert np.all(np.abs(a64 - b64) <= 8 * eps * np.abs(b64) + np.finfo(np.float64).tiny)


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(data=st.data())
def test_float64_oracle_equals_faithful_float64(name, profile, data):
    config = data.draw(configs(name))
    _, values, steps = data.draw(problems(dtype="float64"))
    spec = _spec(name, config)
    faithful = run(spec, values, steps, profile=profile, numerics="faithful")
    oracle = run(spec, values, steps, profile=profile, numerics="oracle")
    for a, b in zip(faithful, oracle, strict=True):
        left = a.variables + [s for d in a.slots for s in d.values()]
        right = b.variables + [s for d in b.slots for s in d.values()]
        for x, y in zip(left, right, strict=True):
            _assert_same(x, y)


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(data=st.data())
def test_dtypes_are_preserved(name, profile, data):
    config = data.draw(configs(name))
    _, values, steps = data.draw(problems())
    for record in run(_spec(name, config), values, steps, profile=profile):
        for v, slots in zip(record.variables, record.slots, strict=True):
            assert np.asarray(v).dtype == np.dtype(values[0].dtype)
            for slot in slots.values():
                assert np.asarray(slot).dtype == np.dtype(values[0].dtype)


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("name", [n for n in NAMES if OPTIMIZERS[n].per_variable])
@SETTINGS
@given(data=st.data())
def test_disjoint_variables_equal_one_optimizer(name, profile, data):
    config = data.draw(configs(name))
    _, values, steps = data.draw(problems())
    together = run(_spec(name, config), values, steps, profile=profile)
    for i in range(len(values)):
        alone = run(_spec(name, config), [values[i]], [[s[i]] for s in steps], profile=profile)
        for a, b in zip(together, alone, strict=True):
            _assert_same(a.variables[i], b.variables[0])


def test_oracle_differs_from_faithful_in_low_precision():
    values = [np.full((4,), 1.1, np.float16)]
    steps = [[np.full((4,), 0.3, np.float16)]] * 3
    faithful = run("Adam", values, steps)[-1].variables[0]
    oracle = run("Adam", values, steps, numerics="oracle")[-1].variables[0]
    assert faithful.dtype == np.float16 and oracle.dtype == np.float64
    assert not np.array_equal(faithful.astype(np.float64), oracle)
    np.testing.assert_allclose(faithful, oracle, rtol=2e-3)


def test_variable_operators_are_traced():
    v = Variable(np.array([1.0, 2.0], np.float32))
    with pytest.raises(TypeError):
        np.add(np.ones(2), v)  # NumPy ufuncs defer to the variable's operators
    assert np.array_equal(np.ones(2, np.float32) + v, [2.0, 3.0])
