"""AdamW: Adam with decoupled weight decay, default ``weight_decay=0.004``.

Source: keras-team/tf-keras ``tf_keras/optimizers/adamw.py`` (keras2 profile);
keras-team/keras ``keras/src/optimizers/adamw.py`` (keras3). Notes §1.7, §2.4.

With t = iterations + 1, wd = weight_decay and every quantity in the variable dtype,
one step is the base class's weight-decay stage followed by Adam's ``update_step``::

    var ← var − var·wd·lr                      (base stage, before the update)
    α  = (lr · sqrt(1 − β2ᵗ)) / (1 − β1ᵗ)
    m ← m + (g − m)·(1 − β1)
    v ← v + (g² − v)·(1 − β2)
    v̂ ← max(v̂, v); use v̂ for v               (amsgrad)
    var ← var − (m·α) / (sqrt(v) + ε)

The decay reads the variable *before* the moments and the step are computed, and
uses the raw learning rate (the schedule's value), as ``Adam(weight_decay=wd)``
does: ``AdamW(**kw)`` and ``Adam(weight_decay=wd, **kw)`` are the same computation
(tf-keras regression test). The sparse path is Adam's (:mod:`.adam`).

Notes:

* tf-keras ≥ 2.11 writes AdamW as a copy of Adam's code on ``Optimizer``; Keras 3
  subclasses ``Adam``. The arithmetic is the same, so the reference subclasses
  :class:`~optcheck.reference.optimizers.adam.Adam`.
* Keras 2.9 decayed inside ``update_step`` as ``var ← var − var·(1 − lr·wd)`` and
  2.10 as ``var ← var − var·wd·lr`` there (notes §1.7); neither is modelled.
* ``weight_decay=None`` is rejected (ValueError, message per profile). The
  ``weight_decay`` positional slot is the second argument, as in both sources.
"""

from __future__ import annotations

from .adam import Adam


class AdamW(Adam):
    """AdamW. Defaults: lr 1e-3, weight decay 0.004, β1 0.9, β2 0.999, ε 1e-7, amsgrad False."""

    def __init__(
        self,
        learning_rate=0.001,
        weight_decay=0.004,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-7,
        amsgrad=False,
        name="AdamW",
        **kwargs,
    ):
        super().__init__(
            learning_rate=learning_rate,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            amsgrad=amsgrad,
            name=name,
            weight_decay=weight_decay,
            **kwargs,
        )
        if self.weight_decay is None:
            raise ValueError(self.profile.adamw_missing_weight_decay)
