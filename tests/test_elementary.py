"""The golden's elementary functions (reference/elementary.py): correctly rounded in every
dtype, exact where the value is a rounding boundary, C99 special values, one perturbation
in Monte Carlo arithmetic, and the same bits whatever kernels NumPy dispatches to."""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import math
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from optcheck.reference import dtypes, elementary

mpmath = pytest.importorskip("mpmath")

ROOT = Path(__file__).resolve().parents[1]
# binary128 (the float64 oracle) only where this NumPy has it (reference/dtypes.py).
EXACT_DTYPES = [np.dtype(t) for t in (np.float32, np.float64, np.longdouble)] + (
    [dtypes.binary128] if dtypes.binary128 is not None else []
)


def _mp(x) -> mpmath.mpf:
    n, d = x.as_integer_ratio()
    return mpmath.mpf(n) / d


def _correctly_rounded(value: mpmath.mpf, dtype) -> np.floating:
    """``value`` (computed with 400 bits) rounded once to ``dtype``."""
    sign, man, exp, _ = value._mpf_
    exact = Fraction(int(man)) * Fraction(2) ** int(exp) * (-1 if sign else 1)
    return elementary._to_float(elementary._round(exact, elementary._format(np.dtype(dtype))),
                                np.dtype(dtype))  # fmt: skip


@pytest.mark.parametrize("dtype", EXACT_DTYPES,
                         ids=lambda d: "binary128" if d == dtypes.binary128 else d.name)
def test_every_function_is_correctly_rounded(dtype):
    rng = np.random.default_rng(3)
    x = rng.uniform(1e-3, 3.0, 400).astype(dtype)
    y = rng.uniform(-8.0, 8.0, 400).astype(dtype)
    angles = (y * dtype.type(40)).astype(dtype)
    with mpmath.workprec(400):
        cases = {
            "power": (elementary.power(x, y),
                      [mpmath.power(_mp(a), _mp(b)) for a, b in zip(x, y, strict=True)]),
            "log": (elementary.log(x), [mpmath.log(_mp(a)) for a in x]),
            "cos": (elementary.cos(angles), [mpmath.cos(_mp(a)) for a in angles]),
        }  # fmt: skip
    for name, (got, exact) in cases.items():
        want = np.array([_correctly_rounded(v, dtype) for v in exact], dtype=dtype)
        assert got.dtype == np.dtype(dtype)
        wrong = np.flatnonzero(got != want)
        assert wrong.size == 0, f"{name}: {wrong.size} results not correctly rounded"


@pytest.mark.parametrize(
    ("dtype", "x", "y", "expected"),
    [
        # (1 + 2⁻¹²)² = 1 + 2⁻¹¹ + 2⁻²⁴: the midpoint of two floats; ties to even.
        (np.float32, 1 + 2.0**-12, 2.0, 1 + 2.0**-11),
        # 66049^1.5 = 257³ = 16974593, the midpoint of 16974592 and 16974594.
        (np.float32, 66049.0, 1.5, 16974592.0),
        (np.float64, 1 + 2.0**-27, 2.0, 1 + 2.0**-26),
        # Half the smallest subnormal: a tie between 0 and 2⁻¹⁰⁷⁴, to even (0).
        (np.float64, 0.5, 1075.0, 0.0),
        (np.float32, 0.5, 150.0, 0.0),
        (np.float32, 2.0, -149.0, 2.0**-149),
        (np.float32, 9.0, 0.5, 3.0),
        (np.float64, 1 / 3, 2.0, (1 / 3) ** 2),  # rational, not dyadic
    ],
)
def test_exact_powers_and_rounding_boundaries(dtype, x, y, expected):
    """A power whose value is a rounding boundary is computed exactly (Ziv's loop alone
    would never end there) and rounded to even."""
    got = elementary.power(dtype(x), dtype(y))
    assert got == dtype(expected) and type(got) is dtype


SPECIAL = [0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 3.0, -3.0, math.inf, -math.inf,
           math.nan]  # fmt: skip


def test_special_operands_follow_c99():
    """pow, log and cos of zeros, infinities, NaN, negative bases: C99 Annex F, as every
    C library's float64 functions (the platform's np.power/log/cos here) give them."""
    values = np.array(SPECIAL)
    x, y = np.meshgrid(values, values)
    with np.errstate(all="ignore"):
        want = np.power(x, y), np.log(values), np.cos(values)
    got = elementary.power(x, y), elementary.log(values), elementary.cos(values)
    for g, w in zip(got, want, strict=True):
        same = (g == w) | (np.isnan(g) & np.isnan(w))
        assert same.all() and (np.signbit(g) == np.signbit(w))[~np.isnan(w)].all()


def test_sixteen_bit_types_round_the_float32_result():
    """float16 and bfloat16 evaluate in float32 and round, as TensorFlow's Eigen::half and
    bfloat16 operators do."""
    rng = np.random.default_rng(5)
    for dtype in (dtypes.float16, dtypes.bfloat16):
        x = rng.uniform(0.05, 3.0, 300).astype(dtype)
        y = rng.uniform(-4.0, 4.0, 300).astype(dtype)
        wide = x.astype(np.float32), y.astype(np.float32)
        got = elementary.power(x, y)
        assert got.dtype == dtype
        np.testing.assert_array_equal(got, elementary.power(*wide).astype(dtype))
        np.testing.assert_array_equal(elementary.cos(x), elementary.cos(wide[0]).astype(dtype))


def test_results_have_numpy_shapes_and_scalar_types():
    x = np.full((2, 3), 0.9, np.float32)
    assert elementary.power(x, np.float32(2.0)).shape == (2, 3)
    assert type(elementary.power(np.asarray(0.9, np.float32), np.asarray(2.0, np.float32))) is (
        np.float32
    )
    with pytest.raises(TypeError, match="floats"):
        elementary.power(np.int32(2), np.int32(3))


def test_monte_carlo_perturbs_a_result_once():
    """Inside monte_carlo() a call is one perturbed operation, like a ufunc's."""
    x = np.asarray([0.3, 0.7, 1.9])
    with dtypes.monte_carlo(2.0**-20, seed=1):
        wrapped = dtypes.wrap(x.copy())
        got = elementary.power(wrapped, dtypes.wrap(np.asarray(1.3)))
        assert dtypes.is_perturbed(got)
    exact = elementary.power(x, 1.3)
    relative = np.abs(np.asarray(got) / exact - 1)
    assert (relative <= 2.0**-20 * 1.01).all() and (relative > 0).any()


def _glibc_powf():
    name = ctypes.util.find_library("m")
    if sys.platform != "linux" or name is None or "libm.so.6" not in name:
        pytest.skip("glibc's libm is not this platform's C library")
    powf = ctypes.CDLL(name).powf
    powf.restype, powf.argtypes = ctypes.c_float, [ctypes.c_float, ctypes.c_float]
    return powf


def test_tensorflows_scalar_pow_is_the_correctly_rounded_one_almost_always():
    """The claim of reference/elementary.py: glibc's powf (TensorFlow's scalar kernel)
    misrounds at most 0.1 % of float32 powers; NumPy's vector kernels far more."""
    powf = _glibc_powf()
    rng = np.random.default_rng(0)
    x = rng.uniform(0.05, 1.0, 4000).astype(np.float32)
    y = rng.uniform(0.0, 3.0, 4000).astype(np.float32)
    golden = elementary.power(x, y)
    glibc = np.array([powf(float(a), float(b)) for a, b in zip(x, y, strict=True)], np.float32)
    assert np.mean(golden != glibc) < 1e-3


FEATURE_SETS = {
    # AVX-512 and its extensions: what NumPy dispatches to on most laptops and runners.
    "without AVX-512": lambda name: name.startswith("AVX512") or name == "X86_V4",
    # Every optional kernel: the baseline build only (SSE4.2 / x86-64-v2 on x86-64).
    "baseline kernels only": lambda name: True,
}


def _dispatched() -> list[str]:
    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    except ImportError:  # NumPy 1.x
        from numpy.core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    return [name for name in __cpu_dispatch__ if __cpu_features__.get(name)]


def _run(args, disabled: list[str], python: str = sys.executable) -> subprocess.CompletedProcess:
    env = {**os.environ, "NPY_DISABLE_CPU_FEATURES": " ".join(disabled),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([python, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)  # fmt: skip


def _assert_portable(disabled: list[str], tmp_path, python: str = sys.executable,
                     without_binary128: bool = False) -> None:
    """tests/portability.py's digests and the vectors export, run by ``python`` with
    ``disabled`` kernels off: equal to this process's and byte-identical to vectors/.
    ``without_binary128``: that Python has no binary128, so float64 tolerances are left
    out of both (and a float64 export must be refused, naming the cure)."""
    from tests import portability

    sample = _run(["-m", "tests.portability"], disabled, python)
    assert sample.returncode == 0, sample.stderr
    expected = portability.digests()
    if without_binary128:
        assert expected.pop("tolerances")  # this process has binary128
    assert json.loads(sample.stdout) == expected
    out = tmp_path / "vectors"
    export_cmd = ["-m", "optcheck.cli", "vectors", "export", "--out", str(out)]
    committed = ROOT / "vectors"
    files = sorted(p.relative_to(committed) for p in committed.rglob("*") if p.is_file())
    if without_binary128:
        refused = _run(export_cmd, disabled, python)
        assert refused.returncode == 2 and "numpy-quaddtype" in refused.stderr, refused.stderr
        export_cmd += ["--dtype", "float16", "bfloat16", "float32"]
    export = _run(export_cmd, disabled, python)
    assert export.returncode == 0, export.stderr
    written = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    if without_binary128:
        files = [f for f in files if f.parts[0] == "cases" and "-float64." not in f.name]
        written = [f for f in written if f.parts[0] == "cases"]
    assert written == files
    changed = [str(f) for f in files if (out / f).read_bytes() != (committed / f).read_bytes()]
    assert not changed, f"{len(changed)} files differ ({python}, {disabled} off): {changed[:3]}"


@pytest.mark.parametrize("features", sorted(FEATURE_SETS))
def test_the_golden_is_the_same_whatever_kernels_numpy_dispatches_to(features, tmp_path):
    """A sample of goldens (elementary functions, schedules in every dtype, the Keras
    golden tables, float64 tolerances with schedules) and the vectors export under NumPy
    with optional CPU kernels disabled: byte-identical to this process and to the committed
    sample."""
    disabled = [name for name in _dispatched() if FEATURE_SETS[features](name)]
    if not disabled:
        pytest.skip(f"NumPy dispatches to no optional kernel here ({features})")
    _assert_portable(disabled, tmp_path)


#: A Python whose NumPy is the oldest the project supports (pyproject: numpy>=1.26), with
#: optcheck importable; .ci/run makes one and requires this test.
OLDEST_NUMPY_PYTHON = os.environ.get("OPTCHECK_OLDEST_NUMPY_PYTHON")


def test_the_golden_is_the_same_with_the_oldest_supported_numpy(tmp_path):
    """NumPy 1.x promotes differently (value-based casting, not NEP 50): the same sample
    and export, byte-identical, except float64 tolerances, which need binary128 (NumPy
    ≥ 2.4) and are refused there. (Before binary128 it caught the Monte Carlo perturbation
    computing a float32 scalar's 1 + δ in float64.)"""
    if not OLDEST_NUMPY_PYTHON:
        pytest.skip("OPTCHECK_OLDEST_NUMPY_PYTHON is unset (.ci/run sets it)")
    version = _run(["-c", "import numpy; print(numpy.__version__)"], [], OLDEST_NUMPY_PYTHON)
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith("1."), f"{OLDEST_NUMPY_PYTHON} has NumPy {version.stdout}"
    has = _run(["-c", "from optcheck.reference import dtypes; print(dtypes.binary128 is not None)"],
               [], OLDEST_NUMPY_PYTHON)  # fmt: skip
    assert has.stdout.strip() == "False", has.stdout + has.stderr  # numpy-quaddtype needs 2.4
    _assert_portable([], tmp_path, OLDEST_NUMPY_PYTHON, without_binary128=True)
