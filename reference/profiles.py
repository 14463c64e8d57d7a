"""Semantic profiles: what differs between the Keras lines the reference follows.

A profile is data. The optimizer base class reads these fields and never tests
the profile's name, so every behavioural difference between the lines is listed
here, in one place, with its source.

* ``keras2`` (default) — the seed page (Keras 2.9 ``optimizer_experimental``) and
  its maintained line, tf-keras (keras-team/tf-keras ``tf_keras/optimizers/``,
  v2.21), whose pipeline order the notes §1.2 give.
* ``keras3`` — Keras 3 (keras-team/keras ``keras/src/optimizers/base_optimizer.py``),
  notes §1.3.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Profile:
    name: str
    source: str
    #: Stage names of ``apply_gradients`` in order (methods ``_stage_<name>``).
    pipeline: tuple[str, ...]

    # -- constructor ---------------------------------------------------------------------
    #: At most one of these clipping arguments may be not None.
    exclusive_clip_args: tuple[str, ...]
    clip_conflict_message: str
    ema_frequency_message: str
    #: Whether an ``int`` learning rate is accepted (converted to float32).
    int_learning_rate: bool
    #: ``"at_construction"``: a callable learning rate is called once to initialise
    #: the float32 learning-rate variable (``tf.Variable(callable)``);
    #: ``"every_step"``: called with no argument at each step.
    callable_learning_rate: str
    #: Base-class keyword arguments beyond the seed page's.
    extra_args: tuple[str, ...]
    #: Whether ``jit_compile`` is a constructor argument.
    jit_compile_arg: bool
    #: kwargs that are warned about and ignored.
    ignored_kwargs: tuple[str, ...]
    #: kwargs rejected as deprecated (ValueError); others are unknown.
    deprecated_kwargs: tuple[str, ...]
    #: Exception type and message for an unknown keyword argument.
    unknown_kwarg_error: type
    unknown_kwarg_message: str
    #: Keys of the base ``get_config`` in order.
    base_config_keys: tuple[str, ...]
    #: Constructor defaults that differ from the keras2 line, per optimizer class.
    default_overrides: dict[str, dict[str, object]] = field(default_factory=dict)
    #: Whether optimizer-specific argument checks of this line apply
    #: (for example Keras 3's ``SGD(momentum=0)`` int rejection).
    strict_hyperparameters: bool = False

    # -- apply ---------------------------------------------------------------------------
    #: ``apply_gradients([])``: ``"noop"`` returns ``iterations``, ``"raise"`` is the
    #: ValueError of unpacking an empty zip.
    empty_grads_and_vars: str = "noop"
    all_none_message: str = ""
    unknown_variable_error: type = KeyError
    unknown_variable_message: str = ""
    #: ``"half_squared"`` (TF ``sqrt(2·Σ l2_loss)``) or ``"squared"`` (Keras 3).
    global_norm_form: str = "half_squared"
    #: Sparse gradients after clipping: ``"deduplicate"`` keeps IndexedSlices with
    #: summed duplicates for the optimizer's sparse path; ``"densify"`` scatters them
    #: (duplicates summed), the dense semantics Keras 3's sparse tests assert. Keras 3 on
    #: TensorFlow does not sum repeated indices before non-linear operations (Adam's g²
    #: becomes Σg_i², not (Σg_i)²); a local probe against Keras 3.15.1 confirmed equality
    #: for unique indices and the divergence for repeated ones: the diagnosis variant
    #: ``"keep_duplicates"``, IndexedSlices handed to the optimizer's sparse path as they
    #: are (repeated rows scatter-added one by one; Keras 2.9 had no deduplication).
    sparse_gradients: str = "deduplicate"

    # -- EMA -----------------------------------------------------------------------------
    #: ``"copy_at_build"``: the average starts as the variable's value at build;
    #: ``"first_step"``: it starts at zero and step 1 uses momentum 0.
    ema_init: str = "copy_at_build"
    #: ``"updated"``: variables with a gradient this step, by index;
    #: ``"all"``: every built variable.
    ema_scope: str = "updated"
    #: ``"python"``: ``m·a + (1 − m)·v`` with ``1 − m`` computed by Python;
    #: ``"tensor"``: momentum is a tensor in the variable dtype and ``1 − m`` too.
    ema_arithmetic: str = "python"
    #: ``finalize_variable_values``: ``"by_index"`` looks each variable up;
    #: ``"zip"`` pairs positionally after a length check (ValueError).
    finalize: str = "by_index"

    # -- attributes ----------------------------------------------------------------------
    #: ``learning_rate`` of a schedule-driven optimizer: ``"last_used"`` (the value
    #: the last step used, schedule(0) before any step) or ``"next_step"``.
    learning_rate_getter: str = "last_used"
    iterations_settable: bool = True
    #: ``variables`` lists the float learning-rate variable after ``iteration``.
    variables_include_learning_rate: bool = False
    #: ``"{slot}/{var}"`` (Keras 2) or ``"{var}_{slot}"`` (Keras 3) slot variable names.
    slot_name_format: str = "{slot}/{var}"
    #: Whether slot variable names use the optimizer's ``keras3_slot_names``
    #: (``momentum`` for ``m``, …). ``get_slot`` always takes the tf-keras names.
    keras3_slot_vocabulary: bool = False
    #: Whether ``exclude_from_weight_decay`` after build raises ValueError.
    exclude_after_build_raises: bool = True
    #: ``x·rsqrt(y)`` (tf-keras, computed as ``x·(1/sqrt(y))``) or ``x/sqrt(y)``
    #: (Keras 3) where the sources differ (RMSprop, Adafactor).
    reciprocal_sqrt: str = "rsqrt"
    #: How ``initializers.Constant(c)`` turns a Python float into an initial slot
    #: value (Adagrad's accumulator): ``"direct"`` (tf-keras ``tf.constant(c, dtype)``,
    #: one rounding) or ``"via_floatx"`` (Keras 3 ``ops.cast(c, dtype)``, which on
    #: TensorFlow rounds c to float32 first, tensorflow/tensorflow#35938).
    constant_initializer: str = "direct"
    #: Ftrl's initial accumulator: ``"fill_float32"`` (tf-keras
    #: ``tf.cast(tf.fill(shape, acc₀), dtype)``: float32 first, whatever
    #: ``constant_initializer`` says) or ``"initializer"`` (Keras 3
    #: ``initializers.Constant``, i.e. ``constant_initializer``).
    ftrl_accumulator: str = "fill_float32"
    #: A Python constant c times a square: ``"left_to_right"`` (c·g)·g (tf-keras
    #: Adadelta ``(1 - rho) * grad * grad``) or ``"square_first"`` c·(g·g) (Keras 3
    #: ``ops.multiply(1 - rho, ops.square(grad))``).
    scaled_square: str = "left_to_right"
    #: Nadam's once-per-step product Π of momentum factors. ``"u_t"`` (tf-keras
    #: ``update_step``): Π ← Π·u_t, u_t = β1·(1 − 0.5·0.96ᵗ) with β1 and 0.96 through
    #: ``tf.cast``, and every updated variable must have Π's dtype. ``"beta_1_first"``
    #: (Keras 3 ``Nadam._backend_update_step``): Π ← (Π·β1)·(1 − 0.5·0.96ᵗ) with
    #: Python-scalar operands in Π's dtype, Π cast to each variable's dtype when read.
    nadam_u_product: str = "u_t"
    #: ``cast(python_number, dtype)`` as the backend does it: ``"via_float32"``
    #: (TensorFlow's ``tf.cast`` converts the number to float32 first; tf-keras and
    #: Keras 3 on TensorFlow) or ``"direct"`` (one rounding, as JAX's ``asarray``).
    python_scalar_cast: str = "via_float32"
    #: AdamW(weight_decay=None) message.
    adamw_missing_weight_decay: str = ""
    #: Lion(beta_1 outside (0, 1]) ValueError message, formatted with ``beta_1``
    #: (tf-keras ``tf_keras/optimizers/lion.py``; Keras 3 ``keras/src/optimizers/lion.py``).
    lion_beta_1_message: str = (
        "`beta_1`={beta_1} must be between ]0, 1]. Otherwise, the optimizer degenerates to SignSGD."
    )

    # -- variants ------------------------------------------------------------------------
    # Both Keras lines agree on the defaults below. The other values are the known
    # variants of other libraries and versions (design anchors, notes §4), switched on
    # only by the deviation diagnosis (optcheck.conformance.diagnosis) to say which one
    # an implementation follows; they are not Keras semantics.
    #: Adam/AdamW ε: ``"hat"`` (Keras: lr·√(1−β2ᵗ)/(1−β1ᵗ)·m/(√v + ε̂)) or
    #: ``"corrected"`` (paper, torch, optax: lr·m̂/(√v̂ + ε), v̂ = v/(1−β2ᵗ)).
    adam_epsilon: str = "hat"
    #: AMSGrad's running maximum of the raw v (Keras, torch) or of v̂ = v/(1−β2ᵗ).
    amsgrad_max: str = "raw"
    #: The β of Adam's, AdamW's and Adamax's βᵗ: ``"profile"`` (Keras: ``tf.cast``, as
    #: ``python_scalar_cast`` says) or ``"direct"``, the Python float rounded once to the
    #: variable dtype — a library that takes one β for both βᵗ and 1 − β (torch).
    beta_power_cast: str = "profile"
    #: Adagrad / RMSprop: ε inside the square root (Keras ≥ 2.11) or outside,
    #: g/(√acc + ε) (torch, optax, Keras 2.9 RMSprop).
    epsilon_in_sqrt: bool = True
    #: Nadam's momentum schedule u_t = β1·(1 − 0.5·0.96^(k·t)): k = 1 in Keras's
    #: new optimizers, 0.004 in legacy Keras and torch (``momentum_decay=4e-3``), ∞ for
    #: no schedule, u_t = β1 (optax ``nadam``: 0.96^∞ = 0).
    nadam_schedule_rate: float = 1.0
    #: Nadam's ``1 − β1`` and ``1 − β2``: ``"tensor"`` (Keras: β through ``cast``, then
    #: 1 − β in the variable dtype) or ``"python"``, 1 − β of the Python floats rounded
    #: once (Keras 3's torch backend, ``torch_nadam.py``: ``alpha=1 - self.beta_1``;
    #: torch.optim.NAdam).
    nadam_one_minus_beta: str = "tensor"
    #: Lion's dense ``1 − β1`` and ``1 − β2``, the same two forms (Keras 3's torch backend,
    #: ``torch_lion.py``: ``alpha=1 - self.beta_1``): with β1 = 1 − 1e-16 the cast form
    #: is 0 in float32 and a zero gradient term leaves the variable, the Python one moves it.
    lion_one_minus_beta: str = "tensor"
    #: When Nadam's Π advances: ``"once_per_step"`` (the intended semantics, notes §2.9;
    #: Keras 3) or ``"python_counter"`` (tf-keras eager ``update_step``: every variable's
    #: update advances Π unless a Python counter, 1 at build and incremented with each
    #: advance, equals ``iterations + 2``; with ``iterations`` preset to n before the
    #: first step, the first n + 1 variable updates each advance it).
    nadam_u_product_advance: str = "once_per_step"
    #: A Python float passed to a Keras ``ops`` call (EMA momentum, clipnorm,
    #: global_clipnorm, clipvalue; Ftrl's −p, l1, 2·l2_shrinkage) on float64 variables:
    #: ``"dtype"`` (TensorFlow converts it to the tensor's dtype; JAX keeps it weak) or
    #: ``"float32"`` (Keras 3's torch backend: ``convert_to_tensor`` gives floatx, and
    #: ``ops.minimum``/``maximum`` of a float64 tensor and a Python float compute in
    #: float32, keras-team/keras ``backend/torch/numpy.py``).
    ops_python_float: str = "dtype"
    #: Decoupled weight decay: ``"subtract"`` (Keras: v ← v − v·wd·lr in the variable
    #: dtype) or ``"scale_float32"`` (Keras 3's torch backend, ``torch_optimizer.py``:
    #: v ← v·(1 − wd·lr), the factor computed in float32 from the float32 rate).
    weight_decay_form: str = "subtract"
    #: ``"decoupled"`` (Keras: v ← v − v·wd·lr before the update) or ``"l2"``
    #: (wd·v added to the gradient, torch ``Adam(weight_decay=)``).
    weight_decay_coupling: str = "decoupled"
    #: ``clipnorm`` per tensor (Keras) or over all tensors (torch ``clip_grad_norm_``,
    #: optax ``clip_by_global_norm``; standalone Keras 1).
    clipnorm_scope: str = "per_tensor"
    #: ε > 0: clipping scales by min(1, c/(N + ε)) (torch ``clip_grad_norm_``, ε = 1e-6)
    #: instead of c/max(N, c).
    clip_norm_epsilon: float = 0.0
    #: clipnorm's division by max(N, c): ``"divide"`` (Keras), or ``"reciprocal"``,
    #: (t·c)·(1/max(N, c)), the rewrite XLA applies to a division by a broadcast value.
    clip_division: str = "divide"
    #: The step a schedule is evaluated at: ``iterations + schedule_offset``.
    schedule_offset: int = 0
    #: SGD momentum: ``"velocity"`` (Keras: m ← μ·m − lr·g, v ← v + m) or
    #: ``"gradient"`` (torch: b ← μ·b + g, v ← v − lr·b; m observed as −lr·b), equal
    #: for a constant rate.
    sgd_momentum: str = "velocity"
    #: Adamax ε: in the denominator, m/((1−β1ᵗ)·(u + ε)) (Keras), or ``"inside_max"``
    #: u ← max(β2·u, |g| + ε), m/((1−β1ᵗ)·u) (torch; u observed as u − ε).
    adamax_epsilon: str = "denominator"
    #: max/min in the optimizers' updates: ``"propagate"`` NaN (NumPy, JAX, TF
    #: kernels) or ``"ignore"`` it when the other operand is a number (TF's XLA:CPU
    #: fast min/max under ``jit_compile``; ``np.fmax``).
    nan_in_max: str = "propagate"

    def __str__(self) -> str:
        return self.name


KERAS2 = Profile(
    name="keras2",
    source="keras-team/tf-keras tf_keras/optimizers/optimizer.py (v2.21); seed page Keras 2.9",
    pipeline=(
        "aggregate",
        "learning_rate",
        "collect",
        "build",
        "filter_none",
        "clip",
        "sparse",
        "weight_decay",
        "update",
        "ema",
        "ema_overwrite",
        "increment",
        "constraints",
    ),
    exclusive_clip_args=("clipnorm", "global_clipnorm"),
    clip_conflict_message=(
        "At most one of `clipnorm` and `global_clipnorm` can be set. "
        "Received: clipnorm={clipnorm}, global_clipnorm={global_clipnorm}."
    ),
    ema_frequency_message=(
        "`ema_overwrite_frequency` must be an integer > 1 or None. "
        "Received: ema_overwrite_frequency={value}"
    ),
    int_learning_rate=True,
    callable_learning_rate="at_construction",
    extra_args=(),
    jit_compile_arg=True,
    ignored_kwargs=("lr", "is_legacy_optimizer"),
    deprecated_kwargs=("decay", "gradient_aggregator", "gradient_transformers"),
    unknown_kwarg_error=TypeError,
    unknown_kwarg_message=(
        "{key} is not a valid argument, kwargs should be empty  for "
        "`optimizer_experimental.Optimizer`."
    ),
    base_config_keys=(
        "name",
        "weight_decay",
        "clipnorm",
        "global_clipnorm",
        "clipvalue",
        "use_ema",
        "ema_momentum",
        "ema_overwrite_frequency",
        "jit_compile",
        "is_legacy_optimizer",
    ),
    default_overrides={},
    empty_grads_and_vars="noop",
    all_none_message=(
        "No gradients provided for any variable: {names}. Provided `grads_and_vars` is {pairs}."
    ),
    unknown_variable_error=KeyError,
    unknown_variable_message=(
        "The optimizer cannot recognize variable {name}. This usually means you are "
        "trying to call the optimizer to update different parts of the model separately. "
        "Please call `optimizer.build(variables)` with the full list of trainable variables "
        "before the training loop or use legacy optimizer "
        "`tf.keras.optimizers.legacy.{cls}."
    ),
    global_norm_form="half_squared",
    sparse_gradients="deduplicate",
    ema_init="copy_at_build",
    ema_scope="updated",
    ema_arithmetic="python",
    finalize="by_index",
    learning_rate_getter="last_used",
    iterations_settable=True,
    variables_include_learning_rate=False,
    slot_name_format="{slot}/{var}",
    exclude_after_build_raises=True,
    adamw_missing_weight_decay=(
        "Missing value of `weight_decay` which is required and must be a float value."
    ),
)

KERAS3 = Profile(
    name="keras3",
    source="keras-team/keras keras/src/optimizers/base_optimizer.py (3.x HEAD)",
    pipeline=(
        "collect",
        "build",
        "overwrite_with_gradient",
        "filter_none",
        "unscale",
        "accumulate",
        "learning_rate",
        "clip",
        "sparse",
        "weight_decay",
        "aggregate",
        "update",
        "ema",
        "ema_overwrite",
        # _backend_apply_gradients increments; apply() then applies constraints.
        "increment",
        "constraints",
    ),
    exclusive_clip_args=("clipnorm", "clipvalue", "global_clipnorm"),
    clip_conflict_message=(
        "Only one of `clipnorm`, `clipvalue` and `global_clipnorm` can be set. "
        "Received: clipnorm={clipnorm}, clipvalue={clipvalue}, "
        "global_clipnorm={global_clipnorm}"
    ),
    ema_frequency_message=(
        "`ema_overwrite_frequency` must be an integer >= 1 or None. "
        "Received: ema_overwrite_frequency={value}"
    ),
    int_learning_rate=False,
    callable_learning_rate="every_step",
    extra_args=("loss_scale_factor", "gradient_accumulation_steps"),
    jit_compile_arg=False,
    ignored_kwargs=("decay",),
    deprecated_kwargs=(),
    unknown_kwarg_error=ValueError,
    unknown_kwarg_message="Argument(s) not recognized: {kwargs}",
    base_config_keys=(
        "name",
        "learning_rate",
        "weight_decay",
        "clipnorm",
        "global_clipnorm",
        "clipvalue",
        "use_ema",
        "ema_momentum",
        "ema_overwrite_frequency",
        "loss_scale_factor",
        "gradient_accumulation_steps",
    ),
    default_overrides={
        "Lion": {"learning_rate": 1e-3},
        "RMSprop": {"ema_overwrite_frequency": None},
    },
    strict_hyperparameters=True,
    empty_grads_and_vars="raise",
    all_none_message="No gradients provided for any variable.",
    unknown_variable_error=ValueError,
    unknown_variable_message=(
        "Unknown variable: {variable}. This optimizer can only be called for the variables "
        "it was originally built with. When working with a new set of variables, you should "
        "recreate a new optimizer instance."
    ),
    global_norm_form="squared",
    sparse_gradients="densify",
    ema_init="first_step",
    ema_scope="all",
    ema_arithmetic="tensor",
    finalize="zip",
    learning_rate_getter="next_step",
    iterations_settable=False,
    variables_include_learning_rate=True,
    slot_name_format="{var}_{slot}",
    keras3_slot_vocabulary=True,
    exclude_after_build_raises=False,
    reciprocal_sqrt="divide",
    constant_initializer="via_floatx",
    ftrl_accumulator="initializer",
    scaled_square="square_first",
    nadam_u_product="beta_1_first",
    adamw_missing_weight_decay=(
        "Argument `weight_decay` must be a float. Received: weight_decay=None"
    ),
    lion_beta_1_message=(
        "Argument `beta_1` must be in the [0, 1] range. Otherwise, the optimizer "
        "degenerates to SignSGD. Received: beta_1={beta_1}."
    ),
)

PROFILES: dict[str, Profile] = {p.name: p for p in (KERAS2, KERAS3)}
DEFAULT_PROFILE = KERAS2


def get_profile(profile) -> Profile:
    """Resolve a profile name or object; ValueError names the known profiles."""
    if isinstance(profile, Profile):
        return profile
    if profile is None:
        return DEFAULT_PROFILE
    if isinstance(profile, str) and profile in PROFILES:
        return PROFILES[profile]
    raise ValueError(f"Unknown profile {profile!r}. Known profiles: {sorted(PROFILES)}.")


def difference_table(a: Profile = KERAS2, b: Profile = KERAS3) -> str:
    """A Markdown table of every field on which two profiles differ."""

    def show(name, value) -> str:
        if isinstance(value, type):
            value = value.__name__
        if isinstance(value, tuple):
            text = (" → " if name == "pipeline" else ", ").join(value) or "—"
        else:
            text = repr(value)
        return text.replace("|", "\\|").replace("\n", " ")

    from dataclasses import fields

    rows = [f"| field | {a.name} | {b.name} |", "|---|---|---|"]
    for f in fields(Profile):
        if f.name in ("name", "source"):
            continue
        left, right = getattr(a, f.name), getattr(b, f.name)
        if left != right:
            rows.append(f"| `{f.name}` | {show(f.name, left)} | {show(f.name, right)} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":  # python -m optcheck.reference.profiles > table for docs/reference.md
    print(difference_table(), end="")
