"""Nadam against the Keras goldens (notes §2.9, §4.2 items 4–5, §5.1, §5.2, §5.3, §5.4)."""

from __future__ import annotations

import numpy as np
import pytest

from optcheck.reference import Variable, elementary
from optcheck.reference.optimizers.nadam import Nadam
from tests.helpers import (
    k3_golden_trajectory,
)

PROFILES = ["keras2", "keras3"]
GOLDEN_KWARGS = {"learning_rate": 0.5, "beta_1": 0.5, "beta_2": 0.67, "epsilon": 1e-5}

# K3 nadam_test.py with GOLDEN_KWARGS.
GOLDEN = np.array(
    [
        [0.4281] * 10,
        [-0.1738, -0.1731, -0.1726, -0.1723, -0.1721, -0.172, -0.1719, -0.1718, -0.1718, -0.1717],
        [-0.7115, -0.7103, -0.7096, -0.7092, -0.709, -0.7088, -0.7086, -0.7085, -0.7085, -0.7084],
        [-1.2335, -1.2322, -1.2313, -1.2309, -1.2306, -1.2304, -1.2302, -1.2301, -1.23, -1.2299],
        [-1.7492, -1.7478, -1.7469, -1.7464, -1.7461, -1.7459, -1.7457, -1.7456, -1.7455, -1.7454],
    ]
)
# Notes §5.1: element 0 of the same procedure with the legacy schedule 0.96^(0.004·t).
LEGACY_ELEMENT_0 = [0.4339, -0.1671, -0.7032, -1.2229, -1.7358]


def _float64_trajectory(schedule_exponent):
    """The K3 golden procedure in float64 math with momentum schedule 0.96^e(t)."""
    lr, b1, b2, eps = 0.5, 0.5, 0.67, 1e-5
    x, m, v, u_product = np.ones(10), np.zeros(10), np.zeros(10), 1.0
    grads = [np.full(10, 0.01)] + [np.arange(0.1, 1.1, 0.1)] * 4
    rows = []
    for t, g in enumerate(grads, start=1):
        u_t = b1 * (1 - 0.5 * 0.96 ** schedule_exponent(t))
        u_next = b1 * (1 - 0.5 * 0.96 ** schedule_exponent(t + 1))
        u_product *= u_t
        m = m + (g - m) * (1 - b1)
        v = v + (g * g - v) * (1 - b2)
        m_hat = u_next * m / (1 - u_product * u_next) + (1 - u_t) * g / (1 - u_product)
        x = x - m_hat * lr / (np.sqrt(v / (1 - b2**t)) + eps)
        rows.append(x.copy())
    return np.array(rows)


def test_golden_pins_the_096_pow_t_schedule():
    new = _float64_trajectory(lambda t: t)
    legacy = _float64_trajectory(lambda t: 0.004 * t)
    np.testing.assert_allclose(new, GOLDEN, rtol=5e-4, atol=5e-4)
    np.testing.assert_allclose(legacy[:, 0], LEGACY_ELEMENT_0, atol=6e-5)
    assert not np.allclose(legacy, GOLDEN, rtol=5e-4, atol=5e-4)
    reference = k3_golden_trajectory(Nadam(**GOLDEN_KWARGS), "float32")
    np.testing.assert_allclose(reference, new, rtol=1e-5, atol=1e-5)


def _grads(step):
    return (np.array([0.1, -0.3, 0.7], np.float32) * (step + 1),
            np.array([[2.0, -1.0], [0.5, 0.25]], np.float32) / (step + 1))  # fmt: skip


@pytest.mark.parametrize("profile", PROFILES)
def test_u_product_advances_once_per_step(profile):
    a0, b0 = np.array([1.0, 2.0, 3.0], np.float32), np.array([[1.0, -1.0], [0.0, 2.0]], np.float32)
    together = Nadam(learning_rate=0.1, profile=profile)
    alone_a = Nadam(learning_rate=0.1, profile=profile)
    alone_b = Nadam(learning_rate=0.1, profile=profile)
    a, b, a1, b1 = Variable(a0), Variable(b0), Variable(a0), Variable(b0)
    for step in range(4):
        ga, gb = _grads(step)
        together.apply_gradients([(ga, a), (gb, b)])
        alone_a.apply_gradients([(ga, a1)])
        alone_b.apply_gradients([(gb, b1)])
    np.testing.assert_array_equal(a.numpy(), a1.numpy())
    np.testing.assert_array_equal(b.numpy(), b1.numpy())
    assert together._u_product.numpy() == alone_a._u_product.numpy()
    expected = np.prod([0.9 * (1 - 0.5 * 0.96**t) for t in range(1, 5)])
    assert together._u_product.numpy() == pytest.approx(expected, rel=1e-6)


def test_u_product_once_per_step_with_preset_iterations():
    # tf-keras's counter would advance Π once per variable here; the spec is once per step.
    opt = Nadam()
    opt.iterations = 5
    a, b = Variable([1.0, 2.0]), Variable([3.0])
    opt.apply_gradients([(np.ones(2, np.float32), a), (np.ones(1, np.float32), b)])
    f32 = np.float32
    u_6 = f32(0.9) * (f32(1) - f32(0.5) * elementary.power(f32(0.96), f32(6)))
    assert opt._u_product.numpy() == u_6


@pytest.mark.parametrize("profile", PROFILES)
def test_u_product_update_form_per_profile(profile):
    # keras2: Π ← Π·(β1·(1 − 0.5·0.96ᵗ)); keras3: Π ← (Π·β1)·(1 − 0.5·0.96ᵗ). float32.
    f32 = np.float32
    opt = Nadam(learning_rate=0.1, profile=profile)
    v = Variable(np.ones(3, np.float32))
    expected = f32(1.0)
    for t in range(1, 9):
        opt.apply_gradients([(np.array([0.1, 0.2, 0.3], np.float32), v)])
        schedule = f32(1.0) - f32(0.5) * elementary.power(f32(0.96), f32(t))
        if profile == "keras2":
            expected = expected * (f32(0.9) * schedule)
        else:
            expected = expected * f32(0.9) * schedule
        assert opt._u_product.numpy() == expected
        assert opt._u_product.dtype == np.float32


def test_u_product_forms_round_differently():
    products = {}
    for profile in PROFILES:
        opt = Nadam(learning_rate=0.1, profile=profile)
        v = Variable(np.ones(3, np.float32))
        for _ in range(4):
            opt.apply_gradients([(np.array([0.1, 0.2, 0.3], np.float32), v)])
        products[profile] = opt._u_product.numpy()
    assert products["keras2"] != products["keras3"]
    assert products["keras2"] == pytest.approx(products["keras3"], rel=1e-6)


def test_u_product_is_not_an_optimizer_variable():
    opt = Nadam()
    v = Variable([1.0, 2.0])
    opt.apply_gradients([(np.ones(2, np.float32), v)])
    assert all(x is not opt._u_product for x in opt.variables)
    assert [x.name for x in opt.variables] == ["iteration", "m/Variable", "v/Variable"]


def test_mixed_dtypes_keras2_raise_before_any_update():
    opt = Nadam()
    a, b = Variable(np.ones(2, np.float32)), Variable(np.ones(2, np.float64))
    with pytest.raises(TypeError, match="Nadam keeps its momentum product in float32"):
        opt.apply_gradients([(np.ones(2, np.float32), a), (np.ones(2, np.float64), b)])
    np.testing.assert_array_equal(a.numpy(), [1.0, 1.0])
    assert opt._u_product.numpy() == 1.0 and int(opt.iterations.numpy()) == 0


def test_mixed_dtypes_keras3_cast_the_product():
    opt = Nadam(profile="keras3")
    a, b = Variable(np.ones(2, np.float64)), Variable(np.ones(2, np.float32))
    opt.apply_gradients([(np.ones(2, np.float64), a), (np.ones(2, np.float32), b)])
    assert opt._u_product.dtype == np.float64
    alone = Nadam(profile="keras3")
    b1 = Variable(np.ones(2, np.float32))
    alone.apply_gradients([(np.ones(2, np.float32), b1)])
    # Π₁ = 1·β1·s in float64, cast to float32 — the same value as the float32 Π₁ here.
    np.testing.assert_allclose(b.numpy(), b1.numpy(), rtol=1e-6)


def test_u_product_skips_gradient_accumulation_micro_steps():
    opt = Nadam(profile="keras3", gradient_accumulation_steps=2)
    v = Variable(np.ones(2, np.float32))
    opt.apply_gradients([(np.ones(2, np.float32), v)])
    assert opt._u_product.numpy() == 1.0
    opt.apply_gradients([(np.ones(2, np.float32), v)])
    f32 = np.float32
    u_1 = f32(0.9) * (f32(1) - f32(0.5) * f32(0.96))
    assert opt._u_product.numpy() == u_1


BAD_INPUTS = [
    ("keras2", {"decay": 0.1}, ValueError, "decay is deprecated"),
    ("keras2", {"schedule_decay": 0.004}, TypeError, "schedule_decay is not a valid argument"),
    ("keras3", {"schedule_decay": 0.004}, ValueError, r"Argument\(s\) not recognized"),
    ("keras3", {"learning_rate": 1}, ValueError, "Argument `learning_rate` should be float"),
    ("keras3", {"gradient_accumulation_steps": 1}, ValueError, "must be an integer >= 2"),
]


@pytest.mark.parametrize(("profile", "kwargs", "error", "match"), BAD_INPUTS)
def test_bad_inputs(profile, kwargs, error, match):
    with pytest.raises(error, match=match):
        Nadam(**kwargs, profile=profile)
