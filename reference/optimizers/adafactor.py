"""Adafactor (Shazeer & Stern, 2018): factored second moments, no first moment.

Source: keras-team/tf-keras ``tf_keras/optimizers/adafactor.py`` (keras2 profile);
keras-team/keras ``keras/src/optimizers/adafactor.py`` (keras3). Notes §1.10, §2.11.

With t = iterations + 1, d = beta_2_decay, RMS(x) = sqrt(mean(x²)) and every
quantity in the variable dtype (``mean`` as defined below)::

    lr  ← min(lr, 1/sqrt(t))              if relative_step and lr is a constant
    ρ_t = min(lr, 1/sqrt(t))
    α_t = max(ε2, RMS(var))·ρ_t             RMS of var before this update (after decay)
    G   = g² + ε1
    β2_t = 1 − t^d                          (0 at t = 1: the first step keeps no history)
    rank ≥ 2:  r ← β2_t·r + (1 − β2_t)·mean(G, axis=−1)
               c ← β2_t·c + (1 − β2_t)·mean(G, axis=−2)
               v ← (r / mean(r, axis=−1, keepdims))[..., :, None] · c[..., None, :]
    rank < 2:  v ← β2_t·v + (1 − β2_t)·G
    u  = g·rsqrt(v)
    û  = u / max(1, RMS(u) / clip_threshold)
    var ← var + (−α_t)·û

``g·rsqrt(v)`` is the profile's ``reciprocal_sqrt``: ``g·(1/sqrt(v))`` in tf-keras,
``g/sqrt(v)`` in Keras 3. ``1/sqrt(t)`` is the same in both (tf-keras
``rsqrt(t)``, Keras 3 ``1 / sqrt(t)``). ``ε1``, ``ε2``, ``d``, ``clip_threshold``
and the ``1`` of ``1 − t^d`` are converted to the variable dtype; ``1 − β2_t`` is
computed in that dtype.

Notes:

* "lr is a constant": tf-keras applies the relative step unless the learning rate is
  a ``LearningRateSchedule`` (a callable learning rate was called once and is a
  constant); Keras 3 unless it is callable (a schedule or a function). Both mean
  "unless ``_learning_rate`` is something other than a float Variable", which is
  what the reference tests. Weight decay (base stage) uses the raw learning rate.
* Because ρ_t is ``min(lr, 1/sqrt(t))`` in any case, the relative-step clamp changes
  nothing in the update: ``relative_step=True`` and ``False`` give the same
  trajectory in both sources (only the clamp is skipped, not ρ_t's own minimum).
* ``mean`` is sum / count, accumulated in float32 for float16 and bfloat16 inputs
  and rounded back (TensorFlow's ``reduce_mean`` half specialisation; Keras 3
  ``ops.mean`` upcasts likewise) — **[derived]**; the summation order is not part of
  the specification (NumPy's pairwise sum stands for it).
* Slots. rank ≥ 2: ``r`` (shape ``var.shape[:-1]``), ``c`` (``var.shape[:-2] +
  var.shape[-1:]``) and ``v`` (var's shape), created in the order r, c, v for each
  variable. tf-keras names them ``r/<var>``, ``c/<var>`` (``add_variable``) and
  ``v/<var>``; the reference creates all three with ``add_variable_from_reference``
  so they are slots (same keras2 names). rank < 2: only ``v``; tf-keras keeps two
  untracked ``tf.Variable(0)`` placeholders for r and c that are never read — the
  reference stores None and lists no variable for them, so ``variables`` matches
  tf-keras. Keras 3 calls ``v`` ``velocity`` and names r and c after the variable
  alone (the two share a name there); the reference's keras3 names are
  ``<var>_r``, ``<var>_c``, ``<var>_velocity``.
* In float16, ε1 = 1e-30 rounds to 0: an exactly-zero gradient element (rank < 2) or
  row/column (rank ≥ 2) gives v = 0 there, u = 0·inf = NaN, RMS(u) = NaN, and the
  whole variable becomes NaN — as the sources compute it **[derived]**.
* ``max`` and ``min`` propagate NaN from either operand (``np.maximum``), as TF's
  own Maximum kernel (eager and graph), Keras 3's ``ops.maximum`` and JAX do. TF's
  XLA:CPU lowering under ``jit_compile`` uses fast min/max instead
  (``tf.maximum(0.006, nan)`` is 0.006 in tf 2.21), so tf-keras's default
  jit-compiled Adafactor can turn a NaN RMS(var) into ε2: an artefact of one
  backend's flags, not the documented formula, and reported as a deviation.
* Sparse gradients are densified (tf-keras ``tf.square(gradient)`` and
  ``convert_to_tensor(gradient)`` on IndexedSlices), so sparse == dense exactly.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from .. import dtypes, elementary
from ..optimizer import Optimizer
from ..sparse import IndexedSlices, to_dense
from ..variable import Variable
from .rmsprop import _times_rsqrt


class Adafactor(Optimizer):
    """Adafactor. Defaults: lr 1e-3, beta_2_decay −0.8, ε1 1e-30, ε2 1e-3,
    clip_threshold 1.0, relative_step True."""

    keras3_slot_names: ClassVar[dict[str, str]] = {"v": "velocity"}

    def __init__(
        self,
        learning_rate=0.001,
        beta_2_decay=-0.8,
        epsilon_1=1e-30,
        epsilon_2=1e-3,
        clip_threshold=1.0,
        relative_step=True,
        name="Adafactor",
        weight_decay=None,
        **kwargs,
    ):
        super().__init__(name=name, weight_decay=weight_decay, **kwargs)
        self._learning_rate = self._build_learning_rate(learning_rate)
        self.beta_2_decay = beta_2_decay
        self.epsilon_1 = epsilon_1
        self.epsilon_2 = epsilon_2
        self.clip_threshold = clip_threshold
        self.relative_step = relative_step

    def build(self, var_list):
        super().build(var_list)
        self._r, self._c, self._v = [], [], []
        for v in var_list:
            if v.ndim < 2:
                self._r.append(None)
                self._c.append(None)
            else:
                self._r.append(self.add_variable_from_reference(v, "r", shape=v.shape[:-1]))
                self._c.append(
                    self.add_variable_from_reference(v, "c", shape=v.shape[:-2] + v.shape[-1:])
                )
            self._v.append(self.add_variable_from_reference(v, "v"))

    def update_step(self, gradient, variable):
        if isinstance(gradient, IndexedSlices):
            gradient = to_dense(gradient)
        dtype = variable.dtype
        lr = self._learning_rate_for(variable)
        epsilon_2 = self._cast(self.epsilon_2, dtype)
        one = dtypes.const(1, dtype)
        local_step = self._local_step(variable)
        if isinstance(self._learning_rate, Variable) and self.relative_step:
            lr = self._minimum(lr, one / np.sqrt(local_step))

        index = self._get_variable_index(variable)
        r, c, v = self._r[index], self._c[index], self._v[index]

        rho_t = self._minimum(lr, one / np.sqrt(local_step))
        alpha_t = self._maximum(epsilon_2, _rms(variable.numpy())) * rho_t
        regulated_grad_square = np.square(gradient) + dtypes.const(self.epsilon_1, dtype)
        beta_2_t = one - elementary.power(local_step, dtypes.const(self.beta_2_decay, dtype))
        one_minus_beta_2_t = one - beta_2_t

        if variable.ndim >= 2:
            r.assign(beta_2_t * r.numpy() + one_minus_beta_2_t * _mean(regulated_grad_square, -1))
            c.assign(beta_2_t * c.numpy() + one_minus_beta_2_t * _mean(regulated_grad_square, -2))
            r_value = r.numpy()
            v.assign(
                np.expand_dims(r_value / _mean(r_value, -1, keepdims=True), -1)
                * np.expand_dims(c.numpy(), -2)
            )
        else:
            v.assign(beta_2_t * v.numpy() + one_minus_beta_2_t * regulated_grad_square)

        u_t = _times_rsqrt(gradient, v.numpy(), self.profile.reciprocal_sqrt)
        clip_threshold = dtypes.const(self.clip_threshold, dtype)
        u_t_hat = u_t / self._maximum(one, _rms(u_t) / clip_threshold)
        variable.assign_add(-alpha_t * u_t_hat)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "learning_rate": self._serialize_hyperparameter(self._learning_rate),
                "beta_2_decay": self.beta_2_decay,
                "epsilon_1": self.epsilon_1,
                "epsilon_2": self.epsilon_2,
                "clip_threshold": self.clip_threshold,
                "relative_step": self.relative_step,
            }
        )
        return config


def _mean(x, axis=None, keepdims=False):
    """``reduce_mean``: sum / count in the input dtype, float32 accumulation below 32 bits."""
    x = np.asarray(x)
    accumulate = dtypes.float64 if x.dtype == dtypes.float64 else dtypes.float32
    return np.asarray(
        np.mean(x.astype(accumulate), axis=axis, keepdims=keepdims), dtype=accumulate
    ).astype(x.dtype)


def _rms(x):
    """``sqrt(mean(x²))`` over all elements."""
    return np.sqrt(_mean(np.square(x)))
