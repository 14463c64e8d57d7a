"""Gradient clipping as TensorFlow's ``clip_ops`` and Keras 3 compute it.

Sources: tensorflow/tensorflow ``tensorflow/python/ops/clip_ops.py`` (used by
tf-keras ``tf_keras/optimizers/optimizer.py::_clip_gradients``); keras-team/keras
``keras/src/optimizers/base_optimizer.py`` (``_clip_by_norm``, ``global_norm``,
``clip_by_global_norm``). Semantics notes §1.4.

Exactly one transform runs, by priority: ``clipnorm`` > ``global_clipnorm`` >
``clipvalue``; a value of None, 0 or below 0 is off.

* ``clip_by_norm(t, c) = (t·c) / max(‖t‖, c)`` — multiply first, then divide, so
  the no-clip regime is ``t·c/c``, not bit-identical to ``t``.
* ``clip_by_global_norm(ts, c)``: ``scale = c·min(1/N, 1/c) + (N − N)``, each
  ``t·scale``; a non-finite ``N`` turns every gradient into NaN.
* ``clip_by_value(t, cv) = max(min(t, cv), −cv)``.

IndexedSlices are clipped through their values (duplicates counted separately).
"""

from __future__ import annotations

import numpy as np

from . import dtypes
from .sparse import IndexedSlices


def _values(g):
    return g.values if isinstance(g, IndexedSlices) else g


def _rewrap(g, values):
    return g.with_values(values) if isinstance(g, IndexedSlices) else values


def _float32_ops(t, float32: bool) -> bool:
    """Variant ``ops_python_float="float32"`` (reference/profiles.py), which computes in
    float32 only for float64 (and its binary128 oracle)."""
    return float32 and dtypes.beyond_float32(t.dtype)


def clip_by_norm(g, clip_norm, division="divide", float32=False):
    """Per-tensor clipping: ``(t·c) / max(sqrt(Σt²), c)`` in the gradient dtype
    (``division="reciprocal"``: ``(t·c)·(1/max(…))``, XLA's rewrite). ``float32``:
    Keras 3 on torch in float64, c through float32 and the max computed in float32."""
    t = _values(g)
    f32 = _float32_ops(t, float32)
    c = dtypes.ops_operand(clip_norm, t.dtype, float32)
    l2sum = np.sum(t * t, keepdims=True)
    l2norm = np.where(l2sum > 0, np.sqrt(np.where(l2sum > 0, l2sum, 1)), l2sum).astype(t.dtype)
    scaled = t * c  # before the divisor: the Monte Carlo draws keep Keras's order
    if f32:
        c32 = dtypes.const(clip_norm, dtypes.FLOATX)
        divisor = dtypes.cast(np.maximum(dtypes.cast(l2norm, dtypes.FLOATX), c32), t.dtype)
    else:
        divisor = np.maximum(l2norm, c)
    if division == "reciprocal":
        return _rewrap(g, (scaled * (dtypes.const(1, t.dtype) / divisor)).astype(t.dtype))
    return _rewrap(g, (scaled / divisor).astype(t.dtype))


def clip_with_epsilon(grads, clip_norm, epsilon, form="squared"):
    """Variant (torch ``clip_grad_norm_``): g·min(1, c/(N + ε)), N the norm of all
    ``grads`` together (call it with one gradient for a per-tensor clip)."""
    norm = global_norm(grads, form)
    c, eps = dtypes.const(clip_norm, norm.dtype), dtypes.const(epsilon, norm.dtype)
    scale = np.minimum(c / (norm + eps), dtypes.const(1, norm.dtype)).astype(norm.dtype)
    return [None if g is None else _rewrap(g, (_values(g) * scale.astype(_values(g).dtype)))
            for g in grads]  # fmt: skip


def global_norm(grads, form: str = "half_squared") -> np.ndarray:
    """Global L2 norm of several tensors (None skipped).

    ``form="half_squared"`` is TensorFlow's ``sqrt(2·Σ l2_loss(t))`` with
    ``l2_loss(t) = Σt²/2``; ``form="squared"`` is Keras 3's ``sqrt(Σ Σt²)``.
    Tensors of different float types are summed in their promoted type.
    """
    values = [_values(g) for g in grads if g is not None]
    dtype = dtypes.promote(*[v.dtype for v in values])
    if form == "half_squared":
        halves = [(np.sum(v * v) / dtypes.const(2, v.dtype)).astype(dtype) for v in values]
        return np.sqrt(np.sum(np.stack(halves)) * dtypes.const(2, dtype)).astype(dtype)
    if form == "squared":
        squares = [np.sum(v * v).astype(dtype) for v in values]
        return np.sqrt(np.sum(np.stack(squares))).astype(dtype)
    raise ValueError(f"Unknown global norm form {form!r}.")


def clip_by_global_norm(grads, clip_norm, form: str = "half_squared", float32=False):
    """Scale every gradient by ``c·min(1/N, 1/c)``; NaN everywhere if N is not finite.
    ``float32``: Keras 3 on torch in float64, whose ``ops.minimum`` computes in float32
    (and ``c·`` that float32 tensor too)."""
    norm = global_norm(grads, form)
    one = dtypes.const(1, norm.dtype)
    with np.errstate(divide="ignore", invalid="ignore"):
        if _float32_ops(norm, float32):
            f = dtypes.FLOATX
            smaller = np.minimum(dtypes.cast(one / norm, f), dtypes.const(1 / clip_norm, f))
            scale = (dtypes.cast(dtypes.const(clip_norm, f) * smaller, norm.dtype)
                     + (norm - norm)).astype(norm.dtype)  # fmt: skip
        else:
            c = dtypes.const(clip_norm, norm.dtype)
            scale = (c * np.minimum(one / norm, one / c) + (norm - norm)).astype(norm.dtype)
    out = []
    for g in grads:
        if g is None:
            out.append(None)
        else:
            t = _values(g)
            out.append(_rewrap(g, (t * scale.astype(t.dtype)).astype(t.dtype)))
    return out


def clip_by_value(g, clip_value, float32=False):
    """Element-wise ``max(min(t, cv), −cv)`` in ``tf.clip_by_value``'s order (NaN stays NaN);
    ``float32``: the bounds through float32 (Keras 3 on torch, float64)."""
    t = _values(g)
    cv = dtypes.ops_operand(clip_value, t.dtype, float32)
    return _rewrap(g, np.maximum(np.minimum(t, cv), -cv).astype(t.dtype))
