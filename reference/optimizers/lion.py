"""Lion (Chen et al., 2023): the sign of an interpolated momentum.

Source: keras-team/tf-keras ``tf_keras/optimizers/lion.py`` (keras2 profile, tf-keras
≥ 2.13); keras-team/keras ``keras/src/optimizers/lion.py`` (keras3, same arithmetic).
Notes §2.12.

Dense, with β1, β2 cast to the variable dtype and every quantity in that dtype::

    var ← var − lr·sign(m·β1 + g·(1 − β1))
    m   ← m·β2 + g·(1 − β2)

``1 − β1`` and ``1 − β2`` are computed *in the variable dtype* from the cast betas
(``1.0 - tf.cast(beta_1, dtype)``), not as Python floats: in float32
``1 − float32(0.9)`` is 0.100000024, not float32(0.1). ``sign(0) = 0``: an element
whose interpolated momentum is exactly zero does not move.

Sparse (deduplicated IndexedSlices, keras2; ``m`` is used as a buffer)::

    m ← m·β1;  m[idx] += g·(1 − β1)
    var ← var − lr·sign(m)
    m ← (m·β2)/β1;  m[idx] += g·(1 − β2/β1)

Mathematically the dense update (rows without a gradient get m·β1 then m·β2);
the rounding differs.

Notes:

* Default learning rate: 1e-4 in tf-keras, 1e-3 in Keras 3 (profile
  ``default_overrides``; notes §4.2 item 12).
* Slot ``m`` (Keras 3 names the variable ``momentum``).
* ``beta_1`` outside (0, 1] is a ValueError (message per profile); β1 = 0 would make
  Lion SignSGD and the sparse path divide by β1.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from .. import dtypes
from ..optimizer import DEFAULT, Optimizer
from ..sparse import IndexedSlices
from .sgd import _scatter_add


class Lion(Optimizer):
    """Lion. Defaults: lr 1e-4 (keras2) / 1e-3 (keras3), β1 0.9, β2 0.99."""

    keras3_slot_names: ClassVar[dict[str, str]] = {"m": "momentum"}

    def __init__(
        self,
        learning_rate=DEFAULT,
        beta_1=0.9,
        beta_2=0.99,
        name="Lion",
        weight_decay=None,
        **kwargs,
    ):
        super().__init__(name=name, weight_decay=weight_decay, **kwargs)
        learning_rate = self._profile_default(self.profile, "learning_rate", learning_rate, 1e-4)
        self._learning_rate = self._build_learning_rate(learning_rate)
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        if beta_1 <= 0 or beta_1 > 1:
            raise ValueError(self.profile.lion_beta_1_message.format(beta_1=beta_1))

    def build(self, var_list):
        super().build(var_list)
        self.momentums = [self.add_variable_from_reference(v, "m") for v in var_list]

    def update_step(self, gradient, variable):
        dtype = variable.dtype
        lr = self._learning_rate_for(variable)
        beta_1 = self._cast(self.beta_1, dtype)
        beta_2 = self._cast(self.beta_2, dtype)
        one = dtypes.const(1, dtype)
        m = self.momentums[self._get_variable_index(variable)]

        if isinstance(gradient, IndexedSlices):
            indices, values = gradient.indices, gradient.values
            m.assign(m.numpy() * beta_1)
            _scatter_add(m, indices, values * (one - beta_1))
            variable.assign_sub(lr * np.sign(m.numpy()))
            m.assign(m.numpy() * beta_2 / beta_1)
            _scatter_add(m, indices, values * (one - beta_2 / beta_1))
            return

        if self.profile.lion_one_minus_beta == "python":  # a diagnosis variant
            rate_1 = dtypes.const(1 - self.beta_1, dtype)
            variable.assign_sub(lr * np.sign(m.numpy() * beta_1 + gradient * rate_1))
            m.assign(m.numpy() * beta_2 + gradient * dtypes.const(1 - self.beta_2, dtype))
            return
        variable.assign_sub(lr * np.sign(m.numpy() * beta_1 + gradient * (one - beta_1)))
        m.assign(m.numpy() * beta_2 + gradient * (one - beta_2))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "learning_rate": self._serialize_hyperparameter(self._learning_rate),
                "beta_1": self.beta_1,
                "beta_2": self.beta_2,
            }
        )
        return config
