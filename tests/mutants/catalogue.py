"""The mutants, as data: one semantic slip each, applied to a copy of ``optcheck.reference``.

A :class:`Mutant` names a file of the reference package (``path``, relative to the
package directory), a snippet ``old`` that must occur there exactly once and its
replacement ``new``. A slip that has to be made at more than one place to be
consistent (Nadam's momentum schedule is computed in three places) lists the other
places in ``also``, each with the same exactly-once rule. Every slip is one a real
implementation could make or has made (the semantics notes, ``shared/spec``, give the
sources for most: §1 pipeline, §2 optimizers, §3 schedules, §4 known divergences).

``optimizers`` and ``profiles`` are where the slip can show: the kill run (see
:mod:`.kill_matrix`) runs the suite's ``ci`` cases of those optimizers and profiles.
``features``, when given, narrows the *property* cases to the features whose
scenarios can execute the mutated code at all — a reachability fact, not a guess: the
strategies give each scenario exactly one feature, and for example the EMA stage does
nothing unless ``use_ema`` is set, which only the ``ema`` and ``finalize`` scenarios do
(``all_features_for`` lists optimizers for which every feature reaches the code:
AdamW decays in every scenario). It only saves time on survivors; the fixed cases
(golden tables, seed page) always run. Narrowing can only lose kills, never add one.

``witness`` builds one deterministic scenario, written by hand, on which the mutant
and the golden differ beyond the suite's tolerance (or the mutant raises where the
golden does not). It proves that the mutant is not a no-op; it plays no part in the
kill rate, which counts the suite's own ``ci`` cases only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from optcheck.conformance.scenario import Scenario
from optcheck.reference import dtypes
from optcheck.reference.sparse import IndexedSlices, PerReplica

PROFILES = ("keras2", "keras3")
ALL = (
    "SGD",
    "Adam",
    "AdamW",
    "Adagrad",
    "Adadelta",
    "Adamax",
    "Ftrl",
    "Nadam",
    "RMSprop",
    "Adafactor",
    "Lion",
)
#: Optimizers whose update reads the step count t = iterations + 1.
STEP_COUNTED = ("Adam", "AdamW", "Adamax", "Nadam", "Adafactor")


class PatchError(AssertionError):
    """A mutant's ``old`` snippet does not occur exactly once in its file."""


@dataclass(frozen=True)
class Mutant:
    id: str
    path: str
    old: str
    new: str
    description: str
    optimizers: tuple[str, ...] = ALL
    profiles: tuple[str, ...] = PROFILES
    #: Further (old, new) replacements of the same slip in the same file.
    also: tuple[tuple[str, str], ...] = ()
    #: The suite features whose scenarios can execute the mutated code (empty: every
    #: feature), and the optimizers for which every feature can (AdamW always decays).
    features: tuple[str, ...] = ()
    all_features_for: tuple[str, ...] = ()
    witness: Callable[[], Scenario] | None = field(default=None, compare=False, repr=False)
    #: What a scenario needs for the slip to show, where that is narrower than "any
    #: scenario of its optimizers and features" (reported for survivors).
    trigger: str = ""

    def edits(self) -> tuple[tuple[str, str], ...]:
        return ((self.old, self.new), *self.also)

    def apply(self, text: str) -> str:
        """``text`` with every edit made; :class:`PatchError` unless each ``old`` occurs
        exactly once (in the text as the earlier edits left it)."""
        for old, new in self.edits():
            count = text.count(old)
            if count != 1:
                raise PatchError(
                    f"mutant {self.id}: the snippet to replace occurs {count} times in "
                    f"{self.path} (exactly once required):\n{old}"
                )
            if old == new:
                raise PatchError(f"mutant {self.id}: an edit replaces a snippet by itself")
            text = text.replace(old, new)
        return text


def _lines(*lines: str) -> str:
    return "\n".join(lines)


# -- witness scenarios ------------------------------------------------------------------------
def scenario(
    optimizer: str,
    config: dict | None = None,
    *,
    profile: str = "keras2",
    dtype: str = "float64",
    shapes=((3,), (2, 2)),
    steps: int = 3,
    seed: int = 0,
    scale: float = 1.0,
    init_scale: float = 1.0,
    gradients: Callable | None = None,
    needs: tuple[str, ...] = (),
    **options,
) -> Scenario:
    """A deterministic scenario: normal initial values and gradients (``scale``), or
    ``gradients(rng, dtype)`` giving the list of steps."""
    rng = np.random.default_rng(seed)
    np_dtype = dtypes.as_dtype(dtype)
    initial = [np.asarray(rng.standard_normal(s) * init_scale).astype(np_dtype) for s in shapes]
    if gradients is None:
        grads = [
            [np.asarray(rng.standard_normal(s) * scale).astype(np_dtype) for s in shapes]
            for _ in range(steps)
        ]
    else:
        grads = gradients(rng, np_dtype)
    return Scenario(
        optimizer,
        dict(config or {}),
        profile,
        dtype,
        initial,
        grads,
        feature="witness",
        needs=tuple(needs),
        **options,
    )


def _schedule(class_name: str, **config) -> dict:
    return {"learning_rate": {"class_name": class_name, "config": config}}


def _sparse_steps(*rows_per_step, width=2, shape=(4, 2)):
    """Gradient steps for one (4, 2) variable: IndexedSlices at the given rows."""

    def make(rng, dtype):
        steps = []
        for rows in rows_per_step:
            values = np.asarray(rng.standard_normal((len(rows), width))).astype(dtype)
            steps.append([IndexedSlices(values, np.asarray(rows, dtype=np.int64), shape)])
        return steps

    return make


def _with_none(pattern):
    """Gradient steps for variables (3,), (3,): None where ``pattern[step][var]`` is 0."""

    def make(rng, dtype):
        return [
            [
                np.asarray(rng.standard_normal(3)).astype(dtype) if keep else None
                for keep in step
            ]
            for step in pattern
        ]

    return make


def _replicas(rng, dtype):
    return [
        [PerReplica(tuple(np.asarray(rng.standard_normal(3)).astype(dtype) for _ in range(2)))]
        for _ in range(2)
    ]


def _duplicate_rows(rng, dtype):
    """Two steps on a (3, 1) variable, rows [0, 0, 2]: row 0 is given twice."""
    return [
        [IndexedSlices(np.asarray([[3.0], [4.0], [1.0]], dtype=dtype), np.asarray([0, 0, 2]),
                       (3, 1))]
        for _ in range(2)
    ]


_EMA = {"learning_rate": 0.5, "use_ema": True, "ema_momentum": 0.9}


# -- the catalogue -----------------------------------------------------------------------------
MUTANTS: tuple[Mutant, ...] = (
    # ---------------------------------------------------------------- Adam / AdamW
    Mutant(
        "adam_epsilon_inside_sqrt",
        "optimizers/adam.py",
        "variable.assign_sub((m.numpy() * alpha) / (np.sqrt(v_used) + epsilon))",
        "variable.assign_sub((m.numpy() * alpha) / np.sqrt(v_used + epsilon))",
        "Adam: ε added inside the square root, sqrt(v + ε), instead of after it",
        optimizers=("Adam", "AdamW"),
        witness=lambda: scenario("Adam", {"epsilon": 1e-3}, scale=1e-2),
    ),
    Mutant(
        "adam_epsilon_on_corrected_v",
        "optimizers/adam.py",
        "variable.assign_sub((m.numpy() * alpha) / (np.sqrt(v_used) + epsilon))",
        "variable.assign_sub(\n"
        "            (m.numpy() * alpha)\n"
        "            / (np.sqrt(v_used) + epsilon * np.sqrt(one - beta_2_power))\n"
        "        )",
        "Adam: ε added to sqrt of the bias-corrected v (PyTorch/optax placement) instead of "
        "Keras's ε-hat on the uncorrected v",
        optimizers=("Adam", "AdamW"),
        witness=lambda: scenario("Adam", {"epsilon": 1e-3}, scale=1e-3),
    ),
    Mutant(
        "adam_bias_correction_one_step_ahead",
        "optimizers/adam.py",
        "local_step = self._local_step(variable)",
        "local_step = self._local_step(variable) + 1",
        "Adam: bias correction one step off (β^(t+1) instead of β^t)",
        optimizers=("Adam", "AdamW"),
        witness=lambda: scenario("Adam"),
    ),
    Mutant(
        "adam_amsgrad_on_corrected_v",
        "optimizers/adam.py",
        _lines(
            "                v_hat.assign(self._maximum(v_hat.numpy(), v_used))",
            "                v_used = v_hat.numpy()",
        ),
        _lines(
            "                v_hat.assign("
            "np.maximum(v_hat.numpy(), v_used / (one - beta_2_power)))",
            "                v_used = v_hat.numpy() * (one - beta_2_power)",
        ),
        "AMSGrad: the running maximum taken over the bias-corrected v̂ instead of the raw v",
        optimizers=("Adam", "AdamW"),
        witness=lambda: scenario("Adam", {"amsgrad": True}, steps=4),
    ),
    Mutant(
        "adam_beta_powers_in_float64",
        "optimizers/adam.py",
        _lines(
            "        beta_1_power = elementary.power(self._power_base(self.beta_1, dtype), "
            "local_step)",
            "        beta_2_power = elementary.power(self._power_base(self.beta_2, dtype), "
            "local_step)",
        ),
        _lines(
            "        beta_1_power = dtypes.cast("
            "elementary.power(np.float64(self.beta_1), np.float64(local_step)), dtype)",
            "        beta_2_power = dtypes.cast("
            "elementary.power(np.float64(self.beta_2), np.float64(local_step)), dtype)",
        ),
        "Adam: β1ᵗ, β2ᵗ computed from the Python floats in float64 and rounded once, instead "
        "of from β cast to the variable dtype (β2 = 0.999 is 1.0 in bfloat16)",
        optimizers=("Adam", "AdamW"),
        witness=lambda: scenario("Adam"),
    ),
    Mutant(
        "adam_lazy_sparse_momentum",
        "optimizers/adam.py",
        _lines(
            "            m.assign_add(-m.numpy() * one_minus_beta_1)",
            "            _scatter_add(m, gradient.indices, gradient.values * one_minus_beta_1)",
        ),
        _lines(
            "            _scatter_add(m, gradient.indices, -m.numpy()[gradient.indices] * "
            "one_minus_beta_1)",
            "            _scatter_add(m, gradient.indices, gradient.values * one_minus_beta_1)",
        ),
        "Adam, sparse gradients: m decays only on the rows present (LazyAdam) instead of "
        "everywhere",
        optimizers=("Adam", "AdamW"),
        profiles=("keras2",),
        features=("sparse",),
        witness=lambda: scenario(
            "Adam", shapes=((4, 2),), gradients=_sparse_steps([0, 1], [2], [3]), needs=("sparse",)
        ),
    ),
    Mutant(
        "adam_config_drops_epsilon",
        "optimizers/adam.py",
        _lines(
            '                "epsilon": self.epsilon,',
            '                "amsgrad": self.amsgrad,',
        ),
        '                "amsgrad": self.amsgrad,',
        "Adam: get_config() leaves out epsilon, so a config round trip resets it to the "
        "default (as tf-keras loses adaptive_epsilon)",
        optimizers=("Adam", "AdamW"),
        features=("round_trip",),
        trigger="a config round trip with a non-default epsilon",
        witness=lambda: scenario("Adam", {"epsilon": 1e-2}, scale=1e-2, round_trip_at=1),
    ),
    # ---------------------------------------------------------------- SGD
    Mutant(
        "sgd_momentum_stored_without_lr",
        "optimizers/sgd.py",
        _lines(
            "        m.assign(-gradient * lr + m.numpy() * momentum)",
            "        if self.nesterov:",
            "            variable.assign_add(-gradient * lr + m.numpy() * momentum)",
            "        else:",
            "            variable.assign_add(m.numpy())",
        ),
        _lines(
            "        m.assign(-gradient + m.numpy() * momentum)",
            "        if self.nesterov:",
            "            variable.assign_add((-gradient + m.numpy() * momentum) * lr)",
            "        else:",
            "            variable.assign_add(m.numpy() * lr)",
        ),
        "SGD: momentum buffer stored without the learning rate (torch.optim.SGD style), lr "
        "applied to the step",
        optimizers=("SGD",),
        witness=lambda: scenario("SGD", {"learning_rate": 0.1, "momentum": 0.9}),
    ),
    Mutant(
        "sgd_nesterov_drops_momentum_factor",
        "optimizers/sgd.py",
        "            variable.assign_add(-gradient * lr + m.numpy() * momentum)",
        "            variable.assign_add(-gradient * lr + m.numpy())",
        "SGD, Nesterov: the look-ahead adds the new velocity m instead of μ·m",
        optimizers=("SGD",),
        witness=lambda: scenario(
            "SGD", {"learning_rate": 0.1, "momentum": 0.9, "nesterov": True}
        ),
    ),
    # ---------------------------------------------------------------- Adagrad
    Mutant(
        "adagrad_accumulator_starts_at_zero",
        "optimizers/adagrad.py",
        "                initial_value=np.full(v.shape, self._initial_accumulator(v.dtype)),",
        "                initial_value=None,",
        "Adagrad: accumulator initialised at 0 (PyTorch) instead of initial_accumulator_value",
        optimizers=("Adagrad",),
        witness=lambda: scenario("Adagrad", {"learning_rate": 0.1}),
    ),
    Mutant(
        "adagrad_epsilon_outside_sqrt",
        "optimizers/adagrad.py",
        "variable.assign_sub(lr * gradient / self._root(accumulator.numpy(), epsilon))",
        "variable.assign_sub(lr * gradient / (np.sqrt(accumulator.numpy()) + epsilon))",
        "Adagrad: ε outside the square root (legacy kernel, PyTorch) instead of inside",
        optimizers=("Adagrad",),
        witness=lambda: scenario(
            "Adagrad", {"epsilon": 1e-3, "initial_accumulator_value": 0.01}, scale=1e-2
        ),
    ),
    # ---------------------------------------------------------------- Adadelta
    Mutant(
        "adadelta_uses_old_accumulator",
        "optimizers/adadelta.py",
        _lines(
            "        else:",
            "            accumulated_grad.assign(",
            "                rho * accumulated_grad.numpy() + "
            "self._scaled_square(one_minus_rho, gradient)",
            "            )",
            "        delta_var = -rms(accumulated_delta_var.numpy()) * gradient / "
            "rms(accumulated_grad.numpy())",
        ),
        _lines(
            "            delta_var = -rms(accumulated_delta_var.numpy()) * gradient / "
            "rms(accumulated_grad.numpy())",
            "        else:",
            "            delta_var = -rms(accumulated_delta_var.numpy()) * gradient / "
            "rms(accumulated_grad.numpy())",
            "            accumulated_grad.assign(",
            "                rho * accumulated_grad.numpy() + "
            "self._scaled_square(one_minus_rho, gradient)",
            "            )",
        ),
        "Adadelta: the step Δ divides by the accumulated g² of the previous step (read "
        "before this step's gradient is accumulated)",
        optimizers=("Adadelta",),
        witness=lambda: scenario("Adadelta", {"learning_rate": 1.0}),
    ),
    Mutant(
        "adadelta_ignores_learning_rate",
        "optimizers/adadelta.py",
        "        variable.assign_add(lr * delta_var)",
        "        variable.assign_add(delta_var)",
        "Adadelta: the learning rate is not applied (the paper's form, lr ≡ 1)",
        optimizers=("Adadelta",),
        witness=lambda: scenario("Adadelta", {"learning_rate": 0.5}),
    ),
    # ---------------------------------------------------------------- Adamax
    Mutant(
        "adamax_without_epsilon",
        "optimizers/adamax.py",
        "(lr * m.numpy()) / ((one - beta_1_power) * (u.numpy() + epsilon))",
        "(lr * m.numpy()) / ((one - beta_1_power) * u.numpy())",
        "Adamax: ε left out of the denominator (u + ε → u)",
        optimizers=("Adamax",),
        witness=lambda: scenario("Adamax", {"epsilon": 1e-3}, scale=1e-2),
    ),
    Mutant(
        "adamax_u_without_beta_2_decay",
        "optimizers/adamax.py",
        "u.assign(self._maximum(beta_2 * u.numpy(), np.abs(gradient)))",
        "u.assign(self._maximum(u.numpy(), np.abs(gradient)))",
        "Adamax: the infinity norm u is not decayed by β2 (u ← max(u, |g|))",
        optimizers=("Adamax",),
        witness=lambda: scenario("Adamax", {"beta_2": 0.5}, steps=4),
    ),
    # ---------------------------------------------------------------- Ftrl
    Mutant(
        "ftrl_shrinkage_in_accumulator",
        "optimizers/ftrl.py",
        "        new_accum = accum.numpy() + gradient * gradient",
        "        new_accum = accum.numpy() + grad_to_use * grad_to_use",
        "Ftrl: the accumulator adds the shrinkage-adjusted gradient ĝ² instead of the raw g²",
        optimizers=("Ftrl",),
        witness=lambda: scenario(
            "Ftrl", {"learning_rate": 0.1, "l2_shrinkage_regularization_strength": 0.1}
        ),
    ),
    Mutant(
        "ftrl_beta_ignored",
        "optimizers/ftrl.py",
        "        l2_reg = l2 + beta / (two * lr)",
        "        l2_reg = l2",
        "Ftrl: beta not folded into the L2 strength (l2 + β/(2·lr) → l2)",
        optimizers=("Ftrl",),
        witness=lambda: scenario("Ftrl", {"learning_rate": 0.1, "beta": 0.5}),
    ),
    Mutant(
        "ftrl_linear_sign_flipped",
        "optimizers/ftrl.py",
        "variable.assign((linear_clipped - linear.numpy()) / quadratic)",
        "variable.assign((linear.numpy() - linear_clipped) / quadratic)",
        "Ftrl: the closed-form solution with the sign of (clip(z) − z) flipped",
        optimizers=("Ftrl",),
        witness=lambda: scenario("Ftrl", {"learning_rate": 0.1}),
    ),
    # ---------------------------------------------------------------- Nadam
    Mutant(
        "nadam_legacy_momentum_schedule",
        "optimizers/nadam.py",
        "        decay = self._cast(0.96, dtype)",
        "        decay = self._cast(0.96**0.004, dtype)",
        "Nadam: momentum schedule 0.96^(0.004·t) (legacy Keras, PyTorch) instead of 0.96^t",
        optimizers=("Nadam",),
        also=(
            (
                "beta_1, decay = self._cast(self.beta_1, dtype), self._cast(0.96, dtype)",
                "beta_1, decay = self._cast(self.beta_1, dtype), self._cast(0.96**0.004, dtype)",
            ),
            (
                "beta_1, decay = dtypes.const(self.beta_1, dtype), dtypes.const(0.96, dtype)",
                "beta_1, decay = dtypes.const(self.beta_1, dtype), "
                "dtypes.const(0.96**0.004, dtype)",
            ),
        ),
        witness=lambda: scenario("Nadam"),
    ),
    Mutant(
        "nadam_product_advanced_per_variable",
        "optimizers/nadam.py",
        _lines(
            "            self._advance_u_product([variable for _, variable in step.pairs])",
            "        super()._stage_update(step)",
        ),
        _lines(
            "            pass",
            "        for gradient, variable in step.pairs:",
            "            self._advance_u_product([variable])",
            "            self.update_step(gradient, variable)",
        ),
        "Nadam: the momentum product Π advanced once per variable instead of once per step",
        optimizers=("Nadam",),
        witness=lambda: scenario("Nadam"),
    ),
    # ---------------------------------------------------------------- RMSprop
    Mutant(
        "rmsprop_epsilon_outside_sqrt",
        "optimizers/rmsprop.py",
        "        increment = self._scaled(lr * gradient, denominator, epsilon, form)",
        "        increment = lr * gradient / (np.sqrt(denominator) + epsilon)",
        "RMSprop: ε outside the square root (Keras 2.9/2.10, PyTorch) instead of inside",
        optimizers=("RMSprop",),
        witness=lambda: scenario("RMSprop", {"epsilon": 1e-3}, scale=1e-2),
    ),
    Mutant(
        "rmsprop_centered_averages_g2",
        "optimizers/rmsprop.py",
        "average_grad.assign(rho * average_grad.numpy() + one_minus_rho * gradient)",
        "average_grad.assign(rho * average_grad.numpy() + one_minus_rho * np.square(gradient))",
        "RMSprop, centered: the mean gradient accumulates g² instead of g (Keras 2.9 bug)",
        optimizers=("RMSprop",),
        witness=lambda: scenario("RMSprop", {"centered": True}),
    ),
    # ---------------------------------------------------------------- Adafactor
    Mutant(
        "adafactor_no_epsilon_2_floor",
        "optimizers/adafactor.py",
        "alpha_t = self._maximum(epsilon_2, _rms(variable.numpy())) * rho_t",
        "alpha_t = _rms(variable.numpy()) * rho_t",
        "Adafactor: the relative step size lacks the ε2 floor (α = RMS(var)·ρ)",
        optimizers=("Adafactor",),
        witness=lambda: scenario("Adafactor", init_scale=1e-5),
    ),
    Mutant(
        "adafactor_factored_without_row_normalisation",
        "optimizers/adafactor.py",
        "np.expand_dims(r_value / _mean(r_value, -1, keepdims=True), -1)",
        "np.expand_dims(r_value, -1)",
        "Adafactor: factored second moment r ⊗ c not divided by mean(r)",
        optimizers=("Adafactor",),
        witness=lambda: scenario("Adafactor", shapes=((2, 3),)),
    ),
    # ---------------------------------------------------------------- Lion
    Mutant(
        "lion_sign_uses_updated_momentum",
        "optimizers/lion.py",
        _lines(
            "        variable.assign_sub("
            "lr * np.sign(m.numpy() * beta_1 + gradient * (one - beta_1)))",
            "        m.assign(m.numpy() * beta_2 + gradient * (one - beta_2))",
        ),
        _lines(
            "        m.assign(m.numpy() * beta_2 + gradient * (one - beta_2))",
            "        variable.assign_sub("
            "lr * np.sign(m.numpy() * beta_1 + gradient * (one - beta_1)))",
        ),
        "Lion: the momentum is updated before the sign is taken (sign of the new m)",
        optimizers=("Lion",),
        trigger="a gradient opposing the momentum within a ratio window that is narrow "
        "unless β1 is near 1 or β2 well below 1",
        witness=lambda: scenario("Lion", {"learning_rate": 0.1, "beta_2": 0.5}, steps=4),
    ),
    Mutant(
        "lion_interpolates_with_beta_2",
        "optimizers/lion.py",
        "lr * np.sign(m.numpy() * beta_1 + gradient * (one - beta_1))",
        "lr * np.sign(m.numpy() * beta_2 + gradient * (one - beta_2))",
        "Lion: the update direction interpolates with β2 instead of β1 (roles swapped)",
        optimizers=("Lion",),
        witness=lambda: scenario("Lion", {"learning_rate": 0.1, "beta_1": 0.5}, steps=4),
    ),
    # ---------------------------------------------------------------- learning rate, iterations
    Mutant(
        "learning_rate_not_rounded_to_float32",
        "optimizer.py",
        "            np.asarray(learning_rate, dtype=dtypes.FLOATX),",
        "            np.asarray(learning_rate, dtype=np.float64),",
        "the learning-rate variable kept in float64 instead of float32 (float64 variables see "
        "the exact lr, not float64(float32(lr)))",
        trigger="a float64 variable and a learning rate that float32 cannot represent",
        witness=lambda: scenario("SGD", {"learning_rate": 0.1}),
    ),
    Mutant(
        "schedule_read_after_increment",
        "optimizer.py",
        "            at = self._iterations.numpy() + self.profile.schedule_offset",
        "            at = self._iterations.numpy() + 1",
        "the learning-rate schedule evaluated at the incremented step (schedule(t) instead of "
        "schedule(t − 1))",
        features=("schedule",),
        witness=lambda: scenario(
            "SGD", _schedule("ExponentialDecay", initial_learning_rate=0.1, decay_steps=1,
                             decay_rate=0.5), needs=("schedule",)
        ),
    ),
    Mutant(
        "iterations_incremented_before_update",
        "profiles.py",
        _lines(
            '        "update",',
            '        "ema",',
            '        "ema_overwrite",',
            '        "increment",',
        ),
        _lines(
            '        "increment",',
            '        "update",',
            '        "ema",',
            '        "ema_overwrite",',
        ),
        "iterations incremented before update_step (bias corrections and the EMA overwrite "
        "see t + 1)",
        profiles=("keras2",),
        witness=lambda: scenario("Adam"),
    ),
    # ---------------------------------------------------------------- weight decay
    Mutant(
        "weight_decay_without_learning_rate",
        "optimizer.py",
        "            variable.assign_sub(variable.numpy() * wd * lr)",
        "            variable.assign_sub(variable.numpy() * wd)",
        "decoupled weight decay without the learning rate (v ← v − v·wd; the Keras 2.9 fix "
        "before 2.10)",
        features=("weight_decay",),
        all_features_for=("AdamW",),
        witness=lambda: scenario("AdamW", {"learning_rate": 0.1, "weight_decay": 0.1}),
    ),
    Mutant(
        "weight_decay_reads_updated_variable",
        "profiles.py",
        _lines(
            '        "weight_decay",',
            '        "aggregate",',
            '        "update",',
        ),
        _lines(
            '        "aggregate",',
            '        "update",',
            '        "weight_decay",',
        ),
        "weight decay applied after update_step, to the updated variable",
        profiles=("keras3",),
        features=("weight_decay",),
        all_features_for=("AdamW",),
        witness=lambda: scenario(
            "AdamW", {"learning_rate": 0.1, "weight_decay": 0.1}, profile="keras3"
        ),
    ),
    Mutant(
        "weight_decay_coupled_before_clip",
        "optimizer.py",
        _lines(
            "    def _stage_clip(self, step):",
            "        step.pairs = _map_replicas(step.pairs, self._clip_gradients)",
        ),
        _lines(
            "    def _stage_clip(self, step):",
            "        if self.weight_decay:",
            "            step.pairs = [",
            "                (",
            "                    np.asarray(g + v.numpy() * self._cast(self.weight_decay, "
            "v.dtype))",
            "                    if isinstance(g, np.ndarray) and self._use_weight_decay(v)",
            "                    else g,",
            "                    v,",
            "                )",
            "                for g, v in step.pairs",
            "            ]",
            "        step.pairs = _map_replicas(step.pairs, self._clip_gradients)",
        ),
        "weight decay folded into the gradient (L2, torch Adam style) and clipped with it, "
        "instead of decoupled v ← v − v·wd·lr",
        also=(
            (
                _lines(
                    "        if self.weight_decay is None:",
                    "            return",
                    '        if self.profile.weight_decay_coupling == "l2":',
                ),
                _lines(
                    "        if True:",
                    "            return",
                    '        if self.profile.weight_decay_coupling == "l2":',
                ),
            ),
        ),
        features=("weight_decay",),
        all_features_for=("AdamW",),
        witness=lambda: scenario(
            "AdamW", {"learning_rate": 0.1, "weight_decay": 0.1, "global_clipnorm": 1.0}
        ),
    ),
    # ---------------------------------------------------------------- clipping
    Mutant(
        "clipnorm_applied_globally",
        "optimizer.py",
        "            return [None if g is None else clipping.clip_by_norm(g, self.clipnorm, "
        "division, f32)\n                    for g in grads]  # fmt: skip",
        "            return clipping.clip_by_global_norm(grads, self.clipnorm, "
        "self.profile.global_norm_form)",
        "clipnorm clips by the global norm of all gradients (torch clip_grad_norm_) instead "
        "of per tensor",
        features=("clipnorm",),
        witness=lambda: scenario("SGD", {"clipnorm": 0.5}),
    ),
    Mutant(
        "global_clipnorm_applied_per_tensor",
        "optimizer.py",
        _lines(
            "            return clipping.clip_by_global_norm(",
            "                grads, self.global_clipnorm, self.profile.global_norm_form, f32",
            "            )",
        ),
        _lines(
            "            return [",
            "                None if g is None else clipping.clip_by_norm(g, self.global_clipnorm)",
            "                for g in grads",
            "            ]",
        ),
        "global_clipnorm clips each tensor by its own norm instead of the global norm",
        features=("global_clipnorm",),
        witness=lambda: scenario("SGD", {"global_clipnorm": 0.5}),
    ),
    Mutant(
        "global_norm_without_sqrt",
        "clipping.py",
        "        return np.sqrt(np.sum(np.stack(squares))).astype(dtype)",
        "        return np.sum(np.stack(squares)).astype(dtype)",
        "global norm = Σ t² without the square root (Keras 3 form)",
        profiles=("keras3",),
        features=("global_clipnorm",),
        witness=lambda: scenario("SGD", {"global_clipnorm": 0.5}, profile="keras3"),
    ),
    Mutant(
        "global_norm_halves_not_doubled",
        "clipping.py",
        "        return np.sqrt(np.sum(np.stack(halves)) * dtypes.const(2, dtype)).astype(dtype)",
        "        return np.sqrt(np.sum(np.stack(halves))).astype(dtype)",
        "global norm = sqrt(Σ l2_loss(t)) without the factor 2 (l2_loss is Σt²/2; TF form)",
        profiles=("keras2",),
        features=("global_clipnorm",),
        witness=lambda: scenario("SGD", {"global_clipnorm": 0.5}),
    ),
    Mutant(
        "clip_by_norm_always_rescales",
        "clipping.py",
        "    return _rewrap(g, (scaled / divisor).astype(t.dtype))",
        "    return _rewrap(g, (scaled / l2norm).astype(t.dtype))",
        "clip_by_norm rescales every gradient to norm c (normalises) instead of only those "
        "above c",
        features=("clipnorm",),
        witness=lambda: scenario("SGD", {"clipnorm": 100.0}),
    ),
    Mutant(
        "clipvalue_without_lower_bound",
        "clipping.py",
        "    return _rewrap(g, np.maximum(np.minimum(t, cv), -cv).astype(t.dtype))",
        "    return _rewrap(g, np.minimum(t, cv).astype(t.dtype))",
        "clipvalue clips only from above (min(t, c) without max(·, −c))",
        features=("clipvalue",),
        witness=lambda: scenario("SGD", {"clipvalue": 0.1}),
    ),
    Mutant(
        "clipvalue_applied_with_clipnorm",
        "optimizer.py",
        "            return [None if g is None else clipping.clip_by_norm(g, self.clipnorm, "
        "division, f32)",
        "            grads = [None if g is None else clipping.clip_by_norm(g, self.clipnorm, "
        "division, f32)",
        "clipvalue applied as well when clipnorm is set (Keras 2 ignores it: exactly one "
        "clipping transform)",
        profiles=("keras2",),
        features=("clipnorm",),
        trigger="clipnorm and clipvalue set together (Keras 2 accepts both)",
        witness=lambda: scenario("SGD", {"clipnorm": 100.0, "clipvalue": 0.1}),
    ),
    # ---------------------------------------------------------------- sparse gradients
    Mutant(
        "sparse_clipped_after_deduplication",
        "profiles.py",
        _lines(
            '        "filter_none",',
            '        "clip",',
            '        "sparse",',
        ),
        _lines(
            '        "filter_none",',
            '        "sparse",',
            '        "clip",',
        ),
        "sparse duplicates summed before clipping (the norm of the deduplicated values) "
        "instead of after",
        profiles=("keras2",),
        features=("sparse",),
        trigger="IndexedSlices with a repeated index together with a clipping argument",
        witness=lambda: scenario(
            "SGD", {"learning_rate": 1.0, "clipnorm": 5.0}, shapes=((3, 1),),
            gradients=_duplicate_rows, needs=("sparse", "clipnorm"),
        ),
    ),
    Mutant(
        "sparse_duplicates_last_wins",
        "sparse.py",
        "        summed[positions[i]] = summed[positions[i]] + row",
        "        summed[positions[i]] = row",
        "sparse deduplication keeps the last value of a repeated index instead of the sum",
        profiles=("keras2",),
        features=("sparse",),
        witness=lambda: scenario(
            "SGD", shapes=((3, 1),), gradients=_duplicate_rows, needs=("sparse",)
        ),
    ),
    Mutant(
        "densified_duplicates_last_wins",
        "sparse.py",
        "        dense[i] = dense[i] + row",
        "        dense[i] = row",
        "densifying IndexedSlices keeps the last value of a repeated index (scatter instead "
        "of scatter-add)",
        profiles=("keras3",),
        features=("sparse",),
        witness=lambda: scenario(
            "SGD", shapes=((3, 1),), gradients=_duplicate_rows, needs=("sparse",),
            profile="keras3",
        ),
    ),
    # ---------------------------------------------------------------- None gradients, replicas
    Mutant(
        "none_gradients_as_zeros",
        "optimizer.py",
        "        kept = [(g, v) for g, v in step.pairs if g is not None]",
        "        kept = [(np.zeros(v.shape, v.dtype) if g is None else g, v) "
        "for g, v in step.pairs]",
        "a None gradient treated as zeros (the variable's slots and momentum still move) "
        "instead of skipping the variable",
        features=("none_gradients",),
        trigger="a None gradient for a variable of a stateful optimizer (or with weight "
        "decay / EMA)",
        witness=lambda: scenario(
            "Adam", shapes=((3,), (3,)), gradients=_with_none([(1, 1), (1, 0), (1, 0)])
        ),
    ),
    Mutant(
        "build_skips_none_gradient_variables",
        "profiles.py",
        _lines(
            '        "build",',
            '        "filter_none",',
        ),
        _lines(
            '        "filter_none",',
            '        "build",',
        ),
        "the optimizer built only for the variables with a gradient at the first step "
        "(Keras 2.9/2.10), so a variable whose first gradient is None is unknown later",
        profiles=("keras2",),
        features=("none_gradients",),
        trigger="a variable whose first gradient is None and a later one is not",
        witness=lambda: scenario(
            "Adam", shapes=((3,), (3,)), gradients=_with_none([(1, 0), (1, 1)])
        ),
    ),
    Mutant(
        "replica_gradients_averaged",
        "optimizer.py",
        _lines(
            "        total = total + (to_dense(g) if isinstance(g, IndexedSlices) else g)",
            "    return total",
        ),
        _lines(
            "        total = total + (to_dense(g) if isinstance(g, IndexedSlices) else g)",
            "    return total / len(values)",
        ),
        "per-replica gradients averaged (all-reduce MEAN) instead of summed",
        features=("replicas",),
        witness=lambda: scenario("SGD", shapes=((3,),), gradients=_replicas, needs=("replicas",)),
    ),
    # ---------------------------------------------------------------- EMA
    Mutant(
        "ema_average_starts_at_zero",
        "optimizer.py",
        'initial_value=v.numpy() if self.profile.ema_init == "copy_at_build" else None,',
        "initial_value=None,",
        "EMA average initialised at zero instead of a copy of the variable at build "
        "(Keras 2)",
        profiles=("keras2",),
        features=("ema", "finalize"),
        witness=lambda: scenario("SGD", _EMA),
    ),
    Mutant(
        "ema_momentum_swapped",
        "optimizer.py",
        "average.assign(m * average.numpy() + one_minus_m * variable.numpy())",
        "average.assign(one_minus_m * average.numpy() + m * variable.numpy())",
        "EMA with m and 1 − m swapped (average ← (1 − m)·average + m·value)",
        features=("ema", "finalize"),
        witness=lambda: scenario("SGD", _EMA),
    ),
    Mutant(
        "ema_of_pre_update_value",
        "profiles.py",
        _lines(
            '        "update",',
            '        "ema",',
            '        "ema_overwrite",',
            '        "increment",',
        ),
        _lines(
            '        "ema",',
            '        "update",',
            '        "ema_overwrite",',
            '        "increment",',
        ),
        "EMA averages the variable before this step's update instead of after it",
        profiles=("keras2",),
        features=("ema", "finalize"),
        witness=lambda: scenario("SGD", _EMA),
    ),
    Mutant(
        "ema_overwrite_before_average_update",
        "profiles.py",
        _lines(
            '        "ema",',
            '        "ema_overwrite",',
            '        "increment",',
        ),
        _lines(
            '        "ema_overwrite",',
            '        "ema",',
            '        "increment",',
        ),
        "EMA overwrite one step late: the variables take the average of the previous step "
        "(overwrite before this step's average update)",
        profiles=("keras2",),
        features=("ema", "finalize"),
        witness=lambda: scenario("SGD", {**_EMA, "ema_overwrite_frequency": 2}),
    ),
    Mutant(
        "ema_overwrite_frequency_off_by_one",
        "optimizer.py",
        "if self.use_ema and frequency and (self._update_count() + 1) % frequency == 0:",
        "if self.use_ema and frequency and self._update_count() % frequency == 0:",
        "EMA overwrite when iterations % f == 0 before the increment (steps 1, f + 1, …) "
        "instead of steps f, 2f, …",
        features=("ema", "finalize"),
        witness=lambda: scenario("SGD", {**_EMA, "ema_overwrite_frequency": 2}),
    ),
    Mutant(
        "ema_first_step_not_initialised",
        "optimizer.py",
        "                first = self._update_count() == 0",
        "                first = False",
        "Keras 3 EMA: the zero-initialised average decays from 0 at step 1 instead of "
        "taking the variable's value (Keras 3.0.0–3.0.1)",
        profiles=("keras3",),
        features=("ema", "finalize"),
        witness=lambda: scenario("SGD", _EMA, profile="keras3"),
    ),
    Mutant(
        "ema_averages_zipped_positionally",
        "optimizer.py",
        _lines(
            "        for variable in self._ema_variables(step):",
            "            average = self._model_variables_moving_average"
            "[self._get_variable_index(variable)]",
        ),
        _lines(
            "        for position, variable in enumerate(self._ema_variables(step)):",
            "            average = self._model_variables_moving_average[position]",
        ),
        "EMA averages paired with the updated variables by position, not by index "
        "(Keras ≤ 2.13: misaligned once a gradient is None)",
        profiles=("keras2",),
        features=("ema", "finalize"),
        trigger="use_ema and a None gradient before another variable's gradient",
        witness=lambda: scenario(
            "SGD", _EMA, shapes=((3,), (3,)), gradients=_with_none([(0, 1), (1, 1)])
        ),
    ),
    Mutant(
        "ema_skips_variables_without_gradient",
        "profiles.py",
        '    ema_scope="all",',
        '    ema_scope="updated",',
        "Keras 3 EMA: only the variables with a gradient this step are averaged (Keras 3 "
        "averages every built variable)",
        profiles=("keras3",),
        features=("ema", "finalize"),
        trigger="use_ema and a None gradient for a variable whose average differs from its value",
        witness=lambda: scenario(
            "SGD", _EMA, shapes=((3,), (3,)),
            gradients=_with_none([(1, 1), (1, 1), (1, 0)]), profile="keras3",
        ),
    ),
    Mutant(
        "finalize_ignores_ema",
        "optimizer.py",
        _lines(
            "        if not self.use_ema:",
            "            return",
            "        if not self._built:",
        ),
        _lines(
            "        if True:",
            "            return",
            "        if not self._built:",
        ),
        "finalize_variable_values does not copy the averages into the variables",
        features=("finalize",),
        witness=lambda: scenario("SGD", _EMA, finalize=True),
    ),
    # ---------------------------------------------------------------- Keras 3 extras
    Mutant(
        "loss_scale_multiplied",
        "optimizer.py",
        "lambda gs: [_scale_values(g, scale, np.divide) for g in gs]",
        "lambda gs: [_scale_values(g, scale, np.multiply) for g in gs]",
        "Keras 3 loss_scale_factor multiplied into the gradients instead of divided out",
        profiles=("keras3",),
        features=("loss_scale",),
        witness=lambda: scenario("SGD", {"loss_scale_factor": 4.0}, profile="keras3"),
    ),
    Mutant(
        "gradient_accumulation_sums",
        "optimizer.py",
        "                ((g + acc.numpy()) / d, v)",
        "                (g + acc.numpy(), v)",
        "Keras 3 gradient accumulation applies the sum of the micro-batch gradients instead "
        "of their mean",
        profiles=("keras3",),
        features=("gradient_accumulation",),
        trigger="gradient_accumulation_steps ≥ 2",
        witness=lambda: scenario(
            "SGD", {"gradient_accumulation_steps": 2}, profile="keras3", steps=4
        ),
    ),
    # ---------------------------------------------------------------- schedules
    Mutant(
        "exponential_decay_staircase_ignored",
        "schedules.py",
        _lines(
            "        lr, _, decay_rate, p = self._progress(step)",
            "        return lr * elementary.power(decay_rate, p)",
        ),
        _lines(
            "        lr, dtype, decay_rate, _ = self._progress(step)",
            '        p = _cast(step, dtype, "step") / '
            '_cast(self.decay_steps, dtype, "decay_steps")',
            "        return lr * elementary.power(decay_rate, p)",
        ),
        "ExponentialDecay ignores staircase=True (continuous decay)",
        features=("schedule",),
        witness=lambda: scenario(
            "SGD", _schedule("ExponentialDecay", initial_learning_rate=0.1, decay_steps=3,
                             decay_rate=0.5, staircase=True), needs=("schedule",)
        ),
    ),
    Mutant(
        "cosine_warmup_off_by_one",
        "schedules.py",
        "        completed_fraction = step / warmup_steps",
        "        completed_fraction = (step + 1) / warmup_steps",
        "CosineDecay warmup counts steps from 1 (lr at step s is the one of s + 1)",
        features=("schedule",),
        witness=lambda: scenario(
            "SGD", _schedule("CosineDecay", initial_learning_rate=0.0, decay_steps=10,
                             warmup_target=0.1, warmup_steps=4), needs=("schedule",)
        ),
    ),
    Mutant(
        "polynomial_decay_power_ignored",
        "schedules.py",
        "(lr - end_learning_rate) * elementary.power(dtypes.const(1, dtype) - p, power)",
        "(lr - end_learning_rate) * (dtypes.const(1, dtype) - p)",
        "PolynomialDecay ignores power (always linear)",
        features=("schedule",),
        witness=lambda: scenario(
            "SGD", _schedule("PolynomialDecay", initial_learning_rate=0.1, decay_steps=10,
                             end_learning_rate=0.01, power=2.0), needs=("schedule",)
        ),
    ),
)

BY_ID: dict[str, Mutant] = {m.id: m for m in MUTANTS}
assert len(BY_ID) == len(MUTANTS), "mutant ids must be unique"
