"""Adagrad.

Source: keras-team/tf-keras ``tf_keras/optimizers/adagrad.py`` (keras2 profile);
keras-team/keras ``keras/src/optimizers/adagrad.py`` (keras3, same arithmetic).
Notes §2.5.

With every quantity in the variable dtype (``lr`` cast to it)::

    acc ← acc₀ = initial_accumulator_value            (at build)
    acc ← acc + g·g
    var ← var − (lr·g) / sqrt(acc + ε)                 (ε inside the square root)

Sparse (deduplicated IndexedSlices, keras2): only the rows ``idx`` change::

    acc[idx] += g·g
    var[idx] += ((−lr)·g) / sqrt(acc[idx] + ε)

Notes:

* ε inside the square root, unlike the legacy ``ResourceApplyAdagradV2`` kernel
  and PyTorch (``lr·g / (sqrt(acc) + ε)``); PyTorch also starts acc at 0.
* The initial accumulator is ``initializers.Constant(acc₀)``: tf-keras converts
  the Python float to the variable dtype once; Keras 3 (``ops.cast``) rounds it to
  float32 first, which differs for float64 variables (profile field
  ``constant_initializer``).
"""

from __future__ import annotations

import numpy as np

from .. import dtypes
from ..optimizer import Optimizer
from ..sparse import IndexedSlices
from .sgd import _scatter_add


class Adagrad(Optimizer):
    """Adagrad. Defaults: lr 1e-3, initial_accumulator_value 0.1, ε 1e-7."""

    def __init__(
        self,
        learning_rate=0.001,
        initial_accumulator_value=0.1,
        epsilon=1e-7,
        name="Adagrad",
        weight_decay=None,
        **kwargs,
    ):
        super().__init__(name=name, weight_decay=weight_decay, **kwargs)
        self._learning_rate = self._build_learning_rate(learning_rate)
        self.initial_accumulator_value = initial_accumulator_value
        self.epsilon = epsilon

    def build(self, var_list):
        super().build(var_list)
        self._accumulators = [
            self.add_variable_from_reference(
                v,
                "accumulator",
                initial_value=np.full(v.shape, self._initial_accumulator(v.dtype)),
            )
            for v in var_list
        ]

    def _initial_accumulator(self, dtype):
        """``initializers.Constant(initial_accumulator_value)`` in ``dtype``."""
        if self.profile.constant_initializer == "direct":
            return dtypes.const(self.initial_accumulator_value, dtype)
        return dtypes.cast(dtypes.const(self.initial_accumulator_value, dtypes.FLOATX), dtype)

    def update_step(self, gradient, variable):
        lr = self._learning_rate_for(variable)
        accumulator = self._accumulators[self._get_variable_index(variable)]
        epsilon = dtypes.const(self.epsilon, variable.dtype)
        if isinstance(gradient, IndexedSlices):
            values, indices = gradient.values, gradient.indices
            _scatter_add(accumulator, indices, values * values)
            sparse_denominator = self._root(accumulator.numpy()[indices], epsilon)
            _scatter_add(variable, indices, -lr * values / sparse_denominator)
            return
        accumulator.assign_add(gradient * gradient)
        variable.assign_sub(lr * gradient / self._root(accumulator.numpy(), epsilon))

    def _root(self, accumulator, epsilon):
        """√(acc + ε), or √acc + ε (variant ``epsilon_in_sqrt=False``)."""
        if self.profile.epsilon_in_sqrt:
            return np.sqrt(accumulator + epsilon)
        return np.sqrt(accumulator) + epsilon

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "learning_rate": self._serialize_hyperparameter(self._learning_rate),
                "initial_accumulator_value": self.initial_accumulator_value,
                "epsilon": self.epsilon,
            }
        )
        return config
