"""RMSprop, plain (not Nesterov) momentum, optionally centered.

Source: keras-team/tf-keras ``tf_keras/optimizers/rmsprop.py`` (keras2 profile);
keras-team/keras ``keras/src/optimizers/rmsprop.py`` (keras3). Notes §2.10.

Dense, with ρ = rho, μ = momentum and every quantity in the variable dtype::

    ms  ← ρ·ms + (1 − ρ)·g²
    centered:  mg ← ρ·mg + (1 − ρ)·g;   den = (ms − mg²) + ε
    otherwise:                          den = ms + ε
    inc = (lr·g)·rsqrt(den)                      ε INSIDE the square root
    μ > 0:     mom ← μ·mom + inc;  var ← var + (−mom)
    otherwise: var ← var + (−inc)

``x·rsqrt(y)`` is the profile's ``reciprocal_sqrt``: tf-keras multiplies by
``tf.math.rsqrt`` (modelled as ``x·(1/sqrt(y))``); Keras 3 divides, ``x/sqrt(y)``.
``1 − ρ`` is a Python float converted once to the variable dtype.

Sparse (deduplicated IndexedSlices, keras2)::

    ms ← ρ·ms;  ms[idx] += g²·(1 − ρ)
    centered:  mg ← ρ·mg;  mg[idx] += g·(1 − ρ);  den = (ms − mg²) + ε
    otherwise: den = ms + ε
    inc = (lr·g)·rsqrt(den[idx])                  (rows idx only)
    μ > 0:     mom ← μ·mom;  mom[idx] += inc;  var ← var + (−mom)
    otherwise: var[idx] += −inc

Notes:

* Slots ``velocity`` (ms), ``momentum`` (only if μ > 0), ``average_gradient`` (mg,
  only if centered); each family is created for every variable in turn.
* Keras 2.11+ form (tf-keras commits 32b15912a2, 814092c711). Keras 2.9/2.10 put ε
  outside the square root and averaged g² into mg; not modelled (notes §4.2).
* ``ema_overwrite_frequency`` defaults to 100 in tf-keras (it only acts with
  ``use_ema=True``) and to None in Keras 3 (profile ``default_overrides``).
"""

from __future__ import annotations

import numpy as np

from .. import dtypes
from ..optimizer import DEFAULT, Optimizer
from ..sparse import IndexedSlices
from .sgd import _scatter_add


class RMSprop(Optimizer):
    """RMSprop. Defaults: lr 1e-3, ρ 0.9, momentum 0, ε 1e-7, centered False."""

    def __init__(
        self,
        learning_rate=0.001,
        rho=0.9,
        momentum=0.0,
        epsilon=1e-7,
        centered=False,
        name="RMSprop",
        weight_decay=None,
        ema_overwrite_frequency=DEFAULT,
        **kwargs,
    ):
        ema_overwrite_frequency = self._profile_default(
            kwargs.get("profile"), "ema_overwrite_frequency", ema_overwrite_frequency, 100
        )
        super().__init__(
            name=name,
            weight_decay=weight_decay,
            ema_overwrite_frequency=ema_overwrite_frequency,
            **kwargs,
        )
        self._learning_rate = self._build_learning_rate(learning_rate)
        self.rho = rho
        self.momentum = momentum
        self.epsilon = epsilon
        self.centered = centered

    def build(self, var_list):
        super().build(var_list)
        self._velocities = [self.add_variable_from_reference(v, "velocity") for v in var_list]
        self._momentums = []
        if self.momentum > 0:
            self._momentums = [self.add_variable_from_reference(v, "momentum") for v in var_list]
        self._average_gradients = []
        if self.centered:
            self._average_gradients = [
                self.add_variable_from_reference(v, "average_gradient") for v in var_list
            ]

    def update_step(self, gradient, variable):
        dtype = variable.dtype
        lr = self._learning_rate_for(variable)
        index = self._get_variable_index(variable)
        velocity = self._velocities[index]
        rho = dtypes.const(self.rho, dtype)
        one_minus_rho = dtypes.const(1 - self.rho, dtype)
        epsilon = dtypes.const(self.epsilon, dtype)
        form = self.profile.reciprocal_sqrt

        if isinstance(gradient, IndexedSlices):
            indices, values = gradient.indices, gradient.values
            velocity.assign(rho * velocity.numpy())
            _scatter_add(velocity, indices, np.square(values) * one_minus_rho)
            if self.centered:
                average_grad = self._average_gradients[index]
                average_grad.assign(rho * average_grad.numpy())
                _scatter_add(average_grad, indices, values * one_minus_rho)
                denominator = velocity.numpy() - np.square(average_grad.numpy())
            else:
                denominator = velocity.numpy()
            increment = self._scaled(lr * values, denominator[indices], epsilon, form)
            if self.momentum > 0:
                momentum = self._momentums[index]
                momentum.assign(dtypes.const(self.momentum, dtype) * momentum.numpy())
                _scatter_add(momentum, indices, increment)
                variable.assign_add(-momentum.numpy())
            else:
                _scatter_add(variable, indices, -increment)
            return

        velocity.assign(rho * velocity.numpy() + one_minus_rho * np.square(gradient))
        if self.centered:
            average_grad = self._average_gradients[index]
            average_grad.assign(rho * average_grad.numpy() + one_minus_rho * gradient)
            denominator = velocity.numpy() - np.square(average_grad.numpy())
        else:
            denominator = velocity.numpy()
        increment = self._scaled(lr * gradient, denominator, epsilon, form)
        if self.momentum > 0:
            momentum = self._momentums[index]
            momentum.assign(dtypes.const(self.momentum, dtype) * momentum.numpy() + increment)
            variable.assign_add(-momentum.numpy())
        else:
            variable.assign_add(-increment)

    def _scaled(self, x, denominator, epsilon, form):
        """x·rsqrt(den + ε), or x/(√den + ε) (variant ``epsilon_in_sqrt=False``)."""
        if self.profile.epsilon_in_sqrt:
            return _times_rsqrt(x, denominator + epsilon, form)
        return x / (np.sqrt(denominator) + epsilon)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "learning_rate": self._serialize_hyperparameter(self._learning_rate),
                "rho": self.rho,
                "momentum": self.momentum,
                "epsilon": self.epsilon,
                "centered": self.centered,
            }
        )
        return config


def _times_rsqrt(x, y, form):
    """``x·rsqrt(y)`` in the form a profile's ``reciprocal_sqrt`` names.

    ``"rsqrt"``: ``x·(1/sqrt(y))`` (tf-keras ``x * tf.math.rsqrt(y)``);
    ``"divide"``: ``x/sqrt(y)`` (Keras 3 ``ops.divide(x, ops.sqrt(y))``).
    """
    if form == "rsqrt":
        return x * (dtypes.const(1, np.asarray(y).dtype) / np.sqrt(y))
    if form == "divide":
        return x / np.sqrt(y)
    raise ValueError(f"Unknown reciprocal_sqrt form {form!r}: expected 'rsqrt' or 'divide'.")
