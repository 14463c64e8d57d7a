"""Tests of the learning-rate schedules (``reference/schedules.py``).

* Keras 3 unit goldens (``keras/src/optimizers/schedules/learning_rate_schedule_test.py``,
  research notes §5.3), at the Keras tolerance 1e-6; the cosine schedules are compared with
  float64 reference loops written as in that file.
* Hypothesis properties: every schedule against an independent float64 closed form, within a
  rounding bound derived per schedule (below); float64 schedules to the float64 bound;
  serialization and ``get_config``/``from_config`` round trips.
* The tf-keras facts the reference pins: dtype rule, cast-versus-operand rounding, boundary
  casting, serialization dicts, signatures and config keys, and the errors (table-driven).
"""

from __future__ import annotations

import ast
import inspect
import json
import math
import pathlib
import re
import warnings

import ml_dtypes
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from optcheck.reference import Variable, elementary, schedules
from optcheck.reference.schedules import (
    CosineDecay,
    CosineDecayRestarts,
    ExponentialDecay,
    InverseTimeDecay,
    LearningRateSchedule,
    PiecewiseConstantDecay,
    PolynomialDecay,
    deserialize,
    register_serializable,
    serialize,
)

#: Keras ``assertAllClose(x, y, 1e-6)`` in the golden tests (atol and rtol).
KERAS_TOL = 1e-6


def assert_keras_close(actual, expected, tol=KERAS_TOL):
    np.testing.assert_allclose(np.asarray(actual, np.float64), expected, rtol=tol, atol=tol)


@pytest.fixture
def registry(monkeypatch):
    """An empty custom-schedule registry for one test (the global one stays untouched)."""
    monkeypatch.setattr(schedules, "_REGISTRY", {})
    monkeypatch.setattr(schedules, "_REGISTERED_NAMES", {})
    return schedules._REGISTRY


# ============================================================================================
# Keras 3 unit goldens (notes §5.3)
# ============================================================================================
def test_exponential_continuous():
    assert_keras_close(ExponentialDecay(0.05, 10, 0.96)(5), 0.05 * 0.96 ** (5.0 / 10.0))


def test_exponential_staircase_with_float_variable_step():
    step = Variable(1.0)
    decayed_lr = ExponentialDecay(0.1, 3, 0.96, staircase=True)
    assert_keras_close(decayed_lr(step), 0.1)  # no change inside the first stair
    step.assign(2.0)
    assert_keras_close(decayed_lr(step), 0.1)
    step.assign(100.0)
    assert_keras_close(decayed_lr(step), 0.1 * 0.96 ** (100 // 3))


@pytest.mark.parametrize(
    ("step", "expected"),
    [(-999.0, 1.0), (100.0, 1.0), (105.0, 0.1), (110.0, 0.1), (120.0, 0.01), (999.0, 0.001)],
)
def test_piecewise_values(step, expected):
    decayed_lr = PiecewiseConstantDecay([100, 110, 120], [1.0, 0.1, 0.01, 0.001])
    assert_keras_close(decayed_lr(Variable(step)), expected)


@pytest.mark.parametrize(("step", "expected"), [(0, 0.4), (1, 0.4), (2, 0.5), (3, 0.6), (4, 0.7)])
def test_piecewise_int64_step_casts_int32_boundaries(step, expected):
    decayed_lr = PiecewiseConstantDecay([1, 2, 3], [0.4, 0.5, 0.6, 0.7])
    assert_keras_close(decayed_lr(Variable(step, dtype="int64")), expected)


_LR, _END = 0.05, 0.001


@pytest.mark.parametrize(
    ("step", "end_lr", "power", "cycle", "expected"),
    [
        (5, 0.0, 1.0, False, _LR * 0.5),  # LinearDecayTest.test_halfway
        (10, _END, 1.0, False, _END),  # test_end
        (5, _END, 1.0, False, (_LR + _END) * 0.5),  # test_halfway_with_end
        (15, _END, 1.0, False, _END),  # test_beyond_end
        (15, _END, 1.0, True, (_LR - _END) * 0.25 + _END),  # test_beyond_end_with_cycle
        (5, 0.0, 0.5, False, _LR * 0.5**0.5),  # SqrtDecayTest.test_halfway
        (10, _END, 0.5, False, _END),
        (5, _END, 0.5, False, (_LR - _END) * 0.5**0.5 + _END),
        (15, _END, 0.5, False, _END),
        (15, _END, 0.5, True, (_LR - _END) * 0.25**0.5 + _END),
    ],
)
def test_polynomial_goldens(step, end_lr, power, cycle, expected):
    decayed_lr = PolynomialDecay(_LR, 10, end_lr, power=power, cycle=cycle)
    assert_keras_close(decayed_lr(step), expected)


def test_polynomial_begin_with_cycle():
    assert_keras_close(PolynomialDecay(0.001, 10, cycle=True)(0), 0.001)


@pytest.mark.parametrize("staircase", [False, True])
def test_inverse_time_goldens(staircase):
    decayed_lr = InverseTimeDecay(0.1, 10, 0.96, staircase=staircase)
    step = Variable(0.0)
    for i in range(11):
        p = (i // 10) if staircase else i / 10
        assert_keras_close(decayed_lr(step), 0.1 / (1 + 0.96 * p))
        step.assign(step.numpy() + 1)


def np_cosine_decay(step, decay_steps, alpha=0.0):
    """Keras 3 test reference, float64."""
    step = min(step, decay_steps)
    decay = 0.5 * (1.0 + math.cos(math.pi * step / decay_steps))
    return (1.0 - alpha) * decay + alpha


def np_linear_warmup(step, warmup_steps, initial_lr, target_lr):
    """Keras 3 test reference (its initial_lr is 0, so the offset is omitted there too)."""
    return step / warmup_steps * (target_lr - initial_lr)


def np_cosine_decay_restarts(step, decay_steps, t_mul=2.0, m_mul=1.0, alpha=0.0):
    """Keras 3 test reference loop: while step >= D: step -= D; D *= t_mul; fac *= m_mul."""
    fac = 1.0
    while step >= decay_steps:
        step -= decay_steps
        decay_steps *= t_mul
        fac *= m_mul
    decay = fac * 0.5 * (1.0 + math.cos(math.pi * step / decay_steps))
    return (1.0 - alpha) * decay + alpha


STEPS_0_TO_1250 = range(0, 1500, 250)


@pytest.mark.parametrize("step", STEPS_0_TO_1250)
@pytest.mark.parametrize(
    ("initial_lr", "alpha"),
    [(1.0, 0.0), (1.0, 0.1), (np.float64(1.0), 0.0)],
    ids=["decay", "alpha", "float64"],
)
def test_cosine_decay_goldens(step, initial_lr, alpha):
    decayed_lr = CosineDecay(initial_lr, 1000, alpha)
    assert_keras_close(decayed_lr(step), np_cosine_decay(step, 1000, alpha))


@pytest.mark.parametrize("step", STEPS_0_TO_1250)
def test_cosine_warmup_golden(step):
    lr = CosineDecay(0.0, 10, warmup_target=10.0, warmup_steps=1500)
    assert_keras_close(lr(step), np_linear_warmup(step, 1500, 0.0, 10.0))


@pytest.mark.parametrize("step", range(0, 3000, 250))
def test_cosine_warmup_then_decay_golden(step):
    lr = CosineDecay(0.0, 1000, warmup_target=10.0, warmup_steps=2000)
    if step < 2000 + 1:
        expected = np_linear_warmup(step, 2000, 0.0, 10.0)
    else:
        expected = 10.0 * np_cosine_decay(step - 2000, 1000)
    assert_keras_close(lr(step), expected)


@pytest.mark.parametrize("step", STEPS_0_TO_1250)
@pytest.mark.parametrize(
    ("initial_lr", "kwargs"),
    [
        (1.0, {}),
        (np.float64(1.0), {}),
        (1.0, {"alpha": 0.1}),
        (1.0, {"m_mul": 0.9}),
        (1.0, {"t_mul": 1.0}),
    ],
    ids=["decay", "float64", "alpha", "mmul", "tmul"],
)
def test_cosine_decay_restarts_goldens(step, initial_lr, kwargs):
    decayed_lr = CosineDecayRestarts(initial_lr, 1000, **kwargs)
    assert_keras_close(decayed_lr(step), np_cosine_decay_restarts(step, 1000, **kwargs))


# ============================================================================================
# Closed-form properties with a derived rounding bound
# ============================================================================================
# Error model. Each correctly rounded operation (+ - * / and a float cast) adds a relative error
# of at most u (u = 2**-24 in float32, 2**-53 in float64); libm pow/log/cos are charged
# 2 ulp (4u relative, or 8u absolute for |cos| <= 1). Inputs are drawn float32-representable so
# that the casts are exact and the float64 closed form sees the same numbers. Each bound below
# is a first-order sum over the operations of the tf-keras order (condition number x u),
# multiplied by SAFETY for the second-order terms. For float32 the bounds come out at about
# 1e-6 relative to the learning rate (more where the formula is ill-conditioned, e.g. large
# step / decay_steps ratios); for float64 about 1e-15.
SAFETY = 4.0
UNIT = {np.float32: 2.0**-24, np.float64: 2.0**-53}
DTYPES = [pytest.param(np.float32, id="float32"), pytest.param(np.float64, id="float64")]


def f32(lo, hi):
    """Python floats exactly representable in float32 (bounds rounded to float32)."""
    lo, hi = float(np.float32(lo)), float(np.float32(hi))
    return st.floats(lo, hi, width=32, allow_nan=False, allow_infinity=False, allow_subnormal=False)


def as_lr(value, dtype):
    """A Python float computes in float32; a NumPy float64 in float64 (the dtype rule)."""
    return value if dtype is np.float32 else np.float64(value)


def check(got, expected, bound, dtype):
    assert isinstance(got, np.ndarray) and got.shape == () and got.dtype == dtype
    # Results that underflow (e.g. lr - end tiny) carry an absolute error below the smallest
    # normal number, which no relative bound covers.
    bound += float(np.finfo(dtype).tiny)
    error = abs(float(got) - expected)
    assert error <= bound, (
        f"got {float(got)!r}, expected {expected!r}: error {error:.3g} > {bound:.3g}"
    )


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=60, deadline=None)
@given(
    lr=f32(1e-4, 1.0),
    rate=f32(0.5, 0.999),
    decay_steps=st.integers(1, 1000),
    staircase=st.booleans(),
    data=st.data(),
)
def test_exponential_closed_form(dtype, lr, rate, decay_steps, staircase, data):
    step = data.draw(st.integers(0, 50 * decay_steps))
    p = step // decay_steps if staircase else step / decay_steps
    expected = lr * rate**p
    # p = s/D (u; floor is exact: s, D < 2**24 so s/D never rounds across an integer),
    # pow (4u, plus |ln rate| * p * u from the error of p), product (u).
    u = UNIT[dtype]
    bound = SAFETY * u * (abs(math.log(rate)) * p + 6) * expected
    got = ExponentialDecay(as_lr(lr, dtype), decay_steps, rate, staircase=staircase)(step)
    check(got, expected, bound, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=60, deadline=None)
@given(
    lr=f32(1e-4, 1.0),
    rate=f32(0.0, 5.0),
    decay_steps=st.integers(1, 1000),
    staircase=st.booleans(),
    step=st.integers(0, 100_000),
)
def test_inverse_time_closed_form(dtype, lr, rate, decay_steps, staircase, step):
    p = step // decay_steps if staircase else step / decay_steps
    expected = lr / (1 + rate * p)
    # p (u), rate * p (u), 1 + x (u, and x/(1+x) <= 1 times the 2u of x), lr / denom (u).
    bound = SAFETY * UNIT[dtype] * 5 * expected
    got = InverseTimeDecay(as_lr(lr, dtype), decay_steps, rate, staircase=staircase)(step)
    check(got, expected, bound, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=80, deadline=None)
@given(
    lr=f32(0.0, 1.0),
    end=f32(0.0, 1.0),
    power=f32(0.5, 3.0),
    decay_steps=st.integers(1, 1000),
    cycle=st.booleans(),
    data=st.data(),
)
def test_polynomial_closed_form(dtype, lr, end, power, decay_steps, cycle, data):
    step = data.draw(st.integers(0, 3 * decay_steps))
    if cycle:
        multiplier = 1 if step == 0 else -(-step // decay_steps)  # exact integer ceil
        d, s = decay_steps * multiplier, step
    else:
        d, s = decay_steps, min(step, decay_steps)
    p = s / d
    x = 1 - p
    expected = (lr - end) * x**power + end
    # x = 1 - p carries (p + x) u absolute, i.e. (p/x + 1) u relative, which pow multiplies by
    # power; pow (4u), lr - end (u), product (u), final sum (u). x == 0 happens only for
    # p == 1 exactly (s and d are small integers), where pow(0, power) = 0 is exact.
    cond = power * (p * x ** (power - 1) + x**power) if x > 0 else 0.0
    u = UNIT[dtype]
    bound = SAFETY * u * (abs(lr - end) * (cond + 6 * x**power) + abs(expected))
    got = PolynomialDecay(as_lr(lr, dtype), decay_steps, end, power=power, cycle=cycle)(step)
    check(got, expected, bound, dtype)


def cosine_term_bound(scale, alpha, u):
    """Absolute error of ``scale * ((1 - alpha) * 0.5 * (1 + cos(pi * f)) + alpha)``.

    pi_d, f and their product carry 3u relative, |theta| <= pi: 3*pi*u absolute in theta;
    cos adds 8u; 1 + c adds 2u; (1 - alpha) and the product 2u of a term <= 1; + alpha adds
    alpha * u and 2u of the sum; the final product u.
    """
    inner = abs(1 - alpha) * (0.5 * (3 * math.pi + 10) + 2) + abs(alpha) + 3
    return SAFETY * u * abs(scale) * inner


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=80, deadline=None)
@given(
    lr=f32(1e-4, 1.0),
    alpha=f32(0.0, 0.99),
    decay_steps=st.integers(1, 1000),
    warmup=st.none() | st.tuples(f32(1e-4, 1.0), st.integers(1, 1000)),
    data=st.data(),
)
def test_cosine_closed_form(dtype, lr, alpha, decay_steps, warmup, data):
    u = UNIT[dtype]
    if warmup is None:
        step = data.draw(st.integers(0, 2 * decay_steps))
        expected = lr * np_cosine_decay(step, decay_steps, alpha)
        bound = cosine_term_bound(lr, alpha, u)
        schedule = CosineDecay(as_lr(lr, dtype), decay_steps, alpha)
    else:
        target, warmup_steps = warmup
        step = data.draw(st.integers(0, 2 * (decay_steps + warmup_steps)))
        s = min(step, decay_steps + warmup_steps)
        if s < warmup_steps:
            frac = s / warmup_steps
            expected = (target - lr) * frac + lr
            # s / W (u), target - lr (u), product (u), + lr (u of the result).
            bound = SAFETY * u * (3 * abs((target - lr) * frac) + abs(expected))
        else:
            expected = target * np_cosine_decay(s - warmup_steps, decay_steps, alpha)
            bound = cosine_term_bound(target, alpha, u)
        schedule = CosineDecay(
            as_lr(lr, dtype), decay_steps, alpha, warmup_target=target, warmup_steps=warmup_steps
        )
    check(schedule(step), expected, bound, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=80, deadline=None)
@given(
    lr=f32(1e-4, 1.0),
    alpha=f32(0.0, 0.9),
    t_mul=st.just(1.0) | f32(1.5, 3.0),
    m_mul=f32(0.5, 1.5),
    first_decay_steps=st.integers(5, 500),
    data=st.data(),
)
def test_cosine_restarts_closed_form(dtype, lr, alpha, t_mul, m_mul, first_decay_steps, data):
    step = data.draw(st.integers(0, 30 * first_decay_steps))
    f = step / first_decay_steps
    if t_mul != 1.0:
        # The restart index is floor(L) with L = log(1 + f (t - 1)) / log t computed in the
        # schedule's dtype: within rounding of an integer (a period boundary) it may land on
        # either side, as in tf-keras. Such steps have no single closed-form value.
        level = math.log(1 + f * (t_mul - 1)) / math.log(t_mul)
        assume(level == 0 or abs(level - round(level)) > 1e-4)
    # Independent closed form: the Keras 3 loop, with the period index kept.
    s, d, i = float(step), float(first_decay_steps), 0
    while s >= d:
        s, d, i = s - d, d * t_mul, i + 1
    expected = lr * np_cosine_decay_restarts(step, first_decay_steps, t_mul, m_mul, alpha)
    # Fraction g of the period. t == 1: g = f - floor(f) is exact, so g carries the f u of
    # f = s / D. t >= 1.5: sum_r = (1 - t**i) / (1 - t) carries <= 9u relative (pow 4u, and
    # t**i / (t**i - 1) <= 3), f - sum_r then (f + 9 sum_r) u <= 10 f u absolute, and the
    # division by t**i (pow 4u, quotient u) adds 5u of g <= 1. g enters cos through pi * g;
    # the remaining terms are those of cosine_term_bound with the amplitude m**i (pow: 4u).
    u = UNIT[dtype]
    m_fac = m_mul**i
    err_g = u * f if t_mul == 1.0 else u * (10 * f / t_mul**i + 5)
    bound = (
        SAFETY * lr * abs(1 - alpha) * 0.5 * m_fac * math.pi * err_g
        + cosine_term_bound(lr, alpha, u) * max(1.0, m_fac)
        + SAFETY * lr * abs(1 - alpha) * m_fac * 4 * u
    )
    schedule = CosineDecayRestarts(as_lr(lr, dtype), first_decay_steps, t_mul, m_mul, alpha)
    check(schedule(step), expected, bound, dtype)


# ============================================================================================
# Round trips
# ============================================================================================
def _piecewise(draw_boundaries, draw_values):
    return st.builds(
        lambda b, v: PiecewiseConstantDecay(sorted(b), v[: len(b) + 1]),
        draw_boundaries,
        draw_values,
    )


NAMES = st.none() | st.text(alphabet="abcxyz_", min_size=1, max_size=6)
ANY_SCHEDULE = st.one_of(
    st.builds(
        ExponentialDecay,
        f32(1e-4, 1.0),
        st.integers(1, 1000),
        f32(0.5, 1.0),
        staircase=st.booleans(),
        name=NAMES,
    ),
    st.builds(
        InverseTimeDecay,
        f32(1e-4, 1.0),
        st.integers(1, 1000),
        f32(0.0, 2.0),
        staircase=st.booleans(),
        name=NAMES,
    ),
    st.builds(
        PolynomialDecay,
        f32(1e-4, 1.0),
        st.integers(1, 1000),
        f32(0.0, 1e-2),
        power=f32(0.5, 3.0),
        cycle=st.booleans(),
        name=NAMES,
    ),
    st.builds(
        CosineDecay,
        f32(1e-4, 1.0),
        st.integers(1, 1000),
        f32(0.0, 0.5),
        name=NAMES,
        warmup_target=st.none() | f32(1e-4, 1.0),
        warmup_steps=st.integers(0, 100),
    ),
    st.builds(
        CosineDecayRestarts,
        f32(1e-4, 1.0),
        st.integers(1, 1000),
        f32(1.0, 3.0),
        f32(0.5, 1.0),
        f32(0.0, 0.5),
        name=NAMES,
    ),
    st.integers(1, 4).flatmap(
        lambda n: st.builds(
            lambda b, v, name: PiecewiseConstantDecay(sorted(b), v, name=name),
            st.lists(st.integers(0, 10_000), min_size=n, max_size=n, unique=True),
            st.lists(f32(1e-4, 1.0), min_size=n + 1, max_size=n + 1),
            NAMES,
        )
    ),
)
PROBE_STEPS = [0, 1, 7, 99, 100, 101, 1234, 50_000]


def assert_same_outputs(a, b):
    for step in PROBE_STEPS:
        x, y = a(step), b(step)
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)


@settings(max_examples=60, deadline=None)
@given(schedule=ANY_SCHEDULE, legacy=st.booleans())
def test_serialize_json_deserialize_round_trip(schedule, legacy):
    payload = json.loads(json.dumps(serialize(schedule, use_legacy_format=legacy)))
    restored = deserialize(payload)
    assert type(restored) is type(schedule)
    assert restored.get_config() == schedule.get_config()
    assert_same_outputs(restored, schedule)


@settings(max_examples=60, deadline=None)
@given(schedule=ANY_SCHEDULE)
def test_get_config_from_config_round_trip(schedule):
    restored = type(schedule).from_config(schedule.get_config())
    assert restored is not schedule
    assert restored.get_config() == schedule.get_config()
    assert_same_outputs(restored, schedule)


# ============================================================================================
# Dtype rule
# ============================================================================================
FACTORIES = {
    "exponential": lambda lr: ExponentialDecay(lr, 10, 0.9),
    "inverse_time": lambda lr: InverseTimeDecay(lr, 10, 0.5, staircase=True),
    "polynomial": lambda lr: PolynomialDecay(lr, 10, cycle=True, power=0.5),
    "cosine": lambda lr: CosineDecay(lr, 10, alpha=0.1),
    "cosine_warmup": lambda lr: CosineDecay(lr, 10, warmup_target=0.5, warmup_steps=5),
    "restarts": lambda lr: CosineDecayRestarts(lr, 10, m_mul=0.9),
}


@pytest.mark.parametrize("factory", list(FACTORIES.values()), ids=list(FACTORIES))
@pytest.mark.parametrize(
    ("lr", "dtype"),
    [
        (0.1, np.float32),
        (np.float32(0.1), np.float32),
        (np.float64(0.1), np.float64),
        (np.asarray(0.1), np.float64),
        (np.float16(0.1), np.float16),
        (ml_dtypes.bfloat16(0.1), ml_dtypes.bfloat16),
    ],
    ids=["py_float", "np_float32", "np_float64", "0d_float64", "float16", "bfloat16"],
)
def test_output_is_0d_array_in_dtype_of_initial_rate(factory, lr, dtype):
    for step in (0, 3, 12, 25):
        out = factory(lr)(step)
        assert isinstance(out, np.ndarray) and out.shape == ()
        assert out.dtype == np.dtype(dtype)
        # Sanity of the value: within a few ulps of the dtype, relative to the rate scale 0.1.
        reference = float(factory(np.float64(lr))(step))
        assert abs(float(out) - reference) <= 16 * float(ml_dtypes.finfo(dtype).eps) * 0.1


@pytest.mark.parametrize(
    "step",
    [7, np.int32(7), np.int64(7), 7.0, np.float64(7.0), Variable(7, dtype="int64")],
    ids=["int", "int32", "int64", "float", "float64", "variable"],
)
def test_step_types_are_cast_to_compute_dtype(step):
    for factory in FACTORIES.values():
        assert factory(0.1)(step) == factory(0.1)(7)
        assert factory(0.1)(step).dtype == np.float32


def test_cast_rounds_python_floats_through_float32_in_a_float64_schedule():
    # tf.cast(0.96, float64) = float64(float32(0.96)) (math_ops.py ``cast``).
    out = ExponentialDecay(np.float64(1.0), 1, 0.96)(1)
    assert out.dtype == np.float64
    assert out == np.float64(np.float32(0.96))
    assert out != 0.96
    # A NumPy float64 hyper-parameter is cast once and keeps its value.
    assert ExponentialDecay(np.float64(1.0), 1, np.float64(0.96))(1) == 0.96


def test_cosine_alpha_is_an_operand_rounded_once():
    # ``(1 - alpha) * c + alpha`` with Python alpha: converted straight to float64.
    out = CosineDecay(np.float64(1.0), 10, alpha=0.1)(10)  # c = 0.5 * (1 + cos(pi)) = 0
    assert out == 0.1
    # CosineDecayRestarts casts alpha (float32 first): at g -> 1 the rate tends to that value.
    restarts = CosineDecayRestarts(np.float64(1.0), 10**9, t_mul=1.0, alpha=0.1)
    assert abs(float(restarts(10**9 - 1)) - float(np.float32(0.1))) < 1e-15


def test_float32_operation_order_bitwise():
    f = np.float32
    s, d = f(7), f(10)
    assert ExponentialDecay(0.1, 10, 0.9)(7) == f(0.1) * elementary.power(f(0.9), s / d)
    assert InverseTimeDecay(0.1, 10, 0.5)(7) == f(0.1) / (f(1) + f(0.5) * (s / d))
    expected_poly = (f(0.1) - f(1e-4)) * elementary.power(f(1) - s / d, f(2.0)) + f(1e-4)
    assert PolynomialDecay(0.1, 10, power=2.0)(7) == expected_poly
    cosine = f(0.5) * (f(1.0) + elementary.cos(f(math.pi) * (s / d)))
    expected_cos = f(0.1) * (f(1 - 0.2) * cosine + f(0.2))
    assert CosineDecay(0.1, 10, alpha=0.2)(7) == expected_cos


def test_decay_steps_zero_is_accepted_with_ieee_results():
    # tf-keras has no range check (Keras 3 raises at construction): 0/0 = nan, 5/0 = inf.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        schedule = ExponentialDecay(0.1, 0, 0.9)
        assert np.isnan(schedule(0))
        assert schedule(5) == 0.0  # 0.9 ** inf
        assert InverseTimeDecay(0.1, 0, 0.5)(5) == 0.0  # 0.1 / inf
        assert np.isnan(CosineDecay(0.1, 0)(0))
        assert ExponentialDecay(0.1, -10, 0.5)(10) == np.float32(0.2)


# ============================================================================================
# PiecewiseConstantDecay specifics
# ============================================================================================
@pytest.mark.parametrize(
    ("values", "dtype"),
    [
        ([1.0, 0.5], np.float32),
        ([np.float64(1.0), np.float64(0.5)], np.float64),
        ([1, 0], np.int32),
    ],
)
def test_piecewise_output_dtype_is_that_of_the_value(values, dtype):
    out = PiecewiseConstantDecay([3], values)(4)
    assert isinstance(out, np.ndarray) and out.shape == () and out.dtype == dtype
    assert out == values[1]


def test_piecewise_float_boundary_is_truncated_to_an_integer_step():
    schedule = PiecewiseConstantDecay([-1.5], [1.0, 2.0])
    assert schedule(-1) == np.float32(1.0)  # boundary int32(-1.5) = -1 and -1 <= -1
    assert schedule(-1.0) == np.float32(2.0)  # float step: -1.0 > -1.5


def test_piecewise_nan_step_gives_first_value():
    assert PiecewiseConstantDecay([1, 2], [3.0, 4.0, 5.0])(float("nan")) == np.float32(3.0)


def test_piecewise_returns_a_fresh_array():
    schedule = PiecewiseConstantDecay([1], [np.asarray(0.5), np.asarray(0.25)])
    out = schedule(0)
    out[()] = 9.0
    assert schedule(0) == 0.5


# ============================================================================================
# API surface: signatures, config keys, serialization dicts
# ============================================================================================
SIGNATURES = {
    ExponentialDecay: [
        ("initial_learning_rate", inspect.Parameter.empty),
        ("decay_steps", inspect.Parameter.empty),
        ("decay_rate", inspect.Parameter.empty),
        ("staircase", False),
        ("name", None),
    ],
    PiecewiseConstantDecay: [
        ("boundaries", inspect.Parameter.empty),
        ("values", inspect.Parameter.empty),
        ("name", None),
    ],
    PolynomialDecay: [
        ("initial_learning_rate", inspect.Parameter.empty),
        ("decay_steps", inspect.Parameter.empty),
        ("end_learning_rate", 0.0001),
        ("power", 1.0),
        ("cycle", False),
        ("name", None),
    ],
    InverseTimeDecay: [
        ("initial_learning_rate", inspect.Parameter.empty),
        ("decay_steps", inspect.Parameter.empty),
        ("decay_rate", inspect.Parameter.empty),
        ("staircase", False),
        ("name", None),
    ],
    CosineDecay: [
        ("initial_learning_rate", inspect.Parameter.empty),
        ("decay_steps", inspect.Parameter.empty),
        ("alpha", 0.0),
        ("name", None),
        ("warmup_target", None),
        ("warmup_steps", 0),
    ],
    CosineDecayRestarts: [
        ("initial_learning_rate", inspect.Parameter.empty),
        ("first_decay_steps", inspect.Parameter.empty),
        ("t_mul", 2.0),
        ("m_mul", 1.0),
        ("alpha", 0.0),
        ("name", None),
    ],
}


@pytest.mark.parametrize("cls", list(SIGNATURES), ids=lambda c: c.__name__)
def test_signature_and_config_keys_match_tf_keras(cls):
    params = inspect.signature(cls).parameters.values()
    assert [(p.name, p.default) for p in params] == SIGNATURES[cls]
    required = [name for name, default in SIGNATURES[cls] if default is inspect.Parameter.empty]
    args = {
        "initial_learning_rate": 0.1,
        "decay_steps": 10,
        "decay_rate": 0.5,
        "first_decay_steps": 10,
        "boundaries": [5],
        "values": [1.0, 0.5],
    }
    schedule = cls(**{name: args[name] for name in required})
    config = schedule.get_config()
    # Same keys in the same order as the constructor (tf-keras get_config order).
    assert list(config) == [name for name, _ in SIGNATURES[cls]]
    for name, default in SIGNATURES[cls]:
        assert config[name] == (args[name] if default is inspect.Parameter.empty else default)


def test_serialize_builtin_matches_tf_keras_dict():
    schedule = ExponentialDecay(0.01, 10000, 0.9)
    assert serialize(schedule) == {
        "module": "keras.optimizers.schedules",
        "class_name": "ExponentialDecay",
        "config": {
            "initial_learning_rate": 0.01,
            "decay_steps": 10000,
            "decay_rate": 0.9,
            "staircase": False,
            "name": None,
        },
        "registered_name": None,
    }
    assert serialize(schedule, use_legacy_format=True) == {
        "class_name": "ExponentialDecay",
        "config": schedule.get_config(),
    }


def test_serialize_converts_numpy_scalars_and_float64_comes_back_float32():
    schedule = PolynomialDecay(np.float64(0.1), np.int64(10), power=np.float32(2.0))
    payload = serialize(schedule)
    config = payload["config"]
    assert type(config["initial_learning_rate"]) is float and config["initial_learning_rate"] == 0.1
    assert type(config["decay_steps"]) is int and type(config["power"]) is float
    json.dumps(payload)
    assert schedule(3).dtype == np.float64
    assert deserialize(payload)(3).dtype == np.float32  # as tf-keras: the dtype is not saved
    legacy = serialize(schedule, use_legacy_format=True)
    assert type(legacy["config"]["initial_learning_rate"]) is np.float64
    assert deserialize(legacy)(3).dtype == np.float64


class CustomLRSchedule(LearningRateSchedule):
    """The custom schedule of tf-keras ``optimizer_test.py::testGetAndFromConfig``."""

    def __init__(self, initial_learning_rate):
        self.initial_learning_rate = initial_learning_rate

    def __call__(self, step):
        return np.asarray(self.initial_learning_rate / (np.float32(step) + 1), np.float32)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate}


TFK_CUSTOM_DICT = {
    "class_name": "CustomLRSchedule",
    "config": {"initial_learning_rate": 0.05},
    "module": None,
    "registered_name": "CustomLRSchedule",
}


def test_custom_schedule_dict_matches_tf_keras_test_and_needs_custom_objects(registry):
    schedule = CustomLRSchedule(0.05)
    assert serialize(schedule) == TFK_CUSTOM_DICT
    with pytest.raises(ValueError, match="Unknown decay: 'CustomLRSchedule'"):
        deserialize(TFK_CUSTOM_DICT)
    restored = deserialize(TFK_CUSTOM_DICT, custom_objects={"CustomLRSchedule": CustomLRSchedule})
    assert isinstance(restored, CustomLRSchedule) and restored(3) == schedule(3)
    assert serialize(schedule, use_legacy_format=True) == {
        "class_name": "CustomLRSchedule",
        "config": {"initial_learning_rate": 0.05},
    }


def test_registered_schedule_round_trips_without_custom_objects(registry):
    assert register_serializable(CustomLRSchedule) is CustomLRSchedule
    assert registry == {"CustomLRSchedule": CustomLRSchedule}
    schedule = CustomLRSchedule(0.05)
    assert serialize(schedule) == TFK_CUSTOM_DICT
    for legacy in (False, True):
        restored = deserialize(json.loads(json.dumps(serialize(schedule, legacy))))
        assert isinstance(restored, CustomLRSchedule) and restored(2) == schedule(2)
    register_serializable(CustomLRSchedule)  # registering the same class again is a no-op
    assert registry == {"CustomLRSchedule": CustomLRSchedule}


def test_register_by_name_and_package(registry):
    @register_serializable("Halving", package="my_pkg")
    class Halving(CustomLRSchedule):
        pass

    @register_serializable()
    class Plain(CustomLRSchedule):
        pass

    assert set(registry) == {"my_pkg>Halving", "Plain"}
    payload = serialize(Halving(1.0))
    assert payload["class_name"] == "Halving" and payload["registered_name"] == "my_pkg>Halving"
    assert serialize(Halving(1.0), use_legacy_format=True)["class_name"] == "my_pkg>Halving"
    assert type(deserialize(payload)) is Halving
    assert type(deserialize(serialize(Plain(1.0)))) is Plain


def test_builtin_reference_is_not_shadowed_by_a_custom_name(registry):
    @register_serializable("ExponentialDecay")
    class Impostor(CustomLRSchedule):
        pass

    payload = serialize(ExponentialDecay(0.1, 10, 0.5))
    assert type(deserialize(payload)) is ExponentialDecay
    assert type(deserialize(payload, custom_objects={"ExponentialDecay": Impostor})) is (
        ExponentialDecay
    )


def test_builtin_subclass_serializes_as_custom(registry):
    class MyDecay(ExponentialDecay):
        pass

    payload = serialize(MyDecay(0.1, 10, 0.5))
    assert payload["module"] is None and payload["registered_name"] == "MyDecay"
    assert type(deserialize(payload, custom_objects={"MyDecay": MyDecay})) is MyDecay


def test_module_imports_no_framework():
    tree = ast.parse(pathlib.Path(schedules.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported and not imported & {"tensorflow", "tf_keras", "keras", "jax", "torch"}


# ============================================================================================
# Errors (table-driven)
# ============================================================================================
CALL_ERRORS = [
    (
        "lr-str",
        lambda: ExponentialDecay("0.1", 10, 0.9),
        0,
        TypeError,
        r"Argument `initial_learning_rate` must be a real number.*'0\.1' of type str",
    ),
    (
        "lr-none",
        lambda: PolynomialDecay(None, 10),
        0,
        TypeError,
        r"`initial_learning_rate`.*initial_learning_rate=None",
    ),
    (
        "lr-int",
        lambda: InverseTimeDecay(1, 10, 0.5),
        0,
        TypeError,
        r"`initial_learning_rate` must be a floating-point value.*int32",
    ),
    (
        "lr-np-int",
        lambda: CosineDecay(np.int64(1), 10),
        0,
        TypeError,
        r"floating-point value.*int64",
    ),
    (
        "lr-complex",
        lambda: ExponentialDecay(1j, 10, 0.5),
        0,
        TypeError,
        r"`initial_learning_rate` must be a real number",
    ),
    (
        "decay_steps-str",
        lambda: ExponentialDecay(0.1, "10", 0.9),
        0,
        TypeError,
        r"`decay_steps`.*decay_steps='10'",
    ),
    ("decay_rate-none", lambda: InverseTimeDecay(0.1, 10, None), 0, TypeError, r"`decay_rate`"),
    (
        "end-str",
        lambda: PolynomialDecay(0.1, 10, end_learning_rate="x"),
        0,
        TypeError,
        r"`end_learning_rate`",
    ),
    ("power-none", lambda: PolynomialDecay(0.1, 10, power=None), 0, TypeError, r"`power`"),
    (
        "poly-decay_steps-list",
        lambda: PolynomialDecay(0.1, [10], cycle=True),
        0,
        TypeError,
        r"`decay_steps`",
    ),
    ("alpha-str", lambda: CosineDecay(0.1, 10, alpha="x"), 0, TypeError, r"`alpha`.*alpha='x'"),
    (
        "warmup_target-str",
        lambda: CosineDecay(0.1, 10, warmup_target="x", warmup_steps=5),
        0,
        TypeError,
        r"`warmup_target`",
    ),
    (
        "warmup_steps-none",
        lambda: CosineDecay(0.1, 10, warmup_target=1.0, warmup_steps=None),
        0,
        TypeError,
        r"`warmup_steps`",
    ),
    (
        "first_decay_steps-none",
        lambda: CosineDecayRestarts(0.1, None),
        0,
        TypeError,
        r"`first_decay_steps`",
    ),
    ("t_mul-str", lambda: CosineDecayRestarts(0.1, 10, t_mul="2"), 0, TypeError, r"`t_mul`"),
    ("m_mul-none", lambda: CosineDecayRestarts(0.1, 10, m_mul=None), 0, TypeError, r"`m_mul`"),
    (
        "restarts-alpha-none",
        lambda: CosineDecayRestarts(0.1, 10, alpha=None),
        0,
        TypeError,
        r"`alpha`",
    ),
    ("step-str", lambda: ExponentialDecay(0.1, 10, 0.9), "3", TypeError, r"`step`.*step='3'"),
    ("step-none", lambda: CosineDecay(0.1, 10), None, TypeError, r"`step`"),
    (
        "piecewise-step-str",
        lambda: PiecewiseConstantDecay([1], [0.1, 0.2]),
        "1",
        TypeError,
        r"`step`",
    ),
    (
        "piecewise-values-str",
        lambda: PiecewiseConstantDecay([1], ["a", "b"]),
        0,
        TypeError,
        r"`values`",
    ),
    (
        "piecewise-boundary-none",
        lambda: PiecewiseConstantDecay([None], [0.1, 0.2]),
        0,
        TypeError,
        r"`boundaries`",
    ),
    (
        "piecewise-unsorted",
        lambda: PiecewiseConstantDecay([10, 5], [1.0, 2.0, 3.0]),
        7,
        ValueError,
        r"more than one interval contains step=7.*increasing",
    ),
    (
        "piecewise-empty",
        lambda: PiecewiseConstantDecay([], [1.0]),
        0,
        IndexError,
        r"at least one boundary",
    ),
    (
        "base-call",
        LearningRateSchedule,
        0,
        NotImplementedError,
        r"Learning rate schedule 'LearningRateSchedule' must override `__call__\(self, step\)`",
    ),
]


@pytest.mark.parametrize(
    ("factory", "step", "exc", "match"),
    [pytest.param(*row[1:], id=row[0]) for row in CALL_ERRORS],
)
def test_call_errors(factory, step, exc, match):
    schedule = factory()  # construction stores the arguments unchecked, as tf-keras
    with pytest.raises(exc, match=match):
        schedule(step)


class _BadConfig(LearningRateSchedule):
    def __call__(self, step):
        return np.asarray(0.0, np.float32)

    def get_config(self):
        return [1]


class _NotASchedule:
    pass


OTHER_ERRORS = [
    (
        "piecewise-length",
        lambda: PiecewiseConstantDecay([1, 2], [1.0, 2.0]),
        ValueError,
        re.escape(
            "The length of boundaries should be 1 less than the length of values. Received: "
            "boundaries=[1, 2] of length 2, and values=[1.0, 2.0] of length 2."
        ),
    ),
    (
        "piecewise-length-short",
        lambda: PiecewiseConstantDecay([1], [1.0, 2.0, 3.0]),
        ValueError,
        r"boundaries=\[1\] of length 1, and values=\[1\.0, 2\.0, 3\.0\] of length 3",
    ),
    (
        "from_config-unknown-key",
        lambda: ExponentialDecay.from_config(
            {"initial_learning_rate": 0.1, "decay_steps": 1, "decay_rate": 0.5, "bogus": 1}
        ),
        TypeError,
        r"bogus",
    ),
    (
        "from_config-missing-key",
        lambda: CosineDecay.from_config({"initial_learning_rate": 0.1}),
        TypeError,
        r"decay_steps",
    ),
    (
        "base-get_config",
        lambda: LearningRateSchedule().get_config(),
        NotImplementedError,
        r"must override `get_config\(\)` in order to be serializable",
    ),
    (
        "serialize-float",
        lambda: serialize(0.1),
        TypeError,
        r"serialize\(\) takes a LearningRateSchedule.*float",
    ),
    (
        "serialize-bad-config",
        lambda: serialize(_BadConfig()),
        TypeError,
        r"should return a dict. It returned: \[1\]",
    ),
    (
        "deserialize-str",
        lambda: deserialize("ExponentialDecay"),
        TypeError,
        r"deserialize\(\) takes the dict.*of type str",
    ),
    ("deserialize-none", lambda: deserialize(None), TypeError, r"of type NoneType"),
    (
        "deserialize-unknown",
        lambda: deserialize({"class_name": "Nope", "config": {}}),
        ValueError,
        r"Unknown decay: 'Nope'\. Known schedules: \['CosineDecay', 'CosineDecayRestarts', "
        r"'ExponentialDecay', 'InverseTimeDecay', 'PiecewiseConstantDecay', 'PolynomialDecay'\]",
    ),
    (
        "deserialize-unknown-registered",
        lambda: deserialize(
            {"module": None, "class_name": "A", "config": {}, "registered_name": "p>A"}
        ),
        ValueError,
        r"Unknown decay: 'p>A'",
    ),
    (
        "deserialize-no-class_name",
        lambda: deserialize({"config": {}}),
        ValueError,
        r"Improper config format.*`class_name` and `config`",
    ),
    (
        "deserialize-no-config",
        lambda: deserialize({"class_name": "ExponentialDecay"}),
        ValueError,
        r"Improper config format",
    ),
    (
        "deserialize-config-list",
        lambda: deserialize({"class_name": "ExponentialDecay", "config": [1]}),
        TypeError,
        r"The `config` entry must be a dict",
    ),
    (
        "deserialize-no-from_config",
        lambda: deserialize({"class_name": "X", "config": {}}, custom_objects={"X": _NotASchedule}),
        TypeError,
        r"Unable to reconstruct an instance of 'X'.*missing a `from_config\(\)`",
    ),
    (
        "register-not-a-class",
        lambda: register_serializable(42),
        TypeError,
        r"takes a class or a name",
    ),
    (
        "register-not-a-schedule",
        lambda: register_serializable()(_NotASchedule),
        TypeError,
        r"decorates LearningRateSchedule subclasses",
    ),
]


@pytest.mark.parametrize(
    ("action", "exc", "match"), [pytest.param(*row[1:], id=row[0]) for row in OTHER_ERRORS]
)
def test_other_errors(action, exc, match, registry):
    with pytest.raises(exc, match=match):
        action()


def test_register_duplicate_name_is_rejected(registry):
    register_serializable("Same")(CustomLRSchedule)

    class Other(CustomLRSchedule):
        pass

    with pytest.raises(ValueError, match=r"Same has already been registered to .*CustomLRSchedule"):
        register_serializable("Same")(Other)
    assert registry == {"Same": CustomLRSchedule}
