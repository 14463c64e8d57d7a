"""Hypothesis strategies over the optimizer registry."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from optcheck.conformance.registry import OPTIMIZERS, Param

DTYPES = ["float16", "bfloat16", "float32", "float64"]


def param_value(p: Param):
    if p.kind == "bool":
        return st.booleans()
    if p.log:
        lo, hi = np.log10(p.low), np.log10(p.high)
        return st.floats(lo, hi).map(lambda e: float(10.0**e))
    return st.floats(p.low, p.high, allow_nan=False)


@st.composite
def configs(draw, name: str):
    """A config with each hyper-parameter drawn or left at its default."""
    config = {}
    for p in OPTIMIZERS[name].params:
        if draw(st.booleans()):
            config[p.name] = draw(param_value(p))
    return config


@st.composite
def problems(draw, dtype=None, max_vars=3, max_steps=4, max_size=6, scale=(1e-2, 10.0)):
    """(dtype, initial values, gradient steps): shapes 0-d..3-d, moderate magnitudes."""
    dtype = dtype or draw(st.sampled_from(DTYPES))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    n_vars = draw(st.integers(1, max_vars))
    shapes = [
        tuple(draw(st.lists(st.integers(1, 3), min_size=0, max_size=3)))[:max_size]
        for _ in range(n_vars)
    ]
    lo, hi = scale
    magnitude = draw(st.floats(np.log10(lo), np.log10(hi)))

    def sample(shape):
        return np.asarray(rng.standard_normal(shape) * 10.0**magnitude).astype(_np_dtype(dtype))

    values = [sample(s) for s in shapes]
    n_steps = draw(st.integers(1, max_steps))
    steps = [[sample(s) for s in shapes] for _ in range(n_steps)]
    return dtype, values, steps


def _np_dtype(name):
    from optcheck.reference import dtypes

    return dtypes.as_dtype(name)
