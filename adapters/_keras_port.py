"""What a port of a Keras optimizer config to another library needs, shared by the
third-party adapters (``torch_optim``, ``optax_adapter``).

This is the translation a user does by hand, written once: the Keras defaults of each
optimizer, which clipping argument Keras applies, which variables it decays, and the
learning-rate schedules as plain functions of the step. Nothing here calls the golden
reference: the adapters must stand on the libraries they drive.

Constants. Keras holds the learning rate in a float32 variable and reads some
hyper-parameters through ``tf.cast``, which converts a Python float to float32 first
(tensorflow/tensorflow#35938): the numbers a Keras optimizer computes with are
``float32(x)`` for those, and ``x`` for the ones it writes into expressions
(``1 - beta_1``). :func:`f32` gives a library the float32 value where the library uses the
hyper-parameter in that one role; where a library uses one argument in both roles
(torch and optax Adam's β in ``1 − β`` and ``βᵗ``) it gets the config's value and float64
runs differ from Keras by the rounding of β (about 1e-8 relative).
"""

from __future__ import annotations

import math
import re

import numpy as np

#: Keras constructor defaults (tf-keras and Keras 3 agree except where PROFILE_DEFAULTS
#: says otherwise; semantics notes §2.1).
DEFAULTS: dict[str, dict] = {
    "SGD": {"learning_rate": 0.01, "momentum": 0.0, "nesterov": False},
    "Adam": {"learning_rate": 1e-3, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7,
             "amsgrad": False},
    "AdamW": {"learning_rate": 1e-3, "weight_decay": 0.004, "beta_1": 0.9, "beta_2": 0.999,
              "epsilon": 1e-7, "amsgrad": False},
    "Adagrad": {"learning_rate": 1e-3, "initial_accumulator_value": 0.1, "epsilon": 1e-7},
    "Adadelta": {"learning_rate": 1e-3, "rho": 0.95, "epsilon": 1e-7},
    "Adamax": {"learning_rate": 1e-3, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7},
    "Nadam": {"learning_rate": 1e-3, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7},
    "RMSprop": {"learning_rate": 1e-3, "rho": 0.9, "momentum": 0.0, "epsilon": 1e-7,
                "centered": False},
    "Adafactor": {"learning_rate": 1e-3, "beta_2_decay": -0.8, "epsilon_1": 1e-30,
                  "epsilon_2": 1e-3, "clip_threshold": 1.0, "relative_step": True},
    "Lion": {"learning_rate": 1e-4, "beta_1": 0.9, "beta_2": 0.99},
    "Ftrl": {"learning_rate": 1e-3},
}  # fmt: skip
BASE_DEFAULTS = {"weight_decay": None, "clipnorm": None, "clipvalue": None,
                 "global_clipnorm": None, "use_ema": False, "ema_momentum": 0.99,
                 "ema_overwrite_frequency": None}  # fmt: skip
PROFILE_DEFAULTS = {
    "keras2": {"RMSprop": {"ema_overwrite_frequency": 100}},
    "keras3": {"Lion": {"learning_rate": 1e-3}},
}


def f32(x) -> float | int:
    """``x`` as Keras computes with it after ``tf.cast`` / a float32 variable.

    An int that float32 holds exactly is returned as the int the config has: its value
    is the same, and the library gets the type the user wrote (and may reject it)."""
    rounded = float(np.float32(x))
    if type(x) is int and rounded == x:
        return x
    return rounded


def full_config(scenario) -> dict:
    """The scenario's Keras config with every default filled in."""
    config = {**BASE_DEFAULTS, **DEFAULTS[scenario.optimizer]}
    config.update(PROFILE_DEFAULTS.get(scenario.profile, {}).get(scenario.optimizer, {}))
    config.update(scenario.config)
    return config


def clipping(config: dict) -> tuple[str, float | int] | None:
    """The one clipping Keras applies: clipnorm > global_clipnorm > clipvalue (§1.4);
    its value as the config has it (``clipvalue=1`` stays an int for the library)."""
    for key in ("clipnorm", "global_clipnorm", "clipvalue"):
        value = config.get(key)
        if value and value > 0:
            return key, value
    return None


def decays(scenario, index: int) -> bool:
    """Whether Keras decays variable ``index`` (``exclude_from_weight_decay``)."""
    if index in set(scenario.exclude_indices):
        return False
    name = scenario.names[index]
    return not any(re.search(pattern, name) for pattern in scenario.exclude_names)


def dense(grad) -> np.ndarray:
    """An IndexedSlices as the dense gradient a dense lookup hands a library (rows of
    repeated indices summed); anything else unchanged."""
    if type(grad).__name__ != "IndexedSlices":
        return grad
    values = np.asarray(grad.values)
    out = np.zeros(tuple(grad.dense_shape), dtype=np.float64)
    np.add.at(out, np.asarray(grad.indices), values.astype(np.float64))
    # Summing in float64 then rounding once is exact for two rows and within an ulp of
    # any ordered sum; the dtype is the variable's.
    return out.astype(values.dtype)


# -- schedules ---------------------------------------------------------------------------
def schedule(spec: dict, xp=np):
    """A Keras schedule dict as ``f(step) -> learning rate``, computed in float32 as Keras
    computes a schedule of a Python-float initial rate (§3). ``xp`` is NumPy (host) or
    ``jax.numpy`` (traced step)."""
    name, c = spec["class_name"], dict(spec["config"])
    f = xp.float32

    def cast(x):
        return xp.asarray(x, dtype=f)

    if name in ("ExponentialDecay", "InverseTimeDecay"):
        lr0, steps, rate = (
            cast(c["initial_learning_rate"]),
            cast(c["decay_steps"]),
            cast(c["decay_rate"]),
        )
        stair = bool(c.get("staircase", False))

        def progress(step):
            p = cast(step) / steps
            return xp.floor(p) if stair else p

        if name == "ExponentialDecay":
            return lambda step: lr0 * xp.power(rate, progress(step))
        return lambda step: lr0 / (cast(1.0) + rate * progress(step))
    if name == "PiecewiseConstantDecay":
        bounds = [int(b) for b in c["boundaries"]]
        values = [cast(v) for v in c["values"]]

        def piecewise(step):
            out = values[-1]
            for b, v in zip(reversed(bounds), reversed(values[:-1]), strict=True):
                out = xp.where(step <= b, v, out)
            return out

        return piecewise
    if name == "PolynomialDecay":
        lr0, steps = cast(c["initial_learning_rate"]), cast(c["decay_steps"])
        end, power = cast(c.get("end_learning_rate", 1e-4)), cast(c.get("power", 1.0))
        cycle = bool(c.get("cycle", False))

        def polynomial(step):
            s = cast(step)
            if cycle:
                mult = xp.where(s == 0, cast(1.0), xp.ceil(s / steps))
                d = steps * mult
            else:
                s, d = xp.minimum(s, steps), steps
            return (lr0 - end) * xp.power(cast(1.0) - s / d, power) + end

        return polynomial
    if name == "CosineDecay":
        lr0, steps = cast(c["initial_learning_rate"]), cast(c["decay_steps"])
        alpha = c.get("alpha", 0.0)
        pi = cast(math.pi)

        def decay(s, base):
            cosine = cast(0.5) * (cast(1.0) + xp.cos(pi * (s / steps)))
            return base * (cast(1 - alpha) * cosine + cast(alpha))

        if c.get("warmup_target") is None:
            return lambda step: decay(xp.minimum(cast(step), steps), lr0)
        target, warm = cast(c["warmup_target"]), cast(c.get("warmup_steps", 0))

        def warmup(step):
            s = xp.minimum(cast(step), steps + warm)
            rising = (target - lr0) * (s / warm) + lr0
            return xp.where(s < warm, rising, decay(s - warm, target))

        return warmup
    if name == "CosineDecayRestarts":
        lr0, first = cast(c["initial_learning_rate"]), cast(c["first_decay_steps"])
        alpha = c.get("alpha", 0.0)
        t_mul, m_mul = cast(c.get("t_mul", 2.0)), cast(c.get("m_mul", 1.0))
        pi = cast(math.pi)

        def restarts(step):
            frac = cast(step) / first
            if float(t_mul) == 1.0:
                i = xp.floor(frac)
                frac = frac - i
            else:
                i = xp.floor(xp.log(cast(1.0) - frac * (cast(1.0) - t_mul)) / xp.log(t_mul))
                done = (cast(1.0) - xp.power(t_mul, i)) / (cast(1.0) - t_mul)
                frac = (frac - done) / xp.power(t_mul, i)
            cosine = cast(0.5) * xp.power(m_mul, i) * (cast(1.0) + xp.cos(pi * frac))
            return lr0 * (cast(1 - alpha) * cosine + cast(alpha))

        return restarts
    raise ValueError(f"unknown learning-rate schedule {name!r}")


def learning_rate(config: dict, xp=np):
    """``f(step)`` for a schedule, or the float32 learning rate (a float)."""
    lr = config["learning_rate"]
    if isinstance(lr, dict):
        return schedule(lr, xp)
    return f32(lr)


#: tf-keras slot name -> the optimizer attribute (tf-keras and Keras 3 alike) holding one
#: slot variable per built model variable, in build order; the adapters read and load
#: slots through these instead of parsing variable names. (tf-keras's Lion calls its list
#: ``momentums``; Adafactor's r and c of rank < 2 variables are placeholders.)
SLOT_ATTRIBUTES: dict[str, dict[str, str]] = {
    "SGD": {"m": "momentums"},
    "Adam": {"m": "_momentums", "v": "_velocities", "vhat": "_velocity_hats"},
    "AdamW": {"m": "_momentums", "v": "_velocities", "vhat": "_velocity_hats"},
    "Adagrad": {"accumulator": "_accumulators"},
    "Adadelta": {"accumulated_grad": "_accumulated_grads",
                 "accumulated_delta_var": "_accumulated_delta_vars"},
    "Adamax": {"m": "_m", "u": "_u"},
    "Ftrl": {"accumulator": "_accumulators", "linear": "_linears"},
    "Nadam": {"m": "_momentums", "v": "_velocities"},
    "RMSprop": {"velocity": "_velocities", "momentum": "_momentums",
                "average_gradient": "_average_gradients"},
    "Adafactor": {"r": "_r", "c": "_c", "v": "_v"},
    "Lion": {"m": "_momentums"},
}  # fmt: skip
