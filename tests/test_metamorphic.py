"""Metamorphic properties (conformance.metamorphic): they hold for the golden and each
one fails for an adapter with the slip it is meant to catch."""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from optcheck.adapters.base import Adapter, Capabilities, Session
from optcheck.adapters.numpy_reference import ReferenceAdapter
from optcheck.conformance import metamorphic as mm
from optcheck.conformance.features import features_for
from optcheck.conformance.registry import OPTIMIZERS
from optcheck.conformance.scenario import Scenario
from optcheck.conformance.strategies import ALL_DTYPES, scenarios

PROPERTY_NAMES = [p.name for p in mm.PROPERTIES]


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # None-gradient warnings of the golden
        yield


# -------------------------------------------------------------------------------------
# broken adapters: the golden with one slip each
# -------------------------------------------------------------------------------------
class Broken(Adapter):
    """The golden, with ``transform(scenario)`` applied before a session opens (a slip in
    how the implementation reads its spec) and/or a session wrapper
    ``session(inner, scenario)`` (a slip in how it steps)."""

    name = "broken"

    def __init__(self, transform=None, session=None, features=None):
        self._inner = ReferenceAdapter()
        self._transform = transform or (lambda s: s)
        self._session = session
        self._features = features

    def capabilities(self) -> Capabilities:
        caps = self._inner.capabilities()
        if self._features is not None:
            caps = replace(caps, features=frozenset(self._features))
        return caps

    def open(self, scenario) -> Session:
        inner = self._inner.open(self._transform(scenario))
        return self._session(inner, scenario) if self._session else inner


def _with_config(scenario, config):
    return replace(scenario, config=config)


class Wrapper(Session):
    def __init__(self, inner, scenario):
        self._inner = inner
        self._scenario = scenario

    def step(self, gradients, skip_gradients_aggregation=False):
        return self._inner.step(gradients, skip_gradients_aggregation)

    def finalize(self):
        return self._inner.finalize()

    def round_trip(self):
        self._inner.round_trip()


class NormalisingSession(Wrapper):
    """Slip: clipnorm rescales every gradient to norm c instead of capping it."""

    def step(self, gradients, skip_gradients_aggregation=False):
        c = self._scenario.config.get("clipnorm")
        if c:
            out = []
            for g in gradients:
                x = np.asarray(g, np.float64)
                n = float(np.sqrt(np.sum(x * x)))
                out.append(g if n == 0 else (x * (c / n)).astype(g.dtype))
            gradients = out
        return self._inner.step(gradients, skip_gradients_aggregation)


def without_clipnorm(s: Scenario) -> Scenario:
    return _with_config(s, {k: v for k, v in s.config.items() if k != "clipnorm"})


def ignores_global_clipnorm(s: Scenario) -> Scenario:
    """Slip: global_clipnorm is accepted and ignored."""
    return _with_config(s, {k: v for k, v in s.config.items() if k != "global_clipnorm"})


def ema_momentum_swapped(s: Scenario) -> Scenario:
    """Slip: the average is m_new = (1 − m)·a + m·v (momentum on the wrong term)."""
    if not s.config.get("use_ema"):
        return s
    return _with_config(s, {**s.config, "ema_momentum": 1 - s.config.get("ema_momentum", 0.99)})


def zero_lr_means_default(s: Scenario) -> Scenario:
    """Slip: ``learning_rate or default`` — a rate of 0 falls back to the default."""
    if s.config.get("learning_rate") != 0:
        return s
    return _with_config(s, {k: v for k, v in s.config.items() if k != "learning_rate"})


def clipnorm_is_global(s: Scenario) -> Scenario:
    """Slip: clipnorm computed over all gradients (global) instead of per tensor."""
    if not s.config.get("clipnorm"):
        return s
    config = {k: v for k, v in s.config.items() if k != "clipnorm"}
    return _with_config(s, {**config, "global_clipnorm": s.config["clipnorm"]})


class KeepsStateOnRoundTrip(Wrapper):
    """Slip: round_trip keeps the old optimizer (slots and iterations survive)."""

    def round_trip(self):
        pass


class Raises(Wrapper):
    def step(self, gradients, skip_gradients_aggregation=False):
        raise RuntimeError("the implementation crashed")


def _scenario(config=None, optimizer="Adam", dtype="float32", profile="keras2", n_steps=4,
              **kwargs) -> Scenario:  # fmt: skip
    """Two variables of shape (3,), gradients of norms around 1–8."""
    rng = np.random.default_rng(7)
    values = [rng.uniform(-2, 2, 3).astype(dtype) for _ in range(2)]
    steps = [[(rng.uniform(-4, 4, 3)).astype(dtype) for _ in range(2)] for _ in range(n_steps)]
    return Scenario(optimizer=optimizer, config=dict(config or {}), profile=profile,
                    dtype=dtype, initial_values=values, steps=steps, **kwargs)  # fmt: skip


BROKEN = {
    "huge_clipnorm": (Broken(without_clipnorm, NormalisingSession), {}),
    "global_clipnorm_one_variable": (Broken(ignores_global_clipnorm), {}),
    "ema_momentum_zero": (Broken(ema_momentum_swapped), {}),
    "zero_learning_rate": (Broken(zero_lr_means_default), {}),
    "round_trip": (Broken(session=KeepsStateOnRoundTrip), {}),
    "disjoint_variables": (Broken(clipnorm_is_global), {"clipnorm": 2.0}),
}


def test_registry_is_complete():
    assert list(BROKEN) == PROPERTY_NAMES
    assert len(set(PROPERTY_NAMES)) == len(PROPERTY_NAMES)
    for prop in mm.PROPERTIES:
        assert prop.bound in ("EXACT", "ROUNDING") and callable(prop.function)
        assert prop.description
    assert {p.name: p.bound for p in mm.PROPERTIES}["zero_learning_rate"] == "EXACT"


@pytest.mark.parametrize("profile", ["keras2", "keras3"])
@pytest.mark.parametrize("name", PROPERTY_NAMES)
def test_each_property_fails_for_its_broken_adapter(name, profile):
    adapter, config = BROKEN[name]
    s = _scenario(config, profile=profile)
    prop = next(p for p in mm.PROPERTIES if p.name == name)
    assert prop.applies(s)
    assert prop.function(ReferenceAdapter(), s) is None, "the golden satisfies it"
    message = prop.function(adapter, s)
    assert message is not None and message.startswith(name), message
    assert "step" in message and "bound:" in message
    assert (name, message) in mm.check_properties(adapter, s)


def test_broken_adapters_break_only_the_properties_they_touch():
    s = _scenario({"clipnorm": 2.0})
    # Normalising to norm c also breaks "clipnorm equals global_clipnorm on one variable".
    also = {"huge_clipnorm": {"global_clipnorm_one_variable"}}
    for name, (adapter, _) in BROKEN.items():
        failed = {n for n, _ in mm.check_properties(adapter, s)}
        assert failed == {name} | also.get(name, set()), (name, failed)


def test_round_trip_is_not_the_trajectory_without_it():
    """The invariant compares with a fresh optimizer, not with an uninterrupted run."""
    s = _scenario(n_steps=4, round_trip_at=2)
    golden = ReferenceAdapter()
    tripped = mm.run(golden, s)
    straight = mm.run(golden, replace(s, round_trip_at=None))
    assert tripped[-1].iterations == 2 and straight[-1].iterations == 4
    assert not np.array_equal(tripped[-1].variables[0], straight[-1].variables[0])
    assert mm.round_trip(golden, s) is None


def test_zero_learning_rate_is_exact():
    """A change far below every rounding bound is still reported (bound: 0 ulps)."""

    def nudge(s):
        if s.config.get("learning_rate") != 0:
            return s
        return replace(s, config={**s.config, "learning_rate": 1e-15})

    s = _scenario(optimizer="SGD", dtype="float64")
    moved = mm.run(Broken(nudge), mm._zero_lr_scenario(s))[0].variables[0]
    change = np.max(np.abs(moved - s.initial_values[0]) / np.abs(s.initial_values[0]))
    assert 0 < change < 1e-14  # a few ulps: inside the ROUNDING bound, not inside EXACT
    message = mm.zero_learning_rate(Broken(nudge), s)
    assert message is not None and "0 ulps" in message


def test_not_applicable_cases():
    adapter = ReferenceAdapter()
    with pytest.raises(mm.NotApplicable):
        mm.zero_learning_rate(adapter, _scenario(optimizer="Ftrl"))
    with pytest.raises(mm.NotApplicable):
        mm.global_clipnorm_one_variable(adapter, _scenario(optimizer="Lion"))
    with pytest.raises(mm.NotApplicable):
        mm.disjoint_variables(adapter, _scenario({"global_clipnorm": 1.0}))
    with pytest.raises(mm.NotApplicable):
        mm.round_trip(adapter, _scenario(n_steps=1))
    one = _scenario()
    one = replace(one, initial_values=one.initial_values[:1], steps=[s[:1] for s in one.steps],
                  names=["v0"])  # fmt: skip
    with pytest.raises(mm.NotApplicable):
        mm.disjoint_variables(adapter, one)
    # epsilon 1e-8 rounds to 0 in float16: a zero gradient gives 0/0 whatever the rate
    assert not mm.PROPERTIES[3].applies(_scenario({"epsilon": 1e-8}, dtype="float16"))
    assert mm.PROPERTIES[3].applies(_scenario({"epsilon": 1e-3}, dtype="float16"))


def test_check_properties_skips_what_the_adapter_lacks():
    s = _scenario({"clipnorm": 2.0})
    lacking = Broken(clipnorm_is_global, features={"plain", "clipnorm"})
    failed = dict(mm.check_properties(lacking, s))
    # global_clipnorm, ema and round_trip are not supported: skipped, not failed
    assert "ema_momentum_zero" not in failed and "round_trip" not in failed
    assert "disjoint_variables" in failed
    assert mm.check_properties(ReferenceAdapter(), s) == []
    assert mm.check_properties(ReferenceAdapter(), s, names=["round_trip"]) == []


def test_check_properties_reports_adapter_errors():
    failures = mm.check_properties(Broken(session=Raises), _scenario())
    assert [n for n, _ in failures] == PROPERTY_NAMES
    assert all(m.startswith("error: RuntimeError: the implementation crashed")
               for _, m in failures)  # fmt: skip


# -------------------------------------------------------------------------------------
# the properties hold for the golden on generated scenarios
# -------------------------------------------------------------------------------------
def _cases(profile):
    return [(o, f) for o in OPTIMIZERS for f in features_for(o, profile)]


@pytest.mark.parametrize("profile", ["keras2", "keras3"])
@pytest.mark.parametrize("name", PROPERTY_NAMES)
@settings(max_examples=12, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))  # fmt: skip
@given(data=st.data())
def test_properties_hold_for_the_golden(name, profile, data):
    optimizer, feature = data.draw(st.sampled_from(_cases(profile)), label="case")
    dtype = data.draw(st.sampled_from(ALL_DTYPES), label="dtype")
    s = data.draw(scenarios(optimizer, feature, dtype, profile), label="scenario")
    prop = next(p for p in mm.PROPERTIES if p.name == name)
    assume(prop.applies(s))
    try:
        message = prop.function(ReferenceAdapter(), s)
    except mm.NotApplicable:
        assume(False)
    assert message is None, message
