"""Deviation diagnosis: which known variant of the semantics explains a deviation.

When a case deviates, the scenario that failed is run again against the golden with
one known variant switched on (the divergences catalogued in the design anchors and
the semantics notes §4: ε placement, AMSGrad's maximum, EMA initialisation, the Nadam
momentum schedule, schedule timing, clipping scope and order, weight-decay coupling,
defaults, …), with the same engine and tolerance policy as the case itself. A variant
under which the implementation conforms on every step *explains* the deviation:
"matches variant X"; it must reproduce every quantity of the implementation that the
case itself compared (its variables, iterations, learning rate and every slot the
case's golden also exposes): a variant whose golden lacks one of them (keras3 keeps
no SGD momentum slot without momentum) does not explain a deviation in it. If no single
variant does, pairs and then triples of the applicable ones are tried (when few apply);
if none does, it is "unexplained".

A variant is data (:class:`Variant`): the :class:`~optcheck.reference.profiles.Profile`
fields it changes (``reference/profiles.py`` documents each), or a change of the
optimizer config, and the scenarios it can matter for. Third parties extend
:data:`VARIANTS`.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from . import engine

#: Seconds a diagnosis may take before it stops trying (it says so).
BUDGET = 60.0
#: Pairs (triples) are tried only when at most this many single variants apply.
MAX_FOR_PAIRS = 7
MAX_FOR_TRIPLES = 5


@dataclass(frozen=True)
class Variant:
    name: str
    #: What the variant does, as a reader of the report needs it.
    summary: str
    #: Who does it (libraries, versions) and the upstream reference.
    source: str
    #: Profile fields to set (reference/profiles.py).
    changes: dict = field(default_factory=dict)
    #: Whether the variant can matter for a scenario (None: always).
    applies: Callable | None = None
    #: A function of the base profile giving the variant's (instead of ``changes``).
    replace_profile: Callable | None = None
    #: A change of the optimizer config dict (defaults variants).
    config: Callable | None = None
    #: A whole semantics (a backend, the other profile): tried alone, never combined.
    whole: bool = False

    def profile(self, base):
        if self.replace_profile is not None:
            return self.replace_profile(base)
        return dataclasses.replace(base, **self.changes)

    def spec(self, spec: dict) -> dict:
        if self.config is None:
            return spec
        return {**spec, "config": self.config(dict(spec.get("config") or {}))}

    def relevant(self, scenario) -> bool:
        return self.applies is None or bool(self.applies(scenario))


@dataclass(frozen=True)
class Combined:
    """Several variants at once (pairs tried by :func:`diagnose`)."""

    parts: tuple[Variant, ...]

    @property
    def name(self) -> str:
        return " + ".join(p.name for p in self.parts)

    @property
    def summary(self) -> str:
        return "; ".join(p.summary for p in self.parts)

    @property
    def source(self) -> str:
        return "; ".join(p.source for p in self.parts)

    def profile(self, base):
        for part in self.parts:
            base = part.profile(base)
        return base

    def spec(self, spec: dict) -> dict:
        for part in self.parts:
            spec = part.spec(spec)
        return spec


# -- applicability -------------------------------------------------------------------------
def _optimizer(*names):
    return lambda s: s.optimizer in names


def _config(key, test=lambda v: v not in (None, 0, 0.0, False)):
    return lambda s: test(s.config.get(key))


def _schedule(s) -> bool:
    return isinstance(s.config.get("learning_rate"), dict)


def _several(s) -> bool:
    return len(s.initial_values) > 1


def _clipped(s) -> bool:
    return any(s.config.get(k) for k in ("clipnorm", "global_clipnorm", "clipvalue"))


def _replicas(s) -> bool:
    return "replicas" in s.needs and _clipped(s)


def _float64_schedule(schedule: dict) -> dict:
    """The schedule with its Python floats as float64 NumPy scalars, which a Keras
    schedule (and the reference's) computes with in their own dtype."""
    import numpy as np

    def convert(value):
        if isinstance(value, float):
            return np.float64(value)
        if isinstance(value, list | tuple):
            return type(value)(convert(v) for v in value)
        return value

    config = {k: convert(v) for k, v in (schedule.get("config") or {}).items()}
    return {**schedule, "config": config}


def _repeated_indices(s) -> bool:
    from optcheck.reference.sparse import IndexedSlices

    return any(isinstance(g, IndexedSlices) and len(set(g.indices.tolist())) < len(g.indices)
               for grads in s.steps for g in grads)  # fmt: skip


def _other_profile(base):
    from optcheck.reference.profiles import KERAS2, KERAS3

    return KERAS3 if base.name == KERAS2.name else KERAS2


def _move_aggregate(base):
    """Aggregate across replicas on the other side of clipping."""
    stages = [s for s in base.pipeline if s != "aggregate"]
    before = base.pipeline.index("aggregate") < base.pipeline.index("clip")
    at = stages.index("clip") + (1 if before else 0)
    return dataclasses.replace(base, pipeline=(*stages[:at], "aggregate", *stages[at:]))


_EPSILON_OPTIMIZERS = ("Adam", "AdamW", "Adagrad", "Adadelta", "Adamax", "Nadam", "RMSprop")

#: The catalogue, most specific first (the first variant that matches is the verdict).
VARIANTS: list[Variant] = [
    Variant(
        "adam_epsilon=corrected",
        "ε added to the square root of the bias-corrected v̂ (lr·m̂/(√v̂ + ε)); Keras adds "
        "ε̂ to √v of the uncorrected v",
        "torch.optim.Adam, optax.adam, the Adam paper; keras-team/tf-keras#315",
        {"adam_epsilon": "corrected"},
        _optimizer("Adam", "AdamW"),
    ),
    Variant(
        "amsgrad_max=corrected",
        "AMSGrad keeps the maximum of the bias-corrected v̂; Keras of the raw v",
        "some AMSGrad implementations (Reddi et al. state it on v)",
        {"amsgrad_max": "corrected"},
        lambda s: s.optimizer in ("Adam", "AdamW") and bool(s.config.get("amsgrad")),
    ),
    Variant(
        "epsilon_in_sqrt=False",
        "ε outside the square root, g/(√acc + ε); Keras ≥ 2.11 puts it inside, √(acc + ε)",
        "torch.optim.Adagrad/RMSprop, optax; Keras 2.9-2.10 RMSprop (notes §4.2.2-3)",
        {"epsilon_in_sqrt": False},
        _optimizer("Adagrad", "RMSprop"),
    ),
    Variant(
        "beta_power_cast=direct",
        "the bias corrections' βᵗ from the config's β rounded once to the variable dtype; "
        "Keras reads β through tf.cast (float32 first) for βᵗ and uses the config's β in "
        "1 − β (visible in float64, and in float32 when β is close to 1)",
        "torch.optim.Adam/AdamW/Adamax, which take one β for both roles",
        {"beta_power_cast": "direct"},
        lambda s: s.optimizer in ("Adam", "AdamW", "Adamax") and s.dtype != "float32",
    ),
    Variant(
        "nadam_u_product_advance=python_counter",
        "Nadam's momentum product Π advanced by each variable's update until a Python "
        "counter (1 at build) reaches iterations + 2: with iterations preset to n, the "
        "first n + 1 variable updates of a step each multiply Π by u_t; Keras advances Π "
        "once per step",
        "tf-keras eager Nadam.update_step (tf_keras/optimizers/nadam.py, "
        "_u_product_counter); docs/keras.md finding 7",
        {"nadam_u_product_advance": "python_counter"},
        lambda s: s.optimizer == "Nadam" and bool(s.iterations) and _several(s),
    ),
    Variant(
        "nadam_schedule_rate=0.004",
        "Nadam momentum schedule 0.96^(0.004·t); Keras's new optimizers use 0.96^t",
        "legacy Keras Nadam (schedule_decay=0.004), torch.optim.NAdam(momentum_decay=4e-3)",
        {"nadam_schedule_rate": 0.004},
        _optimizer("Nadam"),
    ),
    Variant(
        "nadam_schedule_rate=inf",
        "Nadam without a momentum schedule: u_t = β1 at every step, so Π = β1ᵗ; Keras's "
        "new optimizers use u_t = β1·(1 − 0.5·0.96ᵗ)",
        "optax.nadam (scale_by_adam(nesterov=True), optax/_src/transform.py)",
        {"nadam_schedule_rate": math.inf},
        _optimizer("Nadam"),
    ),
    Variant(
        "nadam_one_minus_beta=python",
        "Nadam's 1 − β1 and 1 − β2 computed by Python and rounded once to the variable "
        "dtype (as Keras's Adam does); Keras's Nadam casts β and subtracts in the dtype",
        "Keras 3's torch backend (keras/src/backend/torch/optimizers/torch_nadam.py); "
        "torch.optim.NAdam",
        {"nadam_one_minus_beta": "python"},
        _optimizer("Nadam"),
    ),
    Variant(
        "lion_one_minus_beta=python",
        "Lion's 1 − β1 and 1 − β2 computed by Python and rounded once to the variable "
        "dtype; Keras's Lion casts β and subtracts in the dtype (with β1 within 1e-7 of 1 "
        "the cast form is 0 in float32 and a step on a zero momentum does not move)",
        "Keras 3's torch backend (keras/src/backend/torch/optimizers/torch_lion.py)",
        {"lion_one_minus_beta": "python"},
        _optimizer("Lion"),
    ),
    Variant(
        "ops_python_float=float32",
        "in float64, the Python floats passed to Keras ops (EMA momentum, clipnorm, "
        "global_clipnorm, clipvalue; Ftrl's −p, l1 and 2·l2_shrinkage) become float32 "
        "tensors, and ops.minimum / "
        "ops.maximum of a float64 tensor and a Python float compute in float32 (the "
        "clipnorm divisor, the global-clipnorm scale)",
        "Keras 3's torch backend (keras/src/backend/torch/numpy.py: convert_to_tensor of a "
        "Python float is floatx; result_type(float64, float) is float32)",
        {"ops_python_float": "float32"},
        lambda s: s.dtype == "float64" and (
            s.optimizer == "Ftrl" or bool(s.config.get("use_ema")) or _clipped(s)),
    ),
    Variant(
        "weight_decay_form=scale_float32",
        "decoupled weight decay as v·(1 − wd·lr) with the factor computed in float32 from "
        "the float32 rate; Keras subtracts v·wd·lr in the variable dtype",
        "Keras 3's torch backend (keras/src/backend/torch/optimizers/torch_optimizer.py)",
        {"weight_decay_form": "scale_float32"},
        lambda s: s.config.get("weight_decay") not in (None, 0, 0.0)
        or (s.optimizer == "AdamW" and "weight_decay" not in s.config),
    ),
    Variant(
        "sparse_gradients=keep_duplicates",
        "repeated indices of a sparse gradient are not summed before the update: "
        "non-linear terms see each row (Adam's v gains Σg_i², not (Σg_i)²); Keras ≥ 2.10 "
        "sums them first",
        "Keras 2.9; Keras 3 on TensorFlow (ops on IndexedSlices values, notes §1.8)",
        {"sparse_gradients": "keep_duplicates"},
        _repeated_indices,
    ),
    Variant(
        "sgd_momentum=gradient",
        "the momentum buffer accumulates gradients and the rate multiplies it at each "
        "step (b ← μ·b + g, v ← v − lr·b); Keras's velocity holds −lr·g (same for a "
        "constant rate)",
        "torch.optim.SGD, optax.sgd; notes §4.2.8",
        {"sgd_momentum": "gradient"},
        lambda s: s.optimizer == "SGD" and bool(s.config.get("momentum")),
    ),
    Variant(
        "adamax_epsilon=inside_max",
        "ε inside the infinity norm, u ← max(β2·u, |g| + ε), and not in the denominator",
        "torch.optim.Adamax",
        {"adamax_epsilon": "inside_max"},
        _optimizer("Adamax"),
    ),
    Variant(
        "weight_decay_coupling=l2",
        "weight decay as L2: wd·v added to the gradient before the update; Keras decays "
        "the variable, v ← v − v·wd·lr",
        "torch.optim.Adam(weight_decay=) and most pre-AdamW optimizers; "
        "keras-team/keras PR #16274",
        {"weight_decay_coupling": "l2"},
        _config("weight_decay"),
    ),
    Variant(
        "clipnorm_scope=global",
        "clipnorm applied to the global norm of all gradients; Keras clips each tensor",
        "torch.nn.utils.clip_grad_norm_, optax.clip_by_global_norm, standalone Keras 1; "
        "keras-team/keras#13575",
        {"clipnorm_scope": "global"},
        lambda s: bool(s.config.get("clipnorm")) and _several(s),
    ),
    Variant(
        "clip_division=reciprocal",
        "clipnorm divides by max(N, c) as a multiplication by its reciprocal, "
        "(t·c)·(1/max(N, c)): an ulp apart, and clipped gradients that cancel exactly "
        "in Keras leave an ulp",
        "XLA's algebraic simplifier (division by a broadcast value)",
        {"clip_division": "reciprocal"},
        # an ulp matters only where clipped replicas cancel in the sum
        lambda s: bool(s.config.get("clipnorm")) and _replicas(s),
    ),
    Variant(
        "clip_norm_epsilon=1e-6",
        "norm clipping scales by min(1, c/(N + 1e-6)) instead of c/max(N, c)",
        "torch.nn.utils.clip_grad_norm_",
        {"clip_norm_epsilon": 1e-6},
        lambda s: bool(s.config.get("clipnorm") or s.config.get("global_clipnorm")),
    ),
    Variant(
        "clip_order",
        "gradients clipped on the other side of the cross-replica sum (2.x aggregates "
        "then clips; Keras 3 on TensorFlow clips each replica, then aggregates)",
        "notes §4.2.7; tensorflow/tensorflow#33929",
        replace_profile=_move_aggregate,
        applies=_replicas,
    ),
    Variant(
        "ema_init=first_step",
        "the EMA average starts as the variable after the first step (Keras 3)",
        "keras-team/keras PR #18972; notes §1.6",
        {"ema_init": "first_step", "ema_arithmetic": "tensor"},
        lambda s: bool(s.config.get("use_ema")),
    ),
    Variant(
        "ema_init=copy_at_build",
        "the EMA average starts as a copy of the variable at build (tf-keras)",
        "keras-team/tf-keras tf_keras/optimizers/optimizer.py; notes §1.6",
        {"ema_init": "copy_at_build", "ema_arithmetic": "python"},
        lambda s: bool(s.config.get("use_ema")),
    ),
    Variant(
        "ema_scope=all",
        "the EMA average of every variable is updated at each step, also of variables "
        "without a gradient (Keras 3, torch.optim.swa_utils.AveragedModel); tf-keras only "
        "those it updated",
        "keras-team/keras keras/src/optimizers/base_optimizer.py; notes §4.2.6",
        {"ema_scope": "all"},
        lambda s: bool(s.config.get("use_ema")) and "none_gradients" in s.needs,
    ),
    Variant(
        "ema_scope=updated",
        "the EMA average is updated only for variables with a gradient this step (tf-keras)",
        "keras-team/tf-keras tf_keras/optimizers/optimizer.py; notes §4.2.6",
        {"ema_scope": "updated"},
        lambda s: bool(s.config.get("use_ema")) and "none_gradients" in s.needs,
    ),
    Variant(
        "schedule_offset=1",
        "the schedule is evaluated at iterations + 1 (after the increment)",
        "an off-by-one seen when schedules read the counter after stepping",
        {"schedule_offset": 1},
        _schedule,
    ),
    Variant(
        "schedule_in_float64",
        "the learning-rate schedule computed in float64; Keras computes a schedule of "
        "Python floats in float32 (so 0.1 is 0.100000001)",
        "torch.optim.lr_scheduler, optax schedules in float64 runs",
        config=lambda c: {**c, "learning_rate": _float64_schedule(c["learning_rate"])},
        applies=lambda s: _schedule(s) and s.dtype == "float64",
    ),
    Variant(
        "nan_in_max=ignore",
        "max/min ignore a NaN operand when the other is a number, as TensorFlow's XLA:CPU "
        "fast min/max under jit_compile (tf.maximum(0.006, nan) = 0.006)",
        "TensorFlow XLA CPU (xla_cpu_enable_fast_min_max); NumPy/JAX/TF kernels propagate",
        {"nan_in_max": "ignore"},
        lambda s: s.optimizer in ("Adafactor", "Adamax", "Ftrl")
        or (s.optimizer in ("Adam", "AdamW") and bool(s.config.get("amsgrad"))),
    ),
    Variant(
        "python_scalar_cast=direct",
        "hyper-parameters and constant initial values rounded once to the variable dtype; "
        "Keras on TensorFlow converts a Python float to float32 first (β2 = 0.999 is "
        "0.99900001 in a float64 run)",
        "torch.optim, optax, Keras 3 on JAX; tensorflow/tensorflow#35938",
        {"python_scalar_cast": "direct", "constant_initializer": "direct"},
        lambda s: s.dtype != "float32",
    ),
    Variant(
        "default_epsilon=1e-8",
        "ε defaults to 1e-8 when the config leaves it out; Keras's default is 1e-7",
        "torch.optim, optax",
        config=lambda c: {**c, "epsilon": 1e-8},
        applies=lambda s: s.optimizer in _EPSILON_OPTIMIZERS and "epsilon" not in s.config,
    ),
    Variant(
        "backend=torch",
        "Keras 3's torch backend as a whole: Python hyper-parameters rounded once to the "
        "variable dtype, 1 − β by Python in Nadam and Lion, the generic stages' Python "
        "floats through float32 in float64 runs, and weight decay as v·(1 − wd·lr) in "
        "float32 (the rows python_scalar_cast, nadam_one_minus_beta, lion_one_minus_beta, "
        "ops_python_float and weight_decay_form together)",
        "keras-team/keras keras/src/backend/torch (numpy.py, optimizers/torch_*.py)",
        {"python_scalar_cast": "direct", "constant_initializer": "direct",
         "nadam_one_minus_beta": "python", "lion_one_minus_beta": "python",
         "ops_python_float": "float32", "weight_decay_form": "scale_float32"},
        whole=True,
    ),
    Variant(
        "other_profile",
        "the other Keras line's semantics as a whole (keras2 ↔ keras3: EMA, clipping, "
        "sparse handling, defaults, rounding forms; reference/profiles.py)",
        "tf-keras tf_keras/optimizers vs keras-team/keras keras/src/optimizers",
        replace_profile=_other_profile,
        whole=True,
    ),
]


def diagnose(scenario, candidate, policy, variants=None, budget: float = BUDGET) -> dict:
    """Which variant explains ``candidate``'s deviation on ``scenario``.

    Returns ``{"verdict", "variant", "summary", "source", "tried", "seconds"}``;
    ``verdict`` is "matches variant X" or "unexplained" (with "diagnosis stopped after
    N s" when the budget ran out first).
    """
    started = time.perf_counter()
    catalogue = VARIANTS if variants is None else variants
    from optcheck.reference.profiles import get_profile

    base = get_profile(scenario.profile)
    spec = scenario.spec()
    singles = [
        v for v in catalogue
        if v.relevant(scenario) and (v.profile(base) != base or repr(v.spec(spec)) != repr(spec))
    ]  # fmt: skip
    specific = [v for v in singles if not v.whole]
    candidates = list(singles)
    for size, limit in ((2, MAX_FOR_PAIRS), (3, MAX_FOR_TRIPLES)):
        if len(specific) <= limit:
            candidates += [Combined(c) for c in itertools.combinations(specific, size)]
    tried, stopped, errors = [], False, {}
    # What the case's own golden exposes, step by step: a variant must reproduce it all.
    try:
        require = engine.exposed_by_golden(scenario) if candidates else None
    except Exception:  # the golden rejects the scenario: so will every variant's check
        require = None
    for variant in candidates:
        if time.perf_counter() - started > budget:
            stopped = True
            break
        tried.append(variant.name)
        try:
            found = engine.check(scenario, candidate, policy, variant=variant, require=require)
        except Exception as exc:  # e.g. the variant's golden rejects the config
            errors[variant.name] = f"{type(exc).__name__}: {exc}"[:200]
            continue
        if found is None:
            return {
                "verdict": f"matches variant {variant.name}",
                "variant": variant.name,
                "summary": variant.summary,
                "source": variant.source,
                "tried": tried,
                "errors": errors,
                "seconds": round(time.perf_counter() - started, 3),
            }
    seconds = round(time.perf_counter() - started, 3)
    verdict = "unexplained"
    if stopped:
        verdict += f" (diagnosis stopped after {seconds:.0f} s)"
    elif not tried:
        verdict += " (no known variant applies)"
    return {"verdict": verdict, "variant": None, "summary": "", "source": "", "tried": tried,
            "errors": errors, "seconds": seconds}  # fmt: skip
