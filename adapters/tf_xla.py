"""The ``tf`` adapter: optcheck's own TensorFlow implementation (:mod:`.xla.tf_backend`),
each apply step one ``tf.function(jit_compile=True)``, driven through the seed page's
``apply_gradients`` on ``tf.Variable``\\ s. Sparse gradients are ``tf.IndexedSlices``.

Scenarios with PerReplica gradients, and those that skip aggregation, run under a
``tf.distribute.MirroredStrategy`` over logical CPU devices: variables and optimizer
created in its scope, ``strategy.run`` of ``apply_gradients`` with replica r's part
of each gradient (with skip_gradients_aggregation, every replica the same plain
gradients), the sum an all-reduce. :func:`factory` splits the host CPU into
:data:`HOST_DEVICES` logical devices when TensorFlow is not initialised yet; with
fewer devices than a scenario has replicas, its replicas are summed in replica order
inside the one compiled step, without a strategy. Observations are each variable's
value on the first device, after checking that every device holds the same bits.
"""

from __future__ import annotations

import contextlib
import functools

import numpy as np

from optcheck.reference.optimizers import MODULES

from .base import DTYPES, FEATURES, PROFILES, Adapter, Capabilities, Observation, Session
from .xla import buckets, core

NAME = "tf"
#: Logical CPU devices requested for MirroredStrategy (the scenarios use 2–3 replicas).
HOST_DEVICES = 4


def tf_gradient(tf, g):
    """One gradient as TensorFlow takes it: None, ``tf.IndexedSlices`` for the
    reference's IndexedSlices (int64 indices), a constant tensor otherwise."""
    from optcheck.reference.sparse import IndexedSlices

    if g is None:
        return None
    if isinstance(g, IndexedSlices):
        return tf.IndexedSlices(
            tf.constant(np.asarray(g.values)),
            tf.constant(np.asarray(g.indices, dtype=np.int64)),
            tf.constant(np.asarray(g.dense_shape, dtype=np.int64)),
        )
    return tf.constant(np.asarray(g))


def ensure_host_devices():
    """Split the host CPU into :data:`HOST_DEVICES` logical devices; only possible
    before TensorFlow initialises its runtime (afterwards: left as it is)."""
    try:
        import tensorflow as tf
    except ImportError:
        return
    cpus = tf.config.list_physical_devices("CPU")
    if not cpus or tf.config.get_logical_device_configuration(cpus[0]):
        return
    with contextlib.suppress(RuntimeError):  # already initialised
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration()] * HOST_DEVICES
        )


@functools.cache
def _strategy(replicas: int):
    """A MirroredStrategy over ``replicas`` logical CPU devices, or None without them.

    Its all-reduce reduces to one device (adding in replica order, as the golden), not
    the CPU default, a collective ring: each strategy numbers its collective groups
    from 1, so a 2- and a 3-replica strategy in one process collide ("joining a group
    with size 3, but that group has size 2")."""
    import tensorflow as tf

    devices = tf.config.list_logical_devices("CPU")
    if replicas < 2 or len(devices) < replicas:
        return None
    return tf.distribute.MirroredStrategy(
        [d.name for d in devices[:replicas]],
        cross_device_ops=tf.distribute.ReductionToOneDevice(),
    )


def _replicas(scenario) -> int:
    """Replicas to run ``scenario`` on: its PerReplica count, 2 when it skips aggregation
    (each replica applies the same plain gradients), else 0."""
    from optcheck.reference.sparse import PerReplica

    counts = {len(g.values) for step in scenario.steps for g in step if isinstance(g, PerReplica)}
    if counts:
        return max(counts)
    return 2 if scenario.skip_gradients_aggregation else 0


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
        self._strategy = _strategy(_replicas(scenario))
        with self._scope():
            if scenario.optimizer not in buckets.SHAPED and "sparse" not in scenario.needs:
                self._stack = buckets.Stack([np.shape(v) for v in scenario.initial_values])
                packed = self._stack.pack(scenario.initial_values, self._dtype)
                self._variables = [tf.Variable(packed)]
            else:
                self._variables = [
                    tf.Variable(np.asarray(v), name=n)
                    for v, n in zip(scenario.initial_values, scenario.names, strict=True)
                ]
        self._new_optimizer(optimizers.deserialize(scenario.spec(), profile=scenario.profile))
        if scenario.iterations:
            self._opt._iterations.assign(scenario.iterations)
            self._opt._count = scenario.iterations

    def _scope(self):
        return contextlib.nullcontext() if self._strategy is None else self._strategy.scope()

    def _new_optimizer(self, reference):
        with self._scope():
            # fuse_min_size=0: see jax_xla (the suite's variables are small).
            self._opt = self._xt.Optimizer(
                reference, self._jit, stacked=self._stack is not None, fuse_min_size=0
            )
        s = self._scenario
        if self._stack is not None:
            reference._exclude_from_weight_decay_names = list(s.exclude_names or [])
        elif s.exclude_names or s.exclude_indices:
            self._opt.exclude_from_weight_decay(
                var_list=[self._variables[i] for i in s.exclude_indices],
                var_names=s.exclude_names or None,
            )

    def _convert(self, g):
        from optcheck.reference.sparse import PerReplica

        if isinstance(g, PerReplica):
            return tuple(self._convert(r) for r in g.values)
        return tf_gradient(self._tf, g)

    def _values(self, arrays) -> list[np.ndarray]:
        if self._stack is None:
            return [np.asarray(a) for a in arrays]
        (stacked,) = arrays
        return self._stack.unpack(np.asarray(stacked))

    def _read(self, variable) -> np.ndarray:
        """The value of ``variable``; under the strategy, the same bits on every device."""
        if self._strategy is None:
            return variable.numpy()
        first, *rest = [c.numpy() for c in self._strategy.experimental_local_results(variable)]
        if any(other.tobytes() != first.tobytes() for other in rest):
            raise RuntimeError(f"The replicas' copies of {variable.name} differ.")
        return first

    def observe(self) -> Observation:
        opt = self._opt
        k = opt.reference.gradient_accumulation_steps or 0
        slots = None
        if opt._built and self._stack is None:
            slots = [{n: self._read(s) for n, s in d.items()} for d in opt._slots]
        elif opt._built:
            (stacked,) = opt._slots
            per_name = {n: self._stack.unpack(self._read(s)) for n, s in stacked.items()}
            slots = [
                {n: rows[i] for n, rows in per_name.items()}
                for i in range(len(self._scenario.initial_values))
            ]
        return Observation(
            variables=self._values([self._read(v) for v in self._variables]),
            iterations=opt._count // k if k else opt._count,
            learning_rate=None if opt._lr is None else float(opt._lr),
            slots=slots,
            applied=opt._count if k else None,
        )

    def step(self, gradients, skip_gradients_aggregation=False) -> Observation:
        from optcheck.reference.sparse import PerReplica

        masks = None
        if self._stack is not None:
            gradients, masks = self._stacked(gradients, PerReplica)
        if self._strategy is None:
            self._apply([self._convert(g) for g in gradients], skip_gradients_aggregation, masks)
            return self.observe()
        n = self._strategy.num_replicas_in_sync
        parts = [[g.values[r] if isinstance(g, PerReplica) else g for g in gradients]
                 for r in range(n)]  # fmt: skip

        def replica_step():
            # The replica's gradients are made on its device (the replica context's).
            r = int(self._tf.distribute.get_replica_context().replica_id_in_sync_group)
            self._apply([self._convert(g) for g in parts[r]], skip_gradients_aggregation, masks)

        self._strategy.run(replica_step)
        return self.observe()

    def _apply(self, grads, skip_gradients_aggregation, masks):
        self._opt.apply_gradients(
            zip(grads, self._variables, strict=True),
            skip_gradients_aggregation=skip_gradients_aggregation,
            masks=masks,
        )

    def _stacked(self, gradients, per_replica_type):
        """The gradients packed as the stack's one (with PerReplica: per replica), and
        the row masks."""
        stack, s = self._stack, self._scenario
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
            parts = [stack.pack([g and g.values[r] for g in gradients], self._dtype)
                     for r in range(n)]  # fmt: skip
            return [per_replica_type(tuple(parts))], masks
        return [stack.pack(gradients, self._dtype)], masks

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
            with self._scope():
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
        cpus = len(tf.config.list_logical_devices("CPU"))
        return (
            f"optcheck.adapters.xla.tf_backend, tensorflow {tf.__version__} ({where}; "
            f"MirroredStrategy over up to {cpus} logical CPU devices)"
        )

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
    ensure_host_devices()
    return TfAdapter()
