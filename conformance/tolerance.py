"""The tolerance policy: how far an implementation may be from the golden, and why.

Every comparison of the suite goes through :func:`bound`, and every case reports the
policy it used (:meth:`Policy.describe`). Nothing here is tuned per implementation.

Error model (standard model of floating-point arithmetic, Higham ch. 2): each rounded
operation returns ``x·(1 + δ)`` with ``|δ| ≤ u``, the unit roundoff of the dtype the
operation runs in (``UNIT_ROUNDOFF``). Two conformant implementations may legitimately
differ in

1. the elementary functions (``pow``, ``sqrt`` vs ``rsqrt``, ``exp``/``log``/``cos``
   in schedules): ≤ 2 ulps each — the golden's are correctly rounded; TensorFlow's
   tensor ``pow`` differs from that in 27 % of float32 results, its ``rsqrt`` from
   ``1/sqrt`` in 35 % (docs/reference.md);
2. how operations are fused or rewritten (FMA, XLA turning ``x / c`` into
   ``x · (1/c)``, operand order of commutative sums): ≤ 1 extra rounding each;
3. reduction order (norms for clipping, Adafactor's row/column means): the computed
   sum of n terms is within ``γ_n = n·u/(1 − n·u)`` of the exact one, relative to
   the sum of magnitudes, whatever the order;
4. denormal flushing (XLA flushes to zero): any value below the smallest normal.

**Re-synchronised mode** (each step starts from the golden state). One step of any
optimizer updates an element through at most ``OPS`` rounded operations (the longest
chain, Adam with AMSGrad and clipping, has 25 when libm calls count 2), so each
implementation's result is within ``OPS·u`` of exact arithmetic *relative to the
magnitudes the chain combines*, and two implementations within twice that. For the
variable update ``v_new = v_old − Δ`` those magnitudes are bounded by
``|v_old| + |v_new|`` (≥ ``|Δ|``), which keeps the bound meaningful when the
subtraction cancels. Cancellation *inside* Δ (Ftrl's ``n'^(−p) − n^(−p)``, RMSprop's
centred ``ms − mg²``) is not covered by those magnitudes, so the bound adds a
multiple of an error *measured on this very step*. The same step is computed from the
same state in higher precision (float64 for float16/bfloat16/float32, IEEE binary128
for float64) — the *oracle* — twice: plainly, and in Monte Carlo arithmetic (Parker
1997), where every floating-point operation's result is multiplied by a random
``1 + δ``, ``|δ| ≤ PERTURB·u``: a simulation of an implementation that rounds every
operation differently, libm calls included (reference/dtypes.py, ``monte_carlo``).
The perturbed run also flushes subnormal magnitudes of the dtype under test to zero,
as XLA:CPU, TensorFlow's CPU kernels and GPUs do: a subnormal intermediate (a tiny
gradient times a global-norm scale) that IEEE arithmetic keeps and flush-to-zero
arithmetic drops can be amplified by a later division (RMSprop's ``1/sqrt(ε)``). A
narrower value is flushed below its own smallest normal, the input of a cast included:
the float32 learning rate of a float64 step, when it is a float32 subnormal, is zero on
such hardware (XLA:CPU, found by the suite on the jax adapter, Keras 3 with a cosine
schedule decaying to 1.2e-38).
The first gives the golden's own rounding error ``E_g = max|golden − oracle|``; the
second ``S = max|oracle − perturbed oracle|``, which grows with the cancellation the
step suffers (two ``pow`` results subtracted in Ftrl) and jumps where a rounding-sized
change flips a branch (Ftrl's l1 threshold, Lion's sign, a max). Per tensor the
measured error is ``E = max(E_g, S)`` and an implementation whose roundings differ is
allowed ``MEASURED·E``. Per element::

    |candidate − golden| ≤ 2·OPS·u·(|before| + |after|)
                           + γ_n·(|before| + |after|)          (n = reduced elements)
                           + MEASURED·E                          (per tensor)
                           + smallest normal of the dtype

**Free-trajectory mode** (the candidate runs on its own): each step's local error
stays in the state, so the local budget of an element is the *sum* of its per-step
local terms so far (absolute values: a variable that shrinks keeps the error it
gathered while it was large); the oracle and its Monte Carlo twin run freely too, so
the measured term grows with the compounded error of the computation itself.

**ULP mode**: ``|candidate − golden| ≤ N·ulp(golden)`` element-wise, for
implementations meant to reproduce the dtype-faithful golden bit for bit (N = 0 is
bit equality).

NaN equals NaN only where the golden is NaN or where the perturbed oracle — the
flush-to-zero execution above — is NaN: a subnormal that IEEE arithmetic keeps and
flush-to-zero arithmetic drops can turn ``g·rsqrt(v)`` into ``0·inf`` (Adafactor in
bfloat16 with a clipped gradient of 1e-39 whose ``v`` underflows). A NaN where both
are finite always deviates; infinities must match exactly.
The learning rate is compared with ``LR_OPS`` float32 roundings (a schedule evaluates
at most 4 operations and 2 libm calls) plus float32's smallest normal, as every value is
(a schedule decayed to a float32 subnormal is 0 in TensorFlow's flush-to-zero kernels:
found by tf-keras on ``AdamW-schedule-float16``, lr 1.16e-38); ``iterations`` must be
equal.

**A float32 learning rate in a float64 step.** Keras computes a schedule in float32
(floatx) whatever the variables' dtype, and two conformant implementations' schedules
differ by an ulp or two of float32 (their ``pow``, ``log`` and ``cos``: the golden's are
correctly rounded, TensorFlow's scalar kernels are glibc's, within 0.82 ulp; XLA's and
torch's their own). In a float16 … float32 step that difference is inside the operation
budget; in a float64 step it is ~10⁹ float64 ulps of the update, which neither the
operation count nor the Monte Carlo run (whose float64-sized perturbations vanish in a
float32 operation) sees. So when a float64 scenario has a schedule, the oracle runs a
third time with every schedule value multiplied by ``1 + LR_OPS·u₃₂`` — a learning rate
at the edge of what the learning-rate comparison admits — and the bound adds the
per-tensor ``L = max|oracle(lr·(1 + LR_OPS·u₃₂)) − oracle|``: a candidate whose learning
rate passes cannot fail on the variables because of it (tf-keras's float64 schedule
cases, docs/keras.md, finding 6).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from optcheck.reference import dtypes

UNIT_ROUNDOFF = {
    "float16": 2.0**-11,
    "bfloat16": 2.0**-8,
    "float32": 2.0**-24,
    "float64": 2.0**-53,
}
#: Longest chain of rounded operations behind one updated element (see module doc).
OPS = 25
#: Multiple of the measured error E granted to another rounding order.
MEASURED = 4.0
#: Largest relative perturbation of an operation in Monte Carlo arithmetic, in units
#: of roundoff: two implementations' roundings of one operation (libm: 2 ulps) differ
#: by up to 2u.
PERTURB = 2.0
#: Roundings of a learning-rate value (schedule arithmetic in float32).
LR_OPS = 8
#: Relative difference of two conformant learning rates (float32 schedules).
LR_RELATIVE = LR_OPS * UNIT_ROUNDOFF["float32"]


@dataclass(frozen=True)
class Policy:
    """The comparison rule of a run: ``mode`` "resync" or "free", or ``ulps`` set."""

    mode: str = "resync"
    ulps: float | None = None

    def describe(self, dtype: str) -> dict:
        if self.ulps is not None:
            return {"mode": "ulp", "ulps": self.ulps, "dtype": dtype}
        formula = (
            "(2·ops·u + γ_n)·(|before|+|after|) [summed over the steps in free mode] + "
            "measured·max(|golden−oracle|, |oracle−perturbed oracle|) + tiny; NaN only where "
            "the golden or the perturbed (flush-to-zero) oracle is NaN"
        )
        if dtype == "float64":
            formula += (
                "; with a schedule, + max|oracle(lr·(1 + learning_rate_ops·u32)) − oracle| "
                "(the float32 learning rate's admitted error)"
            )
        description = {
            "mode": self.mode,
            "dtype": dtype,
            "unit_roundoff": UNIT_ROUNDOFF[dtype],
            "ops": OPS,
            "measured_factor": MEASURED,
            "perturbation_ulps": PERTURB,
            "formula": formula,
        }
        if dtype == "float64":
            description["learning_rate_ops"] = LR_OPS
        return description


def shifts_learning_rate(scenario) -> bool:
    """Whether the bound needs the learning-rate sensitivity run (module docstring): a
    float64 step whose learning rate is a (float32) schedule."""
    return scenario.dtype == "float64" and isinstance(scenario.config.get("learning_rate"), dict)


def smallest_normal(dtype: str) -> float:
    """The dtype's smallest normal magnitude (the flush-to-zero threshold)."""
    return float(dtypes.finfo(dtypes.as_dtype(dtype)).smallest_normal)


def reduction_size(scenario) -> int:
    """Largest number of elements one reduction of the scenario sums (norms, means)."""
    sizes = [int(np.size(v)) for v in scenario.initial_values] or [1]
    config = scenario.config
    if config.get("global_clipnorm"):
        return int(sum(sizes))
    return max(sizes)


def measured_error(golden, oracle, perturbed) -> float:
    """``max(max|golden − oracle|, max|oracle − perturbed|)`` over finite entries."""
    return max(largest_difference(oracle, golden), largest_difference(perturbed, oracle))


def largest_difference(a, b) -> float:
    """``max|a − b|`` over the finite differences; 0 when either is missing."""
    if a is None or b is None:
        return 0.0
    diff = np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))
    finite = diff[np.isfinite(diff)]
    return float(finite.max()) if finite.size else 0.0


def bound(
    policy: Policy,
    dtype: str,
    golden: np.ndarray,
    before: np.ndarray | None,
    measured: float,
    step: int,
    reduced: int,
    carried: np.ndarray | float = 0.0,
    learning_rate_effect: float = 0.0,
) -> np.ndarray:
    """Per-element tolerance for one tensor after one step.

    ``carried``: in free mode, the local budget accumulated by the earlier steps
    (see :func:`local_budget`). ``learning_rate_effect``: the tensor's ``L`` of the
    module docstring (0 where no schedule feeds a float64 step).
    """
    g = np.asarray(golden, dtype=np.float64)
    if policy.ulps is not None:
        spacing = np.spacing(np.abs(np.asarray(golden)).astype(golden.dtype)).astype(np.float64)
        return policy.ulps * np.abs(spacing)
    u = UNIT_ROUNDOFF[dtype]
    prev = np.zeros_like(g) if before is None else np.asarray(before, dtype=np.float64)
    # Only finite magnitudes size a budget: an inf or NaN before the step (EMA can
    # overwrite it with a finite average) must not make every value acceptable.
    scale = np.where(np.isfinite(prev), np.abs(prev), 0.0) + np.abs(g)
    n_u = reduced * u
    gamma = n_u / (1 - n_u) if n_u < 1 else np.inf
    tiny = smallest_normal(dtype)
    with np.errstate(invalid="ignore", over="ignore"):
        return ((2 * OPS * u + gamma) * scale + carried + MEASURED * measured
                + learning_rate_effect + tiny)  # fmt: skip


def local_budget(dtype: str, golden, before, reduced: int) -> np.ndarray:
    """The local (operation-count) part of :func:`bound` for one step."""
    u = UNIT_ROUNDOFF[dtype]
    g = np.asarray(golden, dtype=np.float64)
    prev = np.zeros_like(g) if before is None else np.asarray(before, dtype=np.float64)
    scale = np.where(np.isfinite(prev), np.abs(prev), 0.0) + np.abs(g)
    n_u = reduced * u
    gamma = n_u / (1 - n_u) if n_u < 1 else np.inf
    with np.errstate(invalid="ignore", over="ignore"):
        return np.where(np.isfinite(scale), (2 * OPS * u + gamma) * scale, 0.0)


def learning_rate_bound(golden: float) -> float:
    """``LR_OPS`` float32 roundings, and float32's smallest normal: TensorFlow's CPU
    kernels and XLA flush a subnormal schedule value to zero (module docstring)."""
    return LR_RELATIVE * abs(golden) + smallest_normal("float32")


def violations(candidate, golden, tolerance, perturbed=None) -> np.ndarray:
    """Boolean mask of elements out of tolerance (NaN/inf rules included).

    ``perturbed``: the perturbed oracle's value of the same tensor; where it is NaN a
    NaN candidate is accepted (module docstring).
    """
    c = np.asarray(candidate, dtype=np.float64)
    g = np.asarray(golden, dtype=np.float64)
    if c.shape != g.shape:
        return np.ones(np.broadcast_shapes((1,), g.shape), dtype=bool)
    c_nan, g_nan = np.isnan(c), np.isnan(g)
    inf = np.isinf(c) | np.isinf(g)
    with np.errstate(invalid="ignore"):
        err = np.abs(c - g)
        bad = ~(err <= tolerance)
    bad = np.where(g_nan | c_nan, g_nan != c_nan, bad)
    if perturbed is not None and np.shape(perturbed) == g.shape:
        bad &= ~(c_nan & np.isnan(np.asarray(perturbed, dtype=np.float64)))
    bad = np.where(inf & ~(g_nan | c_nan), c != g, bad)
    return bad
