"""The ``jax`` adapter: optcheck's own JAX implementation (:mod:`.xla.jax_backend`).

PerReplica gradients are summed across devices: each replica's gradients live on its
own device of a mesh, and the sum is a ``psum`` inside ``shard_map`` (on a CPU-only
machine, ``XLA_FLAGS=--xla_force_host_platform_device_count=4`` gives four host
devices; :func:`factory` sets it when JAX is not imported yet). Without enough devices
the replicas are summed on one device, in order.
"""

from __future__ import annotations

import numpy as np

from optcheck.reference.optimizers import MODULES

from .base import DTYPES, FEATURES, PROFILES, Adapter, Capabilities, Observation, Session
from .xla import buckets, core

NAME = "jax"
#: Host devices requested for the replica sum (the scenarios use 2–3 replicas).
HOST_DEVICES = 4


def _ensure_host_devices():
    from .xla import set_xla_flags

    set_xla_flags(f"--xla_force_host_platform_device_count={HOST_DEVICES}")


class JaxSession(Session):
    """One scenario on the JAX backend. Except for Adafactor, the variables are held
    stacked in one bucketed array (:mod:`.xla.buckets`): the suite then compiles one
    program per case, not one per drawn shape."""

    def __init__(self, scenario):
        from optcheck.reference import optimizers

        from .xla import jax_backend as xj

        self._xj = xj
        self._scenario = scenario
        self._dtype = np.asarray(scenario.initial_values[0]).dtype
        self._stack = None
        if scenario.optimizer not in buckets.SHAPED:
            self._stack = buckets.Stack([np.shape(v) for v in scenario.initial_values])
        self._params = self._in(scenario.initial_values)
        self._count = int(scenario.iterations or 0)
        self._new_optimizer(optimizers.deserialize(scenario.spec(), profile=scenario.profile))
        self._lr = None

    # -- layout -------------------------------------------------------------------------
    def _in(self, arrays):
        """Host arrays (one per variable, None allowed when stacked) as the session
        holds them."""
        jnp = self._xj.jnp
        if self._stack is None:
            return [jnp.asarray(np.asarray(a)) for a in arrays]
        return [jnp.asarray(self._stack.pack(arrays, self._dtype))]

    def _out(self, arrays) -> list[np.ndarray]:
        if self._stack is None:
            return [np.asarray(a) for a in arrays]
        (stacked,) = arrays
        return self._stack.unpack(stacked)

    def _grads(self, gradients):
        from optcheck.reference.sparse import PerReplica

        replicas = {len(g.values) for g in gradients if isinstance(g, PerReplica)}
        if self._stack is None:
            return [
                None if g is None
                else tuple(self._in(g.values)) if isinstance(g, PerReplica)
                else self._in([g])[0]
                for g in gradients
            ], None  # fmt: skip
        live = [g is not None for g in gradients]
        masks = {"live": self._stack.mask(live)}
        s = self._scenario
        decay = [
            ok and core.decays(self._opt.reference, i, list(s.names), set(s.exclude_indices))
            for i, ok in enumerate(live)
        ]
        masks["decay"] = self._stack.mask(decay)
        if replicas:
            (n,) = replicas
            per = [self._in([None if g is None else g.values[r] for g in gradients])[0]
                   for r in range(n)]  # fmt: skip
            return [tuple(per)], masks
        return self._in(gradients), masks

    def _new_optimizer(self, reference):
        s = self._scenario
        if s.exclude_names:
            reference._exclude_from_weight_decay_names = list(s.exclude_names)
        # fuse_min_size=0: where the fusion is on, the suite's small variables take the
        # one-loop-per-variable trace that large ones take by default (the plain trace
        # computes the same values: tests/test_xla.py).
        self._opt = self._xj.Optimizer(reference, stacked=self._stack is not None,
                                       fuse_min_size=0)  # fmt: skip
        self._state = None

    def _build(self):
        if self._state is None:
            s = self._scenario
            self._state = self._opt.init(
                self._params, self._count, names=list(s.names), exclude=set(s.exclude_indices)
            )

    def _accumulation(self) -> int:
        return self._opt.reference.gradient_accumulation_steps or 0

    def observe(self) -> Observation:
        k = self._accumulation()
        slots = self._state["slots"]
        if self._stack is None:
            per_variable = [{n: np.asarray(a) for n, a in s.items()} for s in slots]
        else:
            (stacked,) = slots
            per_name = {n: self._stack.unpack(a) for n, a in stacked.items()}
            per_variable = [
                {n: rows[i] for n, rows in per_name.items()}
                for i in range(len(self._scenario.initial_values))
            ]
        return Observation(
            variables=self._out(self._params),
            iterations=self._count // k if k else self._count,
            learning_rate=None if self._lr is None else float(self._lr),
            slots=per_variable,
            applied=self._count if k else None,
        )

    # -- protocol -----------------------------------------------------------------------
    def step(self, gradients, skip_gradients_aggregation=False) -> Observation:
        self._build()
        grads, masks = self._grads(gradients)
        k = self._accumulation()
        if not k or (self._count + 1) % k == 0:
            self._lr = self._opt.learning_rate(self._count)
        self._params, self._state = self._opt.update(
            grads, self._state, self._params, count=self._count, masks=masks
        )
        self._count += 1
        return self.observe()

    def load(self, state: Observation) -> None:
        jnp = self._xj.jnp
        self._params = self._in([np.asarray(v).astype(self._dtype) for v in state.variables])
        self._count = state.iterations if state.applied is None else state.applied
        self._build()
        self._state["count"] = jnp.asarray(self._count, jnp.int64)
        if state.slots is None:
            return
        if self._stack is None:
            for mine, theirs in zip(self._state["slots"], state.slots, strict=True):
                for name, value in theirs.items():
                    if name in mine:
                        mine[name] = jnp.asarray(np.asarray(value).astype(mine[name].dtype))
            return
        (mine,) = self._state["slots"]
        for name in mine:
            values = [theirs.get(name) for theirs in state.slots]
            if all(v is not None for v in values):
                mine[name] = self._in([np.asarray(v).astype(self._dtype) for v in values])[0]

    def finalize(self) -> Observation:
        if self._opt.reference.use_ema:
            self._params = [s["average"] for s in self._state["slots"]]
        return self.observe()

    def round_trip(self) -> None:
        ref = self._opt.reference
        config = ref.get_config()
        self._new_optimizer(type(ref).from_config(config, profile=self._scenario.profile))
        self._count = 0


class JaxAdapter(Adapter):
    name = NAME

    def version(self) -> str:
        import jax

        return f"optcheck.adapters.xla.jax_backend, jax {jax.__version__} ({jax.default_backend()})"

    def availability(self):
        try:
            import jax  # noqa: F401
        except ImportError:
            return False, "jax is not installed (pip install 'optcheck[jax]')"
        return True, ""

    def capabilities(self) -> Capabilities:
        return Capabilities(
            optimizers=frozenset(MODULES),
            features=frozenset(FEATURES) - {"sparse"},
            dtypes=frozenset(DTYPES),
            profiles=frozenset(PROFILES),
            notes={"sparse": "JAX has no IndexedSlices: gradients are dense arrays"},
        )

    def open(self, scenario) -> JaxSession:
        return JaxSession(scenario)


def factory() -> JaxAdapter:
    _ensure_host_devices()
    return JaxAdapter()
