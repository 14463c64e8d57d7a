"""The feature catalogue, as data (array-api-tests / PyTorch ``OptimizerInfo`` style).

One :class:`FeatureInfo` per name of :data:`optcheck.adapters.base.FEATURES`: what the
feature exercises, the profiles it exists in, the optimizers it applies to, and the
adapter features a scenario of it *needs* (a scenario is ``unsupported`` on an adapter
that lacks any of them). :mod:`optcheck.conformance.strategies` generates the scenarios;
:func:`features_for` and :func:`optcheck.conformance.strategies.case_grid` list the cases
the suite runs.

Decisions (semantics notes §1, §2.1):

* ``loss_scale`` and ``gradient_accumulation`` exist in Keras 3 only (base-class
  arguments ``loss_scale_factor`` / ``gradient_accumulation_steps``, §1.3);
  ``iterations_preset`` in Keras 2 only (tf-keras's ``iterations`` setter, §1.5; Keras 3's
  ``iterations`` is read-only).
* ``weight_decay`` and ``sparse`` apply to every optimizer: the decay is a base-class
  stage in tf-keras ≥ 2.11 and Keras 3 (§1.7), and every optimizer takes IndexedSlices
  (§2: the sparse path equals the dense one). AdamW always decays, so its plain scenarios
  decay too (with its default or drawn ``weight_decay``) without needing this feature;
  the ``weight_decay`` feature adds the exclusions (``exclude_names``/``exclude_indices``).
* Scenarios of a feature mostly exercise it alone; each feature also lists the features
  it ``combines`` with, mixed into a third of its scenarios each, because slips live in
  interactions (clipping of duplicated sparse rows, EMA with None gradients, Keras 3
  clipping before the replica sum, schedules reading a preset ``iterations``).
  ``Scenario.needs`` is then the union, read from the content (:func:`scenario_needs`).
* ``callable_learning_rate`` is catalogued but **not generated**. tf-keras calls the
  callable once, at construction, to initialise its float32 learning-rate variable
  (§1.5; reference profile ``callable_learning_rate="at_construction"``), which makes it
  the same run as a float learning rate — nothing a plain scenario does not test. Keras 3
  calls it with no argument at every step, which is only observable with a stateful
  callable; a callable cannot travel in a scenario (a JSON document, a Keras spec dict,
  a repro script) nor be serialized by ``get_config`` in the reference. An adapter author
  tests it with their own fixed cases.
"""

from __future__ import annotations

from dataclasses import dataclass

from optcheck.adapters.base import FEATURES, PROFILES

from .registry import OPTIMIZERS

ALL_OPTIMIZERS: tuple[str, ...] = tuple(OPTIMIZERS)


@dataclass(frozen=True)
class FeatureInfo:
    """One feature of the catalogue."""

    name: str
    description: str
    #: Profiles in which the feature exists.
    profiles: tuple[str, ...] = PROFILES
    #: Optimizers it applies to.
    optimizers: tuple[str, ...] = ALL_OPTIMIZERS
    #: Adapter features (adapters.base.FEATURES) a scenario of this feature needs.
    needs: tuple[str, ...] = ()
    #: Features that the strategies mix into some of this feature's scenarios (each with
    #: probability ⅓, where the profile and optimizer allow it): interactions such as
    #: clipping of duplicated sparse rows or EMA with None gradients. Such a scenario
    #: needs the union (``Scenario.needs``); an adapter lacking an extra skips it.
    combines: tuple[str, ...] = ()
    #: Whether :func:`optcheck.conformance.strategies.scenarios` generates it.
    generated: bool = True
    #: Why not generated / restricted, for reports.
    why: str = ""

    def applies(self, optimizer: str, profile: str) -> bool:
        return profile in self.profiles and optimizer in self.optimizers


_KERAS2 = ("keras2",)
_KERAS3 = ("keras3",)

CATALOGUE: dict[str, FeatureInfo] = {
    info.name: info
    for info in [
        FeatureInfo("plain", "dense gradients, hyper-parameters drawn or left at their defaults"),
        FeatureInfo("clipnorm", "per-tensor clip_by_norm: (t·c)/max(‖t‖, c)",
                    needs=("clipnorm",),
                    combines=("clipvalue", "sparse", "none_gradients", "replicas")),
        FeatureInfo("clipvalue", "element-wise clip_by_value(t, −c, c)", needs=("clipvalue",),
                    combines=("sparse",)),
        FeatureInfo("global_clipnorm", "clip_by_global_norm over every gradient of a step",
                    needs=("global_clipnorm",),
                    combines=("clipvalue", "sparse", "none_gradients", "replicas")),
        FeatureInfo("ema", "use_ema with ema_momentum in [0, 1] and ema_overwrite_frequency "
                    "None or 1..4", needs=("ema",), combines=("none_gradients", "schedule")),
        FeatureInfo("schedule", "each learning-rate schedule, as a Keras dict "
                    "{'class_name', 'config'} in config['learning_rate']",
                    needs=("schedule",), combines=("iterations_preset", "weight_decay")),
        FeatureInfo("callable_learning_rate", "a zero-argument callable learning rate",
                    needs=("callable_learning_rate",), generated=False,
                    why="a callable cannot travel in a JSON scenario or a Keras spec; "
                        "tf-keras calls it once at construction (same run as a float), "
                        "Keras 3 every step (observable only with a stateful callable)"),
        FeatureInfo("weight_decay", "decoupled weight decay v ← v − v·wd·lr with random "
                    "exclusions by name pattern and by variable", needs=("weight_decay",),
                    combines=("schedule", "none_gradients")),
        FeatureInfo("none_gradients", "None gradients for some variables at some steps, "
                    "never for all of a step", needs=("none_gradients",),
                    combines=("ema", "weight_decay", "sparse")),
        FeatureInfo("sparse", "IndexedSlices gradients with duplicated indices for the "
                    "variables of rank ≥ 1 (clipped before deduplication)",
                    needs=("sparse",), combines=("clipnorm", "global_clipnorm", "replicas")),
        FeatureInfo("replicas", "PerReplica gradients of 2–3 replicas, summed by "
                    "aggregate_gradients", needs=("replicas",),
                    combines=("clipnorm", "global_clipnorm", "sparse", "none_gradients")),
        FeatureInfo("skip_aggregation", "plain gradients with "
                    "apply_gradients(skip_gradients_aggregation=True)",
                    needs=("skip_aggregation",), combines=("sparse", "clipnorm")),
        FeatureInfo("finalize", "use_ema then finalize_variable_values after the last step",
                    needs=("ema", "finalize"), combines=("none_gradients",)),
        FeatureInfo("round_trip", "from_config(get_config()) after some step (fresh state)",
                    needs=("round_trip",),
                    combines=("ema", "schedule", "gradient_accumulation")),
        FeatureInfo("iterations_preset", "iterations set before the first step",
                    profiles=_KERAS2, needs=("iterations_preset",),
                    combines=("schedule", "ema"), why="Keras 3's iterations is read-only"),
        FeatureInfo("loss_scale", "loss_scale_factor: gradients divided by it before clipping",
                    profiles=_KERAS3, needs=("loss_scale",),
                    combines=("clipnorm", "sparse", "gradient_accumulation"),
                    why="a Keras 3 argument"),
        FeatureInfo("gradient_accumulation", "gradient_accumulation_steps 2–3: updates with "
                    "the mean gradient every k-th call", profiles=_KERAS3,
                    needs=("gradient_accumulation",), combines=("clipnorm", "ema", "schedule"),
                    why="a Keras 3 argument"),
    ]
}  # fmt: skip

if tuple(CATALOGUE) != tuple(FEATURES):  # pragma: no cover - a catalogue edit went wrong
    raise RuntimeError("conformance.features.CATALOGUE must list adapters.base.FEATURES in order.")

#: Sets of features one scenario cannot hold together, per profile (the optimizer rejects
#: them, or the reference leaves them out of scope): Keras 3 accepts one clipping
#: argument; every Keras line rejects clipnorm with global_clipnorm; PerReplica gradients
#: cannot skip aggregation; accumulation with several replicas is not modelled.
INCOMPATIBLE: dict[str, tuple[frozenset[str], ...]] = {
    "keras2": (
        frozenset({"clipnorm", "global_clipnorm"}),
        frozenset({"replicas", "skip_aggregation"}),
    ),
    "keras3": (
        frozenset({"clipnorm", "global_clipnorm"}),
        frozenset({"clipnorm", "clipvalue"}),
        frozenset({"clipvalue", "global_clipnorm"}),
        frozenset({"replicas", "skip_aggregation"}),
        frozenset({"replicas", "gradient_accumulation"}),
    ),
}


def compatible(features, profile: str) -> bool:
    """Whether one scenario of ``profile`` can exercise all of ``features`` together."""
    features = set(features)
    return not any(pair <= features for pair in INCOMPATIBLE[profile])


def features_for(optimizer: str, profile: str, generated_only: bool = True) -> list[str]:
    """Features that apply to ``optimizer`` in ``profile``, in FEATURES order.

    With ``generated_only`` (the default) only those the strategies generate, i.e. the
    features of the suite's cases.

    Raises:
        ValueError: unknown optimizer or profile.
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"Unknown optimizer {optimizer!r}. Known: {sorted(OPTIMIZERS)}.")
    if profile not in PROFILES:
        raise ValueError(f"Unknown profile {profile!r}. Known: {list(PROFILES)}.")
    return [
        name
        for name, info in CATALOGUE.items()
        if info.applies(optimizer, profile) and (info.generated or not generated_only)
    ]


def needs_of(feature: str) -> tuple[str, ...]:
    """The adapter features a scenario of ``feature`` needs."""
    return CATALOGUE[feature].needs


def scenario_needs(scenario) -> tuple[str, ...]:
    """The adapter features a scenario actually uses, read from its content (FEATURES
    order). A scenario drawn for feature F has ``needs_of(F)`` among these; derived
    scenarios (metamorphic properties) take theirs from here.

    AdamW's own decay is not a need (AdamW always decays); a ``weight_decay`` set on
    another optimizer, or any exclusion, is.
    """
    from optcheck.reference.sparse import IndexedSlices, PerReplica

    config = scenario.config
    used = set()
    for key in ("clipnorm", "clipvalue", "global_clipnorm"):
        if config.get(key):
            used.add(key)
    if config.get("use_ema"):
        used.add("ema")
    if isinstance(config.get("learning_rate"), dict):
        used.add("schedule")
    if (
        scenario.exclude_names
        or scenario.exclude_indices
        or (scenario.optimizer != "AdamW" and config.get("weight_decay") is not None)
    ):
        used.add("weight_decay")
    for step in scenario.steps:
        for grad in step:
            if grad is None:
                used.add("none_gradients")
            elif isinstance(grad, PerReplica):
                used.add("replicas")
                if any(isinstance(g, IndexedSlices) for g in grad.values):
                    used.add("sparse")
            elif isinstance(grad, IndexedSlices):
                used.add("sparse")
    if scenario.skip_gradients_aggregation:
        used.add("skip_aggregation")
    if scenario.finalize:
        used.add("finalize")
    if scenario.round_trip_at is not None:
        used.add("round_trip")
    if scenario.iterations:
        used.add("iterations_preset")
    if config.get("loss_scale_factor") is not None:
        used.add("loss_scale")
    if config.get("gradient_accumulation_steps"):
        used.add("gradient_accumulation")
    return tuple(f for f in FEATURES if f in used)
