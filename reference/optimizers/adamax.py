"""Adamax (Adam with the infinity norm).

Source: keras-team/tf-keras ``tf_keras/optimizers/adamax.py`` (keras2 profile);
keras-team/keras ``keras/src/optimizers/adamax.py`` (keras3, same arithmetic).
Notes §2.7.

With t = iterations + 1 and every quantity in the variable dtype (``lr`` cast to it)::

    m   ← m + (g − m)·(1 − β1)
    u   ← max(β2·u, |g|)
    var ← var − (lr·m) / ((1 − β1ᵗ)·(u + ε))

``1 − β1``, β2 and ε are Python floats converted once to the dtype. β1ᵗ is
``pow(tf.cast(β1, dtype), t)``: ``tf.cast`` of a Python float goes through float32
(TensorFlow's default float type) before the cast, so a float64 variable uses
float64(float32(β1)) there (tensorflow/tensorflow#35938; Keras 3's ``ops.cast`` on
TensorFlow is ``tf.cast``).

Sparse (deduplicated IndexedSlices, keras2)::

    m ← m + (−m)·(1 − β1);   m[idx] += g·(1 − β1)
    u ← u·β2;                 u[idx] += max(u[idx], |g|) − u[idx]
    var ← var − (lr·m) / ((1 − β1ᵗ)·(u + ε))     (every row)

Notes:

* ``u[idx] + (max(u[idx], |g|) − u[idx])`` is how tf-keras writes the sparse max
  (a scatter-add of the increment); it may differ from max(u[idx], |g|) by an ulp.
* PyTorch keeps u = max(β2·u, |g| + ε) and has no ε in the denominator.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from .. import dtypes, elementary
from ..optimizer import Optimizer
from ..sparse import IndexedSlices, to_dense
from .sgd import _scatter_add


class Adamax(Optimizer):
    """Adamax. Defaults: lr 1e-3, β1 0.9, β2 0.999, ε 1e-7."""

    keras3_slot_names: ClassVar[dict[str, str]] = {"m": "momentum", "u": "norm"}

    def __init__(
        self,
        learning_rate=0.001,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-7,
        name="Adamax",
        weight_decay=None,
        **kwargs,
    ):
        super().__init__(name=name, weight_decay=weight_decay, **kwargs)
        self._learning_rate = self._build_learning_rate(learning_rate)
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon

    def build(self, var_list):
        super().build(var_list)
        self._m = []
        self._u = []
        for v in var_list:
            self._m.append(self.add_variable_from_reference(v, "m"))
            self._u.append(self.add_variable_from_reference(v, "u"))

    def update_step(self, gradient, variable):
        dtype = variable.dtype
        lr = self._learning_rate_for(variable)
        local_step = self._local_step(variable)
        beta_1_power = elementary.power(self._power_base(self.beta_1, dtype), local_step)
        index = self._get_variable_index(variable)
        m, u = self._m[index], self._u[index]
        one_minus_beta_1 = dtypes.const(1 - self.beta_1, dtype)
        beta_2 = dtypes.const(self.beta_2, dtype)

        if self.profile.adamax_epsilon == "inside_max":
            self._epsilon_in_max(gradient, variable, m, u, lr, beta_1_power, beta_2)
            return
        if isinstance(gradient, IndexedSlices):
            indices = gradient.indices
            m.assign_add(-m.numpy() * one_minus_beta_1)
            _scatter_add(m, indices, gradient.values * one_minus_beta_1)
            u.assign(u.numpy() * beta_2)
            u_slice = u.numpy()[indices]
            u_slice_incremental = self._maximum(u_slice, np.abs(gradient.values)) - u_slice
            _scatter_add(u, indices, u_slice_incremental)
        else:
            m.assign_add((gradient - m.numpy()) * one_minus_beta_1)
            u.assign(self._maximum(beta_2 * u.numpy(), np.abs(gradient)))
        one = dtypes.const(1, dtype)
        epsilon = dtypes.const(self.epsilon, dtype)
        variable.assign_sub((lr * m.numpy()) / ((one - beta_1_power) * (u.numpy() + epsilon)))

    def _epsilon_in_max(self, gradient, variable, m, u, lr, beta_1_power, beta_2):
        """Variant ``adamax_epsilon="inside_max"`` (torch): e ← max(β2·e, |g| + ε),
        v ← v − lr·m/((1 − β1ᵗ)·e); u holds e − ε."""
        dtype = variable.dtype
        if isinstance(gradient, IndexedSlices):
            gradient = dtypes.wrap(to_dense(gradient))
        one, epsilon = dtypes.const(1, dtype), dtypes.const(self.epsilon, dtype)
        m.assign_add((gradient - m.numpy()) * dtypes.const(1 - self.beta_1, dtype))
        exp_inf = self._maximum(beta_2 * (u.numpy() + epsilon), np.abs(gradient) + epsilon)
        u.assign(exp_inf - epsilon)
        variable.assign_sub((lr * m.numpy()) / ((one - beta_1_power) * exp_inf))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "learning_rate": self._serialize_hyperparameter(self._learning_rate),
                "beta_1": self.beta_1,
                "beta_2": self.beta_2,
                "epsilon": self.epsilon,
            }
        )
        return config
