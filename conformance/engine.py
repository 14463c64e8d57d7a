"""The comparison engine: a scenario through the golden and a candidate, step by step.

Every step compares the variables, ``iterations``, the learning rate the step used
and every slot both sides expose; the first value out of tolerance stops the case and
is reported with its step, quantity, element index, expected and actual values, error
and tolerance (:class:`Divergence`).

Modes (conformance/tolerance.py explains the bounds):

* ``resync`` — before each step after the first, the golden's state is loaded into
  the candidate, so errors cannot compound and the first bad step is exact;
* ``free`` — the candidate runs its own trajectory.

An adapter that cannot ``load`` is compared in free mode whatever was asked.

The candidate cannot fool the comparison (docs/adapters.md, "What the suite guarantees
against a misbehaving adapter"): it opens on its own deep copy of the scenario, steps
on that copy's gradients and loads a copy of the golden's state, so the golden, the
oracle and the Monte Carlo runs keep pristine inputs; a candidate that modified what
it was given, or returned an observation that does not fit the case (its type, the
number, dtype or shape of its variables and slots, a non-numeric ``iterations`` or
learning rate), raises :class:`AdapterError` naming the mistake (an ``error`` case).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np

from optcheck.adapters.base import Adapter, Observation
from optcheck.adapters.numpy_reference import ReferenceAdapter
from optcheck.reference import dtypes
from optcheck.reference.sparse import IndexedSlices, PerReplica

from . import timing
from . import tolerance as tol
from .scenario import Scenario


@dataclass
class Divergence:
    step: int
    quantity: str
    index: list[int]
    expected: float
    actual: float
    error: float
    tolerance: float

    def __str__(self) -> str:
        return (
            f"step {self.step}, {self.quantity}{self.index}: expected {self.expected!r}, "
            f"got {self.actual!r} (error {self.error:.3g} > tolerance {self.tolerance:.3g})"
        )


class DivergenceError(AssertionError):
    """Raised by :func:`assert_conforms`; carries the divergence and the scenario."""

    def __init__(self, divergence: Divergence, scenario: Scenario, mode: str):
        super().__init__(f"{scenario.describe()}\n  first divergence: {divergence}")
        self.divergence = divergence
        self.scenario = scenario
        self.mode = mode


class AdapterError(Exception):
    """The candidate broke the protocol: it modified an input it was given in place, or
    returned an observation that does not fit the case. Never a pass: an ``error``."""


def adapter_name(adapter) -> str:
    return getattr(adapter, "name", "") or type(adapter).__name__


# -- inputs the candidate must leave alone -------------------------------------------------
def _same(a, b) -> bool:
    """Whether ``a`` (the candidate's copy) still equals ``b`` (pristine) bit for bit."""
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    if isinstance(b, np.ndarray | np.generic):
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    if isinstance(b, IndexedSlices):
        return (_same(a.values, b.values) and _same(a.indices, b.indices)
                and _same(a.dense_shape, b.dense_shape))  # fmt: skip
    if isinstance(b, PerReplica):
        return _same(a.values, b.values)
    if isinstance(b, list | tuple):
        return len(a) == len(b) and all(map(_same, a, b))
    if isinstance(b, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in b)
    if isinstance(b, float) and b != b:
        return a != a
    try:
        return bool(a == b)
    except Exception:
        return False


def scenario_change(mine: Scenario, pristine: Scenario) -> str | None:
    """What the candidate changed in its copy of the scenario, or None."""
    names = pristine.names
    if len(mine.initial_values) == len(names):
        for name, a, b in zip(names, mine.initial_values, pristine.initial_values, strict=True):
            if not _same(a, b):
                return f"the initial value of {name}"
    if len(mine.steps) == len(pristine.steps):
        for k, (given, grads) in enumerate(zip(mine.steps, pristine.steps, strict=True), 1):
            change = gradient_change(given, grads, names)
            if change:
                return f"{change} at step {k}"
    for f in dataclasses.fields(Scenario):
        if f.name in ("initial_values", "steps") and len(getattr(mine, f.name)) == len(
                getattr(pristine, f.name)):  # fmt: skip
            continue  # compared above
        if not _same(getattr(mine, f.name), getattr(pristine, f.name)):
            return f"the {f.name}"
    return None


def gradient_change(given, grads, names) -> str | None:
    if not isinstance(given, list) or len(given) != len(grads):
        return "the list of gradients"
    for name, a, b in zip(names, given, grads, strict=True):
        if not _same(a, b):
            return f"the gradient of {name}"
    return None


def _state_copy(state: Observation) -> Observation:
    """The golden's state for the candidate's ``load``: its own arrays."""
    slots = None if state.slots is None else [{k: np.array(a) for k, a in s.items()}
                                              for s in state.slots]  # fmt: skip
    return Observation([np.array(v) for v in state.variables], state.iterations,
                       state.learning_rate, slots, state.applied)  # fmt: skip


def _state_change(mine: Observation, state: Observation, names) -> str | None:
    if type(mine) is not Observation or len(mine.variables) != len(state.variables):
        return "its variables"
    for name, a, b in zip(names, mine.variables, state.variables, strict=True):
        if not _same(a, b):
            return f"variable {name}"
    if state.slots is not None:
        if not isinstance(mine.slots, list) or len(mine.slots) != len(state.slots):
            return "its slots"
        for name, a, b in zip(names, mine.slots, state.slots, strict=True):
            for slot in sorted(set(a) | set(b)):
                if slot not in a or slot not in b or not _same(a[slot], b[slot]):
                    return f"slot {slot} of {name}"
    for field in ("iterations", "learning_rate", "applied", "slots"):
        if not _same(getattr(mine, field), getattr(state, field)):
            return field
    return None


# -- observations that fit the case -------------------------------------------------------
def _kind(value) -> str:
    return "None" if value is None else f"a {type(value).__name__}"


def _is_number(value) -> bool:
    """A real scalar: a Python or NumPy number or a 0-d array (bfloat16 included)."""
    if isinstance(value, bool | np.bool_):
        return False
    if isinstance(value, int | float):
        return True
    if isinstance(value, np.ndarray | np.generic) and value.shape == ():
        if value.dtype.kind in "iuf":
            return True
        if value.dtype.kind != "V":
            return False
        try:  # ml_dtypes' bfloat16 and float8 types have kind "V"
            float(value)
        except (TypeError, ValueError):
            return False
        return True
    return False


def _array_problem(label: str, value, golden) -> str | None:
    try:
        array = np.asarray(value)
    except Exception:
        return f"{label} is {_kind(value)}, not an array"
    if array.dtype != golden.dtype:
        return f"{label} has dtype {array.dtype}, the case is {golden.dtype}"
    if array.shape != golden.shape:
        return f"{label} has shape {array.shape}, the case's is {golden.shape}"
    return None


def template(scenario: Scenario) -> Observation:
    """What :func:`malformed` checks against where no golden runs (metamorphic relations,
    stored vectors): the scenario's variables' dtypes and shapes, no slots."""
    return Observation([np.asarray(v) for v in scenario.initial_values], 0)


def malformed(observation, golden: Observation, names, where: str) -> str | None:
    """What makes ``observation`` unfit to compare with ``golden`` (None: it fits).

    Variables: one per variable of the case, each of the golden's dtype and shape; slots:
    None or one dict per variable, every slot the golden also has of the golden's dtype
    and shape (slots only the candidate has are not compared); ``iterations`` a number,
    ``learning_rate`` None or a number. ``where``: "step 2", "finalize_variable_values"."""
    if not isinstance(observation, Observation):
        return f"returned {_kind(observation)} instead of an Observation ({where})"
    variables, n = observation.variables, len(golden.variables)
    if not isinstance(variables, list | tuple):
        return f"returned variables as {_kind(variables)}, not a list of arrays ({where})"
    if len(variables) != n:
        return f"returned {len(variables)} variable{'s' * (len(variables) != 1)} for {n} ({where})"
    slots = observation.slots
    if slots is not None and golden.slots is not None:
        if not isinstance(slots, list | tuple) or not all(isinstance(s, Mapping) for s in slots):
            return f"returned slots as {_kind(slots)}, not one dict per variable ({where})"
        if len(slots) != n:
            count = f"{len(slots)} variable{'s' * (len(slots) != 1)}"
            return f"returned slots for {count} for {n} ({where})"
    problems = [_array_problem(f"variable {name}", c, g)
                for name, c, g in zip(names, variables, golden.variables, strict=True)]  # fmt: skip
    if slots is not None and golden.slots is not None:
        problems += [_array_problem(f"slot {slot} of {name}", cs[slot], gs[slot])
                     for name, cs, gs in zip(names, slots, golden.slots, strict=True)
                     for slot in gs if slot in cs]  # fmt: skip
    if not _is_number(observation.iterations):
        problems.append(f"iterations is {_kind(observation.iterations)}, not a number")
    rate = observation.learning_rate
    if rate is not None and not _is_number(rate):
        problems.append(f"learning_rate is {_kind(rate)}, not a number")
    problem = next((p for p in problems if p), None)
    if problem is None:
        return None
    return f"returned an observation that does not fit the case ({where}): {problem}"


def fitting(adapter, observation, golden: Observation, names, where: str):
    """``observation``, or :class:`AdapterError` saying what makes it unfit
    (:func:`malformed`)."""
    problem = malformed(observation, golden, names, where)
    if problem:
        raise AdapterError(f"adapter {adapter_name(adapter)!r} {problem}")
    return observation


def _oracle_numerics(dtype: str) -> str:
    return "binary128" if dtype == "float64" else "oracle"


def first_bad(name, step, candidate, golden, tolerance, perturbed=None) -> Divergence | None:
    """The first element of ``candidate`` out of ``tolerance`` around ``golden`` (the NaN
    and infinity rules of :func:`~optcheck.conformance.tolerance.violations`), or None."""
    bad = tol.violations(candidate, golden, tolerance, perturbed)
    if not bad.any():
        return None
    flat = int(np.flatnonzero(bad.ravel())[0])
    g = np.asarray(golden, dtype=np.float64).ravel()
    c = np.asarray(candidate, dtype=np.float64)
    if c.shape != np.shape(golden):
        return Divergence(step, f"{name} shape {c.shape} vs {np.shape(golden)}", [], 0.0, 0.0,
                          float("inf"), 0.0)  # fmt: skip
    c = c.ravel()
    t = np.broadcast_to(tolerance, np.shape(golden)).ravel()
    index = [int(i) for i in np.unravel_index(flat, np.shape(golden))]
    return Divergence(step, name, index, float(g[flat]), float(c[flat]),
                      float(abs(c[flat] - g[flat])), float(t[flat]))  # fmt: skip


def compare(
    scenario: Scenario,
    step: int,
    golden: Observation,
    candidate: Observation,
    before: Observation | None,
    oracle: Observation | None,
    policy: tol.Policy,
    perturbed: Observation | None = None,
    carry: dict | None = None,
    record=None,
    shifted: Observation | None = None,
    require: set | None = None,
) -> Divergence | None:
    """The first quantity of ``candidate`` out of tolerance, or None.

    ``require`` (deviation diagnosis): keys (as for ``record``) of the quantities the
    case's own golden exposes at this step; one of them that the candidate exposes and
    this golden (a variant's) lacks is a divergence: a variant that compares fewer
    quantities does not reproduce them.

    ``shifted``: the oracle with the learning rate at the edge of its tolerance
    (:func:`~optcheck.conformance.tolerance.shifts_learning_rate`), or None.

    ``carry`` (free mode): per quantity, the local budget of the earlier steps; this
    step's local budget is added to it.

    ``record`` (optional): called as ``record(step, key, golden_value, limit,
    perturbed_value)`` for each quantity as it is compared, with its per-element
    tolerance; ``key`` is ``("iterations",)``, ``("learning_rate",)``,
    ``("variable", i)`` or ``("slot", i, name)`` (``optcheck vectors export`` stores them).
    """
    if record is not None:
        record(step, ("iterations",), golden.iterations, 0.0, None)
    if candidate.iterations != golden.iterations:
        return Divergence(step, "iterations", [], float(golden.iterations),
                          float(candidate.iterations),
                          float(abs(candidate.iterations - golden.iterations)), 0.0)  # fmt: skip
    if golden.learning_rate is not None and candidate.learning_rate is not None:
        limit = tol.learning_rate_bound(golden.learning_rate)
        if record is not None:
            record(step, ("learning_rate",), golden.learning_rate, limit, None)
        found = first_bad("learning_rate", step, np.asarray(candidate.learning_rate),
                          np.asarray(golden.learning_rate), limit)  # fmt: skip
        if found:
            return found
    if require:
        missing = _not_reproduced(scenario, golden, candidate, require)
        if missing:
            return Divergence(step, f"{missing}: the adapter exposes it, this golden has none",
                              [], 0.0, 0.0, float("inf"), 0.0)  # fmt: skip
    reduced = tol.reduction_size(scenario)
    references = (oracle, perturbed, shifted)
    quantities = []
    for i, (g, c) in enumerate(zip(golden.variables, candidate.variables, strict=True)):
        prev = before.variables[i] if before else scenario.initial_values[i]
        refs = [o.variables[i] if o else None for o in references]
        quantities.append((f"variable {scenario.names[i]}", g, c, prev, refs, ("variable", i)))
    if golden.slots is not None and candidate.slots is not None:
        for i, (gs, cs) in enumerate(zip(golden.slots, candidate.slots, strict=True)):
            for slot in sorted(set(gs) & set(cs)):
                prev = before.slots[i].get(slot) if before and before.slots else None
                refs = [o.slots[i].get(slot) if o and o.slots else None
                        for o in references]  # fmt: skip
                quantities.append((f"slot {slot} of {scenario.names[i]}", gs[slot], cs[slot],
                                   prev, refs, ("slot", i, slot)))  # fmt: skip
    for name, g, c, prev, (orc, pert, shift), key in quantities:
        measured = tol.measured_error(g, orc, pert)
        carried = 0.0
        if carry is not None:
            carried = carry.get(name, 0.0)
            carry[name] = carried + tol.local_budget(scenario.dtype, g, prev, reduced)
        limit = tol.bound(policy, scenario.dtype, np.asarray(g), prev, measured, step, reduced,
                          carried, tol.largest_difference(shift, orc))  # fmt: skip
        if record is not None:
            record(step, key, g, limit, pert)
        found = first_bad(name, step, c, g, limit, pert)
        if found:
            return found
    return None


def exposed(observation: Observation) -> set:
    """The keys of the learning rate and the slots ``observation`` holds."""
    keys = set() if observation.learning_rate is None else {("learning_rate",)}
    for i, slots in enumerate(observation.slots or []):
        keys.update(("slot", i, name) for name in slots)
    return keys


def _not_reproduced(scenario, golden, candidate, require) -> str | None:
    if (("learning_rate",) in require and candidate.learning_rate is not None
            and golden.learning_rate is None):  # fmt: skip
        return "learning_rate"
    for i, slots in enumerate(candidate.slots or []):
        have = golden.slots[i] if golden.slots else {}
        for name in sorted(slots):
            if ("slot", i, name) in require and name not in have:
                return f"slot {name} of {scenario.names[i]}"
    return None


def exposed_by_golden(scenario: Scenario) -> list[set]:
    """Per step of :func:`check` (then ``finalize``): :func:`exposed` of the golden's
    observation (the ``require`` of a variant's check)."""
    session = ReferenceAdapter().open(scenario)
    keys = []
    try:
        for i, grads in enumerate(scenario.steps, start=1):
            keys.append(exposed(session.step(grads, scenario.skip_gradients_aggregation)))
            if scenario.round_trip_at == i:
                session.round_trip()
        if scenario.finalize:
            keys.append(exposed(session.finalize()))
    finally:
        session.close()
    return keys


def check(
    scenario: Scenario,
    candidate: Adapter,
    policy: tol.Policy | None = None,
    golden: Adapter | None = None,
    variant=None,
    record=None,
    require: list[set] | None = None,
) -> Divergence | None:
    """Run ``scenario`` through the golden and ``candidate``; the first divergence.

    Beside them run the oracle (the golden's semantics in higher precision) and the
    same in Monte Carlo arithmetic, which estimate the error this computation can
    legitimately carry (conformance/tolerance.py). ``variant`` (a
    :class:`~optcheck.conformance.diagnosis.Variant`) switches the golden, the oracle
    and the Monte Carlo run to that variant's semantics. ``record``: see :func:`compare`;
    ``require``: per step, :func:`compare`'s (:func:`exposed_by_golden`).

    The candidate gets its own copies of the scenario and of the states it loads, and
    raises :class:`AdapterError` when it changed them or returns an observation that
    does not fit the case (module doc).
    """
    policy = policy or tol.Policy()
    measure = policy.ulps is None
    if measure and scenario.dtype == "float64":
        dtypes.require_binary128()  # before any session: the candidate is not to blame
    golden = golden or ReferenceAdapter(variant=variant)
    oracle_adapter = ReferenceAdapter(numerics=_oracle_numerics(scenario.dtype), variant=variant)
    resync = policy.mode == "resync" and candidate.capabilities().load
    mca_adapter = ReferenceAdapter(
        numerics=_oracle_numerics(scenario.dtype),
        perturbation=tol.PERTURB * tol.UNIT_ROUNDOFF[scenario.dtype],
        flush=tol.smallest_normal(scenario.dtype),
        variant=variant,
    )
    name = adapter_name(candidate)
    # The candidate's own copy: whatever it writes there, the reference sessions and the
    # tolerance see the pristine scenario (which also replays in shrinking, diagnosis and
    # the repro script).
    mine = copy.deepcopy(scenario)
    g_session = timing.open_session(golden, scenario, "golden")
    c_session = timing.open_session(candidate, mine, "adapter")
    sessions = [g_session, c_session]
    change = scenario_change(mine, scenario)
    if change:
        c_session.close()
        g_session.close()
        raise AdapterError(f"adapter {name!r} modified {change} of the scenario it was given, "
                           "in open")  # fmt: skip
    o_session = timing.open_session(oracle_adapter, scenario, "golden") if measure else None
    p_session = timing.open_session(mca_adapter, scenario, "golden") if measure else None
    l_session = None
    if measure and tol.shifts_learning_rate(scenario):
        shifted = ReferenceAdapter(numerics=_oracle_numerics(scenario.dtype), variant=variant,
                                   learning_rate_scale=1 + tol.LR_RELATIVE)
        l_session = timing.open_session(shifted, scenario, "golden")
    references = [s for s in (o_session, p_session, l_session) if s is not None]
    sessions += references
    skip = scenario.skip_gradients_aggregation
    names = scenario.names

    try:
        before: Observation | None = None
        carry = None if resync else {}
        fresh = False  # just rebuilt from the config: nothing to load
        for i, grads in enumerate(scenario.steps, start=1):
            if before is not None and resync and not fresh:
                state = _state_copy(before)
                c_session.load(state)
                change = _state_change(state, before, names)
                if change:
                    raise AdapterError(f"adapter {name!r} modified the state it was given to "
                                       f"load before step {i} ({change}) in place")  # fmt: skip
                for session in references:
                    session.load(before)
            g_obs = g_session.step(grads, skip_gradients_aggregation=skip)
            given = mine.steps[i - 1] if len(mine.steps) == len(scenario.steps) else None
            change = gradient_change(given, grads, names)
            if change:  # written in its scenario since open
                raise AdapterError(f"adapter {name!r} modified {change} of step {i} of the "
                                   "scenario it was given, before that step")  # fmt: skip
            c_obs = c_session.step(given, skip_gradients_aggregation=skip)
            change = gradient_change(given, grads, names)
            if change:
                raise AdapterError(f"adapter {name!r} modified {change} it was given at step "
                                   f"{i} in place")  # fmt: skip
            fitting(candidate, c_obs, g_obs, names, f"step {i}")
            o_obs = p_obs = l_obs = None
            if measure:
                o_obs = o_session.step(grads, skip_gradients_aggregation=skip)
                p_obs = p_session.step(grads, skip_gradients_aggregation=skip)
            if l_session is not None:
                l_obs = l_session.step(grads, skip_gradients_aggregation=skip)
            found = compare(scenario, i, g_obs, c_obs, before, o_obs, policy, p_obs, carry,
                            record, l_obs, require[i - 1] if require else None)
            if found:
                break
            before = g_obs
            fresh = scenario.round_trip_at == i
            if fresh:
                for session in sessions:
                    session.round_trip()
        else:
            found = None
            if scenario.finalize:
                step = len(scenario.steps) + 1
                o_fin = o_session.finalize() if measure else None
                p_fin = p_session.finalize() if measure else None
                l_fin = l_session.finalize() if l_session is not None else None
                g_fin = g_session.finalize()
                c_fin = fitting(candidate, c_session.finalize(), g_fin, names,
                                "finalize_variable_values")
                found = compare(scenario, step, g_fin, c_fin, before, o_fin, policy, p_fin,
                                carry, record, l_fin, require[step - 1] if require else None)
                if found:
                    found.quantity = f"finalize_variable_values: {found.quantity}"
        # What it kept of its scenario: written later, it could only have fooled itself,
        # but it is the same mistake.
        change = scenario_change(mine, scenario)
        if change:
            raise AdapterError(f"adapter {name!r} modified {change} of the scenario it was "
                               "given, during the run")  # fmt: skip
        return found
    finally:
        for session in sessions:
            session.close()


def assert_conforms(scenario: Scenario, candidate: Adapter, policy: tol.Policy | None = None):
    """Raise :class:`DivergenceError` on the first divergence (for hypothesis tests)."""
    policy = policy or tol.Policy()
    found = check(scenario, candidate, policy)
    if found is not None:
        raise DivergenceError(found, scenario, policy.mode)


def divergence_dict(d: Divergence) -> dict:
    return asdict(d)
