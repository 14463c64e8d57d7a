"""An adapter cannot fool or break the suite (issue 18): a table of misbehaving adapters.

Each row of :data:`ROWS` is the golden (``ReferenceAdapter``) with one fault, in the
manner of PyTorch's error inputs: the case it runs, the status it must get and a regex
its message must match. Cases run through :func:`optcheck.conformance.suite.run_case`,
as ``optcheck verify --in-process`` runs them, so what is asserted is what a user reads.
Every row also runs the golden ``numpy`` adapter and an adapter returning the other
legitimate forms of an observation (NumPy scalars, tuples, NumPy integers) on the same
case: those must pass.

This module is also the strategies module of its cases (``case_grid``/``scenarios``).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from dataclasses import asdict, dataclass

import numpy as np
import pytest
from hypothesis import strategies as st

from optcheck.adapters.base import Observation
from optcheck.adapters.numpy_reference import ReferenceAdapter, ReferenceSession
from optcheck.conformance import suite
from optcheck.conformance.scenario import Scenario
from optcheck.conformance.suite import Case, Context
from optcheck.reference import dtypes
from optcheck.reference.sparse import IndexedSlices, PerReplica

HERE = "tests.test_misbehaving_adapters"

#: feature -> what a scenario of it needs from the adapter.
NEEDS = {
    "plain": (),
    "scalar": (),
    "sparse": ("sparse",),
    "replicas": ("replicas",),
    "none_gradients": ("none_gradients",),
    "finalize": ("ema", "finalize"),
}


# -- the strategies module of the cases -------------------------------------------------------
def case_grid(optimizers, profile):
    return [(o, f, d) for o in optimizers for f in NEEDS for d in ("float32", "bfloat16")]


def make_scenario(optimizer, feature, dtype, profile, seed=0) -> Scenario:
    """Two variables (3×2 and 4, or two scalars), three steps of the feature's gradients."""
    rng = np.random.default_rng(seed)
    d = dtypes.as_dtype(dtype)
    shapes = [(), ()] if feature == "scalar" else [(3, 2), (4,)]
    values = [np.asarray(rng.standard_normal(s)).astype(d) for s in shapes]

    def dense(shape):
        return np.asarray(rng.standard_normal(shape)).astype(d)

    steps = []
    for k in range(3):
        grads = [dense(s) for s in shapes]
        if feature == "sparse":
            grads[0] = IndexedSlices(dense((2, 2)), np.array([0, 2]), (3, 2))
        elif feature == "replicas":
            grads = [PerReplica((dense(s), dense(s))) for s in shapes]
        elif feature == "none_gradients" and k == 1:
            grads[1] = None
        steps.append(grads)
    config = {"learning_rate": 0.01}
    if feature == "finalize":
        config.update(use_ema=True, ema_momentum=0.5)
    return Scenario(optimizer, config, profile, dtype, values, steps, feature=feature,
                    needs=NEEDS[feature], finalize=feature == "finalize")  # fmt: skip


def scenarios(optimizer, feature, dtype, profile):
    return st.integers(0, 3).map(lambda seed: make_scenario(optimizer, feature, dtype, profile,
                                                            seed))  # fmt: skip


# -- misbehaving adapters ------------------------------------------------------------------------
def _arrays(gradient):
    """The writable arrays of one gradient (dense, IndexedSlices values, replicas)."""
    if gradient is None:
        return []
    if isinstance(gradient, IndexedSlices):
        return [gradient.values]
    if isinstance(gradient, PerReplica):
        return [a for g in gradient.values for a in _arrays(g)]
    return [gradient]


class FaultySession(ReferenceSession):
    """The golden's session; a subclass overrides one hook with its fault."""

    def before_step(self, gradients):
        """Called with the gradients the session was given, before it steps."""

    def edit(self, observation):
        return observation

    def step(self, gradients, skip_gradients_aggregation=False):
        self.before_step(gradients)
        return self.edit(super().step(gradients, skip_gradients_aggregation))

    def finalize(self):
        return self.edit(super().finalize())


class Faulty(ReferenceAdapter):
    session = FaultySession

    def __init__(self, name):
        super().__init__(name=name)

    def prepare(self, scenario):
        """Called with the scenario ``open`` was given, before the session is built."""

    def open(self, scenario):
        self.prepare(scenario)
        return self.session(self._package, scenario)


SESSION_HOOKS = ("before_step", "edit", "load", "finalize")


def faulty(name, **hooks):
    """A :class:`Faulty` adapter named ``name`` whose ``hooks`` replace methods of its
    session (:data:`SESSION_HOOKS`) or of the adapter (``prepare``): its one fault."""
    session = type(f"{name}-session", (FaultySession,),
                   {k: v for k, v in hooks.items() if k in SESSION_HOOKS})  # fmt: skip
    adapter = {k: v for k, v in hooks.items() if k not in SESSION_HOOKS}
    return type(name, (Faulty,), {"session": session, **adapter})(name)


def _scale_in_place(self, gradients):
    for g in gradients:
        for a in _arrays(g):
            a *= a.dtype.type(2)


def _fill_none(self, gradients):
    for i, g in enumerate(gradients):
        if g is None:
            gradients[i] = np.zeros(self._variables[i].numpy().shape, self._promote)


def _rewrite_the_last_step(self, gradients):
    last = self._scenario.steps[-1]
    if gradients is not last:
        last[0] *= last[0].dtype.type(2)


def _overwrite_initial_values(self, scenario):
    for value in scenario.initial_values:
        value[...] = 0


def _change_the_config(self, scenario):
    scenario.config["learning_rate"] = 0.5


def _load_scaled(self, state):
    # Halves the state it is given in place, then loads it: the oracle and the Monte Carlo
    # run load the same object after it.
    for v in state.variables:
        v *= v.dtype.type(0.5)
    ReferenceSession.load(self, state)


def _edit(change):
    def edit(self, obs):
        return change(obs)

    return edit


def _variables(change):
    def apply(obs):
        obs.variables = change(list(obs.variables))
        return obs

    return _edit(apply)


def _slot(change, slot="m", index=0):
    def apply(obs):
        obs.slots[index][slot] = change(obs.slots[index][slot])
        return obs

    return _edit(apply)


def _field(name, value):
    def apply(obs):
        setattr(obs, name, value(getattr(obs, name)) if callable(value) else value)
        return obs

    return _edit(apply)


@dataclass
class Row:
    id: str
    adapter: object
    status: str
    message: str
    optimizer: str = "Adam"
    feature: str = "plain"
    dtype: str = "float32"


MALFORMED = r"AdapterError: adapter '{}' returned an observation that does not fit the case "

ROWS = [
    # -- inputs modified in place --------------------------------------------------------------
    Row("scales-gradients", faulty("scales-gradients", before_step=_scale_in_place), "error",
        r"modified the gradient of v0 it was given at step 1 in place"),
    Row("scales-sparse-values", faulty("scales-sparse-values", before_step=_scale_in_place),
        "error", r"modified the gradient of v0 it was given at step 1 in place",
        feature="sparse"),
    Row("scales-replica-values", faulty("scales-replica-values", before_step=_scale_in_place),
        "error", r"modified the gradient of v0 it was given at step 1 in place",
        feature="replicas"),
    Row("fills-none-gradients", faulty("fills-none-gradients", before_step=_fill_none), "error",
        r"modified the gradient of v1 it was given at step 2 in place",
        feature="none_gradients"),
    Row("rewrites-a-later-step", faulty("rewrites-a-later-step",
                                        before_step=_rewrite_the_last_step), "error",
        r"modified the gradient of v0 of step 3 of the scenario it was given, before that step"),
    Row("overwrites-initial-values", faulty("overwrites-initial-values",
                                            prepare=_overwrite_initial_values), "error",
        r"modified the initial value of v0 of the scenario it was given, in open"),
    Row("changes-the-config", faulty("changes-the-config", prepare=_change_the_config),
        "error", r"modified the config of the scenario it was given, in open"),
    Row("mutates-loaded-state", faulty("mutates-loaded-state", load=_load_scaled), "error",
        r"modified the state it was given to load before step 2 \(variable v0\) in place"),
    # -- observations that do not fit the case -----------------------------------------------
    Row("float64-variables", faulty("float64-variables", edit=_variables(
        lambda vs: [v.astype(np.float64) for v in vs])), "error",
        MALFORMED.format("float64-variables")
        + r"\(step 1\): variable v0 has dtype float64, the case is float32"),
    Row("float32-for-bfloat16", faulty("float32-for-bfloat16", edit=_variables(
        lambda vs: [v.astype(np.float32) for v in vs])), "error",
        r"variable v0 has dtype float32, the case is bfloat16", dtype="bfloat16"),
    Row("float64-scalars", faulty("float64-scalars", edit=_variables(
        lambda vs: [np.float64(v) for v in vs])), "error",
        r"variable v0 has dtype float64, the case is float32", feature="scalar"),
    Row("python-floats", faulty("python-floats", edit=_variables(
        lambda vs: [v.tolist() for v in vs])), "error",
        r"variable v0 has dtype float64, the case is float32"),
    Row("drops-a-variable", faulty("drops-a-variable", edit=_variables(lambda vs: vs[:1])),
        "error", r"adapter 'drops-a-variable' returned 1 variable for 2 \(step 1\)"),
    Row("variables-as-dict", faulty("variables-as-dict", edit=_variables(
        lambda vs: {f"v{i}": v for i, v in enumerate(vs)})), "error",
        r"returned variables as a dict, not a list of arrays \(step 1\)"),
    Row("wrong-shape", faulty("wrong-shape", edit=_variables(
        lambda vs: [vs[0].reshape(-1), vs[1]])), "error",
        r"\(step 1\): variable v0 has shape \(6,\), the case's is \(3, 2\)"),
    Row("strings", faulty("strings", edit=_variables(
        lambda vs: [np.full(np.shape(v), "0.5") for v in vs])), "error",
        r"variable v0 has dtype <U3, the case is float32"),
    Row("returns-none", faulty("returns-none", edit=_edit(lambda obs: None)), "error",
        r"adapter 'returns-none' returned None instead of an Observation \(step 1\)"),
    Row("returns-a-string", faulty("returns-a-string", edit=_edit(lambda obs: "done")),
        "error", r"returned a str instead of an Observation \(step 1\)"),
    Row("returns-a-dict", faulty("returns-a-dict", edit=_edit(asdict)), "error",
        r"returned a dict instead of an Observation \(step 1\)"),
    Row("float64-slot", faulty("float64-slot", edit=_slot(lambda a: a.astype(np.float64))),
        "error", r"\(step 1\): slot m of v0 has dtype float64, the case is float32"),
    Row("slot-wrong-shape", faulty("slot-wrong-shape", edit=_slot(lambda a: a[:1])), "error",
        r"slot m of v0 has shape \(1, 2\), the case's is \(3, 2\)"),
    Row("slot-none", faulty("slot-none", edit=_slot(lambda a: None)), "error",
        r"slot m of v0 has dtype object, the case is float32"),
    Row("slots-of-one-variable", faulty("slots-of-one-variable", edit=_field(
        "slots", lambda s: s[:1])), "error", r"returned slots for 1 variable for 2 \(step 1\)"),
    Row("string-iterations", faulty("string-iterations", edit=_field(
        "iterations", lambda n: str(n))), "error",
        r"\(step 1\): iterations is a str, not a number"),
    Row("string-learning-rate", faulty("string-learning-rate", edit=_field(
        "learning_rate", lambda r: repr(r))), "error",
        r"\(step 1\): learning_rate is a str, not a number"),
    Row("array-learning-rate", faulty("array-learning-rate", edit=_field(
        "learning_rate", lambda r: np.array([r]))), "error",
        r"\(step 1\): learning_rate is a ndarray, not a number"),
    Row("finalize-returns-none", faulty(
        "finalize-returns-none", finalize=lambda self: None), "error",
        r"returned None instead of an Observation \(finalize_variable_values\)",
        feature="finalize"),
]


# -- running cases as `optcheck verify` does --------------------------------------------------
def context(adapter: str, **kw) -> Context:
    base = dict(adapter=adapter, strategies=HERE, optimizers=None, fixed_cases=False,
                diagnose=False, max_examples=2)  # fmt: skip
    return Context(**{**base, **kw})


def run(adapter, optimizer, feature, dtype, **kw) -> dict:
    case = Case(adapter.name, optimizer, feature, dtype, "keras2", "property",
                list(NEEDS[feature]))  # fmt: skip
    return suite.run_case(case, context(adapter.name, **kw), adapter=adapter)


class _LegitSession(ReferenceSession):
    """The golden's observations in the other forms adapters legitimately return."""

    def _forms(self, obs):
        def form(a):
            return a[()] if a.shape == () else a  # a NumPy scalar for a 0-d value

        return Observation(
            variables=tuple(form(v) for v in obs.variables),
            iterations=np.int64(obs.iterations),
            learning_rate=None if obs.learning_rate is None else np.float32(obs.learning_rate),
            slots=tuple({k: form(a) for k, a in s.items()} for s in obs.slots),
            applied=obs.applied,
        )

    def step(self, gradients, skip_gradients_aggregation=False):
        return self._forms(super().step(gradients, skip_gradients_aggregation))

    def finalize(self):
        return self._forms(super().finalize())


class LegitForms(ReferenceAdapter):
    def __init__(self):
        super().__init__(name="legit-forms")

    def open(self, scenario):
        return _LegitSession(self._package, scenario)


def outcome(result: dict) -> str:
    """A case's status and what it says, for assertion messages."""
    return f"{result['status']}: {result.get('message') or result.get('first_divergence')}"


@functools.cache
def controls(optimizer, feature, dtype) -> tuple:
    """Statuses of the golden and of :class:`LegitForms` on the case."""
    return tuple(run(a, optimizer, feature, dtype)["status"]
                 for a in (ReferenceAdapter(), LegitForms()))  # fmt: skip


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_a_misbehaving_adapter_gets_an_error_naming_its_mistake(row):
    result = run(row.adapter, row.optimizer, row.feature, row.dtype)
    assert result["status"] == row.status, outcome(result)
    assert re.search(row.message, result["message"]), result["message"]
    assert "zip()" not in result["message"] and "Traceback" not in result["message"]
    assert controls(row.optimizer, row.feature, row.dtype) == ("pass", "pass")


@pytest.mark.parametrize(
    "feature, adapter, message",
    [
        ("golden:SGD-single-step", faulty("golden-table-none", edit=_edit(lambda obs: None)),
         r"adapter 'golden-table-none' returned None instead of an Observation \(step 1\)"),
        ("golden:Adam-correctness", faulty("golden-table-float64", edit=_variables(
            lambda vs: [v.astype(np.float64) for v in vs])),
         r"\(step 1\): variable v0 has dtype float64, the case is float32"),
        ("seed:usage", faulty("seed-page-float64", edit=_variables(
            lambda vs: [v.astype(np.float64) for v in vs])),
         r"\(step 1\): variable v0 has dtype float64, the case is float32"),
        ("seed:processing_gradients", faulty("seed-page-scales",
                                             before_step=_scale_in_place),
         r"modified the gradient of v0 it was given at step 1 in place"),
    ],
    ids=["golden-table-none", "golden-table-float64", "seed-float64", "seed-scales"],
)
def test_fixed_cases_of_a_misbehaving_adapter_are_errors_naming_the_mistake(feature, adapter,
                                                                             message):  # fmt: skip
    ctx = context(adapter.name, fixed_cases=True, features=[feature])
    (case,) = suite.all_cases(ctx, adapter.name)
    result = suite.run_case(case, ctx, adapter=adapter)
    assert result["status"] == "error", outcome(result)
    assert re.search(message, result["message"]), result["message"]
    assert suite.run_case(case, ctx, adapter=ReferenceAdapter())["status"] == "pass"


def test_the_callers_scenario_stays_pristine():
    """What the candidate writes never reaches the scenario that shrinking, the diagnosis
    and the repro script replay."""
    from optcheck.conformance import engine

    for feature in ("plain", "sparse", "replicas", "none_gradients"):
        scenario = make_scenario("Adam", feature, "float32", "keras2")
        pristine = scenario.to_json()
        adapter = faulty("scales-and-overwrites", before_step=_scale_in_place,
                         prepare=_overwrite_initial_values)  # fmt: skip
        raised = None
        try:
            engine.check(scenario, adapter)
        except Exception as exc:
            raised = exc
        assert scenario.to_json() == pristine, feature
        assert type(raised).__name__ == "AdapterError", raised


def test_a_wrong_slot_only_one_profile_keeps_is_not_explained_by_the_other_profile():
    # keras2's SGD keeps a momentum slot m even without momentum; keras3's has none, so the
    # other profile's golden compares everything but the wrong slot.
    adapter = faulty("wrong-sgd-slot", edit=_slot(lambda a: a + a.dtype.type(1)))
    result = run(adapter, "SGD", "plain", "float32", diagnose=True)
    assert result["status"] == "deviation"
    assert result["first_divergence"]["quantity"] == "slot m of v0"
    assert "other_profile" in result["diagnosis"]["tried"]
    assert result["diagnosis"]["verdict"] == "unexplained"
    # An adapter that has the other profile's semantics (and so exposes its slots) is
    # still explained by that variant.
    from optcheck.conformance import diagnosis
    from optcheck.conformance.tolerance import Policy

    other = [v for v in diagnosis.VARIANTS if v.name == "other_profile"]
    scenario = make_scenario("SGD", "finalize", "float32", "keras2")
    found = diagnosis.diagnose(scenario, OtherProfile(), Policy(), variants=other)
    assert found["verdict"] == "matches variant other_profile"


class OtherProfile(ReferenceAdapter):
    """The golden of the other Keras line."""

    def open(self, scenario):
        other = "keras3" if scenario.profile == "keras2" else "keras2"
        return ReferenceSession(self._package, dataclasses.replace(scenario, profile=other))


# -- the runs with no live golden: metamorphic relations and stored vectors ---------------------
#: Faults these runs can see (they load no state) -> the message they must give.
UNGUARDED = {
    "scales-gradients": r"modified the gradient of v0 at step 1 of the scenario it was given "
                        r"\(step 1\)",
    "rewrites-a-later-step": r"modified the gradient of v0 at step 3 of the scenario it was "
                             r"given \(step 1\)",
    "overwrites-initial-values": r"modified the initial value of v0 of the scenario it was "
                                 r"given \(open\)",
    "float64-variables": r"returned an observation that does not fit the case \(step 1\): "
                         r"variable \w+ has dtype float64, the case is float32",
    "drops-a-variable": r"returned 1 variable for 2 \(step 1\)",
    "returns-none": r"returned None instead of an Observation \(step 1\)",
    "string-iterations": r"returned an observation that does not fit the case \(step 1\): "
                         r"iterations is a str, not a number",
}
GUARDED_ROWS = [r for r in ROWS if r.id in UNGUARDED]


@pytest.mark.parametrize("row", GUARDED_ROWS, ids=lambda r: r.id)
def test_a_metamorphic_relation_sees_a_misbehaving_adapter(row):
    """A relation compares an adapter with itself: an adapter writing into the scenario
    the two sides share, or returning observations that do not fit, must be an error."""
    from optcheck.conformance import engine, metamorphic

    scenario = make_scenario(row.optimizer, row.feature, row.dtype, "keras2")
    pristine = scenario.to_json()
    with pytest.raises(engine.AdapterError, match=f"adapter '{row.id}' {UNGUARDED[row.id]}"):
        metamorphic.run(row.adapter, scenario)
    assert scenario.to_json() == pristine
    assert len(metamorphic.run(ReferenceAdapter(), scenario)) == len(scenario.steps)


@pytest.fixture(scope="module")
def adam_vectors(tmp_path_factory):
    from optcheck.conformance import vectors

    folder = tmp_path_factory.mktemp("vectors")
    vectors.export(folder, optimizers=["Adam"])
    entry = next(e for e in vectors.read_index(folder)["cases"] if e["dtype"] == "float32")
    return folder, entry


@pytest.mark.parametrize("row", [r for r in GUARDED_ROWS if "fit" in UNGUARDED[r.id]
                                 or "returned" in UNGUARDED[r.id]], ids=lambda r: r.id)
def test_vectors_check_flags_an_observation_that_does_not_fit(row, adam_vectors):
    """`optcheck vectors check` compares with stored values: a float64 result for a float32
    case, a missing variable, None, must be errors naming the mistake."""
    from optcheck.conformance import vectors

    folder, entry = adam_vectors
    result = vectors.run_case(row.adapter, folder, entry)
    assert result["status"] == "error", result
    assert re.search(f"adapter '{row.id}' {UNGUARDED[row.id]}", result["message"]), result
    assert vectors.run_case(ReferenceAdapter(), folder, entry)["status"] == "pass"
