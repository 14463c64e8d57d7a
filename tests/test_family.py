"""Checks every optimizer of the family shares: configuration keys, sparse gradients."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optcheck.conformance.registry import OPTIMIZERS
from optcheck.reference import IndexedSlices
from optcheck.reference.optimizers import optimizer_class
from optcheck.reference.run import run
from tests.helpers import sparse_vs_dense
from tests.strategies import configs

BASE_KEYS = {
    "keras2": ["name", "weight_decay", "clipnorm", "global_clipnorm", "clipvalue", "use_ema",
               "ema_momentum", "ema_overwrite_frequency", "jit_compile", "is_legacy_optimizer"],
    "keras3": ["name", "learning_rate", "weight_decay", "clipnorm", "global_clipnorm",
               "clipvalue", "use_ema", "ema_momentum", "ema_overwrite_frequency",
               "loss_scale_factor", "gradient_accumulation_steps"],
}  # fmt: skip

# Notes §1.9: the keys each optimizer adds (identical in tf-keras and Keras 3).
OWN_KEYS = {
    "SGD": ["momentum", "nesterov"],
    "Adam": ["beta_1", "beta_2", "epsilon", "amsgrad"],
    "AdamW": ["beta_1", "beta_2", "epsilon", "amsgrad"],
    "Adagrad": ["initial_accumulator_value", "epsilon"],
    "Adadelta": ["rho", "epsilon"],
    "Adamax": ["beta_1", "beta_2", "epsilon"],
    "Ftrl": ["learning_rate_power", "initial_accumulator_value", "l1_regularization_strength",
             "l2_regularization_strength", "l2_shrinkage_regularization_strength", "beta"],
    "Nadam": ["beta_1", "beta_2", "epsilon"],
    "RMSprop": ["rho", "momentum", "epsilon", "centered"],
    "Adafactor": ["beta_2_decay", "epsilon_1", "epsilon_2", "clip_threshold", "relative_step"],
    "Lion": ["beta_1", "beta_2"],
}  # fmt: skip


@pytest.mark.parametrize("profile", ["keras2", "keras3"])
@pytest.mark.parametrize("name", sorted(OWN_KEYS))
def test_get_config_keys(name, profile):
    config = optimizer_class(name)(profile=profile).get_config()
    assert set(config) == set(BASE_KEYS[profile]) | {"learning_rate"} | set(OWN_KEYS[name])


# tf-keras testSparseGradientsWorkAsExpected, for each optimizer and its main branches.
SPARSE_CONFIGS = [
    ("SGD", {"momentum": 0.0}), ("SGD", {"momentum": 0.9}),
    ("SGD", {"momentum": 0.9, "nesterov": True}),
    ("Adam", {}), ("Adam", {"amsgrad": True}), ("AdamW", {"weight_decay": 0.1}),
    ("AdamW", {"amsgrad": True}), ("Adagrad", {"learning_rate": 0.1}),
    ("Adadelta", {"learning_rate": 1.0}), ("Adamax", {"learning_rate": 0.1}),
    ("Ftrl", {"l2_shrinkage_regularization_strength": 0.0}), ("Nadam", {"learning_rate": 0.1}),
    ("RMSprop", {}), ("RMSprop", {"momentum": 0.9}), ("RMSprop", {"centered": True}),
    ("RMSprop", {"momentum": 0.9, "centered": True}), ("Adafactor", {"learning_rate": 0.1}),
    ("Lion", {"learning_rate": 0.01}),
]  # fmt: skip


@pytest.mark.parametrize("name, config", SPARSE_CONFIGS, ids=lambda x: str(x))
def test_sparse_gradients_work_as_expected(name, config):
    dense, sparse = sparse_vs_dense(lambda: optimizer_class(name)(**config))
    np.testing.assert_allclose(dense, sparse, rtol=1e-12, atol=1e-15)
    assert not np.array_equal(dense, np.ones(5))  # the variable moved


@pytest.mark.parametrize("profile", ["keras2", "keras3"])
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@settings(max_examples=10, deadline=None, derandomize=True)
@given(data=st.data())
def test_sparse_with_duplicates_equals_dense_sum(name, profile, data):
    """Duplicated indices add up (tf.unique + unsorted_segment_sum), so an
    IndexedSlices gradient acts as its dense sum, up to float64 rounding."""
    config = data.draw(configs(name))
    rows = data.draw(st.integers(2, 5))
    seed = data.draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, rows, size=rng.integers(1, 2 * rows))
    steps_sparse, steps_dense = [], []
    for _ in range(3):
        values = rng.standard_normal((len(indices), 2))
        sparse = IndexedSlices(values, indices, (rows, 2))
        dense = np.zeros((rows, 2))
        for value, i in zip(values, indices, strict=True):
            dense[i] += value
        steps_sparse.append([sparse])
        steps_dense.append([dense])
    init = [rng.standard_normal((rows, 2))]
    spec = {"class_name": name, "config": config}
    a = run(spec, init, steps_sparse, profile=profile)[-1].variables[0]
    b = run(spec, init, steps_dense, profile=profile)[-1].variables[0]
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
