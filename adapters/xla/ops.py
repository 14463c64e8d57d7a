"""The array namespace the core is written against, for JAX and for TensorFlow.

Only what the optimizers need: element-wise maths, reductions, casts, and (TensorFlow
only) the gather / scatter of sparse rows. Every operand the core passes has the
dtype it wants: the core never relies on either library's type promotion.
"""

from __future__ import annotations

import functools
import os
import re
import warnings

import numpy as np

#: A fusion instruction with a tuple result: the compiler fused sibling outputs.
_MULTI_OUTPUT = re.compile(r"= \([^)]*\) fusion\(")


def sibling_probe(x, y):
    """Two outputs of one element-wise pass: one loop where siblings fuse."""
    return x * y + x, x * y - y


def fuses_siblings(optimized_hlo: str) -> bool:
    return bool(_MULTI_OUTPUT.search(optimized_hlo))


class JaxOps:
    name = "jax"

    def __init__(self):
        import jax.numpy as jnp

        self.np = jnp

    def constant(self, value, dtype):
        return self.np.asarray(np.asarray(value, dtype=np.float64).astype(np.dtype(_np(dtype))))

    def cast(self, x, dtype):
        return self.np.asarray(x).astype(_np(dtype))

    def dtype(self, x) -> str:
        return _name(x.dtype)

    def copy(self, x):
        return self.np.array(x, copy=True)

    def shape(self, x) -> tuple:
        return tuple(x.shape)

    @functools.cached_property
    def barrier(self):
        """``jax.lax.optimization_barrier`` over a list, or None where XLA does not fuse
        sibling outputs (XLA:CPU without the opt-in ``CPU_FUSION`` option): the core's
        one-loop-per-variable step relies on that fusion."""
        import jax

        x = self.np.zeros((8, 128), self.np.float32)
        if not fuses_siblings(jax.jit(sibling_probe).lower(x, x).compile().as_text()):
            from . import CPU_FUSION, CPU_FUSION_ENV

            if os.environ.get(CPU_FUSION_ENV) == "1" and x.devices().pop().platform == "cpu":
                warnings.warn(
                    f"{CPU_FUSION_ENV}=1 but XLA:CPU does not fuse sibling outputs in this "
                    f"process: JAX created its CPU backend before optcheck.adapters.xla "
                    f"added {CPU_FUSION} to XLA_FLAGS. The jax optimizer writes each array "
                    "in its own loop (slower, same values); import optcheck.adapters.xla "
                    "before using JAX.",
                    RuntimeWarning,
                    stacklevel=2,
                )
            return None
        return lambda xs: list(jax.lax.optimization_barrier(tuple(xs)))

    @functools.cached_property
    def unshare(self):
        """``jax.lax.optimization_barrier`` over a list (see ``core.recomputed``)."""
        import jax

        return lambda xs: list(jax.lax.optimization_barrier(tuple(xs)))

    def cond(self, pred, true_fn, false_fn):
        import jax

        return jax.lax.cond(pred, true_fn, false_fn)

    def __getattr__(self, item):
        # sqrt, square, abs, sign, maximum, minimum, where, power, floor, sum, mean,
        # expand_dims, zeros_like, logical_and: the NumPy names.
        return getattr(self.np, item)


class TfOps:
    name = "tf"
    #: A plain graph has no optimization barrier, and nothing to fuse.
    barrier = None
    unshare = None

    def __init__(self):
        import tensorflow as tf

        self.tf = tf
        m = tf.math
        self.sqrt, self.square, self.abs, self.sign = m.sqrt, m.square, m.abs, m.sign
        self.power, self.floor = m.pow, m.floor
        self.where, self.expand_dims, self.zeros_like = tf.where, tf.expand_dims, tf.zeros_like
        self.logical_and = m.logical_and
        self.min, self.max, self.all = tf.reduce_min, tf.reduce_max, tf.reduce_all
        self.isfinite, self.cond = m.is_finite, tf.cond

    def constant(self, value, dtype):
        return self.tf.constant(np.asarray(value, dtype=np.float64).astype(_np(dtype)))

    def cast(self, x, dtype):
        return self.tf.cast(x, dtype)

    def dtype(self, x) -> str:
        return x.dtype.name

    def copy(self, x):
        return self.tf.identity(x)

    def shape(self, x) -> tuple:
        return tuple(x.shape)

    def maximum(self, a, b):
        """IEEE-style max that propagates NaN from either operand, as NumPy, JAX and TF's
        own kernels do. TF's XLA:CPU lowering uses fast min/max: ``max(c, nan)`` is ``c``
        under ``jit_compile`` (tf 2.21), which would drop a NaN the golden keeps."""
        return self._nan_or(a, b, self.tf.math.maximum(a, b))

    def minimum(self, a, b):
        """NaN-propagating min; see :meth:`maximum`."""
        return self._nan_or(a, b, self.tf.math.minimum(a, b))

    def _nan_or(self, a, b, value):
        tf = self.tf
        a, b = tf.convert_to_tensor(a), tf.convert_to_tensor(b, dtype_hint=a.dtype)
        either = tf.logical_or(tf.math.is_nan(a), tf.math.is_nan(b))
        return tf.where(either, a + b, value)

    def sum(self, x, axis=None, keepdims=False):
        return self.tf.reduce_sum(x, axis=axis, keepdims=keepdims)

    def mean(self, x, axis=None, keepdims=False):
        return self.tf.reduce_mean(x, axis=axis, keepdims=keepdims)

    def gather(self, x, indices):
        return self.tf.gather(x, indices)

    def scatter_add(self, x, indices, values):
        return self.tf.tensor_scatter_nd_add(x, self.tf.expand_dims(indices, -1), values)

    def unique_sum(self, values, indices):
        """``tf.unique`` + ``unsorted_segment_sum``: repeated rows summed, first-seen order."""
        unique, positions = self.tf.unique(indices)
        summed = self.tf.math.unsorted_segment_sum(values, positions, self.tf.size(unique))
        return summed, unique

    def to_dense(self, values, indices, shape):
        zeros = self.tf.zeros(shape, values.dtype)
        return self.tf.tensor_scatter_nd_add(zeros, self.tf.expand_dims(indices, -1), values)


def _np(dtype):
    import ml_dtypes

    return ml_dtypes.bfloat16 if str(dtype) == "bfloat16" else np.dtype(str(dtype))


def _name(dtype) -> str:
    return "bfloat16" if str(dtype) == "bfloat16" else np.dtype(dtype).name
