"""The adapter protocol: how optcheck drives an optimizer implementation.

An adapter wraps one implementation (the golden itself, tf-keras, Keras 3, optax,
torch.optim, yours). It says what it supports (:class:`Capabilities`) and opens a
:class:`Session` per scenario; a session applies gradients step by step and reports
an :class:`Observation` after each step. Everything crosses the boundary as NumPy
arrays and plain Python values, and optimizers travel as Keras serialization dicts
(``{"class_name": "Adam", "config": {...}}``), so an adapter needs no optcheck
types beyond the ones defined here and the gradient types of
:mod:`optcheck.reference.sparse` (``IndexedSlices``, ``PerReplica``).

Plugging in an implementation (see docs/adapters.md):

* ``optcheck verify --adapter mypkg.module:factory`` — ``factory()`` returns an
  :class:`Adapter`; or
* an entry point in the group ``optcheck.adapters`` whose name is the adapter name.

Anything an adapter does not support is reported ``unsupported`` for the cases that
need it; an adapter never has to raise for it.
"""

from __future__ import annotations

import abc
from collections.abc import Collection
from dataclasses import dataclass, field

import numpy as np

#: Features a scenario may need beyond plain dense steps (see
#: optcheck.conformance.features for what each one exercises).
FEATURES = (
    "plain",
    "clipnorm",
    "clipvalue",
    "global_clipnorm",
    "ema",
    "schedule",
    "callable_learning_rate",
    "weight_decay",
    "none_gradients",
    "sparse",
    "replicas",
    "skip_aggregation",
    "finalize",
    "round_trip",
    "iterations_preset",
    "loss_scale",
    "gradient_accumulation",
)
DTYPES = ("float16", "bfloat16", "float32", "float64")
PROFILES = ("keras2", "keras3")


@dataclass(frozen=True)
class Capabilities:
    """What an adapter can run. A scenario needing anything else is ``unsupported``."""

    optimizers: frozenset[str]
    features: frozenset[str]
    dtypes: frozenset[str]
    profiles: frozenset[str]
    #: Whether observations include optimizer slots (by tf-keras slot name).
    slots: bool = True
    #: Whether :meth:`Session.load` is implemented (re-synchronised comparisons).
    load: bool = True
    #: Why something is not supported, for the report: {"Ftrl": "no such optimizer"}.
    notes: dict[str, str] = field(default_factory=dict)

    def missing(self, optimizer: str, features, dtype: str, profile: str) -> list[str]:
        """What a scenario needs that this adapter lacks (empty: supported)."""
        lacks = []
        if optimizer not in self.optimizers:
            lacks.append(f"optimizer {optimizer}")
        lacks += [f"feature {f}" for f in features if f not in self.features]
        if dtype not in self.dtypes:
            lacks.append(f"dtype {dtype}")
        if profile not in self.profiles:
            lacks.append(f"profile {profile}")
        return lacks


class InvalidCapabilities(ValueError):
    """``capabilities()`` gave something the suite cannot plan with (the message says
    what): the adapter's run is an error, never a run of nothing."""


def _names(value) -> bool:
    return (isinstance(value, Collection) and not isinstance(value, str | bytes)
            and all(isinstance(v, str) for v in value))  # fmt: skip


def check_capabilities(caps, optimizers=None) -> Capabilities:
    """``caps`` when it is a :class:`Capabilities` that names only known optimizers
    (``optimizers``, default: the golden's), :data:`FEATURES`, :data:`DTYPES` and
    :data:`PROFILES`; otherwise :class:`InvalidCapabilities` naming every problem. A
    misspelt name would otherwise only make its cases ``unsupported`` without a word."""
    if not isinstance(caps, Capabilities):
        got = "None" if caps is None else f"a {type(caps).__name__}"
        raise InvalidCapabilities(f"capabilities() returned {got}, not an "
                                  "optcheck.adapters.base.Capabilities")  # fmt: skip
    if optimizers is None:
        from optcheck.reference.optimizers import MODULES as optimizers
    problems = []
    for name, known in (("optimizers", tuple(optimizers)), ("features", FEATURES),
                        ("dtypes", DTYPES), ("profiles", PROFILES)):  # fmt: skip
        value = getattr(caps, name)
        if not _names(value):  # a bare string would be searched as a substring
            problems.append(f"`{name}` must be a set of names, got {value!r}"[:300])
            continue
        unknown = sorted(set(value) - set(known))
        if unknown:
            problems.append(f"names unknown {name}: {', '.join(map(repr, unknown))} "
                            f"(known: {', '.join(known)})")  # fmt: skip
    if not isinstance(caps.notes, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in caps.notes.items()):
        problems.append(f"`notes` must map names to strings, got {caps.notes!r}"[:300])
    for name in ("slots", "load"):
        if not isinstance(getattr(caps, name), bool):
            problems.append(f"`{name}` must be True or False, got {getattr(caps, name)!r}")
    if problems:
        raise InvalidCapabilities("capabilities() " + "; ".join(problems))
    return caps


@dataclass
class Observation:
    """The observable state after a step (or after ``finalize``).

    ``variables`` in the order of the scenario; ``slots`` one dict per variable,
    keyed by tf-keras slot name (``m``, ``v``, ``average``, …), or None when the
    adapter does not expose them; ``learning_rate`` the rate the step used, or None.
    """

    variables: list[np.ndarray]
    iterations: int
    learning_rate: float | None = None
    slots: list[dict[str, np.ndarray]] | None = None
    #: ``apply_gradients`` calls counted so far when it differs from ``iterations``
    #: (Keras 3 gradient accumulation counts micro-steps); None otherwise.
    applied: int | None = None


class Session(abc.ABC):
    """One optimizer applied to one set of variables."""

    @abc.abstractmethod
    def step(self, gradients, skip_gradients_aggregation: bool = False) -> Observation:
        """Apply one gradient per variable (an array, ``IndexedSlices``,
        ``PerReplica`` or None) and return the state after the step."""

    def load(self, state: Observation) -> None:
        """Overwrite variables, slots and iterations with ``state`` (values given in
        the variables' dtype; ``state.applied``, when set, is the raw step counter).
        Needed for re-synchronised comparisons."""
        raise NotImplementedError

    def finalize(self) -> Observation:
        """``finalize_variable_values`` on every variable; the state after it."""
        raise NotImplementedError

    def round_trip(self) -> None:
        """Replace the optimizer by ``from_config(get_config())`` (fresh state),
        keeping the variables."""
        raise NotImplementedError

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""


class Adapter(abc.ABC):
    """An optimizer implementation under test."""

    #: Short name used on the command line and in reports.
    name: str = ""

    def version(self) -> str:
        """Library versions, for reports."""
        return ""

    def availability(self) -> tuple[bool, str]:
        """(usable here, why not) — e.g. (False, "tensorflow is not installed")."""
        return True, ""

    @abc.abstractmethod
    def capabilities(self) -> Capabilities:
        """What this adapter supports."""

    @abc.abstractmethod
    def open(self, scenario) -> Session:
        """A session for ``scenario`` (an ``optcheck.conformance.scenario.Scenario``):
        its ``spec()``, ``profile``, ``initial_values``, ``names``, ``iterations``
        and weight-decay exclusions."""
