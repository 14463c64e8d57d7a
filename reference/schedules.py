"""Learning-rate schedules: the NumPy golden of ``keras.optimizers.schedules``.

Sources (read and paraphrased; the maintained tf-keras line is the default):

* tf-keras: keras-team/tf-keras ``tf_keras/optimizers/schedules/learning_rate_schedule.py``
  (formulas, operation order, constructor signatures, ``get_config`` keys);
  ``tf_keras/saving/serialization_lib.py`` (``serialize`` dict format) and
  ``tf_keras/saving/legacy/serialization.py`` (``use_legacy_format=True``, the Keras 2.9 format).
* Keras 2.9: keras-team/keras ``keras/optimizers/schedules/learning_rate_schedule.py`` at v2.9.0
  (same formulas; ``CosineDecay`` has no warmup there).
* Keras 3: keras-team/keras ``keras/src/optimizers/schedules/learning_rate_schedule.py``
  (same formulas; differences are noted in the class docstrings).
* TensorFlow: tensorflow/tensorflow ``tensorflow/python/ops/math_ops.py`` (``cast``).
* Research notes: ``shared/spec/keras-optimizer-semantics.md`` §1.9, §3 and §5.3.

Dtype rule
----------
A schedule computes in ``dtype``, the dtype of ``convert_to_tensor(initial_learning_rate)``:
float32 for a Python float, the value's own dtype for a NumPy value (``np.float64(0.1)`` gives
float64; float16 and bfloat16 work the same way). Every operation runs in ``dtype``, in the
order of the tf-keras source, and the result is a 0-d ``np.ndarray`` of ``dtype``. Values enter
the computation in one of two ways, and the two round differently:

* *Cast* (``tf.cast(x, dtype)``: the step and most hyper-parameters). ``tf.cast`` first runs
  ``convert_to_tensor(x)`` without a dtype, so a Python float becomes float32 and a Python int
  int32 *before* the cast (math_ops.py, ``cast``: ``x = ops.convert_to_tensor(x, name="x")``
  ahead of ``gen_math_ops.cast``). In a float64 schedule a Python ``decay_rate=0.96`` therefore
  is ``float64(float32(0.96))``.
* *Operand* (a Python number written into an expression: ``0.5``, ``1.0``, ``math.pi``,
  ``1 - self.alpha``). TensorFlow converts it straight to ``dtype``: one rounding.

Arithmetic follows IEEE rules without warnings, as TensorFlow kernels do (``decay_steps=0``
gives inf or nan, not an exception).

Argument checking
-----------------
As in tf-keras, constructors store their arguments unchecked (only ``PiecewiseConstantDecay``
checks list lengths); a value tf-keras cannot use makes the *call* fail. Here that failure is a
``TypeError`` naming the argument: non-numeric values (str, None, ...), and an integer
``initial_learning_rate`` (its int32 compute dtype breaks the float operations in tf-keras).
No range checks exist: tf-keras accepts ``decay_steps=0`` and negative values.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from . import dtypes, elementary

__all__ = [
    "CosineDecay",
    "CosineDecayRestarts",
    "ExponentialDecay",
    "InverseTimeDecay",
    "LearningRateSchedule",
    "PiecewiseConstantDecay",
    "PolynomialDecay",
    "deserialize",
    "register_serializable",
    "serialize",
]

#: ``module`` written by :func:`serialize` for the built-in schedules (tf-keras export path).
BUILTIN_MODULE = "keras.optimizers.schedules"

_FLOAT_DTYPES = frozenset(dtypes.FLOAT_DTYPES.values())
_INT32 = np.iinfo(np.int32)
_INT64 = np.iinfo(np.int64)


# -------------------------------------------------------------------------------------------
# TensorFlow conversions, modelled in NumPy
# -------------------------------------------------------------------------------------------
def _convert_to_tensor(value, arg: str) -> np.ndarray:
    """``tf.convert_to_tensor(value)`` without a dtype, for the numbers a schedule takes.

    Python bool -> bool, Python int -> int32 (int64 when it does not fit), Python float ->
    float32; NumPy scalars and arrays (and objects with ``__array__``, such as a reference
    ``Variable``) keep their dtype.

    Raises:
        TypeError: ``value`` is not a real number; the message names ``arg``.
    """
    if isinstance(value, np.ndarray | np.generic) or (
        hasattr(value, "__array__") and not isinstance(value, bool | int | float)
    ):
        array = np.asarray(value)
        if array.dtype.kind in "biuf" or array.dtype == dtypes.bfloat16:
            return array
    elif isinstance(value, bool):
        return np.asarray(value, dtype=np.bool_)
    elif isinstance(value, int):
        if _INT32.min <= value <= _INT32.max:
            return np.asarray(value, dtype=np.int32)
        if _INT64.min <= value <= _INT64.max:
            return np.asarray(value, dtype=np.int64)
    elif isinstance(value, float):
        return np.asarray(value, dtype=np.float32)
    raise TypeError(
        f"Argument `{arg}` must be a real number (a Python int or float, or a NumPy "
        f"scalar). Received: {arg}={value!r} of type {type(value).__name__}."
    )


def _compute_dtype(initial_learning_rate) -> tuple[np.ndarray, np.dtype]:
    """``initial_learning_rate`` as a tensor and the dtype the schedule computes in."""
    lr = _convert_to_tensor(initial_learning_rate, "initial_learning_rate")
    if lr.dtype not in _FLOAT_DTYPES:
        raise TypeError(
            "Argument `initial_learning_rate` must be a floating-point value: the schedule "
            f"computes in its dtype, and tf-keras fails for {dtypes.dtype_name(lr.dtype)} "
            f"(pass e.g. {float(lr)!r}). Received: "
            f"initial_learning_rate={initial_learning_rate!r}."
        )
    return lr, lr.dtype


def _cast(value, dtype, arg: str) -> np.ndarray:
    """``tf.cast(value, dtype)``: ``convert_to_tensor`` first, then one cast (see module doc)."""
    return _convert_to_tensor(value, arg).astype(dtype)


def _operand(value, dtype, arg: str) -> np.ndarray:
    """A Python number used directly as an operand: converted to ``dtype`` in one rounding."""
    if isinstance(value, np.ndarray | np.generic):
        if value.dtype.kind in "biuf" or value.dtype == dtypes.bfloat16:
            return np.asarray(value).astype(dtype)
    elif isinstance(value, int | float):  # bool is an int
        return dtypes.const(value, dtype)
    raise TypeError(
        f"Argument `{arg}` must be a real number (a Python int or float, or a NumPy "
        f"scalar). Received: {arg}={value!r} of type {type(value).__name__}."
    )


def _ieee(call):
    """Run a schedule's ``__call__`` with IEEE semantics (no NumPy warnings); return 0-d."""

    @functools.wraps(call)
    def wrapper(self, step):
        with np.errstate(all="ignore"):
            return np.asarray(call(self, step))

    return wrapper


# -------------------------------------------------------------------------------------------
# Schedules
# -------------------------------------------------------------------------------------------
class LearningRateSchedule:
    """Base class of learning-rate schedules.

    ``schedule(step)`` returns the learning rate at optimizer step ``step`` (the optimizer passes
    its iteration count *before* the increment) as a 0-d NumPy array. Subclasses implement
    ``__call__`` and ``get_config``; ``from_config(config)`` is ``cls(**config)``. A custom
    schedule becomes deserializable by name through :func:`register_serializable` or the
    ``custom_objects`` argument of :func:`deserialize`.
    """

    def __call__(self, step):
        raise NotImplementedError(
            f"Learning rate schedule '{type(self).__name__}' must override `__call__(self, step)`."
        )

    def get_config(self) -> dict:
        raise NotImplementedError(
            f"Learning rate schedule '{type(self).__name__}' must override `get_config()` "
            "in order to be serializable."
        )

    @classmethod
    def from_config(cls, config):
        """Instantiate the schedule from ``get_config()`` output: ``cls(**config)``."""
        return cls(**config)

    def __repr__(self):
        try:
            config = self.get_config()
        except NotImplementedError:
            config = None
        if not isinstance(config, dict):
            return object.__repr__(self)
        items = ", ".join(f"{key}={value!r}" for key, value in config.items())
        return f"{type(self).__name__}({items})"


class _RateDecay(LearningRateSchedule):
    """Shared by ExponentialDecay and InverseTimeDecay: same arguments, same progress
    ``p = step / decay_steps`` (floored if ``staircase``), in the schedule's dtype."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False, name=None):
        self.initial_learning_rate = initial_learning_rate
        self.decay_steps = decay_steps
        self.decay_rate = decay_rate
        self.staircase = staircase
        self.name = name

    def _progress(self, step):
        """``(initial rate, dtype, cast decay_rate, p)`` in tf-keras's operation order."""
        lr, dtype = _compute_dtype(self.initial_learning_rate)
        decay_steps = _cast(self.decay_steps, dtype, "decay_steps")
        decay_rate = _cast(self.decay_rate, dtype, "decay_rate")
        p = _cast(step, dtype, "step") / decay_steps
        if self.staircase:
            p = np.floor(p)
        return lr, dtype, decay_rate, p

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "decay_rate": self.decay_rate,
            "staircase": self.staircase,
            "name": self.name,
        }


class ExponentialDecay(_RateDecay):
    """Exponential decay.

        p  = step / decay_steps          (p = ⌊p⌋ if staircase)
        lr = initial_learning_rate · decay_rate^p

    Operation order (dtype ``d``): ``decay_steps``, ``decay_rate`` and ``step`` are cast to
    ``d``; ``p = step / decay_steps``; ``floor`` if ``staircase``; ``lr * pow(decay_rate, p)``.

    Keras 3 defaults ``name`` to ``"ExponentialDecay"`` and raises ``ValueError("Argument
    `decay_steps` must be > 0. ...")`` at construction; tf-keras (and this reference) accept
    ``decay_steps <= 0``.
    """

    @_ieee
    def __call__(self, step):
        lr, _, decay_rate, p = self._progress(step)
        return lr * elementary.power(decay_rate, p)


class PiecewiseConstantDecay(LearningRateSchedule):
    """Piecewise constant values between boundaries.

    With ``boundaries = [b₀, …, bₙ₋₁]`` and ``values = [v₀, …, vₙ]``:

        lr = v₀    if step ≤ b₀
        lr = vᵢ    if bᵢ₋₁ < step ≤ bᵢ     (0 < i < n)
        lr = vₙ    if step > bₙ₋₁

    ``step`` is converted with ``convert_to_tensor`` (a Python int is int32, a Python float
    float32); each boundary is converted and, if its dtype differs, cast to the step's dtype
    (a float boundary compared with an integer step is truncated toward zero). The result is
    the selected value converted with ``convert_to_tensor``: float32 for Python floats, its own
    dtype for NumPy values, int32 for Python ints.

    tf-keras selects with ``tf.case(..., exclusive=True)`` whose default is ``values[0]``:

    * if no predicate holds (a NaN step) the result is ``values[0]``; Keras 3 sums
      ``indicator * value`` instead and returns 0 there;
    * if several predicates hold (boundaries not increasing) tf-keras raises; here that is a
      ``ValueError``;
    * an empty ``boundaries`` list passes the length check but fails on the first call
      (``boundaries[0]``), an ``IndexError`` in tf-keras, Keras 3 and here.

    Raises:
        ValueError: ``len(boundaries) != len(values) - 1`` (at construction, as tf-keras).
    """

    def __init__(self, boundaries, values, name=None):
        if len(boundaries) != len(values) - 1:
            raise ValueError(
                "The length of boundaries should be 1 less than the length of values. "
                f"Received: boundaries={boundaries} of length {len(boundaries)}, and "
                f"values={values} of length {len(values)}."
            )
        self.boundaries = boundaries
        self.values = values
        self.name = name

    @_ieee
    def __call__(self, step):
        x = _convert_to_tensor(step, "step")
        values = [_convert_to_tensor(v, "values") for v in self.values]
        boundaries = [_convert_to_tensor(b, "boundaries") for b in self.boundaries]
        boundaries = [b if b.dtype == x.dtype else b.astype(x.dtype) for b in boundaries]
        if not boundaries:
            raise IndexError(
                "PiecewiseConstantDecay needs at least one boundary: tf-keras reads "
                "boundaries[0] when called. Received: boundaries=[]."
            )
        # The predicates of tf-keras's tf.case, in its order.
        cases = [(x <= boundaries[0], values[0]), (x > boundaries[-1], values[-1])]
        for low, high, value in zip(boundaries[:-1], boundaries[1:], values[1:-1], strict=True):
            cases.append(((x > low) & (x <= high), value))
        chosen = [value for predicate, value in cases if bool(predicate)]
        if len(chosen) > 1:
            raise ValueError(
                "PiecewiseConstantDecay: more than one interval contains "
                f"step={x.item()!r} (tf.case with exclusive=True fails); boundaries must be "
                f"increasing. Received: boundaries={self.boundaries}."
            )
        return np.array(chosen[0] if chosen else values[0])

    def get_config(self):
        return {"boundaries": self.boundaries, "values": self.values, "name": self.name}


class PolynomialDecay(LearningRateSchedule):
    """Polynomial decay from ``initial_learning_rate`` to ``end_learning_rate``.

        lr = (initial_learning_rate − end_learning_rate) · (1 − s/D)^power + end_learning_rate

    without ``cycle``: s = min(step, decay_steps), D = decay_steps;
    with ``cycle``: s = step, D = decay_steps · m with m = 1 at step 0, else
    m = ⌈step / decay_steps⌉ (D is the first multiple of decay_steps that is ≥ step).

    Operation order (dtype ``d``): ``end_learning_rate``, ``power``, ``step`` and
    ``decay_steps`` are cast to ``d``. With ``cycle`` the ratio inside ``ceil`` divides the cast
    step by the *raw* ``decay_steps`` attribute (a Python operand, one rounding), the multiplier
    is ``where(step == 0, 1.0, ceil(ratio))`` and ``D = decay_steps * multiplier``; without it
    ``step = minimum(step, decay_steps)``. Then ``p = step / D`` and
    ``(lr - end) * pow(1 - p, power) + end``.

    Keras 3 defaults ``name`` to ``"PolynomialDecay"`` and requires ``decay_steps > 0``.
    """

    def __init__(
        self,
        initial_learning_rate,
        decay_steps,
        end_learning_rate=0.0001,
        power=1.0,
        cycle=False,
        name=None,
    ):
        self.initial_learning_rate = initial_learning_rate
        self.decay_steps = decay_steps
        self.end_learning_rate = end_learning_rate
        self.power = power
        self.cycle = cycle
        self.name = name

    @_ieee
    def __call__(self, step):
        lr, dtype = _compute_dtype(self.initial_learning_rate)
        end_learning_rate = _cast(self.end_learning_rate, dtype, "end_learning_rate")
        power = _cast(self.power, dtype, "power")
        global_step = _cast(step, dtype, "step")
        decay_steps = _cast(self.decay_steps, dtype, "decay_steps")
        if self.cycle:
            ratio = global_step / _operand(self.decay_steps, dtype, "decay_steps")
            multiplier = np.where(
                global_step == dtypes.const(0, dtype), dtypes.const(1.0, dtype), np.ceil(ratio)
            )
            decay_steps = decay_steps * multiplier
        else:
            global_step = np.minimum(global_step, decay_steps)
        p = global_step / decay_steps
        decayed = (lr - end_learning_rate) * elementary.power(dtypes.const(1, dtype) - p, power)
        return decayed + end_learning_rate

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "end_learning_rate": self.end_learning_rate,
            "power": self.power,
            "cycle": self.cycle,
            "name": self.name,
        }


class InverseTimeDecay(_RateDecay):
    """Inverse-time decay.

        p  = step / decay_steps          (p = ⌊p⌋ if staircase)
        lr = initial_learning_rate / (1 + decay_rate · p)

    Operation order (dtype ``d``): ``decay_steps``, ``decay_rate``, ``step`` cast to ``d``;
    ``p = step / decay_steps``; ``floor`` if ``staircase``; ``denom = 1 + decay_rate * p``;
    ``lr / denom``.

    Keras 3 defaults ``name`` to ``"InverseTimeDecay"`` and requires ``decay_steps > 0``.
    """

    @_ieee
    def __call__(self, step):
        lr, dtype, decay_rate, p = self._progress(step)
        denom = _cast(1, dtype, "1") + decay_rate * p
        return lr / denom


class CosineDecay(LearningRateSchedule):
    """Cosine decay, with an optional linear warmup (tf-keras >= 2.13).

    Without warmup (``warmup_target is None``), with D = decay_steps and s = min(step, D):

        lr = initial_learning_rate · ((1 − alpha) · ½·(1 + cos(π·s/D)) + alpha)

    With warmup, W = warmup_steps, T = warmup_target and s = min(step, D + W):

        lr = (T − initial_learning_rate) · s/W + initial_learning_rate      if s < W
        lr = T · ((1 − alpha) · ½·(1 + cos(π·(s − W)/D)) + alpha)           if s ≥ W

    Operation order (dtype ``d``): ``decay_steps``, ``step`` (and ``warmup_target``,
    ``warmup_steps``) cast to ``d``; decay: ``f = s / D``,
    ``c = 0.5 * (1.0 + cos(pi_d * f))``, ``decayed = (1 - alpha) * c + alpha``,
    ``decay_from * decayed``; warmup: ``f = s / W``, ``delta = T - initial``,
    ``delta * f + initial``. ``alpha`` is *not* cast: ``1 - alpha`` is evaluated in Python and
    both ``1 - alpha`` and ``alpha`` enter as operands (one rounding each).

    Keras 2.9-2.12 have no ``warmup_target``/``warmup_steps`` (and no such config keys).
    Keras 3 defaults ``name`` to ``"CosineDecay"`` and requires ``decay_steps > 0``.
    """

    def __init__(
        self,
        initial_learning_rate,
        decay_steps,
        alpha=0.0,
        name=None,
        warmup_target=None,
        warmup_steps=0,
    ):
        self.initial_learning_rate = initial_learning_rate
        self.decay_steps = decay_steps
        self.alpha = alpha
        self.name = name
        self.warmup_steps = warmup_steps
        self.warmup_target = warmup_target

    def _decay_function(self, step, decay_steps, decay_from_lr, dtype):
        alpha = self.alpha
        if isinstance(alpha, np.ndarray | np.generic):
            alpha = alpha.item()
        if not isinstance(alpha, int | float):
            raise TypeError(
                "Argument `alpha` must be a real number (a Python int or float, or a NumPy "
                f"scalar). Received: alpha={self.alpha!r} of type {type(self.alpha).__name__}."
            )
        completed_fraction = step / decay_steps
        pi = dtypes.const(math.pi, dtype)
        cosine_decayed = dtypes.const(0.5, dtype) * (
            dtypes.const(1.0, dtype) + elementary.cos(pi * completed_fraction)
        )
        decayed = dtypes.const(1 - alpha, dtype) * cosine_decayed + dtypes.const(alpha, dtype)
        return decay_from_lr * decayed

    @staticmethod
    def _warmup_function(step, warmup_steps, warmup_target, initial_learning_rate):
        completed_fraction = step / warmup_steps
        total_step_delta = warmup_target - initial_learning_rate
        return total_step_delta * completed_fraction + initial_learning_rate

    @_ieee
    def __call__(self, step):
        lr, dtype = _compute_dtype(self.initial_learning_rate)
        decay_steps = _cast(self.decay_steps, dtype, "decay_steps")
        global_step = _cast(step, dtype, "step")
        if self.warmup_target is None:
            global_step = np.minimum(global_step, decay_steps)
            return self._decay_function(global_step, decay_steps, lr, dtype)
        warmup_target = _cast(self.warmup_target, dtype, "warmup_target")
        warmup_steps = _cast(self.warmup_steps, dtype, "warmup_steps")
        global_step = np.minimum(global_step, decay_steps + warmup_steps)
        if global_step < warmup_steps:
            return self._warmup_function(global_step, warmup_steps, warmup_target, lr)
        return self._decay_function(global_step - warmup_steps, decay_steps, warmup_target, dtype)

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "alpha": self.alpha,
            "name": self.name,
            "warmup_target": self.warmup_target,
            "warmup_steps": self.warmup_steps,
        }


class CosineDecayRestarts(LearningRateSchedule):
    """Cosine decay with warm restarts (SGDR).

    With f = step / first_decay_steps, t = t_mul, m = m_mul, the restart index i and the
    fraction g ∈ [0, 1) of the current period are

        t = 1:   i = ⌊f⌋,                                g = f − i
        t ≠ 1:   i = ⌊log(1 − f·(1 − t)) / log(t)⌋,    g = (f − (1 − tⁱ)/(1 − t)) / tⁱ

        lr = initial_learning_rate · ((1 − alpha) · ½·mⁱ·(1 + cos(π·g)) + alpha)

    i.e. period k lasts first_decay_steps·tᵏ steps and peaks at mᵏ times the first peak;
    ``alpha`` is not scaled by mⁱ.

    Operation order (dtype ``d``): ``first_decay_steps``, ``alpha``, ``t_mul``, ``m_mul``,
    ``step`` cast to ``d``; ``f = step / first_decay_steps``; the branch is chosen on the cast
    ``t_mul == 1.0``; geometric branch: ``i = floor(log(1.0 - f * (1.0 - t)) / log(t))``,
    ``sum_r = (1.0 - t**i) / (1.0 - t)``, ``g = (f - sum_r) / t**i``; then
    ``m_fac = m**i``, ``c = 0.5 * m_fac * (1.0 + cos(pi_d * g))`` (left to right),
    ``decayed = (1 - alpha) * c + alpha``, ``initial * decayed``. At a period boundary the
    rounded index may fall on either side, as in tf-keras.

    ``t_mul`` and ``m_mul`` are stored as ``_t_mul`` and ``_m_mul`` (as tf-keras) and appear in
    the config as ``t_mul`` and ``m_mul``. Keras 3 defaults ``name`` to ``"SGDRDecay"`` and
    requires ``first_decay_steps > 0``.
    """

    def __init__(
        self,
        initial_learning_rate,
        first_decay_steps,
        t_mul=2.0,
        m_mul=1.0,
        alpha=0.0,
        name=None,
    ):
        self.initial_learning_rate = initial_learning_rate
        self.first_decay_steps = first_decay_steps
        self._t_mul = t_mul
        self._m_mul = m_mul
        self.alpha = alpha
        self.name = name

    @_ieee
    def __call__(self, step):
        lr, dtype = _compute_dtype(self.initial_learning_rate)
        first_decay_steps = _cast(self.first_decay_steps, dtype, "first_decay_steps")
        alpha = _cast(self.alpha, dtype, "alpha")
        t_mul = _cast(self._t_mul, dtype, "t_mul")
        m_mul = _cast(self._m_mul, dtype, "m_mul")
        one = dtypes.const(1.0, dtype)

        completed_fraction = _cast(step, dtype, "step") / first_decay_steps
        if t_mul == one:
            i_restart = np.floor(completed_fraction)
            completed_fraction = completed_fraction - i_restart
        else:
            log_ratio = elementary.log(one - completed_fraction * (one - t_mul)) / elementary.log(
                t_mul
            )
            i_restart = np.floor(log_ratio)
            sum_r = (one - elementary.power(t_mul, i_restart)) / (one - t_mul)
            completed_fraction = (completed_fraction - sum_r) / elementary.power(t_mul, i_restart)

        m_fac = elementary.power(m_mul, i_restart)
        pi = dtypes.const(math.pi, dtype)
        cosine = elementary.cos(pi * completed_fraction)
        cosine_decayed = dtypes.const(0.5, dtype) * m_fac * (one + cosine)
        decayed = (dtypes.const(1, dtype) - alpha) * cosine_decayed + alpha
        return lr * decayed

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "first_decay_steps": self.first_decay_steps,
            "t_mul": self._t_mul,
            "m_mul": self._m_mul,
            "alpha": self.alpha,
            "name": self.name,
        }


# -------------------------------------------------------------------------------------------
# Serialization
# -------------------------------------------------------------------------------------------
_BUILTINS: dict[str, type[LearningRateSchedule]] = {
    cls.__name__: cls
    for cls in (
        ExponentialDecay,
        PiecewiseConstantDecay,
        PolynomialDecay,
        InverseTimeDecay,
        CosineDecay,
        CosineDecayRestarts,
    )
}
_REGISTRY: dict[str, type[LearningRateSchedule]] = {}
_REGISTERED_NAMES: dict[type, str] = {}


def register_serializable(cls_or_name=None, *, package=None):
    """Register a custom schedule class so that :func:`deserialize` finds it by name.

    Usable as ``@register_serializable``, ``@register_serializable()`` or
    ``@register_serializable("Name")``. The registered name is the given name (default: the
    class name), prefixed with ``"<package>>"`` when ``package`` is given. tf-keras's
    ``register_keras_serializable`` defaults to ``package="Custom"`` (``"Custom>Name"``); for an
    unregistered class it reports the bare class name, which is what the tf-keras optimizer test
    expects in ``registered_name``. Registering the same class again is a no-op.

    Raises:
        TypeError: the decorated object is not a ``LearningRateSchedule`` subclass.
        ValueError: the name is already registered to another class (as tf-keras).
    """

    def register(cls, name):
        if not (isinstance(cls, type) and issubclass(cls, LearningRateSchedule)):
            raise TypeError(
                "register_serializable() decorates LearningRateSchedule subclasses. "
                f"Received: {cls!r}"
            )
        name = name or cls.__name__
        if package:
            name = f"{package}>{name}"
        existing = _REGISTRY.get(name)
        if existing is not None and existing is not cls:
            raise ValueError(f"{name} has already been registered to {existing}")
        _REGISTRY[name] = cls
        _REGISTERED_NAMES[cls] = name
        return cls

    if isinstance(cls_or_name, type):
        return register(cls_or_name, None)
    if cls_or_name is None or isinstance(cls_or_name, str):
        return lambda cls: register(cls, cls_or_name)
    raise TypeError(
        f"register_serializable() takes a class or a name (str). Received: {cls_or_name!r}"
    )


def _is_builtin(cls) -> bool:
    return _BUILTINS.get(cls.__name__) is cls


def _plain(value):
    """NumPy scalars in a config become Python scalars (tf-keras ``serialize_keras_object``)."""
    if isinstance(value, np.generic) or (isinstance(value, np.ndarray) and value.ndim == 0):
        return value.item()
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_plain(item) for item in value)
    return value


def serialize(schedule, use_legacy_format=False) -> dict:
    """Serialize a schedule to a JSON-compatible dict.

    Default (tf-keras and Keras 3 format)::

        {"module": "keras.optimizers.schedules", "class_name": "ExponentialDecay",
         "config": {...}, "registered_name": None}

    A custom schedule gets ``"module": None`` and ``"registered_name"`` = its registered name
    (the class name when unregistered). tf-keras writes the defining module there, ``None``
    only for ``__main__`` (``serialization_lib.record_object_after_serialization``); the
    reference always writes ``None`` because a module path is not portable between
    implementations. NumPy scalars in the config are converted to Python scalars, as tf-keras
    does ("Treat numpy floats / etc as plain types"): a float64 initial rate comes back as a
    Python float, so the deserialized schedule computes in float32.

    ``use_legacy_format=True`` gives the Keras 2.9 ``{"class_name": ..., "config": ...}`` form
    (tf-keras ``legacy.serialization``), whose config keeps its values unchanged and whose
    ``class_name`` is the registered name for a custom schedule.

    Raises:
        TypeError: ``schedule`` is not a ``LearningRateSchedule`` or its ``get_config()`` does
            not return a dict.
    """
    if not isinstance(schedule, LearningRateSchedule):
        raise TypeError(
            "serialize() takes a LearningRateSchedule. "
            f"Received: {schedule!r} of type {type(schedule).__name__}"
        )
    config = schedule.get_config()
    if not isinstance(config, dict):
        raise TypeError(
            f"The `get_config()` method of {schedule!r} should return a dict. "
            f"It returned: {config!r}"
        )
    cls = type(schedule)
    builtin = _is_builtin(cls)
    registered_name = None if builtin else _REGISTERED_NAMES.get(cls, cls.__name__)
    if use_legacy_format:
        return {"class_name": registered_name or cls.__name__, "config": dict(config)}
    return {
        "module": BUILTIN_MODULE if builtin else None,
        "class_name": cls.__name__,
        "config": _plain(config),
        "registered_name": registered_name,
    }


def _resolve(config: dict, custom_objects: dict):
    class_name = config["class_name"]
    registered_name = config.get("registered_name")
    module = config.get("module")
    if (
        registered_name is None
        and isinstance(module, str)
        and module.split(".")[0] in ("keras", "tf_keras")
    ):
        # A built-in reference in the new format: custom names do not shadow it.
        return _BUILTINS.get(class_name)
    for name in dict.fromkeys((registered_name, class_name)):
        if name is None:
            continue
        if name in _REGISTRY:
            return _REGISTRY[name]
        if name in custom_objects:
            return custom_objects[name]
    return _BUILTINS.get(class_name)


def deserialize(config, custom_objects=None, use_legacy_format=False):
    """Rebuild a schedule from :func:`serialize` output (either format).

    The class is found, in order, by ``registered_name`` then ``class_name`` among the
    :func:`register_serializable` registry and ``custom_objects``, then among the built-ins
    by ``class_name``; a new-format built-in reference (``module`` under ``keras``/``tf_keras``,
    ``registered_name`` None) resolves to the built-in directly. The instance is
    ``cls.from_config(config["config"])``. ``use_legacy_format`` is accepted for signature
    compatibility with tf-keras; the format is recognised from the dict itself.

    tf-keras reports an unknown class as ``TypeError("Could not locate class ...")`` (new
    format) or ``ValueError("Unknown decay: ...")`` (legacy format); the reference raises the
    latter for both.

    Raises:
        TypeError: ``config`` (or its ``"config"`` entry) is not a dict, or the resolved class
            has no ``from_config``.
        ValueError: ``config`` lacks ``class_name``/``config``, or the class is unknown (the
            message names it and lists the known schedules).
    """
    del use_legacy_format
    if not isinstance(config, dict):
        raise TypeError(
            "deserialize() takes the dict produced by serialize(). "
            f"Received: {config!r} of type {type(config).__name__}"
        )
    if "class_name" not in config or "config" not in config:
        raise ValueError(
            f"Improper config format for {config}. Expecting a dict with `class_name` and "
            "`config` keys."
        )
    inner = config["config"]
    if not isinstance(inner, dict):
        raise TypeError(
            f"The `config` entry must be a dict. Received: {inner!r} of type {type(inner).__name__}"
        )
    custom_objects = dict(custom_objects or {})
    cls = _resolve(config, custom_objects)
    if cls is None:
        name = config.get("registered_name") or config["class_name"]
        raise ValueError(
            f"Unknown decay: '{name}'. Known schedules: {sorted(_BUILTINS)}; registered: "
            f"{sorted(_REGISTRY)}. Decorate custom schedules with register_serializable() "
            "or pass them in `custom_objects`."
        )
    if not hasattr(cls, "from_config"):
        raise TypeError(
            f"Unable to reconstruct an instance of '{config['class_name']}' because the "
            f"class is missing a `from_config()` method. Full object config: {config}"
        )
    return cls.from_config(dict(inner))
