"""The ``numpy`` adapter: the golden reference itself, driven through the protocol.

It is also the base of the mutant adapters of the project's tests: a
:class:`ReferenceAdapter` can drive any package with the reference's layout (a
copy with one semantic slip), given as ``package``.
"""

from __future__ import annotations

import contextlib
import importlib

import numpy as np

from .base import DTYPES, FEATURES, PROFILES, Adapter, Capabilities, Observation, Session

NAME = "numpy"


class ReferenceSession(Session):
    def __init__(self, package, scenario, numerics="faithful", perturbation=0.0, flush=None,
                 variant=None, learning_rate_scale=1.0):  # fmt: skip
        self._package = package
        self._learning_rate_scale = learning_rate_scale
        self._scenario = scenario
        self._profile = scenario.profile
        self._spec = scenario.spec()
        if variant is not None:
            self._profile = variant.profile(package.profiles.get_profile(scenario.profile))
            self._spec = variant.spec(self._spec)
        self._perturbation = perturbation
        self._flush = flush
        self._calls = 0
        dtype = _compute_dtype(package, scenario.dtype, numerics)
        self._promote = dtype
        self._variables = [
            package.Variable(np.asarray(v).astype(dtype), dtype=dtype, name=n)
            for v, n in zip(scenario.initial_values, scenario.names, strict=True)
        ]
        self._optimizer = self._new_optimizer()
        if scenario.iterations:
            if self._optimizer.profile.iterations_settable:
                self._optimizer.iterations = scenario.iterations
            else:  # Keras 3: ``optimizer.iterations.assign(n)`` (a diagnosis variant)
                self._optimizer._iterations.assign(np.asarray(scenario.iterations, np.int64))

    def _new_optimizer(self, optimizer=None):
        if optimizer is None:
            optimizer = self._package.optimizers.deserialize(self._spec, profile=self._profile)
        schedules = self._package.schedules
        if self._learning_rate_scale != 1.0 and isinstance(
            getattr(optimizer, "_learning_rate", None), schedules.LearningRateSchedule
        ):
            optimizer._learning_rate = _scaled(schedules, optimizer._learning_rate,
                                               self._learning_rate_scale)  # fmt: skip
        s = self._scenario
        if s.exclude_names or s.exclude_indices:
            optimizer.exclude_from_weight_decay(
                var_list=[self._variables[i] for i in s.exclude_indices],
                var_names=s.exclude_names or None,
            )
        return optimizer

    def _convert(self, grad):
        """Gradients in the session's compute dtype (the scenario's, or binary128)."""
        sparse = self._package.sparse
        if grad is None:
            return None
        if isinstance(grad, sparse.IndexedSlices) or type(grad).__name__ == "IndexedSlices":
            return sparse.IndexedSlices(
                np.asarray(grad.values).astype(self._promote), grad.indices, grad.dense_shape
            )
        if isinstance(grad, sparse.PerReplica) or type(grad).__name__ == "PerReplica":
            return sparse.PerReplica(tuple(self._convert(g) for g in grad.values))
        return self._package.dtypes.wrap(np.asarray(grad).astype(self._promote))

    def _arithmetic(self):
        """Monte Carlo arithmetic when the session estimates errors (else a no-op)."""
        self._calls += 1
        if not self._perturbation:
            return contextlib.nullcontext()
        return self._package.dtypes.monte_carlo(
            self._perturbation, seed=self._calls, flush=self._flush
        )

    def observe(self) -> Observation:
        opt = self._optimizer
        lr = opt._step_learning_rate
        return Observation(
            variables=[np.asarray(v.numpy()) for v in self._variables],
            iterations=int(opt.iterations.numpy()),
            learning_rate=None if lr is None else float(np.asarray(lr, dtype=np.float64)),
            slots=[
                {k: np.asarray(s.numpy()) for k, s in opt.slots(v).items()} for v in self._variables
            ],
            applied=int(opt._iterations.numpy()) if opt.gradient_accumulation_steps else None,
        )

    def step(self, gradients, skip_gradients_aggregation=False) -> Observation:
        with self._arithmetic():
            grads = [self._convert(g) for g in gradients]
            self._optimizer.apply_gradients(
                list(zip(grads, self._variables, strict=True)),
                skip_gradients_aggregation=skip_gradients_aggregation,
            )
        return self.observe()

    def load(self, state: Observation) -> None:
        for v, value in zip(self._variables, state.variables, strict=True):
            v.assign(np.asarray(value).astype(v.dtype))
        opt = self._optimizer
        count = state.iterations if state.applied is None else state.applied
        opt._iterations.assign(np.asarray(count, dtype=opt._iterations.dtype))
        if state.slots is None:
            return
        if not opt._built:
            opt.build(self._variables)
            opt._built = True
        for v, slots in zip(self._variables, state.slots, strict=True):
            mine = opt.slots(v)
            for name, value in slots.items():
                if name in mine:
                    mine[name].assign(np.asarray(value).astype(mine[name].dtype))

    def finalize(self) -> Observation:
        with self._arithmetic():
            self._optimizer.finalize_variable_values(self._variables)
        return self.observe()

    def round_trip(self) -> None:
        optimizer = self._optimizer
        optimizer._learning_rate = getattr(optimizer._learning_rate, "unscaled",
                                           optimizer._learning_rate)  # fmt: skip
        config = optimizer.get_config()
        self._optimizer = self._new_optimizer(type(optimizer).from_config(config,
                                                                          profile=self._profile))


def _scaled(schedules, schedule, scale: float):
    """``schedule`` with its values multiplied by ``scale`` in their own dtype: the
    learning-rate sensitivity run of the conformance engine (conformance/tolerance.py)."""

    class Scaled(schedules.LearningRateSchedule):
        unscaled = schedule

        def __call__(self, step):
            value = np.asarray(schedule(step))
            return value * value.dtype.type(scale)

    return Scaled()


def _compute_dtype(package, dtype: str, numerics: str):
    if numerics == "faithful":
        return package.dtypes.as_dtype(dtype)
    if numerics == "oracle":
        return package.dtypes.float64
    if numerics == "binary128":
        return package.dtypes.require_binary128()
    raise ValueError(f"Unknown numerics {numerics!r}.")


class ReferenceAdapter(Adapter):
    """The reference (or a package laid out like it) as an adapter."""

    def __init__(
        self,
        package="optcheck.reference",
        name: str = NAME,
        numerics="faithful",
        perturbation=0.0,
        flush=None,
        variant=None,
        learning_rate_scale=1.0,
    ):
        """``numerics``: "faithful", "oracle" (float64) or "binary128"; a non-zero
        ``perturbation`` runs Monte Carlo arithmetic of that relative size, flushing
        magnitudes below ``flush`` to zero when given (error estimates of the
        conformance engine). ``variant`` (deviation diagnosis) changes the semantics:
        ``variant.profile(profile)`` and ``variant.spec(spec)`` give the ones to run.
        ``learning_rate_scale`` multiplies a schedule's values (the engine's learning-rate
        sensitivity run)."""
        self._package = importlib.import_module(package) if isinstance(package, str) else package
        self.name = name
        self.numerics = numerics
        self.perturbation = perturbation
        self.flush = flush
        self.variant = variant
        self.learning_rate_scale = learning_rate_scale

    def version(self) -> str:
        from optcheck import __version__

        return f"optcheck.reference {__version__}, numpy {np.__version__}"

    def capabilities(self) -> Capabilities:
        return Capabilities(
            optimizers=frozenset(self._package.optimizers.MODULES),
            features=frozenset(FEATURES),
            dtypes=frozenset(DTYPES),
            profiles=frozenset(PROFILES),
        )

    def open(self, scenario) -> ReferenceSession:
        return ReferenceSession(self._package, scenario, self.numerics, self.perturbation,
                                self.flush, self.variant, self.learning_rate_scale)  # fmt: skip


def factory() -> ReferenceAdapter:
    return ReferenceAdapter()


def version() -> str:
    return ReferenceAdapter().version()


def runner(spec, initial_values, steps, profile, options):
    """The golden-table runner: the variables after each step (see conformance.goldens)."""
    from optcheck.reference.run import run

    records = run(
        spec,
        initial_values,
        steps,
        profile=profile,
        names=options.get("names"),
        exclude_names=options.get("exclude_names"),
        exclude_indices=options.get("exclude_indices"),
    )
    return [record.variables for record in records]
