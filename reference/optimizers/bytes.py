"""Byte model: the memory traffic one optimizer step must cause, per parameter.

The benchmarks (``benchmarks/``) turn a step time into a bandwidth with this model
and compare that with an in-place memory-bandwidth roof; optimizer-to-optimizer
time ratios are checked against the ratios of these numbers.

Counting rule
-------------
For a dense step on a float variable with N elements, an *ideal in-place fused*
implementation streams each full-size array through memory once per pass that needs
it. The model lists those passes; each pass names the full-size arrays it reads and
writes, and::

    bytes_per_parameter = (reads + writes, summed over the passes) × itemsize

Adam, for instance, is one pass that reads g, p, m, v and writes p, m, v: 7 arrays,
28 bytes per float32 parameter. Everything is per element of the variable, slots in
the variable's dtype.

What is not counted:

* Arrays of O(1) or O(rows + cols) size — scalars, the step counter, β powers, and
  Adafactor's factored row/column statistics r and c: they stay in cache.
* Temporaries that a fused kernel keeps in registers (``m̂``, ``v̂``, the clipped
  gradient, the new parameter value that EMA averages in).
* Work an implementation does beyond the ideal: a separate pass for weight decay,
  a clipped gradient written back to memory (``torch.nn.utils.clip_grad_norm_``
  rescales the gradients in place: 2 more arrays), an EMA stage run after the update
  as its own pass (it re-reads p: 1 more array), the tf-keras SGD momentum slot kept
  at μ = 0. The model is the floor; an implementation's GB/s measured against it is
  *effective* bandwidth, and its fraction of the roof says how close it gets.

Config flags and features that change the count:

* SGD: ``momentum > 0`` (nesterov or not) adds the read and write of m.
* Adam, AdamW: ``amsgrad`` adds the read and write of v̂. Weight decay (AdamW, or
  ``weight_decay`` on any optimizer) reads p, which the update reads anyway: free.
* RMSprop: ``momentum > 0`` adds the momentum slot, ``centered`` the average gradient.
* Adafactor: RMS(var) and RMS(update) are global reductions that must finish before
  the update can be applied, so the step is three passes, not one.

  - rank ≥ 2 (factored; what the benchmarks use): pass 1 reads p (RMS of the variable)
    and g (row and column sums of g² + ε1); pass 2 reads g to take RMS(u), u being
    g·rsqrt(v) with v rebuilt on the fly from r and c; pass 3 reads g and p and writes
    p. 6 arrays. Keras keeps v as a full-size slot (the outer product of r and c); an
    implementation that materialises it writes it once more: ``keras_slots=True``
    counts that write (7 arrays).
  - rank < 2: v is a full-size slot. Pass 1 reads p; pass 2 reads g and v, writes v
    and takes RMS(u); pass 3 reads g, v and p and writes p. 8 arrays.

* ``global_clipnorm`` (and per-variable ``clipnorm``): the norm must be known before
  the update, so a first pass reads g once more (+1). The scaling itself is fused.
  ``clipvalue`` is elementwise and free.
* ``use_ema``: the average is read and written in the update pass (+2); the new
  parameter value is still in registers. The every-k-steps overwrite of the variables
  (``ema_overwrite_frequency``) amortises to 2/k arrays and is not counted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Pass:
    """One streaming pass over the parameters: the full-size arrays it reads and writes."""

    what: str
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()

    @property
    def arrays(self) -> int:
        return len(self.reads) + len(self.writes)


def _update(reads: str, writes: str) -> tuple[Pass, ...]:
    return (Pass("update", tuple(reads.split()), tuple(writes.split())),)


#: Class name -> the passes of the default configuration (flags off).
BASE: dict[str, tuple[Pass, ...]] = {
    "SGD": _update("g p", "p"),
    "Adam": _update("g p m v", "p m v"),
    "AdamW": _update("g p m v", "p m v"),
    "Adagrad": _update("g p accumulator", "p accumulator"),
    "Adadelta": _update("g p grad_sq delta_sq", "p grad_sq delta_sq"),
    "Adamax": _update("g p m u", "p m u"),
    "Ftrl": _update("g p accumulator linear", "p accumulator linear"),
    "Nadam": _update("g p m v", "p m v"),
    "RMSprop": _update("g p velocity", "p velocity"),
    "Lion": _update("g p m", "p m"),
    # Adafactor is rank dependent: ADAFACTOR below.
    "Adafactor": (),
}

#: Adafactor's passes by variable rank (2 stands for every rank ≥ 2).
ADAFACTOR: dict[int, tuple[Pass, ...]] = {
    2: (
        Pass("RMS(var), row and column sums of g²", ("p", "g")),
        Pass("RMS(update)", ("g",)),
        Pass("update", ("g", "p"), ("p",)),
    ),
    1: (
        Pass("RMS(var)", ("p",)),
        Pass("v and RMS(update)", ("g", "v"), ("v",)),
        Pass("update", ("g", "v", "p"), ("p",)),
    ),
}


def _positive(value) -> bool:
    return bool(value) and value > 0


#: (class name, config key, predicate on the value, slot read and written in the update).
FLAGS: tuple[tuple[str, str, object, str], ...] = (
    ("SGD", "momentum", _positive, "m"),
    ("Adam", "amsgrad", bool, "vhat"),
    ("AdamW", "amsgrad", bool, "vhat"),
    ("RMSprop", "momentum", _positive, "momentum"),
    ("RMSprop", "centered", bool, "average_gradient"),
)

#: Feature name -> the config entry that turns it on.
FEATURES: dict[str, str] = {
    "ema": "use_ema",
    "global_clipnorm": "global_clipnorm",
    "clipnorm": "clipnorm",
}


def features_of(config: Mapping | None) -> frozenset[str]:
    """The byte-relevant features a Keras optimizer config turns on."""
    config = config or {}
    return frozenset(name for name, key in FEATURES.items() if config.get(key))


def passes(
    class_name: str,
    config: Mapping | None = None,
    features: Iterable[str] = (),
    *,
    rank: int = 2,
    keras_slots: bool = False,
) -> tuple[Pass, ...]:
    """The passes one step makes over every parameter (see the module docstring).

    ``features`` adds to what ``config`` turns on (``"ema"``, ``"global_clipnorm"``,
    ``"clipnorm"``; ``"plain"`` adds nothing); ``rank`` matters for Adafactor only.
    """
    if class_name not in BASE:
        raise ValueError(f"No byte model for {class_name!r}. Known: {sorted(BASE)}.")
    config = dict(config or {})
    extra = set(features) - {"plain"}
    unknown = extra - set(FEATURES)
    if unknown:
        raise ValueError(f"Unknown features {sorted(unknown)}. Known: {sorted(FEATURES)}.")
    extra |= features_of(config)

    if class_name == "Adafactor":
        steps = list(ADAFACTOR[2 if rank >= 2 else 1])
        if keras_slots and rank >= 2:
            first, _, update = steps
            steps = [first, Pass("v and RMS(update)", ("g",), ("v",)), update]
    else:
        steps = list(BASE[class_name])
    slots = [slot for name, key, on, slot in FLAGS if name == class_name and on(config.get(key))]
    if class_name == "SGD" and keras_slots and not slots:
        slots = ["m"]  # tf-keras keeps and rewrites m at momentum 0
    *head, update = steps
    reads, writes = list(update.reads), list(update.writes)
    reads += slots
    writes += slots
    if "ema" in extra:
        reads.append("average")
        writes.append("average")
    steps = [*head, Pass(update.what, tuple(reads), tuple(writes))]
    if extra & {"global_clipnorm", "clipnorm"}:
        steps.insert(0, Pass("gradient norm", ("g",)))
    return tuple(steps)


def arrays_per_parameter(class_name, config=None, features=(), **kwargs) -> int:
    """Full-size arrays read plus written per step (the model before ``× itemsize``)."""
    return sum(p.arrays for p in passes(class_name, config, features, **kwargs))


def bytes_per_parameter(
    class_name: str,
    config: Mapping | None = None,
    itemsize=4,
    features: Iterable[str] = (),
    *,
    rank: int = 2,
    keras_slots: bool = False,
) -> int:
    """Bytes one step of an ideal in-place fused implementation moves per parameter.

    ``itemsize`` is a byte count or anything ``np.dtype`` takes (``"float32"``,
    ``np.float16``). ``bytes_per_parameter("Adam", {}, 4) == 28``.
    """
    if not isinstance(itemsize, int) or isinstance(itemsize, bool):
        itemsize = np.dtype(itemsize).itemsize
    arrays = arrays_per_parameter(class_name, config, features, rank=rank, keras_slots=keras_slots)
    return arrays * itemsize


def describe(class_name, config=None, features=(), **kwargs) -> str:
    """One line per pass: ``update: read g p m v; write p m v``."""
    lines = []
    for p in passes(class_name, config, features, **kwargs):
        text = f"{p.what}: read {' '.join(p.reads)}"
        if p.writes:
            text += f"; write {' '.join(p.writes)}"
        lines.append(text)
    return "\n".join(lines)
