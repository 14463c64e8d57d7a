"""The comparison engine and the tolerance policy: they pass the golden and catch slips."""

from __future__ import annotations

import numpy as np
import pytest

from optcheck.adapters.base import Adapter, Observation, Session
from optcheck.adapters.numpy_reference import ReferenceAdapter
from optcheck.conformance import tolerance as tol
from optcheck.conformance.engine import DivergenceError, assert_conforms, check
from optcheck.conformance.scenario import Scenario
from optcheck.reference import IndexedSlices, PerReplica, dtypes

NAMES = ["SGD", "Adam", "AdamW", "Adagrad", "Adadelta", "Adamax", "Ftrl", "Nadam", "RMSprop",
         "Adafactor", "Lion"]  # fmt: skip
DTYPES = ["float16", "bfloat16", "float32", "float64"]


def scenario(name="Adam", dtype="float32", config=None, steps=4, seed=0, **kw):
    rng = np.random.default_rng(seed)
    d = dtypes.as_dtype(dtype)
    shapes = [(3, 2), (4,)]
    values = [rng.standard_normal(s).astype(d) for s in shapes]
    grads = [[rng.standard_normal(s).astype(d) for s in shapes] for _ in range(steps)]
    return Scenario(name, dict(config or {}), "keras2", dtype, values, grads, **kw)


class Tampered(Adapter):
    """The golden with its observations altered by ``edit(step, observation)``."""

    name = "tampered"

    def __init__(self, edit, load=True):
        self._inner = ReferenceAdapter()
        self._edit = edit
        self._load = load

    def capabilities(self):
        caps = self._inner.capabilities()
        return type(caps)(caps.optimizers, caps.features, caps.dtypes, caps.profiles,
                          load=self._load)  # fmt: skip

    def open(self, s):
        inner, edit = self._inner.open(s), self._edit

        class _Session(Session):
            count = 0

            def step(self, grads, skip_gradients_aggregation=False):
                _Session.count += 1
                obs = inner.step(grads, skip_gradients_aggregation)
                return edit(_Session.count, obs)

            def load(self, state):
                inner.load(state)

            def finalize(self):
                return inner.finalize()

            def round_trip(self):
                inner.round_trip()

        return _Session()


@pytest.mark.parametrize("mode", ["resync", "free"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NAMES)
def test_the_golden_conforms_to_itself(name, dtype, mode):
    config = {"clipnorm": 0.5, "use_ema": True, "ema_overwrite_frequency": 2}
    s = scenario(name, dtype, config, finalize=True)
    assert check(s, ReferenceAdapter(), tol.Policy(mode=mode)) is None
    assert check(s, ReferenceAdapter(), tol.Policy(ulps=0)) is None


def _nudge(step_at, index, ulps):
    def edit(step, obs):
        if step == step_at:
            v = obs.variables[0].copy()
            for _ in range(abs(ulps)):
                v[index] = np.nextafter(v[index], np.inf if ulps > 0 else -np.inf)
            obs.variables[0] = v
        return obs

    return edit


def test_one_ulp_passes_the_tolerance_but_not_bit_equality():
    s = scenario("Adam", "float32")
    assert check(s, Tampered(_nudge(2, (1, 0), 1))) is None
    found = check(s, Tampered(_nudge(2, (1, 0), 1)), tol.Policy(ulps=0))
    assert found.step == 2 and found.quantity == "variable v0" and found.index == [1, 0]


def test_first_divergence_names_step_quantity_and_element():
    s = scenario("Adam", "float32")

    def edit(step, obs):
        if step == 3:
            obs.variables[0] = obs.variables[0].copy()
            obs.variables[0][2, 1] *= np.float32(1.001)
        return obs

    found = check(s, Tampered(edit))
    assert (found.step, found.quantity, found.index) == (3, "variable v0", [2, 1])
    assert found.error > found.tolerance > 0
    assert found.actual == pytest.approx(found.expected * 1.001, rel=1e-6)


def test_slots_iterations_and_learning_rate_are_compared():
    s = scenario("Adam", "float64")

    def bad_slot(step, obs):
        obs.slots[1]["v"] = obs.slots[1]["v"] * 1.01
        return obs

    assert check(s, Tampered(bad_slot)).quantity == "slot v of v1"

    def bad_count(step, obs):
        obs.iterations += 1
        return obs

    assert check(s, Tampered(bad_count)).quantity == "iterations"

    def bad_rate(step, obs):
        obs.learning_rate *= 1.01
        return obs

    assert check(s, Tampered(bad_rate)).quantity == "learning_rate"


def test_nan_equals_nan_only_where_the_golden_is_nan():
    s = scenario("SGD", "float32")

    def nan(step, obs):
        obs.variables[1] = obs.variables[1].copy()
        obs.variables[1][0] = np.nan
        return obs

    assert check(s, Tampered(nan)).quantity == "variable v1"
    grads = [[g.copy() for g in step] for step in s.steps]
    grads[0][1][0] = np.nan  # the golden propagates this NaN; so must the candidate
    poisoned = Scenario("SGD", {}, "keras2", "float32", s.initial_values, grads)
    assert check(poisoned, ReferenceAdapter()) is None
    assert np.isnan(ReferenceAdapter().open(poisoned).step(grads[0]).variables[1][0])


def test_nan_is_accepted_where_the_flush_to_zero_oracle_is_nan():
    golden = np.array([0.0, np.nan, 1.0])
    candidate = np.array([np.nan, np.nan, np.nan])
    tolerance = np.full(3, 1e-3)
    assert tol.violations(candidate, golden, tolerance).tolist() == [True, False, True]
    perturbed = np.array([np.nan, np.nan, 1.0])  # flush-to-zero made 0·inf there
    assert tol.violations(candidate, golden, tolerance, perturbed).tolist() == [False, False, True]
    # a finite candidate is still judged by the bound, a NaN golden still needs a NaN
    assert tol.violations(np.array([0.5, 0.0, 1.0]), golden, tolerance, perturbed).tolist() == [
        True, True, False]  # fmt: skip


def test_a_flushed_float32_learning_rate_is_a_valid_execution_of_a_float64_step():
    """Flush-to-zero hardware flushes the float32 learning rate of a float64 step when
    it is a float32 subnormal: the update vanishes. The perturbed oracle flushes every
    value below its own dtype's smallest normal, so that execution conforms; an update
    far larger than the one flushing removes still deviates."""
    lr = float(np.float32(1e-39))  # a float32 subnormal
    s = scenario("SGD", "float64", {"learning_rate": lr}, steps=1)
    s.initial_values = [v * 1e-39 for v in s.initial_values]  # the update is visible
    with dtypes.monte_carlo(1e-16, flush=tol.smallest_normal("float64")):
        assert float(dtypes.wrap(np.asarray([lr], np.float32))[0]) == 0.0
        assert float(dtypes.wrap(np.asarray([lr], np.float64))[0]) == lr

    def unchanged(step, obs):  # the variables as they were: lr flushed to zero
        return Observation([np.asarray(v) for v in s.initial_values], obs.iterations,
                           obs.learning_rate, obs.slots, obs.applied)  # fmt: skip

    assert check(s, Tampered(unchanged)) is None

    def hundredfold(step, obs):  # an update 100 times too large
        return Observation([100 * np.asarray(v) - 99 * np.asarray(v0) for v, v0
                            in zip(obs.variables, s.initial_values, strict=True)],
                           obs.iterations, obs.learning_rate, obs.slots, obs.applied)  # fmt: skip

    assert check(s, Tampered(hundredfold)) is not None


def test_resync_finds_the_first_bad_step_of_a_compounding_drift():
    s = scenario("SGD", "float64", {"learning_rate": 0.1}, steps=6)

    def drift(step, obs):  # wrong from step 4 on, by a little more each step
        if step >= 4:
            obs.variables = [v * (1 + 1e-9 * step) for v in obs.variables]
        return obs

    assert check(s, Tampered(drift)).step == 4
    # without loading state the candidate is compared on its own trajectory
    assert check(s, Tampered(drift, load=False)).step == 4


def test_tolerance_grows_with_the_cancellation_a_step_suffers():
    """Ftrl subtracts two pow results: with small gradients the measured error term
    (Monte Carlo arithmetic) is far larger than for a well-conditioned SGD step."""
    rng = np.random.default_rng(3)
    values = [rng.standard_normal(6)]
    small = [[1e-3 * rng.standard_normal(6)]]
    ftrl = Scenario("Ftrl", {"learning_rate": 0.05}, "keras2", "float64", values, small)
    sgd = Scenario("SGD", {"learning_rate": 0.05}, "keras2", "float64", values, small)

    def relative_measured(s, slot):
        o = ReferenceAdapter(numerics="binary128").open(s).step(s.steps[0])
        mca = ReferenceAdapter(numerics="binary128", perturbation=2 * 2.0**-53)
        p = mca.open(s).step(s.steps[0])
        g = ReferenceAdapter().open(s).step(s.steps[0])
        error = tol.measured_error(g.slots[0][slot], o.slots[0][slot], p.slots[0][slot])
        return error / np.abs(g.slots[0][slot]).max() / 2.0**-53

    assert relative_measured(ftrl, "linear") > 100  # ulps of the slot's magnitude
    assert relative_measured(sgd, "m") < 10


def test_policy_is_described_for_reports():
    d = tol.Policy().describe("float16")
    assert d["mode"] == "resync" and d["unit_roundoff"] == 2.0**-11 and "formula" in d
    assert tol.Policy(ulps=2).describe("float32") == {"mode": "ulp", "ulps": 2, "dtype": "float32"}


def test_assert_conforms_raises_with_the_scenario():
    s = scenario("Lion", "float32", {"learning_rate": 0.01})

    def flip(step, obs):
        obs.variables[0] = -obs.variables[0]
        return obs

    with pytest.raises(DivergenceError, match="first divergence: step 1"):
        assert_conforms(s, Tampered(flip))


def test_scenario_json_round_trip_is_exact():
    bf = dtypes.as_dtype("bfloat16")
    s = Scenario(
        "Adam",
        {"learning_rate": {"class_name": "ExponentialDecay",
                           "config": {"initial_learning_rate": 0.1, "decay_steps": 3,
                                      "decay_rate": 0.5}},
         "epsilon": 1e-7, "amsgrad": True},
        "keras2", "bfloat16",
        [np.array([[1.5, -2.25]], bf), np.array(3.0, bf)],
        [[IndexedSlices(np.array([[0.1, 0.2]], bf), np.array([0]), (1, 2)),
          PerReplica((np.array(1.0, bf), np.array(-2.0, bf)))],
         [None, np.array(np.nan, bf)]],
        feature="sparse", needs=("sparse", "replicas"), round_trip_at=1,
    )  # fmt: skip
    back = Scenario.from_json(s.to_json())
    assert back.to_json() == s.to_json()
    assert back.initial_values[0].dtype == bf and back.config["epsilon"] == 1e-7
    assert isinstance(back.steps[0][0], IndexedSlices) and back.steps[1][0] is None
    assert np.isnan(back.steps[1][1]) and back.needs == ("sparse", "replicas")


def test_observation_defaults():
    obs = Observation([np.zeros(2)], 3)
    assert obs.learning_rate is None and obs.slots is None


# -- a float32 learning rate in a float64 step (tolerance.py) -----------------------------
SCHEDULES64 = [
    {"class_name": "ExponentialDecay",
     "config": {"initial_learning_rate": 0.1000023, "decay_steps": 9, "decay_rate": 0.1}},
    {"class_name": "CosineDecayRestarts",
     "config": {"initial_learning_rate": 3.8e-05, "first_decay_steps": 4, "t_mul": 2.498,
                "m_mul": 0.692}},
    {"class_name": "PolynomialDecay",
     "config": {"initial_learning_rate": 1.74e-4, "decay_steps": 8, "end_learning_rate": 7.9e-5,
                "power": 1.85}},
]  # fmt: skip


@pytest.mark.parametrize("name", ["Adagrad", "Adadelta", "Adamax", "RMSprop", "Lion", "Ftrl"])
@pytest.mark.parametrize("schedule", range(len(SCHEDULES64)))
def test_a_float64_step_admits_the_learning_rates_float32_error(name, schedule):
    """A schedule is float32 in a float64 step; a candidate whose schedule is a few float32
    ulps off (another pow, log or cos) conforms — tf-keras's float64 schedule cases were
    flagged before the bound knew it (docs/keras.md, finding 6) — and a learning rate off
    by more than the learning-rate tolerance still deviates."""
    s = scenario(name, "float64", {"learning_rate": SCHEDULES64[schedule]}, steps=5,
                 needs=("schedule",))  # fmt: skip
    ulps = ReferenceAdapter(learning_rate_scale=1 + 4 * tol.UNIT_ROUNDOFF["float32"])
    assert check(s, ulps) is None
    found = check(s, ReferenceAdapter(learning_rate_scale=1 + 4 * tol.LR_RELATIVE))
    assert found is not None and found.quantity == "learning_rate"


def test_the_learning_rate_grant_is_the_learning_rates_tolerance_only(monkeypatch):
    """The engine adds L = max|oracle(lr·(1 + LR_OPS·u₃₂)) − oracle| per tensor: about
    LR_RELATIVE times the update (Adam is linear in lr), and nothing without a schedule or
    in float32."""
    s = scenario("Adam", "float64", {"learning_rate": SCHEDULES64[0]}, steps=1,
                 needs=("schedule",))  # fmt: skip
    assert tol.shifts_learning_rate(s)
    assert not tol.shifts_learning_rate(scenario("Adam", "float64", {"learning_rate": 0.01}))
    assert not tol.shifts_learning_rate(scenario("Adam", "float32",
                                                 {"learning_rate": SCHEDULES64[0]}))
    granted = []
    real_bound = tol.bound

    def spy(*args):
        granted.append(args[-1])
        return real_bound(*args)

    monkeypatch.setattr(tol, "bound", spy)
    assert check(s, ReferenceAdapter()) is None
    golden = ReferenceAdapter().open(s).step(s.steps[0]).variables
    for i, (before, after) in enumerate(zip(s.initial_values, golden, strict=True)):
        update = np.abs(np.asarray(after) - before)
        assert granted[i] == pytest.approx(tol.LR_RELATIVE * float(update.max()), rel=0.2)
    granted.clear()
    assert check(scenario("Adam", "float64", {"learning_rate": 0.01}), ReferenceAdapter()) is None
    assert granted and not any(granted)


def test_a_learning_rate_flushed_to_zero_conforms():
    """TensorFlow's CPU kernels flush a float32 subnormal schedule value to zero
    (tf-keras, AdamW-schedule-float16: lr 1.16e-38 → 0); a normal one may not vanish."""
    subnormal = {"class_name": "ExponentialDecay",
                 "config": {"initial_learning_rate": 1e-4, "decay_steps": 3, "decay_rate": 0.375}}
    s = scenario("SGD", "float16", {"learning_rate": subnormal}, steps=1, iterations=240,
                 needs=("schedule", "iterations_preset"))  # fmt: skip
    lr = ReferenceAdapter().open(s).step(s.steps[0]).learning_rate
    assert 0 < lr < dtypes.finfo("float32").smallest_normal

    def zero_rate(step, obs):
        return Observation(obs.variables, obs.iterations, 0.0, obs.slots, obs.applied)

    assert check(s, Tampered(zero_rate)) is None
    normal = scenario("SGD", "float16", {"learning_rate": subnormal}, steps=1,
                      needs=("schedule",))  # fmt: skip
    found = check(normal, Tampered(zero_rate))
    assert found is not None and found.quantity == "learning_rate"
