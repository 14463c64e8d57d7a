"""The feature catalogue and the scenario strategies (conformance.features / .strategies)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optcheck.adapters.base import FEATURES, PROFILES
from optcheck.adapters.numpy_reference import ReferenceAdapter
from optcheck.conformance import tolerance as tol
from optcheck.conformance.engine import check
from optcheck.conformance.features import (
    CATALOGUE,
    compatible,
    features_for,
    needs_of,
    scenario_needs,
)
from optcheck.conformance.registry import OPTIMIZERS
from optcheck.conformance.scenario import Scenario
from optcheck.conformance.strategies import (
    ALL_DTYPES,
    MAX_DUPLICATES,
    MAX_STEPS,
    MAX_VARIABLES,
    SCHEDULES,
    case_grid,
    huge_limit,
    scenarios,
    tiny_range,
)
from optcheck.reference import dtypes
from optcheck.reference.sparse import IndexedSlices, PerReplica

NAMES = list(OPTIMIZERS)
GRID = [(p, o, f) for p in PROFILES for o in NAMES for f in features_for(o, p)]
FAST = settings(max_examples=2, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))  # fmt: skip


# -------------------------------------------------------------------------------------
# catalogue
# -------------------------------------------------------------------------------------
def test_catalogue_lists_every_feature_in_order():
    assert tuple(CATALOGUE) == FEATURES
    for name, info in CATALOGUE.items():
        assert info.name == name
        assert set(info.needs) <= set(FEATURES), name
        assert set(info.profiles) <= set(PROFILES) and info.profiles, name
        assert set(info.optimizers) <= set(OPTIMIZERS) and info.optimizers, name


def test_combinations_are_valid_features():
    for name, info in CATALOGUE.items():
        assert name not in info.combines and len(set(info.combines)) == len(info.combines)
        for extra in info.combines:
            assert CATALOGUE[extra].generated, (name, extra)
            assert any(compatible({name, extra}, p) for p in info.profiles), (name, extra)
    assert not compatible({"clipnorm", "global_clipnorm"}, "keras2")
    assert compatible({"clipnorm", "clipvalue"}, "keras2")
    assert not compatible({"clipnorm", "clipvalue"}, "keras3")
    assert not compatible({"replicas", "gradient_accumulation", "ema"}, "keras3")


def test_catalogue_profiles_and_needs():
    assert CATALOGUE["loss_scale"].profiles == ("keras3",)
    assert CATALOGUE["gradient_accumulation"].profiles == ("keras3",)
    assert CATALOGUE["iterations_preset"].profiles == ("keras2",)
    assert needs_of("plain") == ()
    assert needs_of("finalize") == ("ema", "finalize")
    for feature in ("ema", "schedule", "replicas", "sparse", "round_trip"):
        assert needs_of(feature) == (feature,)
    for feature in ("sparse", "weight_decay"):
        assert CATALOGUE[feature].optimizers == tuple(OPTIMIZERS)
    assert not CATALOGUE["callable_learning_rate"].generated
    assert CATALOGUE["callable_learning_rate"].why


def test_features_for_is_stable_and_profile_specific():
    keras2 = features_for("Adam", "keras2")
    keras3 = features_for("Adam", "keras3")
    assert keras2 == [f for f in FEATURES if f in keras2]
    assert "iterations_preset" in keras2 and "loss_scale" not in keras2
    assert "loss_scale" in keras3 and "gradient_accumulation" in keras3
    assert "iterations_preset" not in keras3
    assert "callable_learning_rate" not in keras2 + keras3
    assert "callable_learning_rate" in features_for("Adam", "keras3", generated_only=False)
    assert features_for("Adam", "keras2") == keras2  # stable
    with pytest.raises(ValueError, match="Unknown optimizer"):
        features_for("Sgd", "keras2")
    with pytest.raises(ValueError, match="Unknown profile"):
        features_for("SGD", "keras4")


def test_case_grid_lists_every_case_once():
    for profile in PROFILES:
        grid = case_grid(NAMES, profile)
        assert len(grid) == len(set(grid))
        assert len(grid) == sum(len(features_for(o, profile)) for o in NAMES) * len(ALL_DTYPES)
        assert grid[: len(ALL_DTYPES)] == [(NAMES[0], "plain", d) for d in ALL_DTYPES]
        assert {d for _, _, d in grid} == set(ALL_DTYPES)
    assert ("Adam", "loss_scale", "float16") in case_grid(["Adam"], "keras3")
    assert ("Adam", "loss_scale", "float16") not in case_grid(["Adam"], "keras2")
    assert case_grid(["Lion"], "keras2", ("float32",)) == [
        ("Lion", f, "float32") for f in features_for("Lion", "keras2")
    ]


def test_scenarios_rejects_cases_outside_the_grid():
    with pytest.raises(ValueError, match="not generated"):
        scenarios("Adam", "loss_scale", "float32", "keras2")
    with pytest.raises(ValueError, match="not generated"):
        scenarios("Adam", "callable_learning_rate", "float32", "keras3")
    with pytest.raises(ValueError, match="Unknown dtype"):
        scenarios("Adam", "plain", "int32", "keras2")
    with pytest.raises(ValueError, match="schedule"):
        scenarios("Adam", "plain", "float32", "keras2", schedule="CosineDecay")


# -------------------------------------------------------------------------------------
# magnitudes
# -------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_magnitude_limits_keep_squares_finite(dtype):
    info = dtypes.finfo(dtypes.as_dtype(dtype))
    low, high = tiny_range(dtype)
    assert float(info.smallest_normal) <= low < high <= 2**-6
    for terms in (1, 70, 4000):
        for optimizer in ("Adam", "Ftrl"):
            h = huge_limit(dtype, terms, optimizer)
            assert 16 * terms * h * h <= float(info.max)
            assert np.isfinite(np.asarray(h * h * terms).astype(dtypes.as_dtype(dtype)))
    assert huge_limit("float16", 1) <= 1e2
    assert huge_limit("float32", 70, "Ftrl") < huge_limit("float32", 70, "Adam")


# -------------------------------------------------------------------------------------
# generated scenarios
# -------------------------------------------------------------------------------------
def _gradients(grad):
    """The dense value arrays inside one gradient."""
    if grad is None:
        return []
    if isinstance(grad, PerReplica):
        return [a for g in grad.values for a in _gradients(g)]
    if isinstance(grad, IndexedSlices):
        return [grad.values]
    return [grad]


def assert_valid(s: Scenario, optimizer, feature, dtype, profile):
    """Structural invariants of every generated scenario."""
    dt = dtypes.as_dtype(dtype)
    fmax = float(dtypes.finfo(dt).max)
    assert (s.optimizer, s.feature, s.dtype, s.profile) == (optimizer, feature, dtype, profile)
    assert scenario_needs(s) == s.needs, (scenario_needs(s), s.needs)
    allowed = {n for f in (feature, *CATALOGUE[feature].combines) for n in needs_of(f)}
    assert set(needs_of(feature)) <= set(s.needs) <= allowed, (feature, s.needs)
    assert compatible(s.needs, profile)
    used = set(s.needs)
    n = len(s.initial_values)
    assert 1 <= n <= MAX_VARIABLES and 1 <= len(s.steps) <= MAX_STEPS
    assert s.names == [f"v{i}" for i in range(n)]
    for v in s.initial_values:
        assert v.dtype == dt and v.ndim <= 3 and all(1 <= d <= 4 for d in v.shape)
    scale = s.config.get("loss_scale_factor") or 1.0
    for step in s.steps:
        assert len(step) == n
        assert any(g is not None for g in step), "a step with only None gradients"
        step_squares = 0.0
        for g, v in zip(step, s.initial_values, strict=True):
            if g is None:
                continue
            shape = g.dense_shape if isinstance(g, IndexedSlices) else (
                g.values[0].shape if isinstance(g, PerReplica) else g.shape)  # fmt: skip
            assert tuple(shape) == v.shape
            for values in _gradients(g):
                assert values.dtype == dt
                x = np.asarray(values, np.float64)
                assert np.all(np.isfinite(x))
                squares = float(np.sum(x * x)) / scale**2
                assert squares * 16 <= fmax, "a norm of this gradient could overflow"
                step_squares += squares
            for part in g.values if isinstance(g, PerReplica) else (g,):
                if isinstance(part, IndexedSlices):
                    counts = np.unique(part.indices, return_counts=True)[1]
                    assert counts.max() <= MAX_DUPLICATES
        if "global_clipnorm" in used:
            assert step_squares * 16 <= fmax, "the global norm could overflow"
    config = s.config
    for key, value in config.items():
        assert not isinstance(value, np.generic), (key, value)
    for name in ("clipnorm", "global_clipnorm", "clipvalue"):
        assert (name in used) == (config.get(name, 0) > 0)
    if "ema" in used:
        assert config["use_ema"] is True and 0 <= config.get("ema_momentum", 0.99) <= 1
        assert config.get("ema_overwrite_frequency") in (None, 1, 2, 3, 4)
    assert s.finalize == ("finalize" in used) == (feature == "finalize")
    if "schedule" in used:
        assert config["learning_rate"]["class_name"] in SCHEDULES
    if "sparse" in used:  # the first gradient of variable 0 is sparse
        first = s.steps[0][0]
        first = first.values[0] if isinstance(first, PerReplica) else first
        assert isinstance(first, IndexedSlices)
    if "replicas" in used:
        counts = {len(g.values) for step in s.steps for g in step if g is not None}
        assert len(counts) == 1 and counts <= {2, 3}
    if "round_trip" in used:
        assert 1 <= s.round_trip_at < len(s.steps)
    if "gradient_accumulation" in used:
        assert config["gradient_accumulation_steps"] in (2, 3)
        assert len(s.steps) >= config["gradient_accumulation_steps"]
    if "weight_decay" in used:
        assert 0 <= config.get("weight_decay", 0.004) <= 0.1
        assert set(s.exclude_indices) <= set(range(n))
        assert set(s.exclude_names) <= set(s.names)


def test_combinations_are_drawn():
    """Each feature's scenarios mix in its `combines` features (interactions)."""
    sample = _sample(scenarios("Adam", "clipnorm", "float32", "keras2"), 60)
    seen = {frozenset(s.needs) for s in sample}
    assert frozenset({"clipnorm"}) in seen
    for extra in ("clipvalue", "sparse", "none_gradients", "replicas"):
        assert any(extra in s.needs for s in sample), extra
    keras3 = _sample(scenarios("Adam", "clipnorm", "float32", "keras3"), 30)
    assert not any("clipvalue" in s.needs for s in keras3), "Keras 3: one clipping argument"
    ema = _sample(scenarios("SGD", "ema", "float32", "keras3"), 60)
    assert any({"ema", "none_gradients"} <= set(s.needs) for s in ema)


@pytest.mark.parametrize(("profile", "optimizer", "feature"), GRID)
@FAST
@given(data=st.data())
def test_generated_scenarios_are_valid_and_the_golden_conforms(profile, optimizer, feature,
                                                               data):  # fmt: skip
    dtype = data.draw(st.sampled_from(ALL_DTYPES), label="dtype")
    s = data.draw(scenarios(optimizer, feature, dtype, profile), label="scenario")
    assert_valid(s, optimizer, feature, dtype, profile)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert check(s, ReferenceAdapter()) is None, "the golden must conform to itself"
        assert check(s, ReferenceAdapter(), tol.Policy(mode="free")) is None


def _same(a, b):
    if a is None or b is None:
        return a is b
    if isinstance(a, IndexedSlices):
        return (isinstance(b, IndexedSlices) and a.dense_shape == b.dense_shape
                and _same(a.values, b.values) and _same(a.indices, b.indices))  # fmt: skip
    if isinstance(a, PerReplica):
        return (isinstance(b, PerReplica) and len(a.values) == len(b.values)
                and all(_same(x, y) for x, y in zip(a.values, b.values, strict=True)))  # fmt: skip
    a, b = np.asarray(a), np.asarray(b)
    return (a.dtype == b.dtype and a.shape == b.shape
            and a.tobytes() == b.tobytes())  # fmt: skip


def _same_config(a, b):
    if isinstance(a, dict):
        return (
            isinstance(b, dict) and list(a) == list(b) and all(_same_config(a[k], b[k]) for k in a)
        )
    if isinstance(a, list):
        return (
            isinstance(b, list)
            and len(a) == len(b)
            and all(_same_config(x, y) for x, y in zip(a, b, strict=True))
        )
    if isinstance(a, float):
        return isinstance(b, float) and a.hex() == b.hex()
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("feature", [f for f in FEATURES if CATALOGUE[f].generated])
@settings(max_examples=4, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))  # fmt: skip
@given(data=st.data())
def test_json_round_trip_is_exact(feature, data):
    profile = data.draw(st.sampled_from(CATALOGUE[feature].profiles))
    optimizer = data.draw(st.sampled_from(NAMES))
    dtype = data.draw(st.sampled_from(ALL_DTYPES))
    s = data.draw(scenarios(optimizer, feature, dtype, profile))
    back = Scenario.from_json(s.to_json())
    assert back.to_json() == s.to_json()
    assert _same_config(s.config, back.config)
    for field in ("optimizer", "profile", "dtype", "feature", "names", "needs", "iterations",
                  "skip_gradients_aggregation", "round_trip_at", "finalize", "exclude_names",
                  "exclude_indices"):  # fmt: skip
        assert getattr(back, field) == getattr(s, field), field
    assert all(_same(a, b) for a, b in zip(s.initial_values, back.initial_values, strict=True))
    for x, y in zip(s.steps, back.steps, strict=True):
        assert len(x) == len(y) and all(_same(a, b) for a, b in zip(x, y, strict=True))


@pytest.mark.parametrize("schedule", SCHEDULES)
@settings(max_examples=3, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))  # fmt: skip
@given(data=st.data())
def test_every_schedule_is_generated_and_runs(schedule, data):
    optimizer = data.draw(st.sampled_from(NAMES))
    profile = data.draw(st.sampled_from(PROFILES))
    s = data.draw(scenarios(optimizer, "schedule", "float32", profile, schedule=schedule))
    spec = s.config["learning_rate"]
    assert spec["class_name"] == schedule and isinstance(spec["config"], dict)
    from optcheck.reference import schedules

    lrs = [float(schedules.deserialize(spec)(step)) for step in range(len(s.steps) + 1)]
    assert all(math.isfinite(lr) and lr >= 0 for lr in lrs)
    if optimizer == "Ftrl":
        assert all(lr > 0 for lr in lrs), "Ftrl divides by the learning rate"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert check(s, ReferenceAdapter()) is None


def _sample(strategy, n: int = 60) -> list:
    """``n`` derandomized examples of ``strategy`` (no shrinking, unlike ``find``)."""
    out = []

    @settings(max_examples=n, database=None, derandomize=True, deadline=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(strategy)
    def collect(x):
        out.append(x)

    collect()
    return out


def _values(s):
    arrays = list(s.initial_values)
    for step in s.steps:
        for g in step:
            arrays += _gradients(g)
    return np.concatenate([np.abs(np.asarray(a, np.float64)).ravel() for a in arrays])


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_values_include_zeros_tiny_and_huge(dtype):
    low, high = tiny_range(dtype)
    values = [_values(s) for s in _sample(scenarios("Adam", "plain", dtype, "keras2"), 150)]
    assert any(np.any(v == 0) for v in values)
    assert any(np.any((v >= low) & (v <= high * 1.01)) for v in values)
    assert any(np.any((v > 1e-2) & (v < 10)) for v in values)
    huge = {"float16": 10.0, "bfloat16": 1e13, "float32": 1e13, "float64": 1e90}[dtype]
    assert any(np.any(v >= huge) for v in values)
    smallest = float(dtypes.finfo(dtypes.as_dtype(dtype)).smallest_normal)
    assert all(np.all(v[v > 0] >= smallest) for v in values), "only normal numbers"


def test_structure_reaches_its_extremes():
    sample = _sample(scenarios("SGD", "plain", "float32", "keras2"), 300)
    assert any(len(s.initial_values) == MAX_VARIABLES for s in sample)
    assert any(len(s.initial_values) == 1 for s in sample)
    assert any(len(s.steps) == MAX_STEPS for s in sample)
    assert any(len(s.steps) == 1 for s in sample)
    assert any(v.ndim == 3 for s in sample for v in s.initial_values)
    assert any(v.ndim == 0 for s in sample for v in s.initial_values)
    sparse = _sample(scenarios("SGD", "sparse", "float32", "keras2"), 40)
    assert any(isinstance(g, IndexedSlices) and len(set(g.indices.tolist())) < len(g.indices)
               for s in sparse for step in s.steps for g in step)  # fmt: skip
    adam = _sample(scenarios("Adam", "plain", "float32", "keras2"), 300)
    assert any(s.config == {} for s in adam), "every default omitted"
    full = {p.name for p in OPTIMIZERS["Adam"].params}
    assert any(set(s.config) == full for s in adam), "every hyper-parameter given"
    assert len({len(s.config) for s in adam}) > 2
