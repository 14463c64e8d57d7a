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
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from optcheck.adapters.base import Adapter, Observation
from optcheck.adapters.numpy_reference import ReferenceAdapter

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


def _oracle_numerics(dtype: str) -> str:
    return "extended" if dtype == "float64" else "oracle"


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
) -> Divergence | None:
    """The first quantity of ``candidate`` out of tolerance, or None.

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


def check(
    scenario: Scenario,
    candidate: Adapter,
    policy: tol.Policy | None = None,
    golden: Adapter | None = None,
    variant=None,
    record=None,
) -> Divergence | None:
    """Run ``scenario`` through the golden and ``candidate``; the first divergence.

    Beside them run the oracle (the golden's semantics in higher precision) and the
    same in Monte Carlo arithmetic, which estimate the error this computation can
    legitimately carry (conformance/tolerance.py). ``variant`` (a
    :class:`~optcheck.conformance.diagnosis.Variant`) switches the golden, the oracle
    and the Monte Carlo run to that variant's semantics. ``record``: see :func:`compare`.
    """
    policy = policy or tol.Policy()
    golden = golden or ReferenceAdapter(variant=variant)
    oracle_adapter = ReferenceAdapter(numerics=_oracle_numerics(scenario.dtype), variant=variant)
    resync = policy.mode == "resync" and candidate.capabilities().load
    measure = policy.ulps is None
    mca_adapter = ReferenceAdapter(
        numerics=_oracle_numerics(scenario.dtype),
        perturbation=tol.PERTURB * tol.UNIT_ROUNDOFF[scenario.dtype],
        flush=tol.smallest_normal(scenario.dtype),
        variant=variant,
    )
    g_session = golden.open(scenario)
    c_session = candidate.open(scenario)
    o_session = oracle_adapter.open(scenario) if measure else None
    p_session = mca_adapter.open(scenario) if measure else None
    l_session = None
    if measure and tol.shifts_learning_rate(scenario):
        l_session = ReferenceAdapter(numerics=_oracle_numerics(scenario.dtype), variant=variant,
                                     learning_rate_scale=1 + tol.LR_RELATIVE).open(scenario)
    references = [s for s in (o_session, p_session, l_session) if s is not None]
    sessions = [g_session, c_session, *references]
    skip = scenario.skip_gradients_aggregation
    try:
        before: Observation | None = None
        carry = None if resync else {}
        fresh = False  # just rebuilt from the config: nothing to load
        for i, grads in enumerate(scenario.steps, start=1):
            if before is not None and resync and not fresh:
                for session in (c_session, *references):
                    session.load(before)
            g_obs = g_session.step(grads, skip_gradients_aggregation=skip)
            c_obs = c_session.step(grads, skip_gradients_aggregation=skip)
            o_obs = p_obs = l_obs = None
            if measure:
                o_obs = o_session.step(grads, skip_gradients_aggregation=skip)
                p_obs = p_session.step(grads, skip_gradients_aggregation=skip)
            if l_session is not None:
                l_obs = l_session.step(grads, skip_gradients_aggregation=skip)
            found = compare(scenario, i, g_obs, c_obs, before, o_obs, policy, p_obs, carry,
                            record, l_obs)
            if found:
                return found
            before = g_obs
            fresh = scenario.round_trip_at == i
            if fresh:
                for session in sessions:
                    session.round_trip()
        if scenario.finalize:
            step = len(scenario.steps) + 1
            o_fin = o_session.finalize() if measure else None
            p_fin = p_session.finalize() if measure else None
            l_fin = l_session.finalize() if l_session is not None else None
            found = compare(scenario, step, g_session.finalize(), c_session.finalize(), before,
                            o_fin, policy, p_fin, carry, record, l_fin)  # fmt: skip
            if found:
                found.quantity = f"finalize_variable_values: {found.quantity}"
                return found
        return None
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
