"""The golden's elementary functions: correctly rounded, the same bits on every machine.

Beyond IEEE 754's correctly rounded + − × ÷ and √, the golden evaluates three functions:
``power`` (the bias corrections of Adam, Adamax and Nadam, Ftrl's ``n^(−p)``, Adafactor's
β₂ decay, the Exponential, Polynomial and CosineDecayRestarts schedules), ``log`` and
``cos`` (the cosine schedules). NumPy evaluates them with whichever kernels it picks at run
time — SVML on AVX-512, its own AVX2 or NEON loops, or the C library — and none of them is
correctly rounded, so a NumPy result depends on the CPU (issue: 68 of the committed vector
files changed with the AVX-512 kernels disabled). The rule here:

* **float32, float64 and binary128** (the float64 oracle, reference/dtypes.py): f of the exact
  inputs, rounded once to the result dtype (nearest, ties to even). That value is defined without
  reference to any machine. TensorFlow's scalar kernels (a 0-d tensor takes Eigen's scalar path,
  i.e. the C library's ``powf``/``logf``/``cosf``) agree with it on all but 0.025 % of float32
  ``pow`` results (glibc's ``powf`` is within 0.82 ulp; measured on 2·10⁴ random operands,
  tests/test_elementary.py); its tensor kernels (Eigen's packet ``pow``) on 73 %. The tolerance
  model grants the remaining ulps (conformance/tolerance.py).
* **float16 and bfloat16**: the float32 result, correctly rounded, then rounded to the
  16-bit type — what TensorFlow's ``Eigen::half`` and ``bfloat16`` operators do (they
  widen to float, call the float function and narrow; so does NumPy).
* Special operands follow C99 Annex F (IEEE 754 ``pow``, ``log``, ``cos``); a NaN result
  is the positive quiet NaN.

How: a ``power`` whose exact value is a dyadic rational (integer exponents, perfect
squares, powers of two) is computed exactly with Python integers; any other value is
irrational or not dyadic, so it is never a rounding boundary, and :mod:`decimal` computes
it at increasing precision with a rigorous error bound until both ends of the interval
round to the same float (Ziv's strategy). Results are cached by the operands' bits.
``power`` on arrays first evaluates in the next wider type and keeps the elements whose
whole error interval (a bound far above the wider kernel's error) rounds to one value —
that value is the correctly rounded one, whatever the kernel — and computes the rest
exactly: Ftrl's tensor powers cost about what NumPy's do.
Inside :func:`dtypes.monte_carlo` the result is perturbed once, as one operation.
"""

from __future__ import annotations

import decimal
import functools
import math
from fractions import Fraction
from typing import NamedTuple

import numpy as np

from . import dtypes

__all__ = ["cos", "log", "power"]

_CTX_RANGE = {"Emax": decimal.MAX_EMAX, "Emin": decimal.MIN_EMIN}
#: Largest exact power computed with integers (bits of the result's odd part).
_EXACT_BITS = 1 << 14


class _Format(NamedTuple):
    """A binary floating-point format: significand bits, exponents of the smallest
    normal and of the largest finite binade."""

    p: int
    emin: int
    emax: int


@functools.cache
def _format(dtype: np.dtype) -> _Format:
    info = np.finfo(dtype)
    return _Format(int(info.nmant) + 1, int(info.minexp), int(info.maxexp) - 1)


def _round(q: Fraction, fmt: _Format) -> Fraction | float:
    """``q`` rounded to ``fmt`` (nearest, ties to even); ±inf where it overflows."""
    if q == 0:
        return Fraction(0)
    n, d = abs(q.numerator), q.denominator
    e = n.bit_length() - d.bit_length()  # floor(log2 |q|) is e or e − 1
    if (n << max(-e, 0)) < (d << max(e, 0)):
        e -= 1
    shift = max(e, fmt.emin) - (fmt.p - 1)  # exponent of the last significand bit
    num, den = (n, d << shift) if shift >= 0 else (n << -shift, d)
    m, r = divmod(num, den)
    if 2 * r > den or (2 * r == den and m & 1):
        m += 1
    if m.bit_length() + shift > fmt.emax + 1:
        return math.copysign(math.inf, q)
    value = Fraction(m << shift) if shift >= 0 else Fraction(m, 1 << -shift)
    return value if q > 0 else -value


def _exact(x) -> Fraction:
    return Fraction(*x.as_integer_ratio())


def _decimal(q: Fraction) -> decimal.Decimal:
    """The dyadic rational ``q`` as a Decimal, exactly."""
    k = q.denominator.bit_length() - 1  # q = n / 2^k
    # From a string: exact at any length (``scaleb`` would round to the context's 28 digits).
    return decimal.Decimal(f"{q.numerator * 5**k}E-{k}")


def _start_digits(fmt: _Format) -> int:
    return math.ceil(fmt.p * 0.30103) + 12


def _ziv(approx, fmt: _Format) -> Fraction | float:
    """Round an irrational (or non-dyadic) value: ``approx(digits)`` returns an
    approximation and a bound on its absolute error, both exact rationals; the precision
    doubles until the whole interval rounds to one float."""
    digits = _start_digits(fmt)
    while True:
        value, err = approx(digits)
        low, high = _round(value - err, fmt), _round(value + err, fmt)
        if low == high:
            return low
        digits *= 2
        if digits > 1 << 16:  # cannot happen for a value that is no rounding boundary
            raise ArithmeticError(f"no correctly rounded value found near {float(value)!r}")


# -- power ---------------------------------------------------------------------------
def _is_odd_integer(y: Fraction) -> bool:
    return y.denominator == 1 and y.numerator & 1 == 1


def _pow_special(x, y) -> float | None:
    """C99 Annex F ``pow`` where an operand is 0, ±inf or NaN, or x is negative with a
    non-integer exponent; None where the value is a finite non-zero power."""
    if y == 0 or x == 1:
        return 1.0
    if np.isnan(x) or np.isnan(y):
        return math.nan
    if np.isinf(y):
        if x == -1:
            return 1.0
        return math.inf if (abs(x) > 1) == (y > 0) else 0.0
    odd = _is_odd_integer(_exact(y))
    if x == 0:
        sign = -1.0 if (odd and np.signbit(x)) else 1.0
        return sign * (math.inf if y < 0 else 0.0)
    if np.isinf(x):
        sign = -1.0 if (x < 0 and odd) else 1.0
        return sign * (0.0 if y < 0 else math.inf)
    if x < 0 and _exact(y).denominator != 1:
        return math.nan
    return None


def _pow_exact(x: Fraction, y: Fraction) -> Fraction | None:
    """x^y (x > 0) when it is a rational number small enough to compute, else None.

    With y = a/2^k and x = o·2^e (o odd), x^y is rational only if o is a 2^k-th power and
    2^k divides e·a (Gelfond–Schneider); it is then s^a·2^(e·a/2^k)."""
    a, k = y.numerator, y.denominator.bit_length() - 1
    n, d = x.numerator, x.denominator
    if d > 1:  # a reduced dyadic fraction: n is odd
        odd, e = n, 1 - d.bit_length()
    else:
        e = (n & -n).bit_length() - 1
        odd = n >> e
    for _ in range(k):
        if odd == 1:
            break
        root = math.isqrt(odd)
        if root * root != odd:
            return None
        odd = root
    if (e * a) % (1 << k):
        return None
    if odd != 1 and abs(a) * odd.bit_length() > _EXACT_BITS:
        return None  # its odd part has more bits than any format: no rounding boundary
    scale = (e * a) >> k
    value = Fraction(odd) ** a
    return value * (Fraction(1 << scale) if scale >= 0 else Fraction(1, 1 << -scale))


def _log2(q: Fraction) -> float:
    """log2(q) to about float64 accuracy, relative also near q = 1."""
    if abs(q - 1) < Fraction(1, 2):
        return math.log1p(float(q - 1)) / math.log(2)
    return math.log2(q.numerator) - math.log2(q.denominator)


def _pow_finite(x, y, fmt: _Format) -> Fraction | float:
    """x^y rounded to ``fmt``, x and y finite, x ≠ 0, y ≠ 0 and x^y real."""
    qx, qy = _exact(x), _exact(y)
    negative = qx < 0 and _is_odd_integer(qy)
    qx = abs(qx)
    # Far outside the format's range the value needs no digits (margin 2 binades).
    log2 = float(qy) * _log2(qx)
    if log2 > fmt.emax + 2:
        result = math.inf
    elif log2 < fmt.emin - fmt.p - 2:
        result = Fraction(0)
    else:
        exact = _pow_exact(qx, qy)
        if exact is not None:
            result = _round(exact, fmt)
        else:
            dx, dy = _decimal(qx), _decimal(qy)

            def approx(digits):
                ctx = decimal.Context(prec=digits, **_CTX_RANGE)
                t = ctx.multiply(dy, ctx.ln(dx))
                value = ctx.exp(t)
                # ln, × and exp each round once (≤ ½ unit of 10^(1−digits), relative):
                # exp(t(1+δ₁)(1+δ₂))(1+δ₃) is within (|t|+1)·10^(1−digits) of exact.
                rel = (abs(Fraction(t)) + 2) * Fraction(10) ** (1 - digits)
                return Fraction(value), abs(Fraction(value)) * rel

            result = _ziv(approx, fmt)
    if result == 0 and negative:
        return -0.0
    return -result if negative else result


# -- log -----------------------------------------------------------------------------
def _log_value(x, fmt: _Format) -> Fraction | float:
    if np.isnan(x) or x < 0:
        return math.nan
    if x == 0:
        return -math.inf
    if np.isinf(x):
        return math.inf
    if x == 1:
        return Fraction(0)
    dx = _decimal(_exact(x))

    def approx(digits):
        ctx = decimal.Context(prec=digits, **_CTX_RANGE)
        value = Fraction(ctx.ln(dx))  # correctly rounded to ``digits``
        return value, abs(value) * Fraction(10) ** (1 - digits)

    return _ziv(approx, fmt)


# -- cos -----------------------------------------------------------------------------
@functools.cache
def _pi(digits: int) -> decimal.Decimal:
    """π to ``digits`` digits, error below one unit of the last (Machin's formula)."""
    ctx = decimal.Context(prec=digits + 10, **_CTX_RANGE)

    def arctan_inv(n: int) -> decimal.Decimal:  # arctan(1/n) = Σ (−1)^i / ((2i+1)·n^(2i+1))
        total = term = ctx.divide(1, n)
        n2, i = n * n, 1
        while True:
            term = ctx.divide(term, n2)
            piece = ctx.divide(term, 2 * i + 1)
            if piece.is_zero() or piece.adjusted() < -(digits + 8):
                return total
            total = ctx.add(total, piece) if i % 2 == 0 else ctx.subtract(total, piece)
            i += 1

    value = ctx.subtract(ctx.multiply(16, arctan_inv(5)), ctx.multiply(4, arctan_inv(239)))
    return decimal.Context(prec=digits).plus(value)


def _cos_value(x, fmt: _Format) -> Fraction | float:
    if not np.isfinite(x):
        return math.nan
    if x == 0:
        return Fraction(1)
    dx = _decimal(abs(_exact(x)))

    def approx(digits):
        # r = |x| − k·π/2 carries |x|'s magnitude in digits: reduce in that many more.
        wide = digits + max(dx.adjusted(), 0) + 10
        ctx = decimal.Context(prec=wide, **_CTX_RANGE)
        half_pi = ctx.divide(_pi(wide + 5), 2)
        k = int(ctx.divide(dx, half_pi).to_integral_value(decimal.ROUND_HALF_EVEN))
        r = ctx.subtract(dx, ctx.multiply(k, half_pi))
        # π/2 is off by ≤ 10^(−wide−4); the product and the difference round once each.
        err_r = (k * Fraction(10) ** (-wide - 3)
                 + (abs(Fraction(dx)) + 2) * Fraction(10) ** (1 - wide))  # fmt: skip
        ctx = decimal.Context(prec=digits + 5, **_CTX_RANGE)
        r = ctx.plus(r)
        err_r += abs(Fraction(r)) * Fraction(10) ** (-4 - digits)
        # cos(x) = cos(r), −sin(r), −cos(r), sin(r) for k ≡ 0, 1, 2, 3 (mod 4).
        sine = k % 2 == 1
        term = r if sine else decimal.Decimal(1)
        total, r2, i, terms = term, ctx.multiply(r, r), 1 if sine else 0, 1
        tiny = decimal.Decimal(10) ** (-digits - 8)
        while term.copy_abs() > tiny:  # ctx's operations: a bare -term rounds to 28 digits
            term = ctx.divide(ctx.multiply(ctx.minus(term), r2), (i + 1) * (i + 2))
            total = ctx.add(total, term)
            i, terms = i + 2, terms + 1
        value = Fraction(total) * (-1 if k % 4 in (1, 2) else 1)
        # |r| < 1: each term and sum rounds within 10^(−digits−4); the tail is below tiny.
        err = err_r + (3 * terms + 1) * Fraction(10) ** (-digits - 4) + Fraction(tiny)
        return value, err

    return _ziv(approx, fmt)


# -- vectorisation -------------------------------------------------------------------
def _to_float(value: Fraction | float, dtype: np.dtype):
    """The exactly representable rational ``value`` as a scalar of ``dtype``."""
    if isinstance(value, float):
        return dtype.type(value)
    if dtype.itemsize <= 8:
        return dtype.type(float(value))  # representable in float64: exact
    if dtype == dtypes.binary128:  # numpy-quaddtype has no ldexp: write the bits
        return np.frombuffer(_binary128_bits(value).to_bytes(16, "little"), dtype=dtype)[0]
    # Longer significands: sum 32-bit pieces of the numerator, each exact.
    n, k = abs(value.numerator), value.denominator.bit_length() - 1
    total, shift = dtype.type(0), 0
    while n:
        total += np.ldexp(dtype.type(n & 0xFFFFFFFF), shift - k)
        n >>= 32
        shift += 32
    return -total if value < 0 else total


def _binary128_bits(value: Fraction) -> int:
    """The IEEE binary128 encoding of the exactly representable ``value``."""
    q = abs(value)
    if q == 0:
        bits = 0
    else:
        n, k = q.numerator, q.denominator.bit_length() - 1  # q = n / 2^k
        e = max(n.bit_length() - 1 - k, -16382)  # exponent; subnormals share the least
        shift = 112 - e - k
        m = n << shift if shift >= 0 else n >> -shift
        bits = ((e + 16383) << 112 | (m - (1 << 112))) if m >> 112 else m
    return bits | (1 << 127 if value < 0 else 0)


@functools.lru_cache(maxsize=1 << 16)
def _scalar(name: str, dtype: np.dtype, *operands: bytes):
    args = [np.frombuffer(b, dtype=dtype)[0] for b in operands]
    fmt = _format(dtype)
    if name == "power":
        special = _pow_special(*args)
        value = special if special is not None else _pow_finite(*args, fmt)
    elif name == "log":
        value = _log_value(args[0], fmt)
    else:
        value = _cos_value(args[0], fmt)
    return _to_float(value, dtype)


def _wide_power():
    """For each result dtype, the next wider one whose NumPy ``power`` is trusted within a
    relative error bound: float64 for float32 (NumPy's kernels are within 4 ulps, 2⁻⁵⁰;
    trusted to 2⁻⁴⁴), x87 or quad long double for float64 (the C library's ``powl``, within
    2 ulps; trusted to 2⁻⁵⁸). Where no such type exists the exact path runs alone."""
    wide = {dtypes.float32: (dtypes.float64, 2.0**-44)}
    if np.finfo(np.longdouble).nmant >= 63:
        wide[dtypes.float64] = (np.dtype(np.longdouble), 2.0**-58)
    return wide


_WIDE_POWER = _wide_power()


def _fast_power(x: np.ndarray, y: np.ndarray, work: np.dtype):
    """``power`` through the wider type where its rounding is certain: the result and a
    mask of the elements whose whole error interval rounds to that result. The rest (and
    zeros, infinities, NaN, negative bases, results near the range's ends) take the exact
    path, so the values do not depend on the wider type's kernel."""
    wide, rel = _WIDE_POWER[work]
    info = np.finfo(work)
    with np.errstate(all="ignore"):
        v = np.power(x.astype(wide), y.astype(wide))
        result = v.astype(work)
        one, rel = wide.type(1), wide.type(rel)  # 1 ± 2⁻⁵⁸ needs the wide type
        low, high = (v * (one - rel)).astype(work), (v * (one + rel)).astype(work)
        certain = ((low == result) & (high == result) & (x > 0) & np.isfinite(x) & np.isfinite(y)
                   & (np.abs(v) >= 4 * info.smallest_normal) & (np.abs(v) <= info.max / 4))
    return result, certain


def _apply(name: str, *args):
    perturbed = any(dtypes.is_perturbed(a) for a in args)
    plain = [a.view(np.ndarray) if isinstance(a, np.ndarray) else a for a in args]
    dtype = np.result_type(*plain)
    if not dtypes.is_real(dtype) and dtype != dtypes.bfloat16:
        raise TypeError(f"{name} of {dtype}: the golden's elementary functions take floats.")
    # float16 and bfloat16 evaluate in float32 and round (Eigen::half, NumPy).
    work = dtypes.float32 if dtype.itemsize < 4 else dtype
    if all(np.ndim(a) == 0 for a in plain):  # bias corrections, schedules: from the cache
        value = _scalar(name, work, *(np.asarray(a).astype(work).tobytes() for a in plain))
        if work != dtype:
            with np.errstate(over="ignore"):
                value = dtype.type(value)
        return dtypes.perturb(np.asarray(value)) if perturbed else value
    arrays = np.broadcast_arrays(*[np.asarray(a).astype(work) for a in plain])
    flat = [np.ascontiguousarray(a).ravel() for a in arrays]
    if name == "power" and work in _WIDE_POWER:
        target, certain = _fast_power(*flat, work)
        todo = np.flatnonzero(~certain)
    else:
        target, todo = np.empty(flat[0].size, dtype=work), range(flat[0].size)
    for i in todo:
        target[i] = _scalar(name, work, *(a[i : i + 1].tobytes() for a in flat))
    out = target.reshape(arrays[0].shape)
    if work != dtype:
        with np.errstate(over="ignore"):  # IEEE: beyond the 16-bit range is ±inf
            out = out.astype(dtype)
    return dtypes.perturb(out) if perturbed else out


def power(x, y):
    """``x ** y`` element-wise, correctly rounded (module docstring)."""
    return _apply("power", x, y)


def log(x):
    """Natural logarithm element-wise, correctly rounded (module docstring)."""
    return _apply("log", x)


def cos(x):
    """Cosine element-wise, correctly rounded (module docstring)."""
    return _apply("cos", x)
