"""Base-class semantics: the apply pipeline, EMA, clipping, schedules timing, replicas,
gradient accumulation and loss scaling, in both profiles (notes §1, §5.3, §5.4)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from optcheck.reference import SGD, Adam, IndexedSlices, PerReplica, Variable
from optcheck.reference.schedules import ExponentialDecay

PROFILES = ["keras2", "keras3"]


def f32(x):
    return np.asarray(x, dtype=np.float32)


# -- EMA ---------------------------------------------------------------------------------
def test_k3_ema_golden_first_step_initialisation():
    opt = SGD(learning_rate=1.0, use_ema=True, ema_momentum=0.9, ema_overwrite_frequency=3,
              profile="keras3")  # fmt: skip
    v = Variable(f32([[3, 4], [5, 6]]))
    g = f32(np.ones((2, 2)))
    opt.apply_gradients([(g, v)])
    np.testing.assert_allclose(v.numpy(), [[2, 3], [4, 5]])
    np.testing.assert_allclose(opt.get_slot(v, "average").numpy(), [[2, 3], [4, 5]])
    opt.apply_gradients([(g, v)])
    np.testing.assert_allclose(v.numpy(), [[1, 2], [3, 4]])
    np.testing.assert_allclose(opt.get_slot(v, "average").numpy(), [[1.9, 2.9], [3.9, 4.9]],
                               rtol=1e-6)  # fmt: skip
    opt.apply_gradients([(g, v)])
    np.testing.assert_allclose(v.numpy(), [[1.71, 2.71], [3.71, 4.71]], rtol=1e-6)
    np.testing.assert_allclose(opt.get_slot(v, "average").numpy(), v.numpy())


def test_seed_ema_scenario_differs_between_profiles():
    results = {}
    for profile in PROFILES:
        opt = SGD(learning_rate=1.0, use_ema=True, ema_momentum=0.5, ema_overwrite_frequency=3,
                  profile=profile)  # fmt: skip
        v = Variable(2.0)
        averages = []
        for _ in range(3):
            opt.apply_gradients([(f32(1.0), v)])
            averages.append(opt.get_slot(v, "average").numpy().item())
        results[profile] = (averages, v.numpy().item())
    assert results["keras2"] == ([1.5, 0.75, -0.125], -0.125)
    assert results["keras3"] == ([1.0, 0.5, -0.25], -0.25)


def test_tfk_ema_skips_variable_without_gradient():
    # tf-keras testMovingAverageOptimizer: var2 has a None gradient and stays 2.0.
    opt = SGD(learning_rate=1, use_ema=True, ema_momentum=0.5, ema_overwrite_frequency=3)
    var1, var2, var3 = Variable(2.0), Variable(2.0), Variable(2.0)
    seen = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(3):
            opt.apply_gradients([(f32(1.0), var1), (None, var2), (f32(1.0), var3)])
            seen.append((var1.numpy().item(), var2.numpy().item(), var3.numpy().item()))
    assert seen == [(1.0, 2.0, 1.0), (0.0, 2.0, 0.0), (-0.125, 2.0, -0.125)]
    assert opt.get_slot(var2, "average").numpy() == 2.0


def test_k3_ema_averages_variables_without_gradient():
    opt = SGD(learning_rate=1.0, use_ema=True, ema_momentum=0.5, profile="keras3")
    var1, var2 = Variable(2.0), Variable(2.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opt.apply_gradients([(f32(1.0), var1), (None, var2)])
        opt.apply_gradients([(f32(1.0), var1), (None, var2)])
    # var2's average follows var2 (2.0) because Keras 3 averages every built variable.
    assert opt.get_slot(var2, "average").numpy() == 2.0
    assert opt.get_slot(var1, "average").numpy() == 0.5 * 1.0 + 0.5 * 0.0


def test_k3_adam_ema_overwrite_frequency():
    plain = Adam(learning_rate=1.0, profile="keras3")
    ema = Adam(learning_rate=1.0, use_ema=True, ema_momentum=0.9, ema_overwrite_frequency=2,
               profile="keras3")  # fmt: skip
    a, b = Variable(f32([1.0, 2.0])), Variable(f32([1.0, 2.0]))
    g = f32([0.5, -1.5])
    plain.apply_gradients([(g, a)])
    ema.apply_gradients([(g, b)])
    v1 = a.numpy()
    np.testing.assert_array_equal(b.numpy(), v1)
    plain.apply_gradients([(g, a)])
    ema.apply_gradients([(g, b)])
    v2 = a.numpy()
    np.testing.assert_allclose(b.numpy(), 0.9 * v1 + 0.1 * v2, rtol=1e-6)


@pytest.mark.parametrize("profile", PROFILES)
def test_ema_momentum_zero_tracks_variable(profile):
    opt = SGD(learning_rate=0.3, use_ema=True, ema_momentum=0.0, profile=profile)
    v = Variable(f32([1.0, -2.0]))
    for _ in range(3):
        opt.apply_gradients([(f32([0.25, 1.0]), v)])
        np.testing.assert_array_equal(opt.get_slot(v, "average").numpy(), v.numpy())


# -- clipping ----------------------------------------------------------------------------
@pytest.mark.parametrize("profile", PROFILES)
def test_clipping_goldens(profile):
    opt = SGD(clipnorm=1, profile=profile)
    np.testing.assert_allclose(opt._clip_gradients([f32([100, 100])])[0], [2**0.5 / 2] * 2,
                               rtol=1e-6)  # fmt: skip
    opt = SGD(clipvalue=1, profile=profile)
    np.testing.assert_array_equal(opt._clip_gradients([f32([100, 100])])[0], [1, 1])
    opt = SGD(global_clipnorm=1, profile=profile)
    g = f32([50, 100])
    np.testing.assert_allclose(opt._clip_gradients([g])[0], g / np.linalg.norm(g), rtol=1e-6)
    # tf-keras testClipGlobalNorm: two gradients [100, 100], global norm 1 -> 0.5 each.
    out = opt._clip_gradients([f32([100, 100]), f32([100, 100])])
    np.testing.assert_allclose(np.concatenate(out), [0.5] * 4, rtol=1e-6)


def test_clip_by_norm_is_multiply_then_divide():
    # In the no-clip regime Keras returns (t·c)/c, not t: some float32 values move an ulp.
    t = np.linspace(0.1, 0.9, 1000, dtype=np.float32) / np.float32(1000)
    c = np.float32(3.0)
    (out,) = SGD(clipnorm=3.0)._clip_gradients([t])
    np.testing.assert_array_equal(out, (t * c) / c)
    assert np.any(out != t)


def test_clip_priority_keras2_ignores_clipvalue_when_clipnorm_set():
    # Verified on tf-keras: SGD(clipnorm=100, clipvalue=0.5) leaves [3, 4] unchanged.
    (out,) = SGD(clipnorm=100, clipvalue=0.5)._clip_gradients([f32([3, 4])])
    np.testing.assert_allclose(out, [3, 4], rtol=1e-6)


def test_non_finite_global_norm_makes_every_gradient_nan():
    out = SGD(global_clipnorm=1.0)._clip_gradients([f32([np.inf, 1.0]), f32([2.0])])
    assert all(np.isnan(g).all() for g in out)
    (per_tensor,) = SGD(clipnorm=1.0)._clip_gradients([f32([np.inf, 1.0])])
    assert np.isnan(per_tensor[0]) and per_tensor[1] == 0.0


def test_sparse_duplicates_are_clipped_before_deduplication():
    # notes §5.5: rows [[3],[4]] at index 0 twice, clipnorm 5: each slice counted
    # separately (norm 5, not clipped), then summed to 7; the dense [[7],[0]] -> 5.
    sparse_v, dense_v = Variable(np.zeros((2, 1))), Variable(np.zeros((2, 1)))
    SGD(learning_rate=1.0, clipnorm=5.0).apply_gradients(
        [(IndexedSlices(np.array([[3.0], [4.0]]), np.array([0, 0]), (2, 1)), sparse_v)]
    )
    SGD(learning_rate=1.0, clipnorm=5.0).apply_gradients([(np.array([[7.0], [0.0]]), dense_v)])
    assert sparse_v.numpy()[0, 0] == pytest.approx(-7.0)
    assert dense_v.numpy()[0, 0] == pytest.approx(-5.0)


# -- None gradients, counters, learning rates --------------------------------------------
@pytest.mark.parametrize(
    "profile, match",
    [("keras2", r"No gradients provided for any variable: \(\['a', 'b'\],\)"),
     ("keras3", r"^No gradients provided for any variable\.$")],
)  # fmt: skip
def test_all_none_gradients_raise(profile, match):
    with pytest.raises(ValueError, match=match):
        SGD(profile=profile).apply_gradients(
            [(None, Variable(1.0, name="a")), (None, Variable(2.0, name="b"))]
        )


@pytest.mark.parametrize("profile", PROFILES)
def test_some_none_gradients_warn_and_skip(profile):
    v1, v2 = Variable(f32([1, 2])), Variable(f32([3, 4]), name="frozen")
    opt = SGD(learning_rate=1.0, profile=profile)
    with pytest.warns(UserWarning, match="frozen"):
        opt.apply_gradients([(None, v2), (f32([1, 1]), v1)])
    np.testing.assert_array_equal(v1.numpy(), [0, 1])
    np.testing.assert_array_equal(v2.numpy(), [3, 4])


@pytest.mark.parametrize("profile", PROFILES)
def test_iterations_counter(profile):
    opt = SGD(profile=profile)
    v = Variable(1.0)
    assert int(opt.iterations.numpy()) == 0
    opt.apply_gradients([(f32(1.0), v)])
    assert int(opt.iterations.numpy()) == 1
    opt.apply_gradients([(f32(1.0), v)])
    assert int(opt.iterations.numpy()) == 2


def test_iterations_preset_and_setter_rules():
    opt = Adam()
    opt.iterations = Variable(2, dtype="int32")
    v = Variable(1.0)
    returned = opt.apply_gradients([(f32(1.0), v)])
    assert int(returned.numpy()) == 3
    with pytest.raises(RuntimeError, match="Cannot set `iterations`"):
        opt.iterations = Variable(5, dtype="int64")
    with pytest.raises(AttributeError, match="read-only"):
        Adam(profile="keras3").iterations = 3


def test_empty_grads_and_vars():
    opt = SGD()
    assert int(opt.apply_gradients([]).numpy()) == 0
    assert int(opt.iterations.numpy()) == 0
    with pytest.raises(ValueError, match=r"not enough values to unpack \(expected 2, got 0\)"):
        SGD(profile="keras3").apply_gradients([])


def test_set_learning_rate_float_and_schedule():
    opt = Adam(learning_rate=1.0)
    opt.learning_rate = 2.0
    assert opt.learning_rate.numpy() == 2.0
    opt.lr = 3.0
    assert opt.learning_rate.numpy() == 3.0
    sched = Adam(learning_rate=ExponentialDecay(1e-2, 10000, 0.9))
    assert float(sched.learning_rate.numpy()) == pytest.approx(0.01)
    v = Variable(1.0)
    sched.apply_gradients([(f32(1.0), v)])
    sched.apply_gradients([(f32(1.0), v)])
    assert 0.00999 < float(sched.learning_rate.numpy()) < 0.01
    with pytest.raises(TypeError, match="This optimizer was created with a `LearningRateSchedule`"):
        sched.learning_rate = 1.0


@pytest.mark.parametrize("profile, after_one, after_two", [("keras2", 1.0, 0.5),
                                                           ("keras3", 0.5, 0.25)])  # fmt: skip
def test_learning_rate_getter_timing(profile, after_one, after_two):
    opt = SGD(learning_rate=ExponentialDecay(1.0, 1, 0.5), profile=profile)
    v = Variable(0.0)
    opt.apply_gradients([(f32(1.0), v)])
    assert v.numpy() == -1.0  # step 1 used schedule(0) = 1.0 in both lines
    assert float(np.asarray(opt.learning_rate)) == after_one
    opt.apply_gradients([(f32(1.0), v)])
    assert v.numpy() == -1.5
    assert float(np.asarray(opt.learning_rate)) == after_two


def test_callable_learning_rate():
    k3 = SGD(learning_rate=lambda: 0.1, profile="keras3")
    v = Variable(f32([1.0, 2.0]))
    k3.apply_gradients([(f32([1.0, 1.0]), v)])
    np.testing.assert_allclose(v.numpy(), [0.9, 1.9], rtol=1e-7)
    # tf-keras stores a callable's value once in the float32 learning-rate variable.
    rates = iter([0.1, 0.5])
    k2 = SGD(learning_rate=lambda: next(rates))
    assert k2.learning_rate.numpy() == np.float32(0.1)


def test_lr_kwarg_is_ignored_in_keras2():
    with pytest.warns(UserWarning, match="`lr`"):
        opt = SGD(lr=0.5)
    assert opt.learning_rate.numpy() == np.float32(0.01)


def test_float64_variable_sees_float32_learning_rate():
    v = Variable(np.array(1.0))
    SGD(learning_rate=0.001).apply_gradients([(np.array(1.0), v)])
    assert v.numpy() == 1.0 - 0.0010000000474974513


# -- gradient accumulation and loss scaling (keras3) -------------------------------------
def test_k3_gradient_accumulation_golden():
    opt = SGD(learning_rate=1.0, gradient_accumulation_steps=3, profile="keras3")
    v = Variable(f32([[1, 2], [3, 4]]))
    g = f32(np.ones((2, 2)))
    opt.apply_gradients([(g, v)])
    np.testing.assert_array_equal(v.numpy(), [[1, 2], [3, 4]])
    np.testing.assert_array_equal(opt.get_slot(v, "gradient_accumulator").numpy(), np.ones((2, 2)))
    assert int(opt._iterations.numpy()) == 1 and int(opt.iterations.numpy()) == 0
    opt.apply_gradients([(g, v)])
    np.testing.assert_array_equal(opt.get_slot(v, "gradient_accumulator").numpy(), 2 * g)
    opt.apply_gradients([(g, v)])
    np.testing.assert_array_equal(v.numpy(), [[0, 1], [2, 3]])
    np.testing.assert_array_equal(opt.get_slot(v, "gradient_accumulator").numpy(), 0 * g)
    assert int(opt._iterations.numpy()) == 3 and int(opt.iterations.numpy()) == 1
    opt.apply_gradients([(g, v)])
    np.testing.assert_array_equal(opt.get_slot(v, "gradient_accumulator").numpy(), g)


def test_k3_static_loss_scaling():
    opt = SGD(learning_rate=1.0, loss_scale_factor=1024, profile="keras3")
    v = Variable(f32([[1, 2], [3, 4]]))
    opt.apply_gradients([(f32([[1, 2], [3, 4]]) * np.float32(1024), v)])
    np.testing.assert_array_equal(v.numpy(), np.zeros((2, 2)))


def test_keras3_only_arguments_rejected_in_keras2():
    with pytest.raises(TypeError, match="gradient_accumulation_steps is not a valid argument"):
        SGD(gradient_accumulation_steps=2)


# -- replicas ----------------------------------------------------------------------------
@pytest.mark.parametrize("profile", PROFILES)
def test_replica_gradients_are_summed(profile):
    v, w = Variable(f32([1.0, 1.0])), Variable(f32([1.0, 1.0]))
    SGD(learning_rate=0.5, profile=profile).apply_gradients(
        [(PerReplica([f32([1.0, 2.0]), f32([3.0, -4.0])]), v)]
    )
    SGD(learning_rate=0.5, profile=profile).apply_gradients([(f32([4.0, -2.0]), w)])
    np.testing.assert_array_equal(v.numpy(), w.numpy())


def test_clipping_sees_aggregated_gradients_in_keras2_and_local_ones_in_keras3():
    replicas = PerReplica([f32([3.0]), f32([4.0])])
    k2, k3 = Variable(f32([0.0])), Variable(f32([0.0]))
    SGD(learning_rate=1.0, clipnorm=5.0).apply_gradients([(replicas, k2)])
    SGD(learning_rate=1.0, clipnorm=5.0, profile="keras3").apply_gradients([(replicas, k3)])
    assert k2.numpy()[0] == pytest.approx(-5.0)  # 7 clipped to 5 after the sum
    assert k3.numpy()[0] == pytest.approx(-7.0)  # 3 and 4 each within 5, then summed


def test_skip_aggregation_rejects_per_replica_values():
    with pytest.raises(TypeError, match="PerReplica value but skip_gradients_aggregation=True"):
        SGD().apply_gradients([(PerReplica([f32(1.0)]), Variable(1.0))],
                              skip_gradients_aggregation=True)  # fmt: skip


# -- unknown variables, constraints ------------------------------------------------------
@pytest.mark.parametrize(
    "profile, exc, match",
    [("keras2", KeyError, "The optimizer cannot recognize variable late"),
     ("keras3", ValueError, "Unknown variable: ")],
)  # fmt: skip
def test_variable_not_seen_at_build(profile, exc, match):
    opt = SGD(profile=profile)
    known, late = Variable(1.0), Variable(1.0, name="late")
    opt.apply_gradients([(f32(1.0), known)])
    with pytest.raises(exc, match=match):
        opt.apply_gradients([(f32(1.0), late)])
    assert late.numpy() == 1.0 and known.numpy() == np.float32(1.0) - np.float32(0.01)


def test_constraints_apply_after_update_and_overwrite():
    v = Variable(f32([1.0, -1.0]), constraint=lambda x: np.clip(x.numpy(), 0, None))
    SGD(learning_rate=1.0).apply_gradients([(f32([0.5, 0.5]), v)])
    np.testing.assert_array_equal(v.numpy(), [0.5, 0.0])


def test_nan_and_inf_propagate():
    v = Variable(f32([1.0, 1.0, 1.0]))
    Adam(learning_rate=0.1).apply_gradients([(f32([np.nan, np.inf, 1.0]), v)])
    out = v.numpy()
    assert np.isnan(out[0]) and np.isnan(out[1]) and np.isfinite(out[2])


# -- a whole training loop: the schedule is read before the increment --------------------
@pytest.mark.parametrize("profile", PROFILES)
def test_fit_lr_schedule_golden(profile):
    """K3 TestFitLRSchedulesFlow: Dense(2) + Adam(ExponentialDecay(0.05, 1, 0.9)), mse."""
    x = np.arange(32, dtype=np.float32).reshape(16, 2)
    y = x.copy()
    kernel, bias = Variable(np.ones((2, 2), np.float32)), Variable(np.ones(2, np.float32))
    opt = Adam(learning_rate=ExponentialDecay(0.05, decay_steps=1, decay_rate=0.9),
               profile=profile)  # fmt: skip
    history = []
    for _ in range(3):
        losses = []
        for start in range(0, 16, 4):
            xb, yb = x[start : start + 4], y[start : start + 4]

            def loss(xb=xb, yb=yb):
                err = xb @ kernel + bias - yb
                return (err * err).mean()

            losses.append(float(loss()))
            opt.minimize(loss, [kernel, bias])
        history.append(np.mean(losses))
    assert int(opt.iterations.numpy()) == 12
    np.testing.assert_allclose(history, [230.79457092285156, 128.30319213867188,
                                         79.33648681640625], rtol=5e-5)  # fmt: skip


def test_k3_overwrite_with_gradient():
    opt = SGD(learning_rate=1.0, profile="keras3")
    scale, weight = Variable(f32([1.0, 2.0])), Variable(f32([3.0, 4.0]))
    scale.overwrite_with_gradient = True
    opt.apply_gradients([(f32([7.0, 8.0]), scale), (f32([1.0, 1.0]), weight)])
    np.testing.assert_array_equal(scale.numpy(), [7.0, 8.0])
    np.testing.assert_array_equal(weight.numpy(), [2.0, 3.0])


def test_k3_overwrite_with_gradient_accumulates_the_maximum():
    opt = SGD(learning_rate=1.0, gradient_accumulation_steps=2, profile="keras3")
    scale, weight = Variable(f32([0.0, 0.0])), Variable(f32([0.0]))
    scale.overwrite_with_gradient = True
    opt.apply_gradients([(f32([5.0, 1.0]), scale), (f32([1.0]), weight)])
    np.testing.assert_array_equal(scale.numpy(), [0.0, 0.0])
    opt.apply_gradients([(f32([2.0, 3.0]), scale), (f32([1.0]), weight)])
    np.testing.assert_array_equal(scale.numpy(), [5.0, 3.0])
    np.testing.assert_array_equal(weight.numpy(), [-1.0])
    # As in Keras 3, the overwrite pairs are removed before the None filter: a call
    # holding only them has "no gradients".
    with pytest.raises(ValueError, match="No gradients provided for any variable"):
        opt.apply_gradients([(f32([2.0, 3.0]), scale)])


def test_k3_ema_with_model_fit_golden():
    """K3 test_ema_with_model_fit: Dense(2, kernel ones, no bias), x=[[1]], y=[[0]], mse,
    SGD(0.1, EMA 0.9), two steps then finalize -> [[0.891, 0.891]]."""
    kernel = Variable(np.ones((1, 2), np.float32))
    opt = SGD(learning_rate=0.1, use_ema=True, ema_momentum=0.9, profile="keras3")
    x = np.ones((1, 1), np.float32)
    for _ in range(2):
        opt.minimize(lambda: ((x @ kernel) ** 2).mean(), [kernel])
    np.testing.assert_allclose(opt.get_slot(kernel, "average").numpy(), [[0.891, 0.891]],
                               atol=1e-5)  # fmt: skip
    opt.finalize_variable_values([kernel])
    np.testing.assert_allclose(kernel.numpy(), [[0.891, 0.891]], atol=1e-5)


def test_importing_the_reference_loads_no_framework():
    import subprocess
    import sys

    code = (
        "import sys, optcheck.reference, optcheck.reference.optimizers as o; "
        "o.all_optimizer_classes(); "
        "bad = {'tensorflow', 'jax', 'torch', 'keras', 'tf_keras'} & set(sys.modules); "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_per_replica_gradient_lists():
    replica_0 = [f32([1.0, 2.0]), None]
    replica_1 = [f32([3.0, 4.0]), None]
    grads = PerReplica.from_replica_lists([replica_0, replica_1])
    assert grads[1] is None and len(grads[0].values) == 2
    v, w = Variable(f32([0.0, 0.0])), Variable(f32(1.0))
    with pytest.warns(UserWarning, match="Gradients do not exist"):
        SGD(learning_rate=1.0).apply_gradients(zip(grads, [v, w], strict=True))
    np.testing.assert_array_equal(v.numpy(), [-4.0, -6.0])
    with pytest.raises(ValueError, match="None on some replicas only"):
        PerReplica.from_replica_lists([[f32(1.0)], [None]])
    with pytest.raises(ValueError, match="one gradient per variable"):
        PerReplica.from_replica_lists([[f32(1.0)], []])


def test_k3_constraints_apply_on_accumulation_micro_steps():
    v = Variable(f32([-1.0]), constraint=lambda x: np.maximum(x.numpy(), 0))
    opt = SGD(learning_rate=1.0, gradient_accumulation_steps=2, profile="keras3")
    opt.apply_gradients([(f32([0.5]), v)])
    assert v.numpy()[0] == 0.0
