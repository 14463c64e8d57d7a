"""Hypothesis strategies that generate conformance scenarios.

``scenarios(optimizer, feature, dtype, profile)`` draws a :class:`Scenario`: the
optimizer's hyper-parameters from :data:`optcheck.conformance.registry.OPTIMIZERS`
(each one drawn or left at its default, at random), 1–8 variables of rank 0–3 (dims
1–4), 1–6 steps of gradients, and the options of ``feature`` (see
:mod:`optcheck.conformance.features`), plus — in about a third of the scenarios each —
the features ``feature`` combines with (``FeatureInfo.combines``; incompatible sets
never drawn). ``Scenario.feature`` is ``feature``; ``Scenario.needs`` lists everything
the scenario uses (:func:`~optcheck.conformance.features.scenario_needs`), a superset of
the catalogue's needs of ``feature``. Hypothesis draws the *structure* (sizes, kinds
of values, options, a seed); a NumPy generator seeded from the drawn integer fills the
arrays, which keeps generation fast and still shrinks well.

Values
------
Every array is generated in float64 and cast once to the scenario dtype; the cast
array *is* the scenario's value, so values are exact in the dtype. Each array (one
variable's initial value, one gradient) is of one kind: ``normal`` (magnitudes
10⁻²…10¹), ``zeros``, ``tiny``, ``huge`` or ``mixed`` (element-wise mix of the four).

* ``tiny`` is a normal number a little above the dtype's smallest normal: for
  float16 ``smallest_normal·[4, 256]``; for bfloat16, float32 and float64
  ``smallest_normal·2^[40, 46]``. The margin keeps products with hyper-parameters
  (≥ 10⁻⁸) normal, so an implementation that flushes denormals to zero (XLA does)
  cannot turn a tiny gradient into a different sign (Lion) or a 0/0.
* ``huge`` is below a per-scenario limit ``H`` such that no intermediate quantity can
  overflow: the sums of squares (norms for clipping, Adafactor's means, Adagrad/Ftrl
  accumulators over the steps) satisfy ``16·terms·H² ≤ max`` with
  ``terms = (reduced elements + steps + 1)·m²`` (``m``: replicas summed times
  duplicated sparse rows), and for Ftrl, whose ``σ·v = (n'^{-p} − n^{-p})/lr · v`` is cubic in
  the magnitude for p = −1, also ``16·terms·10⁴·H³ ≤ max``. ``H`` is at most 10² for
  float16, 10¹⁵ for bfloat16/float32 and 10¹⁰⁰ for float64. An overflow would make
  the result depend on how an implementation orders or widens its reductions, which
  is not a semantic difference.
* clipping thresholds keep ``t·c`` finite (``clip_by_norm`` computes ``(t·c)/max(n, c)``);
  a loss scale keeps the scaled gradients below ``max/4``.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st

from optcheck.reference import dtypes
from optcheck.reference.sparse import IndexedSlices, PerReplica

from .features import CATALOGUE, compatible, features_for, scenario_needs
from .registry import OPTIMIZERS, Param
from .scenario import Scenario

ALL_DTYPES: tuple[str, ...] = ("float16", "bfloat16", "float32", "float64")
MAX_VARIABLES = 8
MAX_STEPS = 6
MAX_RANK = 3
MAX_DIM = 4
#: Largest number of times a sparse row index repeats in one IndexedSlices.
MAX_DUPLICATES = 3
SAFETY = 16.0
HUGE_CAP = {"float16": 1e2, "bfloat16": 1e15, "float32": 1e15, "float64": 1e100}
#: tiny = smallest_normal · 2^[low, high]
TINY_EXPONENTS = {"float16": (2, 8), "bfloat16": (40, 46), "float32": (40, 46),
                  "float64": (40, 46)}  # fmt: skip
#: Extra growth factor of the cubic Ftrl term (1 / smallest learning rate it sees).
FTRL_AMPLIFICATION = 1e4
SCHEDULES: tuple[str, ...] = (
    "ExponentialDecay",
    "PiecewiseConstantDecay",
    "PolynomialDecay",
    "InverseTimeDecay",
    "CosineDecay",
    "CosineDecayRestarts",
)
KINDS = ("normal", "zeros", "tiny", "huge", "mixed")
#: Kinds drawn for arrays (repeats weight the choice).
_DRAWN_KINDS = ("normal", "normal", "mixed", "zeros", "tiny", "huge")
_LOSS_SCALES = (1.0, 0.5, 2.0, 3.0, 1000.0, 1024.0, 32768.0, 65536.0)


# -------------------------------------------------------------------------------------
# magnitudes
# -------------------------------------------------------------------------------------
def _fmax(dtype: str) -> float:
    return float(dtypes.finfo(dtypes.as_dtype(dtype)).max)


def tiny_range(dtype: str) -> tuple[float, float]:
    """(low, high) of the ``tiny`` kind for ``dtype``."""
    normal = float(dtypes.finfo(dtypes.as_dtype(dtype)).smallest_normal)
    low, high = TINY_EXPONENTS[dtype]
    return normal * 2.0**low, normal * 2.0**high


def huge_limit(dtype: str, terms: float, optimizer: str = "") -> float:
    """The largest magnitude of a scenario with ``terms`` squared terms (module doc)."""
    fmax = _fmax(dtype)
    limit = min(HUGE_CAP[dtype], math.sqrt(fmax / (SAFETY * terms)))
    if optimizer == "Ftrl":
        limit = min(limit, (fmax / (SAFETY * terms * FTRL_AMPLIFICATION)) ** (1 / 3))
    return limit


def _magnitudes(kind: str, n: int, rng, dtype: str, huge: float) -> np.ndarray:
    if kind == "zeros" or n == 0:
        return np.zeros(n)
    if kind == "mixed":
        picks = rng.integers(0, 4, n)
        parts = [_magnitudes(k, n, rng, dtype, huge) for k in ("zeros", "normal", "tiny", "huge")]
        return np.choose(picks, parts)
    if kind == "normal":
        high = min(1.0, math.log10(huge))
        low = min(-2.0, high - 3.0)
    elif kind == "tiny":
        lo, hi = tiny_range(dtype)
        low, high = math.log10(lo), math.log10(hi)
    elif kind == "huge":
        high = math.log10(huge)
        low = high - 1.0
    else:
        raise ValueError(f"Unknown kind {kind!r}; expected one of {KINDS}.")
    return 10.0 ** rng.uniform(low, high, n)


def make_array(rng, shape, kind: str, dtype: str, huge: float) -> np.ndarray:
    """An array of ``kind`` in ``dtype`` (generated in float64, cast once)."""
    shape = tuple(shape)
    n = int(np.prod(shape, dtype=np.int64))
    values = _magnitudes(kind, n, rng, dtype, huge) * rng.choice((-1.0, 1.0), n)
    out = values.reshape(shape).astype(dtypes.as_dtype(dtype))
    return np.asarray(out)


# -------------------------------------------------------------------------------------
# hyper-parameters and options
# -------------------------------------------------------------------------------------
def _log_float(low: float, high: float):
    return st.floats(math.log10(low), math.log10(high)).map(lambda e: float(10.0**e))


def param_value(p: Param):
    """A strategy for one registry hyper-parameter (Python bool / float)."""
    if p.kind == "bool":
        return st.booleans()
    if p.log:
        return _log_float(p.low, p.high)
    return st.floats(p.low, p.high).map(lambda x: float(x) + 0.0)


@st.composite
def hyperparameters(draw, optimizer: str) -> dict:
    """A config with each registry hyper-parameter drawn or left at its default."""
    config = {}
    for p in OPTIMIZERS[optimizer].params:
        if draw(st.booleans()):
            config[p.name] = draw(param_value(p))
    return config


def _lr_param(optimizer: str) -> Param:
    return next(p for p in OPTIMIZERS[optimizer].params if p.name == "learning_rate")


@st.composite
def schedule_configs(draw, optimizer: str, name: str | None = None) -> dict:
    """A serialized schedule ``{"class_name": ..., "config": {...}}`` (Keras 2.9 form).

    The learning rate never reaches 0 for Ftrl (whose update divides by it): decays keep
    at least a tenth of the initial rate there.
    """
    name = name or draw(st.sampled_from(SCHEDULES))
    p = _lr_param(optimizer)
    lr = _log_float(p.low, p.high)
    lr0 = draw(lr)
    floor = 0.1 if optimizer == "Ftrl" else 0.0
    steps = st.integers(1, 10)
    optional = {}

    def maybe(key, strategy):
        if draw(st.booleans()):
            optional[key] = draw(strategy)

    if name == "ExponentialDecay":
        config = {"initial_learning_rate": lr0, "decay_steps": draw(steps),
                  "decay_rate": draw(st.floats(max(0.1, 5 * floor), 0.99))}  # fmt: skip
        maybe("staircase", st.booleans())
    elif name == "PiecewiseConstantDecay":
        boundaries = sorted(draw(st.sets(st.integers(0, MAX_STEPS), min_size=1, max_size=3)))
        values = [draw(lr) for _ in range(len(boundaries) + 1)]
        config = {"boundaries": boundaries, "values": values}
    elif name == "PolynomialDecay":
        config = {"initial_learning_rate": lr0, "decay_steps": draw(steps)}
        maybe("end_learning_rate", st.floats(floor, 1.0).map(lambda f: lr0 * f))
        maybe("power", st.floats(0.5, 2.0))
        maybe("cycle", st.booleans())
        if optimizer == "Ftrl":
            optional.setdefault("end_learning_rate", lr0 * floor)
    elif name == "InverseTimeDecay":
        config = {"initial_learning_rate": lr0, "decay_steps": draw(steps),
                  "decay_rate": draw(st.floats(0.1, 2.0))}  # fmt: skip
        maybe("staircase", st.booleans())
    elif name == "CosineDecay":
        config = {"initial_learning_rate": lr0, "decay_steps": draw(steps)}
        maybe("alpha", st.floats(floor, 1.0))
        if optimizer == "Ftrl":
            optional.setdefault("alpha", floor)
        if draw(st.booleans()):  # warmup (tf-keras >= 2.13, Keras 3)
            if optimizer != "Ftrl" and draw(st.booleans()):
                config["initial_learning_rate"] = 0.0
            optional["warmup_target"] = draw(lr)
            optional["warmup_steps"] = draw(st.integers(1, 4))
    elif name == "CosineDecayRestarts":
        config = {"initial_learning_rate": lr0, "first_decay_steps": draw(st.integers(1, 5))}
        maybe("t_mul", st.one_of(st.just(1.0), st.floats(1.0, 3.0)))
        maybe("m_mul", st.floats(0.5, 1.0))
        maybe("alpha", st.floats(floor, 0.5))
        if optimizer == "Ftrl":
            optional.setdefault("alpha", floor)
    else:
        raise ValueError(f"Unknown schedule {name!r}; expected one of {SCHEDULES}.")
    config.update(optional)
    config = {k: float(v) + 0.0 if isinstance(v, float) else v for k, v in config.items()}
    return {"class_name": name, "config": config}


@st.composite
def ema_options(draw) -> dict:
    """use_ema with ema_momentum in [0, 1] (endpoints included) or default, and an
    overwrite frequency None (explicit or default) or 1..4."""
    config = {"use_ema": True}
    if draw(st.booleans()):
        config["ema_momentum"] = draw(
            st.one_of(st.sampled_from([0.0, 1.0]), st.floats(0.0, 1.0).map(lambda x: x + 0.0))
        )
    frequency = draw(st.sampled_from(["omit", None, 1, 2, 3, 4]))
    if frequency != "omit":
        config["ema_overwrite_frequency"] = frequency
    return config


# -------------------------------------------------------------------------------------
# scenarios
# -------------------------------------------------------------------------------------
def _check_case(optimizer: str, feature: str, dtype: str, profile: str) -> None:
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"Unknown optimizer {optimizer!r}. Known: {sorted(OPTIMIZERS)}.")
    if dtype not in ALL_DTYPES:
        raise ValueError(f"Unknown dtype {dtype!r}. Known: {list(ALL_DTYPES)}.")
    if feature not in CATALOGUE:
        raise ValueError(f"Unknown feature {feature!r}. Known: {list(CATALOGUE)}.")
    if feature not in features_for(optimizer, profile):
        info = CATALOGUE[feature]
        raise ValueError(
            f"Feature {feature!r} is not generated for {optimizer} in profile {profile!r}"
            f" (profiles {list(info.profiles)}; {info.why or 'see conformance.features'})."
        )


def scenarios(optimizer: str, feature: str, dtype: str, profile: str, *,
              schedule: str | None = None) -> st.SearchStrategy[Scenario]:  # fmt: skip
    """Scenarios of ``feature`` for ``optimizer`` in ``dtype`` and ``profile``.

    ``schedule`` (feature "schedule" only) fixes the schedule class instead of drawing it.

    Raises:
        ValueError: an unknown name, or a feature that is not generated for this
            optimizer and profile (see :func:`optcheck.conformance.features.features_for`).
    """
    _check_case(optimizer, feature, dtype, profile)
    if schedule is not None and (feature != "schedule" or schedule not in SCHEDULES):
        raise ValueError(f"schedule={schedule!r} needs feature 'schedule' and one of {SCHEDULES}.")
    return _scenarios(optimizer, feature, dtype, profile, schedule)


@st.composite
def _shape(draw, min_rank: int = 0) -> tuple[int, ...]:
    rank = draw(st.integers(min_rank, MAX_RANK))
    return tuple(draw(st.integers(1, MAX_DIM)) for _ in range(rank))


@st.composite
def _active_features(draw, optimizer: str, feature: str, profile: str) -> set[str]:
    """``feature`` and the extras drawn from its ``combines`` (each with probability ⅓,
    in catalogue order, skipping any that does not apply or is incompatible)."""
    active = {feature}
    for extra in CATALOGUE[feature].combines:
        if not CATALOGUE[extra].applies(optimizer, profile):
            continue
        if compatible(active | {extra}, profile) and draw(st.integers(0, 2)) == 0:
            active.add(extra)
    if "finalize" in active:
        active.add("ema")
    return active


@st.composite
def _scenarios(draw, optimizer, feature, dtype, profile, schedule):
    config = draw(hyperparameters(optimizer))
    active = draw(_active_features(optimizer, feature, profile))
    n_vars = draw(st.integers(2 if "none_gradients" in active else 1, MAX_VARIABLES))
    sparse = "sparse" in active
    shapes = [draw(_shape(1 if sparse and i == 0 else 0)) for i in range(n_vars)]
    ga_steps = draw(st.integers(2, 3)) if "gradient_accumulation" in active else None
    min_steps = max(ga_steps or 1, 2 if "round_trip" in active else 1)
    n_steps = draw(st.integers(min_steps, MAX_STEPS))
    replicas = draw(st.integers(2, 3)) if "replicas" in active else 1
    multiplicity = replicas * (MAX_DUPLICATES if sparse else 1)
    sizes = [int(np.prod(s, dtype=np.int64)) for s in shapes]
    reduced = sum(sizes) if "global_clipnorm" in active else max(sizes)
    huge = huge_limit(dtype, (reduced + n_steps + 1) * multiplicity**2, optimizer)
    fmax = _fmax(dtype)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    names = [f"v{i}" for i in range(n_vars)]

    def kind():
        return draw(st.sampled_from(_DRAWN_KINDS))

    initial_values = [make_array(rng, s, kind(), dtype, huge) for s in shapes]

    # gradients: None where the mask says (never a whole step; variable 0 keeps its first
    # gradient when it must carry the first sparse one), IndexedSlices for some variables
    # of rank >= 1, PerReplica parts.
    none_mask = [[False] * n_vars for _ in range(n_steps)]
    if "none_gradients" in active:
        for s, step in enumerate(none_mask):
            for i in range(n_vars):
                step[i] = not (sparse and s == 0 and i == 0) and draw(st.booleans())
            if all(step):
                step[draw(st.integers(0, n_vars - 1))] = False
        if not any(any(step) for step in none_mask):
            s = draw(st.integers(1 if sparse and n_steps > 1 else 0, n_steps - 1))
            none_mask[s][draw(st.integers(1 if s == 0 and sparse else 0, n_vars - 1))] = True

    def gradient(shape, first_sparse):
        if sparse and shape and (first_sparse or draw(st.booleans())):
            return _sparse(draw, rng, shape, kind(), dtype, huge)
        return make_array(rng, shape, kind(), dtype, huge)

    steps = []
    for s in range(n_steps):
        grads = []
        for i, shape in enumerate(shapes):
            first = s == 0 and i == 0
            if none_mask[s][i]:
                grads.append(None)
            elif replicas > 1:
                as_sparse = sparse and shape and (first or draw(st.booleans()))
                parts = tuple(
                    _sparse(draw, rng, shape, kind(), dtype, huge)
                    if as_sparse
                    else make_array(rng, shape, kind(), dtype, huge)
                    for _ in range(replicas)
                )
                grads.append(PerReplica(parts))
            else:
                grads.append(gradient(shape, first))
        steps.append(grads)

    extra: dict = {}
    for name in ("clipnorm", "global_clipnorm"):
        if name in active:
            config[name] = draw(_log_float(1e-3, min(1e3, fmax / (4 * huge))))
    if "clipvalue" in active:
        config["clipvalue"] = draw(_log_float(1e-3, 1e3))
    if "ema" in active:
        config.update(draw(ema_options()))
        extra["finalize"] = "finalize" in active
    if "schedule" in active:
        config["learning_rate"] = draw(schedule_configs(optimizer, schedule))
    if "weight_decay" in active:
        config["weight_decay"] = draw(st.floats(0.0, 0.1).map(lambda x: x + 0.0))
        extra["exclude_names"] = [n for n in names if draw(st.integers(0, 3)) == 0]
        extra["exclude_indices"] = [i for i in range(n_vars) if draw(st.integers(0, 3)) == 0]
        if optimizer == "AdamW" and not (extra["exclude_names"] or extra["exclude_indices"]):
            # AdamW decays in every scenario; for it, this feature is about the exclusions.
            extra["exclude_indices"] = [draw(st.integers(0, n_vars - 1))]
    if "skip_aggregation" in active:
        extra["skip_gradients_aggregation"] = True
    if "round_trip" in active:
        extra["round_trip_at"] = draw(st.integers(1, n_steps - 1))
    if "iterations_preset" in active:
        extra["iterations"] = draw(st.one_of(st.integers(1, 10), st.integers(11, 10_000)))
    if "loss_scale" in active:
        allowed = [s for s in _LOSS_SCALES if s * huge <= fmax / 4]
        scale = draw(st.sampled_from(allowed))
        config["loss_scale_factor"] = scale
        steps = [[_scaled(g, scale, dtype) for g in grads] for grads in steps]
    if ga_steps:
        config["gradient_accumulation_steps"] = ga_steps

    scenario = Scenario(
        optimizer=optimizer,
        config=config,
        profile=profile,
        dtype=dtype,
        initial_values=initial_values,
        steps=steps,
        feature=feature,
        names=names,
        **extra,
    )
    scenario.needs = scenario_needs(scenario)
    return scenario


def _sparse(draw, rng, shape, kind, dtype, huge) -> IndexedSlices:
    """IndexedSlices over ``shape`` with 1..dim₀+2 rows, each index at most
    MAX_DUPLICATES times (duplicates are likely: rows are drawn with replacement)."""
    rows = draw(st.integers(1, min(shape[0] + 2, MAX_DUPLICATES * shape[0])))
    pool = np.repeat(np.arange(shape[0], dtype=np.int64), MAX_DUPLICATES)
    indices = rng.choice(pool, size=rows, replace=False).astype(np.int64)
    values = make_array(rng, (rows, *shape[1:]), kind, dtype, huge)
    return IndexedSlices(values, indices, tuple(shape))


def _scaled(grad, scale: float, dtype: str):
    """The gradient a loss-scaled computation hands over: ``g·scale`` in ``dtype``."""
    if grad is None:
        return None
    if isinstance(grad, IndexedSlices):
        return grad.with_values(_scaled(grad.values, scale, dtype))
    if isinstance(grad, PerReplica):
        return PerReplica(tuple(_scaled(g, scale, dtype) for g in grad.values))
    return np.asarray((np.asarray(grad, np.float64) * scale).astype(dtypes.as_dtype(dtype)))


def case_grid(optimizers, profile: str, dtypes_=ALL_DTYPES) -> list[tuple[str, str, str]]:
    """Every (optimizer, feature, dtype) the suite runs for ``profile``, in a stable
    order: optimizers as given, features in FEATURES order, dtypes in ALL_DTYPES order."""
    return [
        (optimizer, feature, dtype)
        for optimizer in optimizers
        for feature in features_for(optimizer, profile)
        for dtype in dtypes_
    ]
