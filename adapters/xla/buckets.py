"""Shape buckets: one compiled program for many sets of variables.

The conformance suite draws new shapes and a new number of variables for almost every
example, and XLA compiles a program per shape. A session therefore holds its variables
as the rows of one zero-padded ``[V, L]`` array (``V`` and ``L`` rounded up to a
bucket) with traced row masks — ``live`` (the variable has a gradient this step) and
``decay`` (weight decay applies) — and cuts the padding off what it reports.

This is exact for every update that treats elements independently or reduces a
tensor by a sum (clip norms reduce per row; padding has gradient 0). It is not for
Adafactor, whose row / column means and RMS divide by the true sizes: Adafactor keeps
its shapes (:data:`SHAPED`).
"""

from __future__ import annotations

import numpy as np

#: Optimizers whose programs depend on the true shapes.
SHAPED = frozenset({"Adafactor"})
#: Smallest bucket: the conformance strategies draw at most 8 variables of ≤ 64 elements,
#: so one bucket serves them all.
MIN_ROWS, MIN_LENGTH = 8, 64


def bucket(n: int, least: int) -> int:
    return max(least, 1 << max(0, int(n) - 1).bit_length())


class Stack:
    """The ``[V, L]`` layout of a list of shapes."""

    def __init__(self, shapes):
        self.shapes = [tuple(s) for s in shapes]
        self.sizes = [int(np.prod(s, dtype=np.int64)) for s in self.shapes]
        self.rows = bucket(len(self.shapes), MIN_ROWS)
        self.length = bucket(max(self.sizes, default=1), MIN_LENGTH)

    def pack(self, arrays, dtype) -> np.ndarray:
        """Rows of ``arrays`` (None: a zero row) in one padded array."""
        out = np.zeros((self.rows, self.length), dtype=dtype)
        for i, a in enumerate(arrays):
            if a is not None:
                out[i, : self.sizes[i]] = np.asarray(a).reshape(-1)
        return out

    def unpack(self, stacked) -> list[np.ndarray]:
        stacked = np.asarray(stacked)
        return [
            stacked[i, :size].reshape(shape)
            for i, (size, shape) in enumerate(zip(self.sizes, self.shapes, strict=True))
        ]

    def mask(self, flags) -> np.ndarray:
        """A ``[V, 1]`` boolean row mask (padding rows False)."""
        out = np.zeros((self.rows, 1), dtype=bool)
        out[: len(flags), 0] = flags
        return out
