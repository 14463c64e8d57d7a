"""Adam, with optional AMSGrad.

Source: keras-team/tf-keras ``tf_keras/optimizers/adam.py``; keras-team/keras
``keras/src/optimizers/adam.py`` (same arithmetic). Notes §2.3.

With t = iterations + 1 and every quantity in the variable dtype::

    α  = (lr · sqrt(1 − β2ᵗ)) / (1 − β1ᵗ)
    m ← m + (g − m)·(1 − β1)
    v ← v + (g² − v)·(1 − β2)
    v̂ ← max(v̂, v); use v̂ for v     (amsgrad: max of the raw, uncorrected v)
    var ← var − (m·α) / (sqrt(v) + ε)

ε is "epsilon hat": added to the square root of the *uncorrected* v, unlike
PyTorch and optax (keras-team/tf-keras#315). ``1 − β1`` and ``1 − β2`` are Python
floats converted once to the variable dtype.

Sparse (deduplicated IndexedSlices)::

    m ← m + (−m)·(1 − β1);  m[idx] += g·(1 − β1)
    v ← v + (−v)·(1 − β2);  v[idx] += g²·(1 − β2)
    then the dense AMSGrad and variable updates.
"""

from __future__ import annotations

import numpy as np

from .. import dtypes, elementary
from ..optimizer import Optimizer
from ..sparse import IndexedSlices
from .sgd import _scatter_add


class Adam(Optimizer):
    """Adam. Defaults: lr 1e-3, β1 0.9, β2 0.999, ε 1e-7, amsgrad False."""

    keras3_slot_names = {"m": "momentum", "v": "velocity", "vhat": "velocity_hat"}

    def __init__(
        self,
        learning_rate=0.001,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-7,
        amsgrad=False,
        name="Adam",
        weight_decay=None,
        **kwargs,
    ):
        super().__init__(name=name, weight_decay=weight_decay, **kwargs)
        self._learning_rate = self._build_learning_rate(learning_rate)
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.amsgrad = amsgrad

    def build(self, var_list):
        super().build(var_list)
        self._momentums = [self.add_variable_from_reference(v, "m") for v in var_list]
        self._velocities = [self.add_variable_from_reference(v, "v") for v in var_list]
        if self.amsgrad:
            self._velocity_hats = [self.add_variable_from_reference(v, "vhat") for v in var_list]

    def update_step(self, gradient, variable):
        dtype = variable.dtype
        lr = self._learning_rate_for(variable)
        local_step = self._local_step(variable)
        beta_1_power = elementary.power(self._power_base(self.beta_1, dtype), local_step)
        beta_2_power = elementary.power(self._power_base(self.beta_2, dtype), local_step)
        one = dtypes.const(1, dtype)
        index = self._get_variable_index(variable)
        m, v = self._momentums[index], self._velocities[index]

        alpha = lr * np.sqrt(one - beta_2_power) / (one - beta_1_power)
        one_minus_beta_1 = dtypes.const(1 - self.beta_1, dtype)
        one_minus_beta_2 = dtypes.const(1 - self.beta_2, dtype)
        if isinstance(gradient, IndexedSlices):
            m.assign_add(-m.numpy() * one_minus_beta_1)
            _scatter_add(m, gradient.indices, gradient.values * one_minus_beta_1)
            v.assign_add(-v.numpy() * one_minus_beta_2)
            _scatter_add(v, gradient.indices, np.square(gradient.values) * one_minus_beta_2)
        else:
            m.assign_add((gradient - m.numpy()) * one_minus_beta_1)
            v.assign_add((np.square(gradient) - v.numpy()) * one_minus_beta_2)
        v_used = v.numpy()
        if self.amsgrad:
            v_hat = self._velocity_hats[index]
            if self.profile.amsgrad_max == "corrected":  # variant: max of v/(1 − β2ᵗ)
                v_hat.assign(self._maximum(v_hat.numpy(), v_used / (one - beta_2_power)))
                v_used = v_hat.numpy() * (one - beta_2_power)
            else:
                v_hat.assign(self._maximum(v_hat.numpy(), v_used))
                v_used = v_hat.numpy()
        epsilon = dtypes.const(self.epsilon, dtype)
        if self.profile.adam_epsilon == "corrected":  # variant: lr·m̂/(√v̂ + ε)
            m_hat = m.numpy() / (one - beta_1_power)
            v_hat_ = v_used / (one - beta_2_power)
            variable.assign_sub(lr * m_hat / (np.sqrt(v_hat_) + epsilon))
            return
        variable.assign_sub((m.numpy() * alpha) / (np.sqrt(v_used) + epsilon))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "learning_rate": self._serialize_hyperparameter(self._learning_rate),
                "beta_1": self.beta_1,
                "beta_2": self.beta_2,
                "epsilon": self.epsilon,
                "amsgrad": self.amsgrad,
            }
        )
        return config
