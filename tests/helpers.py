"""Shared test helpers: the Keras golden-table procedures."""

from __future__ import annotations

import numpy as np

from optcheck.conformance.scenario import Scenario
from optcheck.reference import PerReplica, Variable


def k3_golden_trajectory(optimizer, dtype, steps=5):
    """Keras 3 ``test_correctness_with_golden`` procedure (notes §5).

    x = ones(10); apply full(10, 0.01) once; then record x and apply
    arange(0.1, 1.1, 0.1), ``steps`` times. Returns the recorded rows.
    """
    x = Variable(np.ones([10]), dtype=dtype)
    first_grads = np.full((10,), 0.01).astype(dtype)
    grads = np.arange(0.1, 1.1, 0.1).astype(dtype)
    optimizer.apply_gradients([(first_grads, x)])
    rows = []
    for _ in range(steps):
        rows.append(np.asarray(x.numpy(), dtype=np.float64))
        optimizer.apply_gradients([(grads, x)])
    return np.stack(rows)


def k3_single_step(optimizer, shape=(4,)):
    """Keras 3 ``test_single_step``: vars [1,2,3,4], grads [1,6,7,2], one apply."""
    v = Variable(np.array([1.0, 2.0, 3.0, 4.0]).reshape(shape), dtype="float32")
    g = np.array([1.0, 6.0, 7.0, 2.0], dtype=np.float32).reshape(shape)
    optimizer.apply_gradients([(g, v)])
    return v.numpy()


def k3_weight_decay(make_optimizer):
    """Keras 3 ``test_weight_decay``: returns (var1, var2, var3) after one step each.

    grads = 0; opt1 on [var1]; opt2 excludes names ["exclude"] on [var1, var2];
    opt3 excludes var_list [var3] on [var1, var3] (notes §5.3).
    """
    grads = np.zeros((), np.float32)
    var1 = Variable(2.0, name="var1")
    var2 = Variable(2.0, name="exclude")
    var3 = Variable(2.0, name="var3")
    opt1 = make_optimizer()
    opt1.apply_gradients([(grads, var1)])
    opt2 = make_optimizer()
    opt2.exclude_from_weight_decay(var_names=["exclude"])
    opt2.apply_gradients([(grads, var1), (grads, var2)])
    opt3 = make_optimizer()
    opt3.exclude_from_weight_decay(var_list=[var3])
    opt3.apply_gradients([(grads, var1), (grads, var3)])
    return var1.numpy(), var2.numpy(), var3.numpy()


def sparse_vs_dense(make_optimizer, steps=5):
    """tf-keras ``testSparseGradientsWorkAsExpected``: float64 x = ones(5); dense
    g = [0, 1, 1.5, 0, 0] versus IndexedSlices([1, 1.5], [1, 2]); returns both
    trajectories' final values."""
    from optcheck.reference import IndexedSlices

    dense_x = Variable(np.ones(5), dtype="float64")
    sparse_x = Variable(np.ones(5), dtype="float64")
    dense_opt, sparse_opt = make_optimizer(), make_optimizer()
    dense_g = np.array([0.0, 1.0, 1.5, 0.0, 0.0])
    sparse_g = IndexedSlices(np.array([1.0, 1.5]), np.array([1, 2]), (5,))
    for _ in range(steps):
        dense_opt.apply_gradients([(dense_g, dense_x)])
        sparse_opt.apply_gradients([(sparse_g, sparse_x)])
    return dense_x.numpy(), sparse_x.numpy()


def config_round_trip_equal(optimizer_cls, kwargs, profile="keras2", steps=3, seed=0):
    """Run an optimizer and its get_config -> from_config copy; return both finals."""
    rng = np.random.default_rng(seed)
    init = rng.standard_normal((3, 2)).astype(np.float32)
    grads = [rng.standard_normal((3, 2)).astype(np.float32) for _ in range(steps)]
    a = optimizer_cls(**kwargs, profile=profile)
    b = optimizer_cls.from_config(a.get_config(), profile=profile)
    va, vb = Variable(init), Variable(init)
    for g in grads:
        a.apply_gradients([(g, va)])
        b.apply_gradients([(g, vb)])
    return va.numpy(), vb.numpy()


def arrays(seed, *shapes, dtype="float32"):
    """Standard-normal arrays of ``shapes``, reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    return [rng.normal(size=s).astype(dtype) for s in shapes]


def three_variable_scenario(optimizer, config, dtype="float32", profile="keras2", steps=3,
                            **options):  # fmt: skip
    """A scenario on variables of shapes (3, 2), (4,) and () with drawn gradients."""
    shapes = [(3, 2), (4,), ()]
    grads = [arrays(10 + i, *shapes, dtype=dtype) for i in range(steps)]
    return Scenario(optimizer, config, profile, dtype, arrays(1, *shapes, dtype=dtype), grads,
                    **options)  # fmt: skip


def cancelling_clipped_replicas(dtype="float16") -> Scenario:
    """Keras 3 Adamax, two replicas of a scalar's gradient (−5.97, 1.48), each clipped to
    norm 1 before the sum: exactly −1 and 1 with a division, so the sum is 0 and, in
    float16, 0/((1 − β1)·ε) is 0/0 because the denominator underflows. Multiplying by
    the reciprocal of the norm leaves an ulp and a finite step (found on the jax
    adapter)."""
    d = np.dtype(dtype)
    return Scenario(
        optimizer="Adamax", config={"clipnorm": 1.0}, profile="keras3", dtype=dtype,
        initial_values=[np.asarray(-0.0, d)],
        steps=[[PerReplica((np.asarray(-5.96875, d), np.asarray(1.4765625, d)))]],
        needs=("clipnorm", "replicas"),
    )  # fmt: skip
