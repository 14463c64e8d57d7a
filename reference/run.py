"""Run a trajectory: an optimizer spec, initial values, gradients per step → states.

This is the functional entry point the conformance suite uses, and the place
where the two numeric modes are chosen:

* ``"faithful"`` — every operation in the variable's dtype, with Keras's casting
  rules: the golden a conformant implementation must match bit-for-bit up to the
  rounding freedom the tolerance policy grants.
* ``"oracle"`` — the same Keras semantics computed in float64: initial values and
  gradients are promoted exactly to float64 and the same code runs. The learning
  rate stays the float32 value Keras stores, and Python-float hyper-parameters
  convert exactly to float64. On float64 inputs the two modes are the same
  computation, hence bit-identical; on lower precisions the oracle measures the
  rounding error of the faithful run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import dtypes
from .optimizers import get as get_optimizer
from .sparse import IndexedSlices, PerReplica
from .variable import Variable

NUMERICS = ("faithful", "oracle")


@dataclass
class StepRecord:
    """The observable state after one ``apply_gradients`` call."""

    step: int
    iterations: int
    #: The learning rate the step used, as Keras holds it (None: not applicable).
    learning_rate: np.ndarray | None
    variables: list[np.ndarray]
    slots: list[dict[str, np.ndarray]] = field(default_factory=list)


def _promote(grad):
    if grad is None:
        return None
    if isinstance(grad, PerReplica):
        return PerReplica(tuple(_promote(g) for g in grad.values))
    if isinstance(grad, IndexedSlices):
        return grad.with_values(np.asarray(grad.values, dtype=dtypes.float64))
    return np.asarray(grad, dtype=dtypes.float64)


def run(
    spec,
    initial_values,
    gradients,
    *,
    profile=None,
    numerics: str = "faithful",
    names=None,
    skip_gradients_aggregation: bool = False,
    iterations: int = 0,
    exclude_names=None,
    exclude_indices=None,
) -> list[StepRecord]:
    """Apply ``gradients[i]`` (one entry per variable, None allowed) step by step.

    Args:
        spec: a Keras serialization dict, a name, or an optimizer instance.
        initial_values: one array per variable (its dtype is the variable's).
        gradients: a list of steps; each step a list with one gradient per variable.
        profile: ``"keras2"`` or ``"keras3"``.
        numerics: ``"faithful"`` or ``"oracle"`` (see module docstring).
        names: optional variable names.
        iterations: preset ``iterations`` before the first step (keras2 only).
        exclude_names, exclude_indices: ``exclude_from_weight_decay`` arguments
            (name patterns; positions in the variable list).
    """
    if numerics not in NUMERICS:
        raise ValueError(f"Unknown numerics {numerics!r}: expected one of {NUMERICS}.")
    values = [np.asarray(v) for v in initial_values]
    steps = [list(step) for step in gradients]
    if numerics == "oracle":
        values = [v.astype(dtypes.float64) for v in values]
        steps = [[_promote(g) for g in step] for step in steps]
    names = names or [f"v{i}" for i in range(len(values))]
    variables = [Variable(v, dtype=v.dtype, name=n) for v, n in zip(values, names, strict=True)]
    optimizer = get_optimizer(spec, profile=profile)
    if iterations:
        optimizer.iterations = iterations
    if exclude_names or exclude_indices:
        optimizer.exclude_from_weight_decay(
            var_list=[variables[i] for i in exclude_indices or []], var_names=exclude_names
        )
    records = []
    for i, step in enumerate(steps):
        if len(step) != len(variables):
            raise ValueError(f"Step {i} has {len(step)} gradients for {len(variables)} variables.")
        optimizer.apply_gradients(
            list(zip(step, variables, strict=True)),
            skip_gradients_aggregation=skip_gradients_aggregation,
        )
        records.append(
            StepRecord(
                step=i + 1,
                iterations=int(optimizer.iterations.numpy()),
                learning_rate=optimizer._step_learning_rate,
                variables=[v.numpy() for v in variables],
                slots=[
                    {name: s.numpy() for name, s in optimizer.slots(v).items()} for v in variables
                ],
            )
        )
    return records
