"""Sparse gradients (``tf.IndexedSlices``) and per-replica values.

An :class:`IndexedSlices` gradient stands for the dense tensor in which row
``indices[i]`` receives ``values[i]``; duplicated indices add up. Keras (≥ 2.10,
tf-keras) clips the *undeduplicated* values first and deduplicates afterwards
(semantics notes §1.2, §1.8, §4.2 item 14).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class IndexedSlices:
    """Rows ``values[i]`` of a tensor of shape ``dense_shape`` at row ``indices[i]``."""

    values: np.ndarray
    indices: np.ndarray
    dense_shape: tuple[int, ...]

    def __post_init__(self):
        values = np.asarray(self.values)
        indices = np.asarray(self.indices)
        shape = tuple(int(d) for d in self.dense_shape)
        if indices.ndim != 1 or indices.dtype.kind not in "iu":
            raise TypeError(
                f"IndexedSlices.indices must be a 1-d integer array. Received dtype "
                f"{indices.dtype} and shape {indices.shape}."
            )
        if not shape or values.shape != (len(indices), *shape[1:]):
            raise ValueError(
                f"IndexedSlices.values has shape {values.shape}; with {len(indices)} indices "
                f"and dense_shape {shape} it must be {(len(indices), *shape[1:])}."
            )
        if len(indices) and (indices.min() < 0 or indices.max() >= shape[0]):
            raise ValueError(
                f"IndexedSlices.indices {indices.tolist()} out of range for dense_shape {shape}."
            )
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "indices", indices)
        object.__setattr__(self, "dense_shape", shape)

    @property
    def dtype(self) -> np.dtype:
        return self.values.dtype

    @property
    def shape(self) -> tuple[int, ...]:
        return self.dense_shape

    def with_values(self, values) -> IndexedSlices:
        return IndexedSlices(values, self.indices, self.dense_shape)


def deduplicate(grad: IndexedSlices) -> IndexedSlices:
    """Sum the values of repeated indices (``tf.unique`` + ``unsorted_segment_sum``).

    Unique indices keep their first-occurrence order; each sum adds the values in
    the order they appear.
    """
    unique, positions = [], {}
    for i in grad.indices.tolist():
        if i not in positions:
            positions[i] = len(unique)
            unique.append(i)
    summed = np.zeros((len(unique), *grad.values.shape[1:]), dtype=grad.values.dtype)
    for row, i in zip(grad.values, grad.indices.tolist(), strict=True):
        summed[positions[i]] = summed[positions[i]] + row
    return IndexedSlices(summed, np.asarray(unique, dtype=grad.indices.dtype), grad.dense_shape)


def to_dense(grad: IndexedSlices) -> np.ndarray:
    """The dense tensor ``grad`` stands for (duplicates added in order)."""
    dense = np.zeros(grad.dense_shape, dtype=grad.values.dtype)
    for row, i in zip(grad.values, grad.indices.tolist(), strict=True):
        dense[i] = dense[i] + row
    return dense


@dataclass(frozen=True)
class PerReplica:
    """One gradient per replica, as ``tf.distribute`` hands them to the optimizer.

    ``Optimizer.aggregate_gradients`` sums the replicas in order
    (``values[0] + values[1] + ...``); a one-replica value is the identity.
    """

    values: tuple

    def __post_init__(self):
        values = tuple(self.values)
        if not values:
            raise ValueError("PerReplica needs at least one replica value.")
        object.__setattr__(self, "values", values)

    @classmethod
    def from_replica_lists(cls, replica_gradients) -> list:
        """``[[g0, g1, ...] of replica 0, [g0, g1, ...] of replica 1, ...]`` → one
        PerReplica per variable (None where every replica has None)."""
        replica_gradients = [list(r) for r in replica_gradients]
        if not replica_gradients or len({len(r) for r in replica_gradients}) != 1:
            raise ValueError(
                "Every replica must give one gradient per variable; got gradient counts "
                f"{[len(r) for r in replica_gradients]}."
            )
        out = []
        for i, per_variable in enumerate(zip(*replica_gradients, strict=True)):
            nones = sum(g is None for g in per_variable)
            if nones == len(per_variable):
                out.append(None)
            elif nones:
                raise ValueError(f"Gradient {i} is None on some replicas only.")
            else:
                out.append(cls(per_variable))
        return out
