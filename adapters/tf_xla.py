"""The ``tf`` adapter: optcheck's own TensorFlow implementation (:mod:`.xla.tf_backend`),
each apply step one ``tf.function(jit_compile=True)``, driven through the seed page's
``apply_gradients`` on ``tf.Variable``\\ s. Sparse gradients are ``tf.IndexedSlices``;
PerReplica gradients are summed in replica order inside the step (see
:mod:`.tf_mirrored` for ``tf.distribute.MirroredStrategy``)."""

from __future__ import annotations

import numpy as np

from optcheck.reference.optimizers import MODULES

from .base import DTYPES, FEATURES, PROFILES, Adapter, Capabilities, Observation, Session
from .xla import buckets, core

NAME = "tf"


class TfSession(Session):
    def __init__(self, scenario, jit_compile=True):
        import tensorflow as tf

        from optcheck.reference import optimizers

        from .xla import tf_backend as xt

        self._tf, self._xt = tf, xt
        self._scenario = scenario
        self._jit = jit_compile
        self._dtype = np.asarray(scenario.initial_values[0]).dtype
        self._stack = None
        if scenario.optimizer not in buckets.SHAPED and "sparse" not in scenario.needs:
            self._stack = buckets.Stack([np.shape(v) for v in scenario.initial_values])
            self._variables = [tf.Variable(self._stack.pack(scenario.initial_values, self._dtype))]
        else:
            self._variables = [
                tf.Variable(np.asarray(v), name=n)
                for v, n in zip(scenario.initial_values, scenario.names, strict=True)
            ]
        self._new_optimizer(optimizers.deserialize(scenario.spec(), profile=scenario.profile))
        if scenario.iterations:
            self._opt._iterations.assign(scenario.iterations)
            self._opt._count = scenario.iterations

    def _new_optimizer(self, reference):
        self._opt = self._xt.Optimizer(reference, self._jit, stacked=self._stack is not None)
        s = self._scenario
        if self._stack is not None:
            reference._exclude_from_weight_decay_names = list(s.exclude_names or [])
        elif s.exclude_names or s.exclude_indices:
            self._opt.exclude_from_weight_decay(
                var_list=[self._variables[i] for i in s.exclude_indices],
                var_names=s.exclude_names or None,
            )

    def _convert(self, g):
        from optcheck.reference.sparse import IndexedSlices, PerReplica

        tf = self._tf
        if g is None:
            return None
        if isinstance(g, PerReplica):
            return tuple(self._convert(r) for r in g.values)
        if isinstance(g, IndexedSlices):
            return tf.IndexedSlices(
                tf.constant(np.asarray(g.values)),
                tf.constant(np.asarray(g.indices, dtype=np.int64)),
                tf.constant(np.asarray(g.dense_shape, dtype=np.int64)),
            )
        return tf.constant(np.asarray(g))

    def _values(self, arrays) -> list[np.ndarray]:
        if self._stack is None:
            return [np.asarray(a) for a in arrays]
        (stacked,) = arrays
        return self._stack.unpack(np.asarray(stacked))

    def observe(self) -> Observation:
        opt = self._opt
        k = opt.reference.gradient_accumulation_steps or 0
        slots = None
        if opt._built and self._stack is None:
            slots = [{n: s.numpy() for n, s in d.items()} for d in opt._slots]
        elif opt._built:
            (stacked,) = opt._slots
            per_name = {n: self._stack.unpack(s.numpy()) for n, s in stacked.items()}
            slots = [
                {n: rows[i] for n, rows in per_name.items()}
                for i in range(len(self._scenario.initial_values))
            ]
        return Observation(
            variables=self._values([v.numpy() for v in self._variables]),
            iterations=opt._count // k if k else opt._count,
            learning_rate=None if opt._lr is None else float(opt._lr),
            slots=slots,
            applied=opt._count if k else None,
        )

    def step(self, gradients, skip_gradients_aggregation=False) -> Observation:
        from optcheck.reference.sparse import PerReplica

        if self._stack is None:
            grads, masks = [self._convert(g) for g in gradients], None
        else:
            grads, masks = self._stacked(gradients, PerReplica)
        self._opt.apply_gradients(
            zip(grads, self._variables, strict=True),
            skip_gradients_aggregation=skip_gradients_aggregation,
            masks=masks,
        )
        return self.observe()

    def _stacked(self, gradients, per_replica_type):
        tf, stack, s = self._tf, self._stack, self._scenario
        live = [g is not None for g in gradients]
        reference = self._opt.reference
        decay = [
            ok and core.decays(reference, i, list(s.names), set(s.exclude_indices))
            for i, ok in enumerate(live)
        ]
        masks = {"live": stack.mask(live), "decay": stack.mask(decay)}
        replicas = {len(g.values) for g in gradients if isinstance(g, per_replica_type)}
        if replicas:
            (n,) = replicas
            parts = [
                tf.constant(stack.pack([g and g.values[r] for g in gradients], self._dtype))
                for r in range(n)
            ]
            return [tuple(parts)], masks
        return [tf.constant(stack.pack(gradients, self._dtype))], masks

    def _pack(self, arrays) -> list[np.ndarray]:
        arrays = [np.asarray(a).astype(self._dtype) for a in arrays]
        return arrays if self._stack is None else [self._stack.pack(arrays, self._dtype)]

    def load(self, state: Observation) -> None:
        for v, value in zip(self._variables, self._pack(state.variables), strict=True):
            v.assign(value)
        opt = self._opt
        count = state.iterations if state.applied is None else state.applied
        opt._iterations.assign(count)
        opt._count = count
        if not opt._built:
            opt.build(self._variables)
        if state.slots is None:
            return
        if self._stack is None:
            for mine, theirs in zip(opt._slots, state.slots, strict=True):
                for name, value in theirs.items():
                    if name in mine:
                        mine[name].assign(np.asarray(value).astype(mine[name].dtype.as_numpy_dtype))
            return
        (mine,) = opt._slots
        for name, variable in mine.items():
            values = [theirs.get(name) for theirs in state.slots]
            if all(v is not None for v in values):
                variable.assign(self._pack(values)[0])

    def finalize(self) -> Observation:
        self._opt.finalize_variable_values(self._variables)
        return self.observe()

    def round_trip(self) -> None:
        ref = self._opt.reference
        self._new_optimizer(type(ref).from_config(ref.get_config(), profile=self._scenario.profile))


class TfAdapter(Adapter):
    name = NAME
    jit_compile = True

    def version(self) -> str:
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        where = "gpu" if gpus else "cpu"
        return f"optcheck.adapters.xla.tf_backend, tensorflow {tf.__version__} ({where})"

    def availability(self):
        try:
            import tensorflow  # noqa: F401
        except ImportError:
            return False, "tensorflow is not installed (pip install 'optcheck[tf]')"
        return True, ""

    def capabilities(self) -> Capabilities:
        return Capabilities(
            optimizers=frozenset(MODULES),
            features=frozenset(FEATURES),
            dtypes=frozenset(DTYPES),
            profiles=frozenset(PROFILES),
        )

    def open(self, scenario) -> TfSession:
        return TfSession(scenario, jit_compile=self.jit_compile)


def factory() -> TfAdapter:
    return TfAdapter()
