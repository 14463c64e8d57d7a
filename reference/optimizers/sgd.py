"""SGD with optional momentum and Nesterov momentum.

Source: keras-team/tf-keras ``tf_keras/optimizers/sgd.py`` (keras2 profile);
keras-team/keras ``keras/src/optimizers/sgd.py`` (keras3). Notes §2.2.

Dense, with ``lr`` cast to the variable dtype and μ = momentum::

    μ = 0 (Keras 3 keeps no slot):  v ← v − g·lr
    otherwise:                      m ← −g·lr + m·μ
                                    v ← v + (−g·lr + m·μ)   if nesterov (new m)
                                    v ← v + m               otherwise

tf-keras always creates the ``m`` slot (μ = 0 then gives the same values).
``m`` stores the learning rate inside the velocity, unlike ``torch.optim.SGD``.

Sparse (IndexedSlices, deduplicated)::

    m ← m·μ;  m[idx] += −g·lr
    v[idx] += −g·lr then v ← v + m·μ   if nesterov;   v ← v + m otherwise
"""

from __future__ import annotations

import numpy as np

from .. import dtypes
from ..optimizer import Optimizer
from ..sparse import IndexedSlices, to_dense


class SGD(Optimizer):
    """Gradient descent (with momentum). Defaults: lr 0.01, momentum 0, nesterov False."""

    keras3_slot_names = {"m": "momentum"}

    def __init__(
        self,
        learning_rate=0.01,
        momentum=0.0,
        nesterov=False,
        name="SGD",
        weight_decay=None,
        **kwargs,
    ):
        super().__init__(name=name, weight_decay=weight_decay, **kwargs)
        self._learning_rate = self._build_learning_rate(learning_rate)
        if self.profile.strict_hyperparameters:
            if not isinstance(momentum, float) or momentum < 0 or momentum > 1:
                raise ValueError("`momentum` must be a float between [0, 1].")
        elif not isinstance(momentum, int | float) or isinstance(momentum, bool):
            raise TypeError(f"`momentum` must be a float. Received: momentum={momentum!r}")
        elif momentum < 0 or momentum > 1:
            raise ValueError("`momentum` must be between [0, 1].")
        self.momentum = momentum
        self.nesterov = nesterov
        self._previous_lr = {}  # variant sgd_momentum="gradient" only

    def build(self, var_list):
        super().build(var_list)
        # Keras 3 creates the slot only when momentum != 0; tf-keras always does.
        keep_slot = self.momentum != 0 or not self.profile.strict_hyperparameters
        self.momentums = [
            self.add_variable_from_reference(v, "m") if keep_slot else None for v in var_list
        ]

    def update_step(self, gradient, variable):
        lr = self._learning_rate_for(variable)
        m = self.momentums[self._get_variable_index(variable)]
        momentum = self._cast(self.momentum, variable.dtype)
        if m is not None and self.profile.sgd_momentum == "gradient":
            self._gradient_buffer_step(gradient, variable, m, lr, momentum)
            return
        if isinstance(gradient, IndexedSlices):
            add = -gradient.values * lr
            if m is None:
                _scatter_add(variable, gradient.indices, add)
                return
            m.assign(m.numpy() * momentum)
            _scatter_add(m, gradient.indices, add)
            if self.nesterov:
                _scatter_add(variable, gradient.indices, add)
                variable.assign_add(m.numpy() * momentum)
            else:
                variable.assign_add(m.numpy())
            return
        if m is None:
            variable.assign_add(-gradient * lr)
            return
        m.assign(-gradient * lr + m.numpy() * momentum)
        if self.nesterov:
            variable.assign_add(-gradient * lr + m.numpy() * momentum)
        else:
            variable.assign_add(m.numpy())

    def _gradient_buffer_step(self, gradient, variable, m, lr, momentum):
        """Variant ``sgd_momentum="gradient"`` (torch): b ← μ·b + g; v ← v − lr·b
        (nesterov: v ← v − lr·(g + μ·b)); m holds −lr·b, b recovered with the
        previous step's rate."""
        if isinstance(gradient, IndexedSlices):
            gradient = dtypes.wrap(to_dense(gradient))
        index = self._get_variable_index(variable)
        previous = self._previous_lr.setdefault(index, lr)
        buffer = m.numpy() / -previous if previous else np.zeros_like(m.numpy())
        buffer = momentum * buffer + gradient
        step = gradient + momentum * buffer if self.nesterov else buffer
        variable.assign_sub(lr * step)
        m.assign(-lr * buffer)
        self._previous_lr[index] = lr

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "learning_rate": self._serialize_hyperparameter(self._learning_rate),
                "momentum": self.momentum,
                "nesterov": self.nesterov,
            }
        )
        return config


def _scatter_add(variable, indices, values):
    """``variable[indices] += values`` in the variable dtype, a repeated index adding
    each of its rows in turn (TensorFlow's ``scatter_add``; after deduplication, the
    profiles' default, every index is unique)."""
    value = variable.numpy().copy() if variable.ndim else variable.numpy()
    indices = np.asarray(indices)
    if len(np.unique(indices)) == len(indices):
        value[indices] = value[indices] + values
    else:  # row by row: each addition a rounding of its own (np.add.at's escape Monte Carlo)
        for index, row in zip(indices, values, strict=True):
            value[index] = value[index] + row
    variable.assign(np.asarray(value, dtype=variable.dtype))
