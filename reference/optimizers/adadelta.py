"""Adadelta.

Source: keras-team/tf-keras ``tf_keras/optimizers/adadelta.py`` (keras2 profile);
keras-team/keras ``keras/src/optimizers/adadelta.py`` (keras3). Notes §2.6.

With ρ = rho, every quantity in the variable dtype (``lr`` cast to it) and
``rms(x) = sqrt(x + ε)``::

    Eg² ← ρ·Eg² + (1 − ρ)·g·g
    Δ   = ((−rms(EΔ²))·g) / rms(Eg²)
    EΔ² ← ρ·EΔ² + (1 − ρ)·Δ·Δ
    var ← var + lr·Δ

``(1 − ρ)·g·g`` is evaluated left to right, ((1 − ρ)·g)·g, in tf-keras and as
(1 − ρ)·(g·g) in Keras 3 (profile field ``scaled_square``); the two round
differently. ρ, 1 − ρ and ε are Python floats converted once to the dtype.

Sparse (deduplicated IndexedSlices, keras2)::

    Eg² ← Eg² + (ρ − 1)·Eg²;   Eg²[idx] += (1 − ρ)·(g·g)
    then Δ, EΔ² and var as in the dense case, with g the densified gradient
    (tf-keras multiplies a tensor by the IndexedSlices, which TensorFlow densifies).

Notes:

* The learning rate defaults to 1e-3 (the paper and PyTorch use 1.0).
* ε is inside both square roots.
"""

from __future__ import annotations

import numpy as np

from .. import dtypes
from ..optimizer import Optimizer
from ..sparse import IndexedSlices, to_dense
from .sgd import _scatter_add


class Adadelta(Optimizer):
    """Adadelta. Defaults: lr 1e-3, ρ 0.95, ε 1e-7."""

    def __init__(
        self,
        learning_rate=0.001,
        rho=0.95,
        epsilon=1e-7,
        name="Adadelta",
        weight_decay=None,
        **kwargs,
    ):
        super().__init__(name=name, weight_decay=weight_decay, **kwargs)
        self._learning_rate = self._build_learning_rate(learning_rate)
        self.rho = rho
        self.epsilon = epsilon

    def build(self, var_list):
        super().build(var_list)
        self._accumulated_grads = []
        self._accumulated_delta_vars = []
        for v in var_list:
            self._accumulated_grads.append(self.add_variable_from_reference(v, "accumulated_grad"))
            self._accumulated_delta_vars.append(
                self.add_variable_from_reference(v, "accumulated_delta_var")
            )

    def update_step(self, gradient, variable):
        dtype = variable.dtype
        lr = self._learning_rate_for(variable)
        index = self._get_variable_index(variable)
        accumulated_grad = self._accumulated_grads[index]
        accumulated_delta_var = self._accumulated_delta_vars[index]
        rho = dtypes.const(self.rho, dtype)
        one_minus_rho = dtypes.const(1 - self.rho, dtype)
        epsilon = dtypes.const(self.epsilon, dtype)

        def rms(x):
            return np.sqrt(x + epsilon)

        if isinstance(gradient, IndexedSlices):
            accumulated_grad.assign_add(
                dtypes.const(self.rho - 1, dtype) * accumulated_grad.numpy()
            )
            _scatter_add(
                accumulated_grad, gradient.indices, one_minus_rho * np.square(gradient.values)
            )
            gradient = to_dense(gradient)
        else:
            accumulated_grad.assign(
                rho * accumulated_grad.numpy() + self._scaled_square(one_minus_rho, gradient)
            )
        delta_var = -rms(accumulated_delta_var.numpy()) * gradient / rms(accumulated_grad.numpy())
        accumulated_delta_var.assign(
            rho * accumulated_delta_var.numpy() + self._scaled_square(one_minus_rho, delta_var)
        )
        variable.assign_add(lr * delta_var)

    def _scaled_square(self, c, x):
        """``c·x·x`` in the profile's order (``scaled_square``)."""
        if self.profile.scaled_square == "left_to_right":
            return c * x * x
        return c * np.square(x)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "learning_rate": self._serialize_hyperparameter(self._learning_rate),
                "rho": self.rho,
                "epsilon": self.epsilon,
            }
        )
        return config
