"""The ``tf`` adapter: optcheck's own TensorFlow implementation (:mod:`.xla.tf_backend`),
each apply step one ``tf.function(jit_compile=True)``, driven through the seed page's
``apply_gradients`` on ``tf.Variable``\\ s. Sparse gradients are ``tf.IndexedSlices``;
PerReplica gradients are summed in replica order inside the step (see
:mod:`.tf_mirrored` for ``tf.distribute.MirroredStrategy``)."""

from __future__ import annotations

import numpy as np

from optcheck.reference.optimizers import MODULES

from .base import DTYPES, FEATURES, PROFILES, Adapter, Capabilities, Observation, Session

NAME = "tf"


class TfSession(Session):
    def __init__(self, scenario, jit_compile=True):
        import tensorflow as tf

        from optcheck.reference import optimizers

        from .xla import tf_backend as xt

        self._tf, self._xt = tf, xt
        self._scenario = scenario
        self._jit = jit_compile
        self._variables = [
            tf.Variable(np.asarray(v), name=n)
            for v, n in zip(scenario.initial_values, scenario.names, strict=True)
        ]
        self._new_optimizer(optimizers.deserialize(scenario.spec(), profile=scenario.profile))
        if scenario.iterations:
            self._opt._iterations.assign(scenario.iterations)
            self._opt._count = scenario.iterations

    def _new_optimizer(self, reference):
        self._opt = self._xt.Optimizer(reference, jit_compile=self._jit)
        s = self._scenario
        if s.exclude_names or s.exclude_indices:
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

    def observe(self) -> Observation:
        opt = self._opt
        k = opt.reference.gradient_accumulation_steps or 0
        slots = [{n: s.numpy() for n, s in d.items()} for d in opt._slots] if opt._built else None
        return Observation(
            variables=[v.numpy() for v in self._variables],
            iterations=opt._count // k if k else opt._count,
            learning_rate=None if opt._lr is None else float(opt._lr),
            slots=slots,
            applied=opt._count if k else None,
        )

    def step(self, gradients, skip_gradients_aggregation=False) -> Observation:
        grads = [self._convert(g) for g in gradients]
        self._opt.apply_gradients(
            zip(grads, self._variables, strict=True),
            skip_gradients_aggregation=skip_gradients_aggregation,
        )
        return self.observe()

    def load(self, state: Observation) -> None:
        for v, value in zip(self._variables, state.variables, strict=True):
            v.assign(np.asarray(value).astype(v.dtype.as_numpy_dtype))
        opt = self._opt
        count = state.iterations if state.applied is None else state.applied
        opt._iterations.assign(count)
        opt._count = count
        if not opt._built:
            opt.build(self._variables)
        if state.slots is not None:
            for mine, theirs in zip(opt._slots, state.slots, strict=True):
                for name, value in theirs.items():
                    if name in mine:
                        mine[name].assign(np.asarray(value).astype(mine[name].dtype.as_numpy_dtype))

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
