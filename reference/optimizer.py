"""The ``Optimizer`` base class of the seed page, as an executable specification.

Document: ``tf.keras.optimizers.experimental.Optimizer`` (Keras 2.9 API page,
keras-team/keras v2.9.0 ``keras/optimizers/optimizer_experimental/optimizer.py``),
with the maintained line (keras-team/tf-keras ``tf_keras/optimizers/optimizer.py``)
filling what the page leaves open, and Keras 3 as a second profile.

``apply_gradients`` runs a sequence of named stages. The order is the profile's
``pipeline`` (:mod:`~optcheck.reference.profiles`); for the default ``keras2``
profile it is (semantics notes §1.2)::

    aggregate      sum per-replica gradients (unless skip_gradients_aggregation)
    learning_rate  schedule(iterations) — the step count *before* the increment
    collect        an empty list is a no-op
    build          slots for every variable, including those whose gradient is None
    filter_none    drop (None, v) pairs with a warning; all None is a ValueError
    clip           clipnorm > global_clipnorm > clipvalue, exactly one of them
    sparse         IndexedSlices duplicates summed (after clipping)
    weight_decay   v ← v − v·wd·lr for variables not excluded
    update         update_step(g, v) for each pair
    ema            average ← m·average + (1 − m)·v (v after the update)
    ema_overwrite  v ← average when (iterations + 1) % frequency == 0
    increment      iterations += 1
    constraints    v ← constraint(v)

Every operation is done in the variable's dtype with Keras's casting rules
(:mod:`~optcheck.reference.dtypes`). The float64 oracle is the same code run on
variables and gradients promoted to float64 (:func:`~optcheck.reference.run.run`).

Differences from the sources, all deliberate:

* Malformed ``grads_and_vars`` (not pairs, not a Variable, a gradient whose shape
  or dtype does not fit) raises TypeError / ValueError naming the variable before
  any state changes; Keras fails later with an unrelated message.
* An unknown variable raises (KeyError in keras2, ValueError in keras3) before any
  state changes; tf-keras raises from inside the update loop.
* ``jit_compile`` is recorded as given; it has no effect on NumPy.
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np

from . import clipping, dtypes
from .autodiff import GradientTape, stop_recording
from .profiles import Profile, get_profile
from .schedules import LearningRateSchedule
from .schedules import deserialize as deserialize_schedule
from .schedules import serialize as serialize_schedule
from .sparse import IndexedSlices, PerReplica, deduplicate, to_dense
from .variable import Variable

#: Marks an argument left at its profile-dependent default.
DEFAULT = type("Default", (), {"__repr__": lambda self: "DEFAULT"})()

_STOP = object()


def _is_number(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _check_number(name: str, value, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if not _is_number(value):
        kind = "a float or None" if allow_none else "a float"
        raise TypeError(f"`{name}` must be {kind}. Received: {name}={value!r}")


class _Step:
    """What flows between the stages of one ``apply_gradients`` call."""

    def __init__(self, pairs, skip_aggregation):
        self.pairs = pairs
        self.skip_aggregation = skip_aggregation


class Optimizer:
    """Abstract optimizer base class (seed page ``Optimizer``).

    Args:
        name: the name of the optimizer; prefixes its variables.
        clipnorm: if set, each gradient is clipped to this norm.
        clipvalue: if set, each gradient is clipped element-wise to ``[−c, c]``.
        global_clipnorm: if set, all gradients are scaled so their global norm
            is at most this value.
        use_ema: keep an exponential moving average of the trained variables.
        ema_momentum: ``average ← m·average + (1 − m)·value``; in [0, 1].
        ema_overwrite_frequency: every this many steps the variables are
            overwritten by their averages; None (or 0) never.
        jit_compile: accepted and recorded; no effect in NumPy.
        weight_decay: decoupled decay ``v ← v − v·wd·lr`` before each update;
            None disables it (the base class default is 0, as in tf-keras).
        profile: ``"keras2"`` (default) or ``"keras3"``; see
            :mod:`~optcheck.reference.profiles`.
        **kwargs: backward-compatible keywords, handled as the profile's Keras
            line does (``lr`` ignored with a warning, ``decay`` rejected, …);
            ``loss_scale_factor`` and ``gradient_accumulation_steps`` in keras3.
    """

    #: Keras 3 names of this optimizer's slots where they differ from tf-keras's.
    keras3_slot_names: dict[str, str] = {}

    def __init__(
        self,
        name,
        clipnorm=None,
        clipvalue=None,
        global_clipnorm=None,
        use_ema=False,
        ema_momentum=0.99,
        ema_overwrite_frequency=None,
        jit_compile=DEFAULT,
        *,
        weight_decay=0,
        profile=None,
        **kwargs,
    ):
        self.profile: Profile = get_profile(profile)
        extra = self._process_kwargs(kwargs)
        if not self.profile.jit_compile_arg and jit_compile is not DEFAULT:
            raise self.profile.unknown_kwarg_error(
                self.profile.unknown_kwarg_message.format(
                    key="jit_compile", kwargs={"jit_compile": jit_compile}
                )
            )
        if name is not None and not isinstance(name, str):
            raise TypeError(f"`name` must be a string. Received: name={name!r}")
        for arg, value in (
            ("clipnorm", clipnorm),
            ("clipvalue", clipvalue),
            ("global_clipnorm", global_clipnorm),
            ("weight_decay", weight_decay),
            ("ema_momentum", ema_momentum),
        ):
            _check_number(arg, value, allow_none=arg != "ema_momentum")
        self.name = name
        self.weight_decay = weight_decay
        self.clipnorm = clipnorm
        self.clipvalue = clipvalue
        self.global_clipnorm = global_clipnorm
        self.use_ema = use_ema
        self.jit_compile = True if jit_compile is DEFAULT else jit_compile
        self.loss_scale_factor = extra.get("loss_scale_factor")
        self.gradient_accumulation_steps = extra.get("gradient_accumulation_steps")
        _check_number("loss_scale_factor", self.loss_scale_factor)
        steps = self.gradient_accumulation_steps
        if steps and (not isinstance(steps, int) or isinstance(steps, bool) or steps < 2):
            raise ValueError(
                "`gradient_accumulation_steps` must be an integer >= 2. "
                f"Received: gradient_accumulation_steps={steps}"
            )
        if use_ema:
            if ema_momentum > 1 or ema_momentum < 0:
                raise ValueError(
                    "`ema_momentum` must be in the range [0, 1]. "
                    f"Received: ema_momentum={ema_momentum}"
                )
            if ema_overwrite_frequency and (
                not isinstance(ema_overwrite_frequency, int)
                or isinstance(ema_overwrite_frequency, bool)
                or ema_overwrite_frequency < 1
            ):
                raise ValueError(
                    self.profile.ema_frequency_message.format(value=ema_overwrite_frequency)
                )
        self.ema_momentum = ema_momentum
        self.ema_overwrite_frequency = ema_overwrite_frequency
        clip_args = {
            "clipnorm": clipnorm,
            "clipvalue": clipvalue,
            "global_clipnorm": global_clipnorm,
        }
        if sum(clip_args[a] is not None for a in self.profile.exclusive_clip_args) > 1:
            raise ValueError(self.profile.clip_conflict_message.format(**clip_args))

        self._iterations = Variable(0, dtype="int64", name="iteration", trainable=False)
        self._variables: list[Variable] = []
        self._slots: dict[int, dict[str, Variable]] = {}
        self._slot_names: list[str] = []
        self._index_dict: dict[int, int] = {}
        self._built = False
        self._learning_rate = None
        self._step_learning_rate = None
        self._exclude_from_weight_decay: set[int] = set()
        self._exclude_from_weight_decay_names: list[str] = []

    # ---------------------------------------------------------------------------------
    # construction helpers
    # ---------------------------------------------------------------------------------
    def _process_kwargs(self, kwargs: dict) -> dict:
        profile = self.profile
        extra = {k: kwargs.pop(k) for k in profile.extra_args if k in kwargs}
        for key in profile.ignored_kwargs:
            if key in kwargs and kwargs.pop(key) is not None and key != "is_legacy_optimizer":
                warnings.warn(
                    f"`{key}` is not supported by the {profile.name} optimizers and is ignored.",
                    UserWarning,
                    stacklevel=3,
                )
        for key in kwargs:
            if key in profile.deprecated_kwargs:
                raise ValueError(
                    f"{key} is deprecated in the new Keras optimizer, please check the "
                    "docstring for valid arguments, or use the legacy optimizer, e.g., "
                    f"tf.keras.optimizers.legacy.{type(self).__name__}."
                )
            raise profile.unknown_kwarg_error(
                profile.unknown_kwarg_message.format(key=key, kwargs=kwargs)
            )
        return extra

    @classmethod
    def _profile_default(cls, profile, arg: str, value, fallback):
        """``value`` unless it is DEFAULT, then the profile's default for ``arg``."""
        if value is not DEFAULT:
            return value
        overrides = get_profile(profile).default_overrides.get(cls.__name__, {})
        return overrides.get(arg, fallback)

    def _build_learning_rate(self, learning_rate):
        """Hold ``learning_rate`` as Keras does: float32 variable, schedule or callable."""
        if isinstance(learning_rate, LearningRateSchedule):
            if self.profile.learning_rate_getter == "last_used":
                current = np.asarray(learning_rate(self._iterations.numpy()))
                self._current_learning_rate = Variable(
                    current, name="current_learning_rate", trainable=False
                )
            return learning_rate
        if callable(learning_rate) and not isinstance(learning_rate, Variable):
            if self.profile.callable_learning_rate == "every_step":
                return learning_rate
            learning_rate = learning_rate()
        if isinstance(learning_rate, Variable):
            learning_rate = learning_rate.numpy()
        if self.profile.int_learning_rate:
            ok = _is_number(learning_rate) or (
                isinstance(learning_rate, np.ndarray) and learning_rate.ndim == 0
            )
        else:
            ok = isinstance(learning_rate, float)
        if not ok:
            if self.profile.int_learning_rate:
                raise TypeError(
                    "`learning_rate` must be a float, a LearningRateSchedule or a callable. "
                    f"Received: learning_rate={learning_rate!r}"
                )
            raise ValueError(
                "Argument `learning_rate` should be float, or an instance of "
                "LearningRateSchedule, or a callable (that takes in the current iteration "
                "value and returns the corresponding learning rate value). "
                f"Received instead: learning_rate={learning_rate}"
            )
        return Variable(
            np.asarray(learning_rate, dtype=dtypes.FLOATX),
            name="learning_rate",
            trainable=False,
        )

    # ---------------------------------------------------------------------------------
    # attributes
    # ---------------------------------------------------------------------------------
    @property
    def iterations(self) -> Variable:
        """Steps applied so far (``apply_gradients`` calls that were not no-ops).

        With Keras 3 gradient accumulation this is the number of real updates
        (micro-steps // gradient_accumulation_steps), returned as a snapshot.
        """
        if self.gradient_accumulation_steps:
            return Variable(
                self._iterations.numpy() // self.gradient_accumulation_steps,
                dtype="int64",
                name="iteration",
                trainable=False,
            )
        return self._iterations

    @iterations.setter
    def iterations(self, variable):
        if not self.profile.iterations_settable:
            raise AttributeError(f"`iterations` of a {self.profile.name} optimizer is read-only.")
        if self._built:
            raise RuntimeError(
                "Cannot set `iterations` to a new Variable after the Optimizer weights have "
                f"been created. Here it is attempting to set `iterations` to {variable}."
                "Usually this means you are trying to set `iterations` after calling "
                "`apply_gradients()`. Please set `iterations` before calling "
                "`apply_gradients()`."
            )
        if isinstance(variable, Variable) and variable.dtype.kind in "iu":
            self._iterations = variable
        elif isinstance(variable, numbers.Integral) and not isinstance(variable, bool):
            self._iterations = Variable(int(variable), dtype="int64", name="iteration")
        else:
            raise TypeError(
                f"`iterations` must be an integer Variable or an int. Received: {variable!r}"
            )

    @property
    def learning_rate(self):
        """The learning rate.

        A float learning rate is a float32 Variable (assigning a number to this
        attribute assigns the variable). With a schedule: keras2 returns the rate
        the last step used (schedule(0) before the first step); keras3 returns
        ``schedule(iterations)``, the rate of the next step. A keras3 callable is
        called.
        """
        lr = self._learning_rate
        if lr is None:
            raise ValueError(
                "Missing learning rate, please set self.learning_rate at optimizer creation time."
            )
        if isinstance(lr, LearningRateSchedule):
            if self.profile.learning_rate_getter == "last_used":
                return self._current_learning_rate
            return np.asarray(lr(self._iterations.numpy()))
        if callable(lr) and not isinstance(lr, Variable):
            return np.asarray(lr())
        return lr

    @learning_rate.setter
    def learning_rate(self, learning_rate):
        if isinstance(learning_rate, LearningRateSchedule) or (
            callable(learning_rate)
            and not isinstance(learning_rate, Variable)
            and self.profile.callable_learning_rate == "every_step"
        ):
            self._learning_rate = self._build_learning_rate(learning_rate)
            return
        if isinstance(self._learning_rate, LearningRateSchedule):
            raise TypeError(
                "This optimizer was created with a `LearningRateSchedule` object as its "
                "`learning_rate` constructor argument, hence its learning rate is not "
                "settable. If you need the learning rate to be settable, you should "
                "instantiate the optimizer with a float `learning_rate` argument."
            )
        new = self._build_learning_rate(learning_rate)
        if isinstance(self._learning_rate, Variable):
            self._learning_rate.assign(new.numpy())
        else:
            self._learning_rate = new

    @property
    def lr(self):
        """Alias of ``learning_rate`` (tf-keras keeps it for compatibility)."""
        return self.learning_rate

    @lr.setter
    def lr(self, value):
        self.learning_rate = value

    @property
    def variables(self) -> list[Variable]:
        """``[iteration, (learning_rate in keras3), *optimizer variables in creation order]``."""
        head = [self._iterations]
        if self.profile.variables_include_learning_rate and isinstance(
            self._learning_rate, Variable
        ):
            head.append(self._learning_rate)
        return head + list(self._variables)

    # ---------------------------------------------------------------------------------
    # variables
    # ---------------------------------------------------------------------------------
    def add_variable(self, shape, dtype=None, initializer="zeros", name=None) -> Variable:
        """Create an optimizer variable (``zeros``/``ones`` or a callable initializer)."""
        shape = () if shape is None else tuple(int(d) for d in shape)
        dtype = dtypes.FLOATX if dtype is None else dtypes.as_dtype(dtype)
        if isinstance(initializer, str):
            if initializer not in ("zeros", "ones"):
                raise ValueError(
                    f"Unknown initializer {initializer!r}: use 'zeros', 'ones' or a callable "
                    "(shape, dtype) -> array."
                )
            value = (np.zeros if initializer == "zeros" else np.ones)(shape, dtype=dtype)
        elif callable(initializer):
            value = np.asarray(initializer(shape, dtype), dtype=dtype)
        else:
            raise TypeError(
                f"initializer must be a string or a callable. Received: {initializer!r}"
            )
        variable = Variable(value, dtype=dtype, name=name, trainable=False)
        self._variables.append(variable)
        return variable

    def add_variable_from_reference(
        self, model_variable, variable_name, shape=None, initial_value=None
    ) -> Variable:
        """Create an optimizer variable shaped and typed like ``model_variable``.

        The name follows the profile: ``{variable_name}/{model_variable.name}`` in
        keras2 (for example ``m/dense_1``), ``{model_variable.name}_{keras3 name}``
        in keras3. The new variable is also registered as the slot
        ``variable_name`` of ``model_variable`` (see :meth:`get_slot`).
        """
        if not isinstance(model_variable, Variable):
            raise TypeError(
                f"model_variable must be a Variable. Received: {type(model_variable).__name__}"
            )
        if initial_value is None:
            value = np.zeros(
                model_variable.shape if shape is None else tuple(shape), dtype=model_variable.dtype
            )
        else:
            value = initial_value
        slot = variable_name
        if self.profile.keras3_slot_vocabulary:
            slot = self.keras3_slot_names.get(variable_name, variable_name)
        name = self.profile.slot_name_format.format(slot=slot, var=model_variable.name)
        variable = Variable(value, dtype=model_variable.dtype, name=name, trainable=False)
        self._variables.append(variable)
        self._slots.setdefault(model_variable._unique_id, {})[variable_name] = variable
        if variable_name not in self._slot_names:
            self._slot_names.append(variable_name)
        return variable

    def get_slot_names(self) -> list[str]:
        """Names of the slots created so far, in creation order (``average`` for EMA)."""
        return list(self._slot_names)

    def get_slot(self, variable, slot_name: str) -> Variable:
        """The optimizer variable ``slot_name`` kept for ``variable``."""
        try:
            return self._slots[variable._unique_id][slot_name]
        except (KeyError, AttributeError):
            raise KeyError(
                f"No slot {slot_name!r} for variable {getattr(variable, 'name', variable)!r}; "
                f"slots: {self.get_slot_names()}."
            ) from None

    def slots(self, variable) -> dict[str, Variable]:
        """All slots of ``variable`` by name."""
        return dict(self._slots.get(variable._unique_id, {}))

    def _var_key(self, variable) -> int:
        return variable._unique_id

    def _get_variable_index(self, variable) -> int:
        return self._index_dict[self._var_key(variable)]

    def build(self, var_list):
        """Create the optimizer's variables; subclasses call ``super().build(var_list)``.

        The base class indexes the variables and, with EMA, creates one
        ``average`` per variable (a copy of its value in keras2, zeros in keras3).
        Keras 3 gradient accumulation adds a ``gradient_accumulator`` per variable.
        """
        var_list = list(var_list)
        self._index_dict = {self._var_key(v): i for i, v in enumerate(var_list)}
        self._trainable_variables = var_list
        if self.use_ema:
            self._model_variables_moving_average = [
                self.add_variable_from_reference(
                    v,
                    "average",
                    initial_value=v.numpy() if self.profile.ema_init == "copy_at_build" else None,
                )
                for v in var_list
            ]
        if self.gradient_accumulation_steps:
            self._accumulated_gradients = [
                self.add_variable_from_reference(v, "gradient_accumulator") for v in var_list
            ]

    # ---------------------------------------------------------------------------------
    # gradients
    # ---------------------------------------------------------------------------------
    def compute_gradients(self, loss, var_list, tape=None):
        """Gradients of ``loss`` (a zero-argument callable, or a value recorded by
        ``tape``) with respect to ``var_list``; a list of ``(gradient, variable)``
        pairs, the gradient None where the loss does not depend on the variable.
        """
        if not callable(loss) and tape is None:
            raise ValueError(
                "`tape` is required when a `Tensor` loss is passed. "
                f"Received: loss={loss}, tape={tape}."
            )
        if tape is not None and not isinstance(tape, GradientTape):
            raise TypeError(f"`tape` must be a GradientTape. Received: {type(tape).__name__}")
        if callable(var_list):
            var_list = var_list()
        var_list = list(var_list)
        for i, v in enumerate(var_list):
            if not isinstance(v, Variable):
                raise TypeError(f"var_list[{i}] must be a Variable. Received: {type(v).__name__}")
        if tape is None:
            tape = GradientTape()
        if callable(loss):
            with tape:
                tape.watch(var_list)
                loss = loss()
        grads = tape.gradient(loss, var_list)
        return list(zip(grads, var_list, strict=True))

    def minimize(self, loss, var_list, tape=None):
        """``apply_gradients(compute_gradients(loss, var_list, tape))``."""
        grads_and_vars = self.compute_gradients(loss, var_list, tape)
        self.apply_gradients(grads_and_vars)

    def aggregate_gradients(self, grads_and_vars):
        """Sum per-replica gradients (:class:`PerReplica`), in replica order.

        Plain gradients are a single replica and pass unchanged; None stays None.
        As in tf-keras, all-None gradients raise ValueError here.
        """
        pairs = [tuple(p) for p in grads_and_vars]
        if pairs and all(g is None for g, _ in pairs):
            self._raise_all_none(pairs)
        return [(None if g is None else _sum_replicas(g), v) for g, v in pairs]

    def apply_gradients(self, grads_and_vars, skip_gradients_aggregation=False, **kwargs):
        """Apply gradients to variables: the profile's pipeline of stages.

        Returns the ``iterations`` variable. tf-keras's ``name`` (a name scope) and
        ``experimental_aggregate_gradients`` (the negation of
        ``skip_gradients_aggregation``) are accepted; any other keyword is a
        TypeError (tf-keras ignores it silently — including the seed page's own
        misspelling ``skip_aggregate_gradients``).

        Raises:
            TypeError: ``grads_and_vars`` is malformed (not pairs, not a Variable,
                a gradient of the wrong dtype or type).
            ValueError: a gradient's shape does not match its variable; all
                gradients are None.
            KeyError / ValueError: a variable the optimizer was not built with
                (keras2 / keras3).
        """
        kwargs.pop("name", None)
        if not kwargs.pop("experimental_aggregate_gradients", True):
            skip_gradients_aggregation = True
        for key in kwargs:
            hint = (
                " The argument is `skip_gradients_aggregation` (the seed page's "
                "distributed example misspells it)."
                if key == "skip_aggregate_gradients"
                else ""
            )
            raise TypeError(f"apply_gradients() got an unexpected keyword argument '{key}'.{hint}")
        pairs = self._validate(grads_and_vars, skip_gradients_aggregation)
        step = _Step(pairs, skip_gradients_aggregation)
        # The rate this call uses: none on a Keras 3 accumulate-only micro-step.
        self._step_learning_rate = None
        # NaN and Inf propagate as Keras computes them; NumPy's warnings are noise here.
        with stop_recording(), np.errstate(all="ignore"):
            stages = self.profile.pipeline
            i = 0
            while i < len(stages):
                outcome = getattr(self, f"_stage_{stages[i]}")(step)
                if outcome is _STOP:
                    break
                i = stages.index(outcome) if isinstance(outcome, str) else i + 1
        return self._iterations

    # -- validation ----------------------------------------------------------------------
    def _validate(self, grads_and_vars, skip_aggregation):
        if isinstance(grads_and_vars, dict | str | bytes) or not hasattr(
            grads_and_vars, "__iter__"
        ):
            raise TypeError(
                "grads_and_vars must be an iterable of (gradient, variable) pairs. "
                f"Received: {type(grads_and_vars).__name__}"
            )
        pairs = []
        for i, pair in enumerate(grads_and_vars):
            if not isinstance(pair, tuple | list) or len(pair) != 2:
                raise TypeError(
                    f"grads_and_vars[{i}] must be a (gradient, variable) pair. Received: {pair!r}"
                )
            grad, var = pair
            if not isinstance(var, Variable):
                raise TypeError(
                    f"grads_and_vars[{i}]: the second element must be a Variable. "
                    f"Received: {type(var).__name__}"
                )
            if not dtypes.is_float(var.dtype):
                raise TypeError(
                    f"Variable '{var.name}' has dtype {dtypes.dtype_name(var.dtype)}; optimizers "
                    "update float16, bfloat16, float32 or float64 variables."
                )
            pairs.append((self._check_gradient(grad, var, skip_aggregation), var))
        replicas = {len(g.values) for g, _ in pairs if isinstance(g, PerReplica)}
        if len(replicas) > 1 or (
            replicas and any(g is not None and not isinstance(g, PerReplica) for g, _ in pairs)
        ):
            raise ValueError(
                "Every non-None gradient must be a PerReplica value with the same number of "
                f"replicas, or none of them; got replica counts {sorted(replicas)} mixed with "
                "plain gradients."
            )
        if replicas and self.gradient_accumulation_steps and replicas != {1}:
            raise NotImplementedError(
                "Gradient accumulation with several replicas is outside the reference's scope."
            )
        return pairs

    def _check_gradient(self, grad, var, skip_aggregation):
        if grad is None:
            return None
        if isinstance(grad, PerReplica):
            if skip_aggregation:
                raise TypeError(
                    f"The gradient of variable '{var.name}' is a PerReplica value but "
                    "skip_gradients_aggregation=True: aggregate it first "
                    "(for example by summing the replicas)."
                )
            return PerReplica(tuple(self._check_gradient(g, var, True) for g in grad.values))
        if isinstance(grad, Variable):
            grad = grad.numpy()
        if isinstance(grad, IndexedSlices):
            values = grad.values
            shape = grad.dense_shape
        elif isinstance(grad, np.ndarray | np.generic):
            values = grad = np.asarray(grad)
            shape = grad.shape
        elif isinstance(grad, numbers.Real | list | tuple) and not isinstance(grad, bool):
            values = grad = np.asarray(grad, dtype=var.dtype)
            shape = grad.shape
        else:
            raise TypeError(
                f"The gradient of variable '{var.name}' must be an array, an IndexedSlices, "
                f"a PerReplica or None. Received: {type(grad).__name__}"
            )
        if values.dtype != var.dtype:
            raise TypeError(
                f"The gradient of variable '{var.name}' has dtype "
                f"{dtypes.dtype_name(values.dtype)} but the variable is "
                f"{dtypes.dtype_name(var.dtype)}."
            )
        if tuple(shape) != var.shape:
            raise ValueError(
                f"The gradient of variable '{var.name}' has shape {tuple(shape)} but the "
                f"variable has shape {var.shape}."
            )
        return grad

    def _raise_all_none(self, pairs):
        names = ([v.name for _, v in pairs],)
        raise ValueError(self.profile.all_none_message.format(names=names, pairs=tuple(pairs)))

    # -- stages --------------------------------------------------------------------------
    def _stage_aggregate(self, step):
        if not step.skip_aggregation:
            step.pairs = self.aggregate_gradients(step.pairs)

    def _stage_learning_rate(self, step):
        lr = self._learning_rate
        if isinstance(lr, LearningRateSchedule):
            at = self._iterations.numpy() + self.profile.schedule_offset
            value = np.asarray(lr(at))
            if self.profile.learning_rate_getter == "last_used":
                self._current_learning_rate = Variable(
                    value, name="current_learning_rate", trainable=False
                )
        elif callable(lr) and not isinstance(lr, Variable):
            value = np.asarray(lr())
        elif isinstance(lr, Variable):
            value = lr.numpy()
        else:
            value = None  # a custom optimizer without a learning rate
        self._step_learning_rate = value

    def _stage_collect(self, step):
        if step.pairs:
            return None
        if self.profile.empty_grads_and_vars == "raise":
            raise ValueError("not enough values to unpack (expected 2, got 0)")
        return _STOP

    def _stage_build(self, step):
        variables = [v for _, v in step.pairs]
        if not self._built:
            self.build(variables)
            self._built = True
        for v in variables:
            if self._var_key(v) not in self._index_dict:
                raise self.profile.unknown_variable_error(
                    self.profile.unknown_variable_message.format(
                        name=v.name, variable=v, cls=type(self).__name__
                    )
                )

    def _stage_overwrite_with_gradient(self, step):
        """Keras 3: a variable flagged ``overwrite_with_gradient`` takes its gradient as
        its new value (with gradient accumulation: the running maximum, assigned on
        update steps) and leaves the rest of the pipeline."""
        kept = []
        steps = self.gradient_accumulation_steps
        for grad, variable in step.pairs:
            if not variable.overwrite_with_gradient or grad is None:
                kept.append((grad, variable))
                continue
            grad = _sum_replicas(grad)
            grad = to_dense(grad) if isinstance(grad, IndexedSlices) else grad
            if not steps:
                variable.assign(grad)
                continue
            accumulator = self._accumulated_gradients[self._get_variable_index(variable)]
            merged = np.maximum(grad, accumulator.numpy())
            if (int(self._iterations.numpy()) + 1) % steps == 0:
                variable.assign(merged)
                accumulator.assign(np.zeros(accumulator.shape, accumulator.dtype))
            else:
                accumulator.assign(merged)
        step.pairs = kept

    def _stage_filter_none(self, step):
        missing = [v.name for g, v in step.pairs if g is None]
        kept = [(g, v) for g, v in step.pairs if g is not None]
        if not kept:
            self._raise_all_none(step.pairs)
        if missing:
            warnings.warn(
                f"Gradients do not exist for variables {missing} when minimizing the loss.",
                UserWarning,
                stacklevel=4,
            )
        step.pairs = kept

    def _stage_unscale(self, step):
        scale = self.loss_scale_factor
        if scale is not None:
            step.pairs = _map_replicas(
                step.pairs, lambda gs: [_scale_values(g, scale, np.divide) for g in gs]
            )

    def _stage_accumulate(self, step):
        steps = self.gradient_accumulation_steps
        if not steps:
            return None
        accumulators = [
            self._accumulated_gradients[self._get_variable_index(v)] for _, v in step.pairs
        ]
        grads = [_sum_replicas(g) for g, _ in step.pairs]
        grads = [to_dense(g) if isinstance(g, IndexedSlices) else g for g in grads]
        if (int(self._iterations.numpy()) + 1) % steps == 0:
            divisor = [dtypes.const(steps, g.dtype) for g in grads]
            step.pairs = [
                ((g + acc.numpy()) / d, v)
                for g, acc, d, (_, v) in zip(grads, accumulators, divisor, step.pairs, strict=True)
            ]
            for acc in accumulators:
                acc.assign(np.zeros(acc.shape, acc.dtype))
            return None
        for g, acc in zip(grads, accumulators, strict=True):
            acc.assign(g + acc.numpy())
        return "ema"  # a micro-step: no clipping, decay or update

    def _stage_clip(self, step):
        step.pairs = _map_replicas(step.pairs, self._clip_gradients)

    def _clip_gradients(self, grads):
        """clipnorm > global_clipnorm > clipvalue; exactly one transform (None passes)."""
        with np.errstate(all="ignore"):  # inf/NaN propagate as in TensorFlow
            return self._clip(grads)

    def _clip(self, grads):
        eps = self.profile.clip_norm_epsilon
        if eps and ((self.clipnorm or 0) > 0 or (self.global_clipnorm or 0) > 0):
            if self.clipnorm and self.clipnorm > 0 and self.profile.clipnorm_scope != "global":
                clip = clipping.clip_with_epsilon
                return [None if g is None else clip([g], self.clipnorm, eps)[0] for g in grads]
            return clipping.clip_with_epsilon(grads, self.clipnorm or self.global_clipnorm, eps)
        if self.clipnorm and self.clipnorm > 0:
            if self.profile.clipnorm_scope == "global":
                return clipping.clip_by_global_norm(
                    grads, self.clipnorm, self.profile.global_norm_form
                )
            division, f32 = self.profile.clip_division, self.profile.ops_python_float == "float32"
            return [None if g is None else clipping.clip_by_norm(g, self.clipnorm, division, f32)
                    for g in grads]  # fmt: skip
        f32 = self.profile.ops_python_float == "float32"
        if self.global_clipnorm and self.global_clipnorm > 0:
            return clipping.clip_by_global_norm(
                grads, self.global_clipnorm, self.profile.global_norm_form, f32
            )
        if self.clipvalue and self.clipvalue > 0:
            return [None if g is None else clipping.clip_by_value(g, self.clipvalue, f32)
                    for g in grads]  # fmt: skip
        return list(grads)

    def _stage_sparse(self, step):
        transform = {"deduplicate": deduplicate, "densify": to_dense,
                     "keep_duplicates": lambda g: g}[self.profile.sparse_gradients]  # fmt: skip
        step.pairs = _map_replicas(
            step.pairs,
            lambda gs: [transform(g) if isinstance(g, IndexedSlices) else g for g in gs],
        )

    def exclude_from_weight_decay(self, var_list=None, var_names=None):
        """Exclude variables (by identity, or by a regex searched in their name)."""
        if self._built and self.profile.exclude_after_build_raises:
            raise ValueError(
                "`exclude_from_weight_decay()` can only be configued before the optimizer is built."
            )
        self._exclude_from_weight_decay = {self._var_key(v) for v in var_list or []}
        self._exclude_from_weight_decay_names = list(var_names or [])

    def _use_weight_decay(self, variable) -> bool:
        if self._var_key(variable) in self._exclude_from_weight_decay:
            return False
        return not any(
            _search(pattern, variable.name) for pattern in self._exclude_from_weight_decay_names
        )

    def _stage_weight_decay(self, step):
        if self.weight_decay is None:
            return
        if self.profile.weight_decay_coupling == "l2":
            step.pairs = _map_replicas(step.pairs, lambda gs: self._l2(gs, step.pairs))
            return
        for _, variable in step.pairs:
            if not self._use_weight_decay(variable):
                continue
            if self.profile.weight_decay_form == "scale_float32":
                lr32 = dtypes.cast(self._step_rate(), dtypes.FLOATX)
                factor = dtypes.const(1, dtypes.FLOATX) - dtypes.const(self.weight_decay,
                                                                       dtypes.FLOATX) * lr32
                value = variable.numpy()
                wide = dtypes.promote(value.dtype, dtypes.FLOATX)
                variable.assign(dtypes.cast(dtypes.cast(value, wide) * dtypes.cast(factor, wide),
                                            value.dtype))  # fmt: skip
                continue
            lr = self._learning_rate_for(variable)
            wd = self._cast(self.weight_decay, variable.dtype)
            variable.assign_sub(variable.numpy() * wd * lr)

    def _l2(self, grads, pairs):
        """Variant ``weight_decay_coupling="l2"``: g ← g + wd·v (dense)."""
        out = []
        for g, (_, variable) in zip(grads, pairs, strict=True):
            if g is not None and self._use_weight_decay(variable):
                g = dtypes.wrap(to_dense(g)) if isinstance(g, IndexedSlices) else g
                g = g + variable.numpy() * self._cast(self.weight_decay, variable.dtype)
            out.append(g)
        return out

    def _stage_update(self, step):
        for grad, variable in step.pairs:
            self.update_step(grad, variable)

    def _ema_variables(self, step):
        if self.profile.ema_scope == "all":
            return list(self._trainable_variables)
        return [v for _, v in step.pairs]

    def _stage_ema(self, step):
        if not self.use_ema:
            return
        for variable in self._ema_variables(step):
            average = self._model_variables_moving_average[self._get_variable_index(variable)]
            dtype = variable.dtype
            if self.profile.ema_arithmetic == "python":
                m = dtypes.const(self.ema_momentum, dtype)
                one_minus_m = dtypes.const(1 - self.ema_momentum, dtype)
            else:
                first = self._update_count() == 0
                m = dtypes.const(0 if first else 1, dtype) * self._ops_float(self.ema_momentum,
                                                                              dtype)
                one_minus_m = dtypes.const(1, dtype) - m
            average.assign(m * average.numpy() + one_minus_m * variable.numpy())

    def _stage_ema_overwrite(self, step):
        frequency = self.ema_overwrite_frequency
        if self.use_ema and frequency and (self._update_count() + 1) % frequency == 0:
            for variable in self._ema_variables(step):
                variable.assign(
                    self._model_variables_moving_average[self._get_variable_index(variable)].numpy()
                )

    def _stage_increment(self, step):
        self._iterations.assign_add(np.asarray(1, dtype=self._iterations.dtype))

    def _stage_constraints(self, step):
        # Also on Keras 3 accumulation micro-steps: apply() constrains after every call.
        for _, variable in step.pairs:
            if variable.constraint is not None:
                variable.assign(np.asarray(variable.constraint(variable)))

    # ---------------------------------------------------------------------------------
    # helpers for update_step implementations
    # ---------------------------------------------------------------------------------
    def _maximum(self, a, b):
        """Element-wise max as the profile's ``nan_in_max`` says (NaN propagates)."""
        return (np.fmax if self.profile.nan_in_max == "ignore" else np.maximum)(a, b)

    def _minimum(self, a, b):
        return (np.fmin if self.profile.nan_in_max == "ignore" else np.minimum)(a, b)

    def _update_count(self) -> int:
        """``iterations`` as update_step sees it (updates completed before this one)."""
        raw = int(self._iterations.numpy())
        steps = self.gradient_accumulation_steps
        return raw // steps if steps else raw

    def _step_rate(self) -> np.ndarray:
        """The step's learning rate (computed on first use)."""
        if self._step_learning_rate is None:
            self._stage_learning_rate(None)
        return self._step_learning_rate

    def _learning_rate_for(self, variable) -> np.ndarray:
        """The step's learning rate cast to ``variable``'s dtype (``tf.cast(lr, dtype)``)."""
        return dtypes.cast(self._step_rate(), variable.dtype)

    def _cast(self, value, dtype) -> np.ndarray:
        """``tf.cast(value, dtype)`` / ``ops.cast`` of a Python hyper-parameter, per profile.

        Distinct from a Python scalar operand (``m * (1 - self.beta_1)``), which
        :func:`~optcheck.reference.dtypes.const` converts in one rounding.
        """
        via = dtypes.FLOATX if self.profile.python_scalar_cast == "via_float32" else None
        return dtypes.cast_scalar(value, dtype, via)

    def _ops_float(self, value, dtype) -> np.ndarray:
        """A Python float operand of a Keras ``ops`` call, per ``ops_python_float``."""
        return dtypes.ops_operand(value, dtype, self.profile.ops_python_float == "float32")

    def _power_base(self, beta, dtype) -> np.ndarray:
        """The β of a bias correction's βᵗ: ``tf.cast`` (:meth:`_cast`), or under the
        variant ``beta_power_cast="direct"`` the Python float rounded once."""
        if self.profile.beta_power_cast == "direct":
            return dtypes.cast_scalar(beta, dtype, None)
        return self._cast(beta, dtype)

    def _local_step(self, variable) -> np.ndarray:
        """``cast(iterations + 1, variable.dtype)``: the 1-based step for bias corrections."""
        return dtypes.cast(self._update_count() + 1, variable.dtype)

    def update_step(self, gradient, variable):
        """Update ``variable`` from ``gradient``; implemented by each optimizer."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement update_step(gradient, variable)."
        )

    # ---------------------------------------------------------------------------------
    # EMA finalisation
    # ---------------------------------------------------------------------------------
    def finalize_variable_values(self, var_list):
        """With EMA, overwrite each variable with its moving average (else no-op)."""
        if not self.use_ema:
            return
        if not self._built:
            raise ValueError(
                "finalize_variable_values() needs the optimizer to be built: apply gradients "
                "(or call build(var_list)) first."
            )
        var_list = list(var_list)
        averages = self._model_variables_moving_average
        if self.profile.finalize == "zip":
            if len(var_list) != len(averages):
                raise ValueError(
                    f"The length of model variables ({len(var_list)}) to override does not match "
                    f"the length of model variables stored in the optimizer ({len(averages)}). "
                    "Please check if the optimizer was called on your model."
                )
            for variable, average in zip(var_list, averages, strict=True):
                variable.assign(average.numpy())
            return
        for variable in var_list:
            if self._var_key(variable) not in self._index_dict:
                raise self.profile.unknown_variable_error(
                    self.profile.unknown_variable_message.format(
                        name=variable.name, variable=variable, cls=type(self).__name__
                    )
                )
            variable.assign(averages[self._get_variable_index(variable)].numpy())

    # ---------------------------------------------------------------------------------
    # serialization
    # ---------------------------------------------------------------------------------
    def _serialize_hyperparameter(self, value):
        if isinstance(value, LearningRateSchedule):
            return serialize_schedule(value)
        if isinstance(value, Variable):
            return value.numpy() if self.profile.name == "keras2" else float(value.numpy())
        if callable(value):
            if self.profile.callable_learning_rate == "every_step":
                raise NotImplementedError(
                    "Serializing a callable learning rate (Keras 3 serializes the function "
                    "itself) is outside the reference's scope."
                )
            return value()
        return value

    def get_config(self) -> dict:
        """The constructor arguments as a dict (profile's key set; see notes §1.9)."""
        values = {
            "name": self.name,
            "learning_rate": self._serialize_hyperparameter(self._learning_rate),
            "weight_decay": self.weight_decay,
            "clipnorm": self.clipnorm,
            "global_clipnorm": self.global_clipnorm,
            "clipvalue": self.clipvalue,
            "use_ema": self.use_ema,
            "ema_momentum": self.ema_momentum,
            "ema_overwrite_frequency": self.ema_overwrite_frequency,
            "jit_compile": self.jit_compile,
            "is_legacy_optimizer": False,
            "loss_scale_factor": self.loss_scale_factor,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
        }
        return {key: values[key] for key in self.profile.base_config_keys}

    @classmethod
    def from_config(cls, config, custom_objects=None, *, profile=None):
        """Create an optimizer from ``get_config()`` output (schedules deserialized)."""
        if not isinstance(config, dict):
            raise TypeError(f"config must be a dict. Received: {type(config).__name__}")
        config = dict(config)
        if isinstance(config.get("learning_rate"), dict):
            config["learning_rate"] = deserialize_schedule(
                config["learning_rate"], custom_objects=custom_objects
            )
        return cls(**config, profile=profile)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r} profile={self.profile.name}>"


# -------------------------------------------------------------------------------------
# module helpers
# -------------------------------------------------------------------------------------
def _search(pattern: str, text: str) -> bool:
    import re

    return re.search(pattern, text) is not None


def _sum_replicas(grad):
    """Sum a PerReplica gradient in replica order (IndexedSlices are concatenated)."""
    if not isinstance(grad, PerReplica):
        return grad
    values = grad.values
    if isinstance(values[0], IndexedSlices):
        return IndexedSlices(
            np.concatenate([g.values for g in values]),
            np.concatenate([g.indices for g in values]),
            values[0].dense_shape,
        )
    total = values[0]
    for g in values[1:]:
        total = total + (to_dense(g) if isinstance(g, IndexedSlices) else g)
    return total


def _map_replicas(pairs, fn):
    """Apply ``fn`` (list of gradients -> list) to each replica's gradient list."""
    grads = [g for g, _ in pairs]
    variables = [v for _, v in pairs]
    counts = {len(g.values) for g in grads if isinstance(g, PerReplica)}
    if not counts:
        return list(zip(fn(grads), variables, strict=True))
    (n,) = counts
    per_replica = [fn([g.values[r] for g in grads]) for r in range(n)]
    return [
        (PerReplica(tuple(per_replica[r][i] for r in range(n))), v) for i, v in enumerate(variables)
    ]


def _scale_values(grad, scale, op):
    if isinstance(grad, IndexedSlices):
        return grad.with_values(op(grad.values, dtypes.const(scale, grad.dtype)))
    return op(grad, dtypes.const(scale, grad.dtype))
