"""Nadam (Adam with Nesterov momentum, Dozat 2015).

Source: keras-team/tf-keras ``tf_keras/optimizers/nadam.py`` (keras2 profile);
keras-team/keras ``keras/src/optimizers/nadam.py`` (keras3). Notes §2.9, §4.2 item 4.

With t = iterations + 1, β1, β2 and the decay 0.96 through ``tf.cast`` (the Python
float becomes float32, then the variable dtype) and every quantity in the
variable dtype (``lr`` cast to it)::

    u_t   = β1·(1 − 0.5·0.96ᵗ)
    u_t+1 = β1·(1 − 0.5·0.96ᵗ⁺¹)
    Π     ← Π·u_t            once per optimizer step, before the variables (Π₀ = 1)
    m ← m + (g − m)·(1 − β1)
    v ← v + (g·g − v)·(1 − β2)
    m̂ = (u_t+1·m) / (1 − Π·u_t+1) + ((1 − u_t)·g) / (1 − Π)
    v̂ = v / (1 − β2ᵗ)
    var ← var − (m̂·lr) / (sqrt(v̂) + ε)

``1 − β1``, ``1 − β2``, ``1 − u_t``, … are computed in the dtype from the cast
tensors, not by Python; only ε is a Python float converted once. (Keras 3's torch
backend takes ``1 − β1`` and ``1 − β2`` from Python, as Adam does: profile field
``nadam_one_minus_beta``, a diagnosis variant; in float32 1 − float32(0.999) is
1.3·10⁻⁵ away from 0.001.)

The momentum schedule is 0.96ᵗ (every new-style optimizer: Keras 2.9 to tf-keras and
Keras 3). Legacy Keras Nadam (``schedule_decay=0.004``) and PyTorch NAdam
(``momentum_decay=4e-3``) use 0.96^(0.004·t): a different optimizer numerically.

Π (``_u_product``) is a scalar :class:`Variable` created at build in the dtype of
the first variable built on (float32 for an empty list, as Keras 3), kept outside
``variables`` (tf-keras's plain ``tf.Variable``). It advances exactly once per
optimizer step, whatever the number of variables, in :meth:`_stage_update` just
before the per-variable updates (profile field ``nadam_u_product``):

* ``"u_t"`` (tf-keras): Π ← Π·u_t in Π's dtype. tf-keras multiplies Π by
  tensors of each variable's dtype, so a variable whose dtype differs from Π's
  raises TypeError here (TensorFlow raises a dtype error from that variable's
  ``update_step``, after the earlier variables were updated).
* ``"beta_1_first"`` (Keras 3 ``_backend_update_step``): Π ← (Π·β1)·(1 − 0.5·0.96ᵗ)
  with β1, 0.5, 0.96 Python floats converted once to Π's dtype; ``update_step``
  reads Π cast to the variable's dtype.

Sparse (deduplicated IndexedSlices, keras2)::

    m ← m + (−m)·(1 − β1);  m[idx] += g·(1 − β1)
    v ← v + (−v)·(1 − β2);  v[idx] += (g·g)·(1 − β2)
    then m̂, v̂ and var as in the dense case with g densified (tf-keras multiplies a
    tensor by the IndexedSlices, which TensorFlow densifies).

Notes:

* tf-keras advances Π in the first ``update_step`` of a step, detected by a Python
  counter compared with ``iterations + 2``. The counter starts at 1 whatever the
  iterations, so with ``iterations`` preset before the first step and several
  variables, tf-keras advances Π once per variable; under ``tf.function`` the
  counter is a trace-time constant. Both contradict the intended once-per-step
  semantics (notes §2.9) that this reference follows; the eager counter is the
  diagnosis variant ``nadam_u_product_advance=python_counter`` (docs/keras.md,
  finding 7).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from .. import dtypes, elementary
from ..optimizer import Optimizer
from ..sparse import IndexedSlices, to_dense
from ..variable import Variable
from .sgd import _scatter_add


class Nadam(Optimizer):
    """Nadam. Defaults: lr 1e-3, β1 0.9, β2 0.999, ε 1e-7.

    ``_u_product`` holds Π, the product of the momentum factors u_1 … u_t of the
    steps taken so far (see the module docstring).
    """

    keras3_slot_names: ClassVar[dict[str, str]] = {"m": "momentum", "v": "velocity"}

    def __init__(
        self,
        learning_rate=0.001,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-7,
        name="Nadam",
        weight_decay=None,
        **kwargs,
    ):
        super().__init__(name=name, weight_decay=weight_decay, **kwargs)
        self._learning_rate = self._build_learning_rate(learning_rate)
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon

    def build(self, var_list):
        var_list = list(var_list)
        super().build(var_list)
        dtype = var_list[0].dtype if var_list else dtypes.FLOATX
        self._momentums = []
        self._velocities = []
        for v in var_list:
            self._momentums.append(self.add_variable_from_reference(v, "m"))
            self._velocities.append(self.add_variable_from_reference(v, "v"))
        self._u_product = Variable(1.0, dtype=dtype, name="u_product", trainable=False)
        self._u_product_counter = 1

    def _stage_update(self, step):
        """Advance Π once for this optimizer step, then update each variable."""
        if self.profile.nadam_u_product_advance == "once_per_step":
            self._advance_u_product([variable for _, variable in step.pairs])
        super()._stage_update(step)

    def _advance_u_product(self, variables):
        u_product = self._u_product
        dtype = u_product.dtype
        local_step = dtypes.cast(self._update_count() + 1, dtype)
        one, half = dtypes.const(1.0, dtype), dtypes.const(0.5, dtype)
        if self.profile.nadam_u_product == "u_t":
            for variable in variables:
                if variable.dtype != dtype:
                    raise TypeError(
                        f"Nadam keeps its momentum product in {dtypes.dtype_name(dtype)}, the "
                        "dtype of the first variable it was built with; tf-keras cannot "
                        f"update variable '{variable.name}' of dtype "
                        f"{dtypes.dtype_name(variable.dtype)} with it (TensorFlow dtype "
                        "mismatch). Use one optimizer per dtype."
                    )
            beta_1, decay = self._cast(self.beta_1, dtype), self._cast(0.96, dtype)
            u_t = beta_1 * (one - half * elementary.power(decay, self._exponent(local_step)))
            u_product.assign(u_product.numpy() * u_t)
            return
        beta_1, decay = dtypes.const(self.beta_1, dtype), dtypes.const(0.96, dtype)
        u_t = one - half * elementary.power(decay, self._exponent(local_step))
        u_product.assign(u_product.numpy() * beta_1 * u_t)

    def _exponent(self, step):
        """t, or k·t under the variant ``nadam_schedule_rate=k`` (legacy Keras, torch)."""
        rate = self.profile.nadam_schedule_rate
        return step if rate == 1.0 else step * dtypes.const(rate, np.asarray(step).dtype)

    def update_step(self, gradient, variable):
        if self.profile.nadam_u_product_advance == "python_counter" and (
            self._u_product_counter != self._update_count() + 2
        ):
            self._advance_u_product([variable])
            self._u_product_counter += 1
        dtype = variable.dtype
        lr = self._learning_rate_for(variable)
        local_step = self._local_step(variable)
        next_step = dtypes.cast(self._update_count() + 2, dtype)
        decay = self._cast(0.96, dtype)
        beta_1, beta_2 = self._cast(self.beta_1, dtype), self._cast(self.beta_2, dtype)
        one, half = dtypes.const(1.0, dtype), dtypes.const(0.5, dtype)
        u_t = beta_1 * (one - half * elementary.power(decay, self._exponent(local_step)))
        u_t_1 = beta_1 * (one - half * elementary.power(decay, self._exponent(next_step)))
        u_product_t = dtypes.cast(self._u_product.numpy(), dtype)
        u_product_t_1 = u_product_t * u_t_1
        beta_2_power = elementary.power(beta_2, local_step)
        index = self._get_variable_index(variable)
        m, v = self._momentums[index], self._velocities[index]
        # 1 − β where Keras computes it, so the operations keep their order.
        if self.profile.nadam_one_minus_beta == "python":
            rate = lambda python, _: dtypes.const(1 - python, dtype)  # noqa: E731
        else:
            rate = lambda _, cast: one - cast  # noqa: E731

        if isinstance(gradient, IndexedSlices):
            m.assign_add(-m.numpy() * rate(self.beta_1, beta_1))
            _scatter_add(m, gradient.indices, gradient.values * rate(self.beta_1, beta_1))
            v.assign_add(-v.numpy() * rate(self.beta_2, beta_2))
            _scatter_add(
                v, gradient.indices, np.square(gradient.values) * rate(self.beta_2, beta_2)
            )
            gradient = to_dense(gradient)
        else:
            m.assign_add((gradient - m.numpy()) * rate(self.beta_1, beta_1))
            v.assign_add((np.square(gradient) - v.numpy()) * rate(self.beta_2, beta_2))
        m_hat = u_t_1 * m.numpy() / (one - u_product_t_1) + (one - u_t) * gradient / (
            one - u_product_t
        )
        v_hat = v.numpy() / (one - beta_2_power)
        epsilon = dtypes.const(self.epsilon, dtype)
        variable.assign_sub((m_hat * lr) / (np.sqrt(v_hat) + epsilon))

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
