"""Floating-point types and the casting rules Keras applies.

Keras computes every optimizer operation in the dtype of the variable it updates
(semantics notes §1.12). Three conversions matter for a bit-level golden:

* ``floatx`` is float32: the learning-rate variable is created in float32 and
  cast to the variable dtype inside ``update_step``; a float64 variable therefore
  sees ``float64(float32(lr))``.
* Python-float expressions such as ``1 - self.beta_1`` are evaluated by Python in
  float64 and the result is converted once to the tensor dtype (:func:`const`).
* Tensors are cast with :func:`cast` (round to nearest, ties to even).

NumPy computes float16 and bfloat16 arithmetic by widening to float32 and rounding
each result back, which is correctly rounded for + - * / and sqrt, as Eigen does
on CPU.
"""

from __future__ import annotations

import contextlib

import ml_dtypes
import numpy as np

float16 = np.dtype(np.float16)
bfloat16 = np.dtype(ml_dtypes.bfloat16)
float32 = np.dtype(np.float32)
float64 = np.dtype(np.float64)
int32 = np.dtype(np.int32)
int64 = np.dtype(np.int64)

#: The floating types the reference supports for variables and gradients.
FLOAT_DTYPES: dict[str, np.dtype] = {
    "float16": float16,
    "bfloat16": bfloat16,
    "float32": float32,
    "float64": float64,
}


def _binary128() -> np.dtype | None:
    """IEEE binary128, the same format (and, for + − × ÷ √, the same bits) everywhere:
    ``long double`` where the platform's is binary128 (aarch64, ppc64le and s390x Linux),
    otherwise numpy-quaddtype's (NumPy ≥ 2.4; x86-64 Linux, Windows, macOS arm64).
    None where neither exists: float64 error estimates are then refused
    (:func:`require_binary128`), never computed in a narrower, machine-dependent type."""
    if np.finfo(np.longdouble).nmant == 112:
        return np.dtype(np.longdouble)
    try:
        import numpy_quaddtype
    except ImportError:
        return None
    return np.dtype(numpy_quaddtype.QuadPrecDType(backend="sleef"))


#: The float64 oracle's type (conformance/tolerance.py); only error estimates use it.
binary128 = _binary128()
_ALL_DTYPES: dict[str, np.dtype] = {
    **FLOAT_DTYPES,
    "int32": int32,
    "int64": int64,
}
if binary128 is not None:
    _ALL_DTYPES["binary128"] = binary128

BINARY128_MISSING = (
    "float64 tolerances are estimated in IEEE binary128, which this NumPy lacks "
    f"(long double here has {np.finfo(np.longdouble).nmant + 1} significand bits): "
    "install numpy-quaddtype (needs NumPy >= 2.4), e.g. pip install 'numpy>=2.4' numpy-quaddtype; "
    "or leave float64 out: --dtype float16 bfloat16 float32"
)


def require_binary128() -> np.dtype:
    """The binary128 dtype; a clear error where this machine's NumPy has none."""
    if binary128 is None:
        raise RuntimeError(BINARY128_MISSING)
    return binary128


def beyond_float32(dtype) -> bool:
    """float64 or the binary128 of its oracle: where a variant's float32 roundings
    (``ops_python_float``) apply, in the golden and its error estimate alike."""
    dtype = np.dtype(dtype)
    return dtype == float64 or (binary128 is not None and dtype == binary128)


def ops_operand(value, dtype, via_float32: bool = False) -> np.ndarray:
    """A Python float operand of a Keras ``ops`` call: rounded once to ``dtype``, or,
    ``via_float32`` (profile ``ops_python_float="float32"``, Keras 3 on torch) through
    a float32 tensor first where ``dtype`` is wider than float32."""
    if via_float32 and beyond_float32(dtype):
        return cast_scalar(value, dtype, FLOATX)
    return const(value, dtype)


def is_real(dtype) -> bool:
    """A NumPy binary floating type (float16, 32, 64, binary128), not bfloat16
    (an ml_dtypes type): what Monte Carlo arithmetic perturbs."""
    dtype = np.dtype(dtype)
    return dtype.kind == "f" or (binary128 is not None and dtype == binary128)

#: Keras's default float type (``keras.backend.floatx()``).
FLOATX = float32


def as_dtype(dtype) -> np.dtype:
    """Return the NumPy dtype named by ``dtype`` (a name, a NumPy dtype or type).

    Raises:
        TypeError: ``dtype`` is not one of float16, bfloat16, float32, float64,
            int32, int64.
    """
    if isinstance(dtype, str):
        if dtype in _ALL_DTYPES:
            return _ALL_DTYPES[dtype]
    else:
        try:
            candidate = np.dtype(dtype)
        except TypeError:
            candidate = None
        if candidate is not None and candidate in _ALL_DTYPES.values():
            return candidate
    raise TypeError(f"Unsupported dtype {dtype!r}: expected one of {sorted(_ALL_DTYPES)}.")


def is_float(dtype) -> bool:
    return np.dtype(dtype) in FLOAT_DTYPES.values() or (
        binary128 is not None and np.dtype(dtype) == binary128
    )


def dtype_name(dtype) -> str:
    return "bfloat16" if np.dtype(dtype) == bfloat16 else np.dtype(dtype).name


def const(value, dtype) -> np.ndarray:
    """Convert a Python number (or a Python-float expression) to ``dtype``.

    This is the conversion TensorFlow applies to a Python scalar operand of a
    tensor operation: the float64 value is rounded once to ``dtype``.
    """
    return wrap(np.asarray(np.float64(value)).astype(dtype))


def cast_scalar(value, dtype, via=FLOATX) -> np.ndarray:
    """``tf.cast`` of a Python number: TensorFlow first converts it to a ``via``
    (float32) tensor, then casts (tensorflow/tensorflow#35938), so
    ``tf.cast(0.9, tf.float64)`` is 0.8999999761581421. ``via=None`` converts directly,
    as ``jnp.asarray(x, dtype)`` does."""
    if via is None:
        return const(value, dtype)
    return const(value, via).astype(dtype)


def cast(x, dtype) -> np.ndarray:
    """``tf.cast``: round an array to ``dtype`` (nearest, ties to even)."""
    x = np.asarray(x)
    if _mca and is_real(x.dtype):  # flush-to-zero hardware flushes the input first
        x = _flush(x.view(np.ndarray))
    return wrap(x.astype(dtype))


# -- Monte Carlo arithmetic, for error estimates only ----------------------------------
# The conformance suite estimates how much another valid rounding of the same
# computation could change a result: it reruns a step in high precision with every
# floating-point operation's result multiplied by (1 + δ), |δ| ≤ u of the dtype under
# test (Parker's Monte Carlo arithmetic). With ``flush``, results (and inputs) smaller in
# magnitude than the dtype's smallest normal become zero, as in the flush-to-zero
# arithmetic of XLA:CPU, TensorFlow's CPU kernels and GPUs: also a valid execution of the
# same computation. Outside ``monte_carlo()`` nothing changes: ``wrap`` returns its
# argument.
_mca: dict = {}


class _Perturbed(np.ndarray):
    """An array whose floating-point ufunc results are randomly perturbed."""

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        plain = [x.view(np.ndarray) if isinstance(x, _Perturbed) else x for x in inputs]
        if "out" in kwargs:
            kwargs["out"] = tuple(
                o.view(np.ndarray) if isinstance(o, _Perturbed) else o for o in kwargs["out"]
            )
        result = getattr(ufunc, method)(*plain, **kwargs)
        if method == "at" or result is None:
            return result
        return perturb(result)


def perturb(result):
    """Inside ``monte_carlo()``, ``result`` of one operation perturbed (and flushed): every
    ufunc's, and those computed outside NumPy's ufuncs (reference/elementary.py)."""
    if isinstance(result, tuple):
        return tuple(perturb(r) for r in result)
    arr = np.asarray(result)
    if not _mca or not is_real(arr.dtype):
        return arr.view(_Perturbed) if _mca else arr
    size, rng = _mca["size"], _mca["rng"]
    # 1 + δ is formed in the result's own precision: in float64, a δ of a few 2⁻⁵³
    # would round to a handful of values, and two operands drawing the same one
    # would cancel exactly where another rounding would not.
    # NumPy 1.x promotes a Python int plus a 0-d float32 array to float64.
    delta = rng.uniform(-size, size, size=arr.shape).astype(arr.dtype)
    return _flush(arr * (arr.dtype.type(1) + delta)).view(_Perturbed)


def is_perturbed(x) -> bool:
    """Whether ``x`` is an array of Monte Carlo arithmetic (inside ``monte_carlo()``)."""
    return isinstance(x, _Perturbed)


def _flush(arr):
    tiny = _mca.get("flush")
    if not tiny:
        return arr
    # A narrower array (the float32 learning rate of a float64 step) is flushed below
    # its own smallest normal, as flush-to-zero hardware does with every float32 value.
    tiny = max(tiny, float(finfo(arr.dtype).tiny))
    return np.where(np.abs(arr) < tiny, np.copysign(np.zeros_like(arr), arr), arr)


def wrap(x):
    """Inside ``monte_carlo()``, make ``x`` an array whose operations are perturbed."""
    if _mca and isinstance(x, np.ndarray) and not isinstance(x, _Perturbed):
        return _flush(x).view(_Perturbed) if is_real(x.dtype) else x.view(_Perturbed)
    return x


@contextlib.contextmanager
def monte_carlo(size: float, seed: int = 0, flush: float | None = None):
    """Perturb every floating-point operation result by a relative δ, |δ| ≤ ``size``;
    with ``flush``, results and inputs below it in magnitude become (signed) zero."""
    _mca.update(size=size, rng=np.random.default_rng(seed), flush=flush)
    try:
        yield
    finally:
        _mca.clear()


def finfo(dtype):
    """Machine limits of a float dtype (ml_dtypes knows bfloat16, NumPy does not)."""
    return ml_dtypes.finfo(np.dtype(dtype))


def promote(*dtypes) -> np.dtype:
    """Type of a reduction over tensors of several float types."""
    return np.result_type(*[np.dtype(d) for d in dtypes])
