"""Metamorphic properties: relations between two runs of the *same* adapter.

They need no golden: any implementation of the Keras semantics satisfies them, so they
also check an adapter where the golden cannot follow it (and they catch slips the
differential comparison would attribute to the wrong step). Each property is a function
``(adapter, scenario) -> str | None``: it derives one or more scenarios from
``scenario``, runs them through ``adapter`` and returns None when the relation holds,
else a message naming the property, step, quantity, element, both values and the
bound. A property that does not apply to the scenario, or needs a feature the adapter
lacks, raises :class:`NotApplicable`.

Comparisons use the bounds of :mod:`optcheck.conformance.tolerance` (the same
dtype-grounded bounds as the differential suite; ``iterations`` always exactly, the
learning rate within ``learning_rate_bound``, NaN only where NaN is expected, infinities
exactly) and report an :class:`optcheck.conformance.engine.Divergence`:

* ``EXACT`` — ``Policy(ulps=0)``: bit equality. Used where IEEE arithmetic makes the
  relation exact whatever the evaluation order: ``v − 0·x = v`` for a finite ``x``.
* ``ROUNDING`` — the one-step bound of the re-synchronised mode,
  ``b_j = (2·OPS·u + γ_n)·(|e_{j−1}| + |e_j|) + smallest normal`` per element
  (:func:`~optcheck.conformance.tolerance.bound`, ``mode="resync"``, no oracle term),
  **accumulated** along the expected trajectory: at step k an element may differ by
  ``Σ_{j≤k} b_j``. Two runs whose inputs differ by a few roundings, or whose operations
  an implementation orders differently, differ by at most the sum of their per-step
  local errors as long as the dynamics do not amplify them. The accumulated sum — not
  the tolerance module's free-trajectory ``k·b_k`` — is what stays valid when a value
  shrinks (a variable passing near 0 keeps the absolute error of the large steps
  before it). ``e_{j−1}`` is the expected value before the step (the initial value for
  variables), with NaN/inf replaced by 0 as a scale; NaN and inf themselves follow the
  rules of :func:`~optcheck.conformance.tolerance.violations`. Used everywhere
  else, including relations that are bit-exact for the Keras formulas (huge power-of-two
  ``clipnorm``, round trip, disjoint variables), so that a conformant implementation
  that rounds differently (XLA's ``x·(1/c)``, an EMA written ``a − (1−m)(a − v)``, a
  nondeterministic GPU reduction) is never reported.

The properties (``PROPERTIES``):

``huge_clipnorm``
    ``clipnorm = c`` with ``c`` a power of two ≥ 4·(largest gradient norm), ≥ 1 and
    with ``c·max|g|`` well inside the dtype, equals no clipping: ``(t·c)/max(n, c)`` is
    ``(t·c)/c``, exact because ``c`` is a power of two and ``t·c`` neither overflows
    nor underflows.
``global_clipnorm_one_variable``
    On one variable, ``global_clipnorm = c`` equals ``clipnorm = c``; ``c`` is a power
    of two near the median gradient norm, so clipping is active at some steps. The two
    formulas round differently (``(t·c)/n`` versus ``t·(c·(1/n))``), so this is a
    perturbation argument and needs an update that does not amplify a one-ulp change
    of the gradient. Not applicable: Lion (``sign()`` of a near-zero interpolation
    turns it into a full ``lr`` step), Ftrl (``n'^(−p) − n^(−p)`` cancels) and
    centred RMSprop (``ms − mg²`` cancels); float16 (clipped squares fall below its
    smallest normal, 6·10⁻⁵, where a subnormal keeps a few bits); clipped parts that
    are summed afterwards (Keras 3 replicas, duplicated sparse rows: the sum cancels);
    a trajectory that is not finite.
``ema_momentum_zero``
    ``use_ema`` with ``ema_momentum = 0`` and ``ema_overwrite_frequency = 1`` overwrites
    every variable with an average equal to it: the trajectory equals the one without
    EMA (the ``average`` slot is not compared: the run without EMA has none). Needs a
    finite trajectory (an infinite variable makes the average 0·inf = NaN).
``zero_learning_rate``
    ``learning_rate = 0`` without EMA and without weight decay (and, for Adafactor,
    without clipping) leaves every variable at its initial value, bit for bit
    (``EXACT``). Not for optimizers whose update divides
    by the learning rate (registry ``lr_zero_is_identity``: Ftrl) or whose update is
    0·NaN in the dtype (registry ``lr_zero_requires``: Nadam once β2 rounds to 1;
    here also: ε rounding to 0 in the dtype (0/0 on a zero gradient; Adamax's
    ``(1 − β1ᵗ)·(u + ε)``), and Adafactor whose factored second moment can underflow or
    whose RMS(u) can overflow for the scenario's gradients — see ``_adafactor_void`` —
    or whose first ``1 − β2_t`` rounds to 0 after an ``iterations`` preset).
``round_trip``
    A ``from_config(get_config())`` round trip after step k resets the optimizer state
    (fresh slots, ``iterations`` 0, EMA and accumulators restarted), so the identity is
    *not* "same trajectory as without the round trip". The invariant: the round-tripped
    run equals the same adapter's run of steps 1..k followed by a **new session**
    started from the variables after step k with the same spec, ``iterations`` 0 and
    the remaining steps — i.e. a round trip is exactly "a new optimizer built from the
    same config at that step". It catches a config that loses or alters a
    hyper-parameter, and state (slots, iterations, EMA, accumulators) that survives the
    round trip. The round trip is taken at the scenario's ``round_trip_at``, else
    after step ⌊n/2⌋.
``disjoint_variables``
    Two sessions on a partition of the variables (each side keeps a non-None gradient
    at every step, the names and weight-decay exclusions follow the variables) equal one
    session on all of them. Only where the optimizer is per-variable (registry
    ``per_variable``) and no ``global_clipnorm`` couples the variables.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from optcheck.adapters.base import Adapter, Observation
from optcheck.reference import dtypes, elementary
from optcheck.reference.sparse import IndexedSlices, PerReplica, to_dense

from . import engine, timing
from . import tolerance as tol
from .engine import Divergence
from .features import scenario_needs
from .registry import OPTIMIZERS
from .scenario import Scenario

EXACT = tol.Policy(ulps=0)
#: The re-synchronised one-step bound, accumulated over the steps (module docstring).
ROUNDING = tol.Policy(mode="resync")

_CLIP_KEYS = ("clipnorm", "clipvalue", "global_clipnorm")
_EMA_KEYS = ("use_ema", "ema_momentum", "ema_overwrite_frequency")


class NotApplicable(Exception):
    """The property does not apply to this scenario or adapter (the reason says why)."""


# -------------------------------------------------------------------------------------
# running and comparing
# -------------------------------------------------------------------------------------
def _copy(obs: Observation) -> Observation:
    return Observation(
        variables=[np.array(v, copy=True) for v in obs.variables],
        iterations=int(obs.iterations),
        learning_rate=obs.learning_rate,
        slots=None
        if obs.slots is None
        else [{k: np.array(v, copy=True) for k, v in s.items()} for s in obs.slots],
    )


def run(adapter: Adapter, scenario: Scenario) -> list[Observation]:
    """The observations of ``scenario`` through ``adapter``: one per step, then one
    after ``finalize`` when the scenario finalizes (round trips where it says).

    As in :func:`engine.check`, the adapter gets its own copy of the scenario (the two
    sides of a relation share arrays), and a change to it or an observation that does
    not fit the case raises :class:`engine.AdapterError`."""
    name, names, shapes = engine.adapter_name(adapter), scenario.names, engine.template(scenario)
    mine = copy.deepcopy(scenario)

    def unchanged(where):
        change = engine.scenario_change(mine, scenario)
        if change:
            raise engine.AdapterError(f"adapter {name!r} modified {change} of the scenario "
                                      f"it was given ({where})")  # fmt: skip

    def guard(obs, where):
        engine.fitting(adapter, obs, shapes, names, where)
        unchanged(where)
        return _copy(obs)

    session = timing.open_session(adapter, mine, "adapter")
    try:
        unchanged("open")
        out = []
        for i, grads in enumerate(mine.steps, start=1):
            out.append(guard(session.step(list(grads), scenario.skip_gradients_aggregation),
                             f"step {i}"))  # fmt: skip
            if scenario.round_trip_at == i:
                session.round_trip()
        if scenario.finalize:
            out.append(guard(session.finalize(), "finalize_variable_values"))
        return out
    finally:
        session.close()


def _require(adapter: Adapter, scenario: Scenario) -> Scenario:
    """``scenario`` with its needs recomputed; NotApplicable if ``adapter`` lacks any."""
    scenario = replace(scenario, needs=scenario_needs(scenario))
    lacks = adapter.capabilities().missing(
        scenario.optimizer, scenario.needs, scenario.dtype, scenario.profile
    )
    if lacks:
        raise NotApplicable(f"the adapter lacks {', '.join(lacks)}")
    return scenario


def _compare(
    name: str,
    scenario: Scenario,
    expected: list[Observation],
    actual: list[Observation],
    policy: tol.Policy,
    expected_label: str,
    actual_label: str,
) -> str | None:
    """First step at which ``actual`` leaves the bound around ``expected``, as a message.

    ``iterations`` must be equal and the learning rates within
    :func:`~optcheck.conformance.tolerance.learning_rate_bound`; variables and the slots
    both observations expose are compared element-wise under ``policy`` (EXACT: 0 ulps;
    ROUNDING: the accumulated bound of the module docstring).
    """
    if len(expected) != len(actual):
        return (f"{name}: {actual_label} gave {len(actual)} observations, "
                f"{expected_label} {len(expected)}")  # fmt: skip
    reduced = tol.reduction_size(scenario)
    accumulated: dict[str, np.ndarray] = {}
    previous: dict[str, np.ndarray] = {}
    for step, (e, a) in enumerate(zip(expected, actual, strict=True), start=1):
        found = None
        if e.iterations != a.iterations:
            found = Divergence(step, "iterations", [], float(e.iterations), float(a.iterations),
                               float(abs(a.iterations - e.iterations)), 0.0)  # fmt: skip
        elif e.learning_rate is not None and a.learning_rate is not None:
            limit = tol.learning_rate_bound(e.learning_rate)
            if not abs(a.learning_rate - e.learning_rate) <= limit:
                error = float(abs(a.learning_rate - e.learning_rate))
                found = Divergence(step, "learning_rate", [], float(e.learning_rate),
                                   float(a.learning_rate), error, limit)  # fmt: skip
        quantities = [
            (f"variable {scenario.names[i]}", ev, av)
            for i, (ev, av) in enumerate(zip(e.variables, a.variables, strict=True))
        ]
        if e.slots is not None and a.slots is not None:
            for i, (es, as_) in enumerate(zip(e.slots, a.slots, strict=True)):
                quantities += [(f"slot {k} of {scenario.names[i]}", es[k], as_[k])
                               for k in sorted(set(es) & set(as_))]  # fmt: skip
        for quantity, ev, av in quantities:
            if found is not None:
                break
            ev = np.asarray(ev)
            if quantity.startswith("variable"):
                index = scenario.names.index(quantity.split(" ", 1)[1])
                start = np.asarray(scenario.initial_values[index])
            else:
                start = None
            before = previous.get(quantity, start)
            found = _first_violation(quantity, step, ev, np.asarray(av), before, policy,
                                     scenario.dtype, reduced, accumulated)  # fmt: skip
            previous[quantity] = ev
        if found is not None:
            bound = "0 ulps" if policy.ulps is not None else "accumulated rounding"
            return (f"{name}: {actual_label} differs from {expected_label} at {found} "
                    f"[bound: {bound}, dtype {scenario.dtype}]")  # fmt: skip
    return None


def _first_violation(quantity, step, expected, actual, before, policy, dtype, reduced,
                     accumulated) -> Divergence | None:  # fmt: skip
    if actual.shape != expected.shape:
        return Divergence(step, f"{quantity} shape {actual.shape} vs {expected.shape}", [],
                          0.0, 0.0, float("inf"), 0.0)  # fmt: skip
    with np.errstate(all="ignore"):
        if policy.ulps is not None:
            limit = tol.bound(policy, dtype, expected, None, 0.0, step, reduced)
        else:
            if before is not None and np.shape(before) == expected.shape:
                before = np.asarray(before, dtype=np.float64)
                before = np.where(np.isfinite(before), before, 0.0)
            else:
                before = None
            local = tol.bound(policy, dtype, expected, before, 0.0, 1, reduced)
            # A NaN/inf expected value is judged by the NaN/inf rules, not by the bound; it
            # must not poison the bound of later steps.
            local = np.where(np.isfinite(local), local, 0.0)
            limit = accumulated.get(quantity, 0.0) + local
            accumulated[quantity] = limit
        bad = tol.violations(actual, expected, limit)
    if not bad.any():
        return None
    flat = int(np.flatnonzero(bad.ravel())[0])
    e = np.asarray(expected, dtype=np.float64).ravel()[flat]
    a = np.asarray(actual, dtype=np.float64).ravel()[flat]
    t = np.broadcast_to(limit, expected.shape).ravel()[flat]
    index = [int(i) for i in np.unravel_index(flat, expected.shape)]
    with np.errstate(invalid="ignore"):
        return Divergence(step, quantity, index, float(e), float(a), float(abs(a - e)), float(t))


def _without(config: dict, keys) -> dict:
    return {k: v for k, v in config.items() if k not in keys}


def _dense_values(grad) -> np.ndarray:
    values = grad.values if isinstance(grad, IndexedSlices) else grad
    return np.abs(np.asarray(values, dtype=np.float64))


def _norms(scenario: Scenario, steps=None) -> tuple[list[float], float]:
    """Upper bounds (float64, after the loss scale) of each gradient's L2 norm and of
    the largest |element| clipping can see: a PerReplica counts the sum of its parts'
    norms and maxima (clipped before or after the replica sum, per profile)."""
    scale = scenario.config.get("loss_scale_factor") or 1.0
    norms, largest = [], 0.0
    for step in scenario.steps if steps is None else steps:
        for grad in step:
            if grad is None:
                continue
            parts = grad.values if isinstance(grad, PerReplica) else (grad,)
            values = [_dense_values(part) / scale for part in parts]
            norms.append(sum(float(np.sqrt(np.sum(v * v))) for v in values))
            largest = max(largest, sum(float(np.max(v, initial=0.0)) for v in values))
    return norms, largest


def _safe_clip(scenario: Scenario, c: float, largest: float) -> bool:
    fmax = float(dtypes.finfo(dtypes.as_dtype(scenario.dtype)).max)
    return math.isfinite(c) and c <= fmax / 4 and c * largest <= fmax / 4


# -------------------------------------------------------------------------------------
# properties
# -------------------------------------------------------------------------------------
def huge_clipnorm(adapter: Adapter, scenario: Scenario) -> str | None:
    """A huge power-of-two ``clipnorm`` equals no clipping (bound: ROUNDING)."""
    norms, largest = _norms(scenario)
    top = max(norms, default=0.0)
    if not (math.isfinite(top) and math.isfinite(largest)):
        raise NotApplicable("non-finite gradients")
    c = max(1.0, 2.0 ** math.ceil(math.log2(4 * top))) if top > 0 else 1.0
    if not _safe_clip(scenario, c, largest):
        raise NotApplicable(f"clipnorm {c} would overflow t·c in {scenario.dtype}")
    base = replace(scenario, config=_without(scenario.config, _CLIP_KEYS))
    clipped = replace(base, config={**base.config, "clipnorm": c})
    base, clipped = _require(adapter, base), _require(adapter, clipped)
    return _compare("huge_clipnorm", base, run(adapter, base), run(adapter, clipped), ROUNDING,
                    "the run without clipping", f"the run with clipnorm={c!r}")  # fmt: skip


def _always_updated(scenario: Scenario) -> int | None:
    """The first variable with a gradient at every step."""
    for i in range(len(scenario.initial_values)):
        if all(step[i] is not None for step in scenario.steps):
            return i
    return None


def _subset(scenario: Scenario, indices: list[int]) -> Scenario:
    position = {old: new for new, old in enumerate(indices)}
    return replace(
        scenario,
        initial_values=[scenario.initial_values[i] for i in indices],
        steps=[[step[i] for i in indices] for step in scenario.steps],
        names=[scenario.names[i] for i in indices],
        exclude_indices=[position[i] for i in scenario.exclude_indices if i in position],
    )


#: Optimizers whose update amplifies a one-ulp change of the gradient beyond a rounding
#: bound: Lion's sign(), Ftrl's difference of powers n'^(−p) − n^(−p).
_DISCONTINUOUS = ("Lion", "Ftrl")


def _global_clip_applies(scenario: Scenario) -> bool:
    i = _always_updated(scenario)
    return (
        scenario.optimizer not in _DISCONTINUOUS
        and not (scenario.optimizer == "RMSprop" and scenario.config.get("centered"))
        and scenario.dtype != "float16"
        and i is not None
        and not _sums_after_clipping(scenario, [step[i] for step in scenario.steps])
    )


def _sums_after_clipping(scenario: Scenario, grads) -> bool:
    """Whether clipped parts of a gradient are added afterwards: replicas where the
    profile clips before aggregating (Keras 3), IndexedSlices with repeated indices
    (deduplicated after clipping). A sum that cancels turns the one-ulp difference of
    the two clipping formulas into a large relative one, beyond any rounding bound."""
    from optcheck.reference.profiles import get_profile

    pipeline = get_profile(scenario.profile).pipeline
    clip_first = pipeline.index("clip") < pipeline.index("aggregate")
    for grad in grads:
        parts = grad.values if isinstance(grad, PerReplica) else (grad,)
        if isinstance(grad, PerReplica) and clip_first and len(parts) > 1:
            return True
        for part in parts:
            if isinstance(part, IndexedSlices) and len(set(part.indices.tolist())) < len(
                part.indices
            ):
                return True
    return False


def global_clipnorm_one_variable(adapter: Adapter, scenario: Scenario) -> str | None:
    """On one variable, ``global_clipnorm = c`` equals ``clipnorm = c`` (bound: ROUNDING)."""
    if not _global_clip_applies(scenario):
        raise NotApplicable("Lion, or no variable with a gradient at every step")
    one = _subset(scenario, [_always_updated(scenario)])
    norms, largest = _norms(one)
    positive = sorted(n for n in norms if n > 0)
    if not all(math.isfinite(n) for n in norms) or not math.isfinite(largest):
        raise NotApplicable("non-finite gradients")
    median = positive[len(positive) // 2] if positive else 1.0
    c = 2.0 ** min(max(round(math.log2(median)), -8), 60)
    if not _safe_clip(one, c, largest):
        raise NotApplicable(f"clipnorm {c} would overflow t·c in {scenario.dtype}")
    base = _without(one.config, _CLIP_KEYS)
    per_tensor = _require(adapter, replace(one, config={**base, "clipnorm": c}))
    global_ = _require(adapter, replace(one, config={**base, "global_clipnorm": c}))
    expected = _finite_or_skip(run(adapter, per_tensor), f"the run with clipnorm={c!r}")
    return _compare("global_clipnorm_one_variable", per_tensor, expected,
                    run(adapter, global_), ROUNDING, f"clipnorm={c!r}",
                    f"global_clipnorm={c!r}")  # fmt: skip


def _finite_or_skip(observations: list[Observation], label: str) -> list[Observation]:
    """``observations``, or NotApplicable when a variable is NaN or infinite: relations
    between two *different* computations (a rounding apart, or 0·x) hold for finite
    values only (0·inf is NaN)."""
    for step, obs in enumerate(observations, start=1):
        for v in obs.variables:
            if not np.all(np.isfinite(np.asarray(v, dtype=np.float64))):
                raise NotApplicable(f"{label} is not finite at step {step}")
    return observations


def ema_momentum_zero(adapter: Adapter, scenario: Scenario) -> str | None:
    """EMA with momentum 0 and overwrite every step equals no EMA (bound: ROUNDING)."""
    base = _without(scenario.config, _EMA_KEYS)
    plain = _require(adapter, replace(scenario, config=base))
    ema = _require(adapter, replace(scenario, config={
        **base, "use_ema": True, "ema_momentum": 0.0, "ema_overwrite_frequency": 1}))  # fmt: skip
    expected = _finite_or_skip(run(adapter, plain), "the run without EMA")
    return _compare("ema_momentum_zero", plain, expected, run(adapter, ema), ROUNDING,
                    "the run without EMA",
                    "the run with use_ema, ema_momentum=0, ema_overwrite_frequency=1")  # fmt: skip


def _zero_lr_scenario(scenario: Scenario) -> Scenario:
    # Adafactor: without clipping, so that _adafactor_void sees the gradients it divides.
    drop = _CLIP_KEYS if scenario.optimizer == "Adafactor" else ()
    config = _without(scenario.config, (*_EMA_KEYS, "weight_decay", *drop))
    config["learning_rate"] = 0.0
    if scenario.optimizer == "AdamW":
        config["weight_decay"] = 0.0
    return replace(scenario, config=config, exclude_names=[], exclude_indices=[])


def _zero_lr_applies(scenario: Scenario) -> bool:
    info = OPTIMIZERS.get(scenario.optimizer)
    if info is None or not info.lr_zero_is_identity:
        return False
    derived = _zero_lr_scenario(scenario)
    if info.lr_zero_requires is not None and not info.lr_zero_requires(
        derived.config, scenario.dtype
    ):
        return False
    dtype = dtypes.as_dtype(scenario.dtype)
    config = derived.config
    if any(p.name == "epsilon" for p in info.params):
        # x / (sqrt(v) + ε) is 0/0 on a zero gradient once ε rounds to 0 (float16 1e-8);
        # Adamax divides by (1 − β1ᵗ)·(u + ε), which underflows sooner.
        eps = dtypes.const(config.get("epsilon", 1e-7), dtype)
        if scenario.optimizer == "Adamax":
            eps = eps * dtypes.const(1 - config.get("beta_1", 0.9), dtype)
        if not eps > 0:
            return False
    if scenario.optimizer == "Adafactor":
        # The first step's 1 − β2_t = 1 − (1 − tᵈ) must not round to 0 (bfloat16 with a
        # preset iterations count): the second moment would stay 0 and give 0/0.
        t = dtypes.cast(scenario.iterations + 1, dtype)
        one = dtypes.const(1, dtype)
        beta_2_t = one - elementary.power(t, dtypes.const(config.get("beta_2_decay", -0.8), dtype))
        if not one - beta_2_t > 0:
            return False
        eps_1 = config.get("epsilon_1", 1e-30)
        scale = config.get("loss_scale_factor") or 1.0
        return not any(_adafactor_void(g, scenario.dtype, eps_1, scale)
                       for s in scenario.steps for g in s)  # fmt: skip
    return True


def _adafactor_void(grad, dtype: str, epsilon_1: float, scale: float = 1.0) -> bool:
    """Whether Adafactor's step direction can be NaN for ``grad`` in ``dtype`` (then
    ``−0·NaN`` moves the variable even with lr = 0), from a float64 estimate of the
    second moment of one step, ``G = g² + ε1``: rank < 2 ``v = G/6`` (``1 − β2_t =
    tᵈ ≥ 6⁻¹``), rank ≥ 2 ``v = r/mean(r)·c``. NaN threatens when ``v`` or
    ``r/mean(r)`` comes within 2¹⁰ of the smallest normal (underflow: 0/0) or
    ``(g²/v)·size`` within 2¹⁰ of the largest value (RMS(u) overflows: inf/inf)."""
    if grad is None:
        return False
    if isinstance(grad, PerReplica):
        g = np.sum([_dense(part) for part in grad.values], axis=0)
    else:
        g = _dense(grad)
    g = g / scale
    finfo = dtypes.finfo(dtypes.as_dtype(dtype))
    square = g * g + epsilon_1
    smallest = float(finfo.smallest_normal) * 2.0**10
    if g.ndim < 2:
        v = square / 6
        relative = v
    else:
        r = np.mean(square, axis=-1)
        c = np.mean(square, axis=-2)
        relative = r / np.mean(r, axis=-1, keepdims=True)
        v = relative[..., :, None] * c[..., None, :]
    with np.errstate(all="ignore"):
        ratio = np.max(g * g / v) * max(g.size, 1) if g.size else 0.0
    return bool(
        not np.all(np.isfinite(v))
        or np.min(v, initial=np.inf) < smallest
        or np.min(relative, initial=np.inf) < smallest
        or not ratio < float(finfo.max) / 2.0**10
    )


def _dense(grad) -> np.ndarray:
    if isinstance(grad, IndexedSlices):
        return to_dense(grad.with_values(np.asarray(grad.values, dtype=np.float64)))
    return np.asarray(grad, dtype=np.float64)


def zero_learning_rate(adapter: Adapter, scenario: Scenario) -> str | None:
    """``learning_rate = 0`` without EMA or weight decay changes nothing (bound: EXACT)."""
    if not _zero_lr_applies(scenario):
        raise NotApplicable(f"learning_rate = 0 is not an identity for {scenario.optimizer} here")
    derived = _require(adapter, _zero_lr_scenario(scenario))
    actual = run(adapter, derived)
    expected = [
        Observation(variables=list(derived.initial_values), iterations=a.iterations) for a in actual
    ]
    return _compare("zero_learning_rate", derived, expected, actual, EXACT,
                    "the initial values", "the run with learning_rate=0")  # fmt: skip


def _round_trip_step(scenario: Scenario) -> int | None:
    n = len(scenario.steps)
    k = scenario.round_trip_at if scenario.round_trip_at is not None else n // 2
    return k if 1 <= k < n else None


def round_trip(adapter: Adapter, scenario: Scenario) -> str | None:
    """A round trip after step k equals a new session from the state after step k with
    the same spec and iterations 0 (bound: ROUNDING)."""
    k = _round_trip_step(scenario)
    if k is None:
        raise NotApplicable("needs a round trip before the last step (two steps or more)")
    tripped = _require(adapter, replace(scenario, round_trip_at=k))
    first = _require(adapter, replace(scenario, steps=scenario.steps[:k], round_trip_at=None,
                                      finalize=False))  # fmt: skip
    head = run(adapter, first)
    fresh = _require(adapter, replace(scenario, steps=scenario.steps[k:], round_trip_at=None,
                                      initial_values=head[-1].variables, iterations=0))  # fmt: skip
    expected = head + run(adapter, fresh)
    return _compare("round_trip", tripped, expected, run(adapter, tripped), ROUNDING,
                    f"steps 1..{k} then a new optimizer from the same spec",
                    f"the run with a config round trip after step {k}")  # fmt: skip


def _partition(scenario: Scenario) -> tuple[list[int], list[int]] | None:
    """Two non-empty groups of variables, each with a gradient at every step."""
    n = len(scenario.initial_values)
    candidates = [list(range(0, n, 2)), list(range(n // 2))] + [[i] for i in range(n)]
    for group in candidates:
        other = [i for i in range(n) if i not in group]
        if (
            group
            and other
            and all(
                any(step[i] is not None for i in part)
                for part in (group, other)
                for step in scenario.steps
            )
        ):
            return group, other
    return None


def _disjoint_applies(scenario: Scenario) -> bool:
    info = OPTIMIZERS.get(scenario.optimizer)
    return (
        info is not None
        and info.per_variable
        and not scenario.config.get("global_clipnorm")
        and _partition(scenario) is not None
    )


def _select(obs: Observation, indices: list[int]) -> Observation:
    return Observation(
        variables=[obs.variables[i] for i in indices],
        iterations=obs.iterations,
        learning_rate=obs.learning_rate,
        slots=None if obs.slots is None else [obs.slots[i] for i in indices],
    )


def disjoint_variables(adapter: Adapter, scenario: Scenario) -> str | None:
    """Two optimizers on disjoint variables equal one on all (bound: ROUNDING)."""
    if not _disjoint_applies(scenario):
        raise NotApplicable("not per-variable, global_clipnorm, or no valid partition")
    whole = _require(adapter, scenario)
    together = run(adapter, whole)
    for group in _partition(scenario):
        part = _require(adapter, _subset(scenario, group))
        expected = [_select(obs, group) for obs in together]
        found = _compare("disjoint_variables", part, expected, run(adapter, part), ROUNDING,
                         "the optimizer on all variables",
                         f"an optimizer on variables {part.names} alone")  # fmt: skip
        if found:
            return found
    return None


# -------------------------------------------------------------------------------------
# registry
# -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Property:
    name: str
    function: Callable[[Adapter, Scenario], str | None]
    #: Whether the property applies to a scenario (before asking the adapter).
    applies: Callable[[Scenario], bool]
    #: "EXACT" or "ROUNDING" (module docstring).
    bound: str
    description: str


PROPERTIES: list[Property] = [
    Property("huge_clipnorm", huge_clipnorm, lambda s: True, "ROUNDING",
             "a huge power-of-two clipnorm equals no clipping"),
    Property("global_clipnorm_one_variable", global_clipnorm_one_variable,
             _global_clip_applies, "ROUNDING",
             "global_clipnorm on one variable equals clipnorm"),
    Property("ema_momentum_zero", ema_momentum_zero, lambda s: True, "ROUNDING",
             "ema_momentum = 0 with overwrite every step equals no EMA"),
    Property("zero_learning_rate", zero_learning_rate, _zero_lr_applies, "EXACT",
             "learning_rate = 0 without EMA or weight decay changes nothing"),
    Property("round_trip", round_trip, lambda s: _round_trip_step(s) is not None, "ROUNDING",
             "a config round trip equals a new optimizer from the same config"),
    Property("disjoint_variables", disjoint_variables, _disjoint_applies, "ROUNDING",
             "two optimizers on disjoint variables equal one on all"),
]  # fmt: skip


def check_properties(adapter: Adapter, scenario: Scenario, names=None) -> list[tuple[str, str]]:
    """Every applicable property (or those in ``names``) on ``scenario``; the failures as
    ``(name, message)``. A property the adapter cannot run is skipped; an exception
    raised by the adapter is a failure whose message starts with ``error:``."""
    failures = []
    for prop in PROPERTIES:
        if names is not None and prop.name not in names:
            continue
        if not prop.applies(scenario):
            continue
        try:
            message = prop.function(adapter, scenario)
        except NotApplicable:
            continue
        except Exception as exc:  # the adapter failed: report, do not crash the suite
            message = f"error: {type(exc).__name__}: {exc}"
        if message is not None:
            failures.append((prop.name, message))
    return failures
