"""Ftrl ("Follow The Regularized Leader", FTRL-Proximal).

Source: keras-team/tf-keras ``tf_keras/optimizers/ftrl.py`` (keras2 profile);
keras-team/keras ``keras/src/optimizers/ftrl.py`` (keras3, same arithmetic).
Notes §2.8.

With p = learning_rate_power (≤ 0), n = accumulator, z = linear, l1, l2, l2s the
regularization strengths and every quantity in the variable dtype (``lr`` cast
to it; Python floats converted once)::

    l2'  = l2 + β / (2·lr)
    ĝ    = g + (2·l2s)·var
    n'   = n + g·g                                    (the raw g, not ĝ)
    z    ← z + (ĝ − ((n'^(−p) − n^(−p)) / lr)·var)
    q    = n'^(−p) / lr + 2·l2'
    var  ← (clip(z, −l1, l1) − z) / q                 (0 where |z| ≤ l1)
    n    ← n'

``2·l2s`` is a Python product; ``clip`` is ``max(min(z, l1), −l1)``
(``tf.clip_by_value``). The accumulator starts at ``initial_accumulator_value``,
the linear term at 0.

Sparse: tf-keras has no sparse branch ("the same implementation for sparse and
dense gradients"): TensorFlow densifies the IndexedSlices in ``g + …``, so every
row is recomputed, including rows without a gradient (they still shrink with
l2s > 0, unlike the legacy sparse FTRL kernel, which touches only ``idx``).

Notes:

* ``tf.pow(g, 2)`` (tf-keras) and ``ops.square(g)`` (Keras 3) are both g·g.
* The initial accumulator is ``tf.cast(tf.fill(shape, acc₀), dtype)`` in tf-keras
  and ``ops.cast(acc₀, dtype)`` (``initializers.Constant``) in Keras 3: both turn
  the Python float into float32 first on TensorFlow (profile fields
  ``ftrl_accumulator`` and ``constant_initializer``; Keras 3 on JAX or torch casts
  once, the diagnosis variant ``python_scalar_cast=direct``).
* The hyper-parameters are checked before the learning rate, as tf-keras does
  (Keras 3 checks the learning rate first, in its base constructor).
"""

from __future__ import annotations

import numpy as np

from .. import dtypes, elementary
from ..optimizer import Optimizer
from ..sparse import IndexedSlices, to_dense


class Ftrl(Optimizer):
    """Ftrl. Defaults: lr 1e-3, learning_rate_power −0.5, initial_accumulator_value
    0.1, l1 = l2 = l2_shrinkage = 0, β 0."""

    def __init__(
        self,
        learning_rate=0.001,
        learning_rate_power=-0.5,
        initial_accumulator_value=0.1,
        l1_regularization_strength=0.0,
        l2_regularization_strength=0.0,
        l2_shrinkage_regularization_strength=0.0,
        beta=0.0,
        name="Ftrl",
        weight_decay=None,
        **kwargs,
    ):
        super().__init__(name=name, weight_decay=weight_decay, **kwargs)
        if initial_accumulator_value < 0.0:
            raise ValueError(
                "`initial_accumulator_value` needs to be positive or zero. "
                f"Received: initial_accumulator_value={initial_accumulator_value}."
            )
        if learning_rate_power > 0.0:
            raise ValueError(
                "`learning_rate_power` needs to be negative or zero. Received: "
                f"learning_rate_power={learning_rate_power}."
            )
        if l1_regularization_strength < 0.0:
            raise ValueError(
                "`l1_regularization_strength` needs to be positive or zero. "
                f"Received: l1_regularization_strength={l1_regularization_strength}."
            )
        if l2_regularization_strength < 0.0:
            raise ValueError(
                "`l2_regularization_strength` needs to be positive or zero. "
                f"Received: l2_regularization_strength={l2_regularization_strength}."
            )
        if l2_shrinkage_regularization_strength < 0.0:
            raise ValueError(
                "`l2_shrinkage_regularization_strength` needs to be positive or zero. "
                "Received: l2_shrinkage_regularization_strength"
                f"={l2_shrinkage_regularization_strength}."
            )
        self._learning_rate = self._build_learning_rate(learning_rate)
        self.learning_rate_power = learning_rate_power
        self.initial_accumulator_value = initial_accumulator_value
        self.l1_regularization_strength = l1_regularization_strength
        self.l2_regularization_strength = l2_regularization_strength
        self.l2_shrinkage_regularization_strength = l2_shrinkage_regularization_strength
        self.beta = beta

    def build(self, var_list):
        super().build(var_list)
        self._accumulators = []
        self._linears = []
        for v in var_list:
            if (self.profile.ftrl_accumulator == "initializer"
                    and self.profile.constant_initializer == "direct"):  # fmt: skip
                initial = dtypes.const(self.initial_accumulator_value, v.dtype)
            else:  # tf.cast(tf.fill(shape, value), dtype), or a cast via float32
                fill = dtypes.const(self.initial_accumulator_value, dtypes.FLOATX)
                initial = dtypes.cast(fill, v.dtype)
            self._accumulators.append(
                self.add_variable_from_reference(
                    v, "accumulator", initial_value=np.full(v.shape, initial)
                )
            )
            self._linears.append(self.add_variable_from_reference(v, "linear"))

    def update_step(self, gradient, variable):
        if isinstance(gradient, IndexedSlices):
            gradient = to_dense(gradient)
        dtype = variable.dtype
        lr = self._learning_rate_for(variable)
        index = self._get_variable_index(variable)
        accum, linear = self._accumulators[index], self._linears[index]
        two = dtypes.const(2, dtype)
        # Operands of Keras's ops calls (ops_python_float); the rest are Python operators.
        minus_lr_power = self._ops_float(-self.learning_rate_power, dtype)
        l1 = self._ops_float(self.l1_regularization_strength, dtype)
        minus_l1 = self._ops_float(-self.l1_regularization_strength, dtype)
        l2 = dtypes.const(self.l2_regularization_strength, dtype)
        beta = dtypes.const(self.beta, dtype)
        two_l2_shrinkage = self._ops_float(2 * self.l2_shrinkage_regularization_strength, dtype)
        value = variable.numpy()

        l2_reg = l2 + beta / (two * lr)
        grad_to_use = gradient + two_l2_shrinkage * value
        new_accum = accum.numpy() + gradient * gradient
        new_accum_power = elementary.power(new_accum, minus_lr_power)
        accum_power = elementary.power(accum.numpy(), minus_lr_power)
        linear.assign_add(grad_to_use - (new_accum_power - accum_power) / lr * value)
        quadratic = new_accum_power / lr + two * l2_reg
        linear_clipped = self._maximum(self._minimum(linear.numpy(), l1), minus_l1)
        variable.assign((linear_clipped - linear.numpy()) / quadratic)
        accum.assign(new_accum)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "learning_rate": self._serialize_hyperparameter(self._learning_rate),
                "learning_rate_power": self.learning_rate_power,
                "initial_accumulator_value": self.initial_accumulator_value,
                "l1_regularization_strength": self.l1_regularization_strength,
                "l2_regularization_strength": self.l2_regularization_strength,
                "l2_shrinkage_regularization_strength": self.l2_shrinkage_regularization_strength,
                "beta": self.beta,
            }
        )
        return config
