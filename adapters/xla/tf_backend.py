"""The golden semantics in TensorFlow: an optimizer on ``tf.Variable``\\ s whose whole
apply step is one XLA program.

::

    from optcheck.adapters.xla import tf_backend as xt

    opt = xt.Optimizer.from_spec({"class_name": "Adam", "config": {"learning_rate": 1e-3}})
    opt.apply_gradients(zip(grads, variables))     # grads: tensors, IndexedSlices or None

The seed page's API: ``apply_gradients`` (with ``skip_gradients_aggregation``),
``minimize``, ``build``, ``iterations``, ``learning_rate``, ``variables``,
``get_slot``, ``exclude_from_weight_decay``, ``finalize_variable_values``,
``get_config`` / ``from_config``. Argument checking, configuration and schedules are
the reference optimizer's (:attr:`Optimizer.reference`); the step — clipping, sparse
deduplication, weight decay, the update of every variable, EMA and the counter — is
one ``tf.function(jit_compile=True)`` (not one XLA cluster per variable as tf-keras
does). ``jit_compile=False`` runs the same function as a plain graph.

The program is traced once per structure (which gradients are None or sparse, their
shapes, the accumulation phase, the masks) into a concrete function whose inputs are
tensors only — the learning rate, the gradients' tensors, a stack's masks — so a
step converts no Python structure: the variables, slots and hyper-parameters (float64
tensors made at build) are captured, and the learning rate (in its dtype) is remade
only when its value changes. One compilation serves every hyper-parameter value. A
schedule's value is the reference schedule's at the current step, computed on the
host.

Inside XLA, repeated sparse indices are summed into their first occurrence with an
``n × n`` comparison (XLA needs static shapes; ``tf.unique`` has none), and later
occurrences carry zero rows, which the scatter-adds leave unchanged.

On a machine with a GPU, TensorFlow places variables and the program there.

Under ``tf.distribute.MirroredStrategy`` — the optimizer and the variables created in
``strategy.scope()``, ``apply_gradients`` called in ``strategy.run`` with each
replica's gradients — each replica runs the profile's gradient-only stages before
aggregation on its own gradients (one compiled program), the gradients are summed
by ``ReplicaContext.all_reduce(SUM)`` (IndexedSlices concatenated in replica order,
as the golden's ``aggregate_gradients``), and in a ``merge_call`` the compiled step
runs once per device on that device's components of the variables, through
``strategy.extended.update`` (tf-keras's own path). A merge rather than each replica
writing its own components: the host-side state (the step count, a schedule's
learning rate) advances once per step, and a mirrored variable refuses a plain
``assign`` in a replica context. With ``skip_gradients_aggregation=True`` (or
one replica) there is no all-reduce: each device's components take the whole step
with that replica's gradients, as tf-keras applies them. ``apply_gradients`` in the
cross-replica context (the seed page's example: gradients reduced by the caller)
applies the given gradients to every device's components. ``apply_gradients`` runs
eagerly (``strategy.run`` from Python): the learning rate and the step count are
host values.
"""

from __future__ import annotations

import functools
import warnings

from . import set_xla_flags

set_xla_flags()
import tensorflow as tf  # noqa: E402

from optcheck.reference import optimizers as reference_optimizers  # noqa: E402

from . import core  # noqa: E402
from .ops import TfOps, fuses_siblings, sibling_probe  # noqa: E402


class XlaTfOps(TfOps):
    """For programs compiled by XLA: ``unique_sum`` with static shapes, and the
    optimization barrier of the one-loop-per-variable step."""

    @functools.cached_property
    def barrier(self):
        """``XlaOptimizationBarrier`` over a list, or None where XLA does not fuse
        sibling outputs (see :meth:`.ops.JaxOps.barrier`)."""
        with tf.init_scope():  # first read while a step is being traced
            x = tf.zeros((8, 128), tf.float32)
            probe = tf.function(sibling_probe, jit_compile=True, autograph=False)
            hlo = probe.experimental_get_compiler_ir(x, x)(stage="optimized_hlo")
        if not fuses_siblings(hlo):
            return None
        # Not in tf.raw_ops: the tf2xla module is where TensorFlow exposes it.
        from tensorflow.compiler.tf2xla.python import xla

        return lambda xs: list(xla.optimization_barrier(*xs))

    @property
    def unshare(self):
        """``XlaOptimizationBarrier`` over a list (see ``core.recomputed``)."""
        from tensorflow.compiler.tf2xla.python import xla

        return lambda xs: list(xla.optimization_barrier(*xs))

    def unique_sum(self, values, indices):
        tf = self.tf
        same = tf.equal(tf.expand_dims(indices, 1), tf.expand_dims(indices, 0))
        first = tf.argmax(tf.cast(same, tf.int32), axis=1, output_type=indices.dtype)
        summed = tf.math.unsorted_segment_sum(values, first, tf.size(indices))
        return summed, indices


OPS = {True: XlaTfOps(), False: TfOps()}


class Optimizer:
    """A reference optimizer's configuration, applied to ``tf.Variable``\\ s by one
    compiled program per step."""

    def __init__(
        self, reference, jit_compile: bool = True, stacked: bool = False, fuse_min_size=None
    ):
        self.reference = reference
        #: Variables of at least this many elements are updated in one loop each
        #: (default ``core.FUSE_MIN_SIZE``; 0: every variable).
        self.fuse_min_size = core.fuse_min_size_of(fuse_min_size)
        self.jit_compile = bool(jit_compile)
        #: One variable whose rows are the variables, with row masks (:mod:`.buckets`).
        self.stacked = stacked
        self._ops = OPS[self.jit_compile]
        #: The strategy in whose scope the optimizer was created (None: the default).
        self._strategy = tf.distribute.get_strategy() if tf.distribute.has_strategy() else None
        self._iterations = tf.Variable(
            int(reference.iterations.numpy()), dtype=tf.int64, trainable=False, name="iteration"
        )
        self._count = int(reference.iterations.numpy())
        self._built = False
        self._variables = []
        self._slots = []
        self._glob = {}
        self._functions = {}
        self._exclude_ids = set()
        self._lr = None
        #: The learning rate as the step's input, remade only when its value changes.
        self._lr_input = (None, None)
        #: Under a strategy: device -> that device's components of (variables, slots, glob,
        #: iterations).
        self._components = {}

    @classmethod
    def from_spec(cls, spec, profile="keras2", jit_compile=True) -> Optimizer:
        """From a Keras serialization dict ``{"class_name", "config"}``."""
        return cls(reference_optimizers.deserialize(spec, profile=profile), jit_compile)

    @classmethod
    def from_config(cls, config, class_name: str, profile="keras2", jit_compile=True):
        return cls.from_spec({"class_name": class_name, "config": config}, profile, jit_compile)

    def get_config(self) -> dict:
        return self.reference.get_config()

    # -- attributes ---------------------------------------------------------------------
    @property
    def iterations(self) -> tf.Variable:
        return self._iterations

    @property
    def learning_rate(self):
        """The learning rate of the last step (or of step 0 before any)."""
        return self._lr if self._lr is not None else self._learning_rate(self._count)

    @property
    def variables(self) -> list[tf.Variable]:
        out = [self._iterations]
        for slots in self._slots:
            out += list(slots.values())
        return out + list(self._glob.values())

    def get_slot(self, variable, name: str) -> tf.Variable:
        return self._slots[self._index(variable)][name]

    def exclude_from_weight_decay(self, var_list=None, var_names=None):
        if self._built:
            raise ValueError(
                "`exclude_from_weight_decay()` can only be configued before the optimizer is built."
            )
        self._exclude_ids = {id(v) for v in var_list or []}
        self.reference._exclude_from_weight_decay_names = list(var_names or [])

    # -- build --------------------------------------------------------------------------
    def build(self, var_list):
        if self._strategy is None:
            return self._build(list(var_list))
        if tf.distribute.in_cross_replica_context():
            with self._strategy.scope():
                return self._build(list(var_list))
        # Slots are created once, in the cross-replica context, as mirrored variables.
        return tf.distribute.get_replica_context().merge_call(
            lambda strategy: self.build(var_list) if not self._built else None
        )

    def _build(self, var_list):
        self._variables = var_list
        self._index_of = {id(v): i for i, v in enumerate(var_list)}
        dtypes = [v.dtype.name for v in var_list]
        self._options, hyper = core.plan(self.reference, dtypes)
        self._hyper = {k: tf.constant(v, tf.float64) for k, v in hyper.items()}
        names = [v.name.split(":")[0] for v in var_list]
        excluded = {i for i, v in enumerate(var_list) if id(v) in self._exclude_ids}
        if self.stacked:  # rows to decay come in the traced mask
            self._decay = (self.reference.weight_decay is not None,)
        else:
            self._decay = tuple(
                core.decays(self.reference, i, names, excluded) for i in range(len(var_list))
            )
        static = self._static(["dense"] * len(var_list), 0)
        values = [v.read_value() for v in var_list]
        slots, glob = core.initial_slots(self._ops, static, self._hyper, values)
        self._slots = [
            {n: tf.Variable(a, trainable=False, name=f"{n}/{names[i]}") for n, a in s.items()}
            for i, s in enumerate(slots)
        ]
        self._glob = {n: tf.Variable(a, trainable=False, name=n) for n, a in glob.items()}
        if self._strategy is not None:
            self._components = self._local_components()
        self._built = True

    def _local_components(self):
        local = self._strategy.experimental_local_results
        devices = [c.device for c in local(self._iterations)]

        def per_device(variable):
            components = local(variable)
            if [c.device for c in components] != devices:
                raise ValueError(
                    f"Variable {variable.name} is not mirrored on the devices of the "
                    "optimizer's strategy: create it in the same `strategy.scope()`."
                )
            return components

        variables = [per_device(v) for v in self._variables]
        slots = [{n: per_device(s) for n, s in d.items()} for d in self._slots]
        glob = {n: per_device(g) for n, g in self._glob.items()}
        iterations = local(self._iterations)
        return {
            device: (
                [v[i] for v in variables],
                [{n: s[i] for n, s in d.items()} for d in slots],
                {n: g[i] for n, g in glob.items()},
                iterations[i],
            )
            for i, device in enumerate(devices)
        }

    def _index(self, variable) -> int:
        try:
            return self._index_of[id(variable)]
        except (AttributeError, KeyError):
            raise KeyError(
                f"The optimizer cannot recognize variable {variable.name}: it was built "
                "with other variables."
            ) from None

    def _static(self, kinds, count, replicas=0) -> core.Static:
        return core.make_static(
            self._options, self._decay, kinds, count, replicas, stacked=self.stacked,
            fuse_min_size=self.fuse_min_size,
        )  # fmt: skip

    def _learning_rate(self, count: int):
        return core.learning_rate(self.reference, count)

    # -- apply --------------------------------------------------------------------------
    def minimize(self, loss, var_list, tape=None):
        """``apply_gradients`` of the gradients of ``loss`` (a callable, or a tensor
        recorded by ``tape``)."""
        if tape is None:
            if not callable(loss):
                raise ValueError("`tape` is required when a `Tensor` loss is passed.")
            with tf.GradientTape() as tape:
                value = loss()
        else:
            value = loss
        var_list = list(var_list() if callable(var_list) else var_list)
        grads = tape.gradient(value, var_list)
        return self.apply_gradients(zip(grads, var_list, strict=True))

    def apply_gradients(self, grads_and_vars, skip_gradients_aggregation=False, masks=None):
        """One step on every variable; returns ``iterations``. A gradient may be a
        tensor, a ``tf.IndexedSlices``, None, or a tuple of per-replica values (summed
        unless ``skip_gradients_aggregation``). In ``strategy.run``, each replica's own
        gradients, all-reduced unless ``skip_gradients_aggregation``. ``masks``: the
        row masks of a stacked optimizer."""
        pairs = [tuple(p) for p in grads_and_vars]
        if not pairs:
            return self._iterations
        if all(g is None for g, _ in pairs):
            raise ValueError(
                f"No gradients provided for any variable: {[v.name for _, v in pairs]}."
            )
        in_replica = tf.distribute.has_strategy() and not tf.distribute.in_cross_replica_context()
        if in_replica and self._strategy is not tf.distribute.get_strategy():
            raise ValueError(
                "apply_gradients in a replica context of a strategy the optimizer was not "
                "created under: create it in `strategy.scope()`."
            )
        if not self._built:
            self.build([v for _, v in pairs])
        missing = [v.name for g, v in pairs if g is None]
        if missing:
            warnings.warn(
                f"Gradients do not exist for variables {missing} when minimizing the loss.",
                UserWarning,
                stacklevel=2,
            )
        grads = [None] * len(self._variables)
        for g, v in pairs:
            if isinstance(g, tuple):
                if skip_gradients_aggregation:
                    raise TypeError("Per-replica gradients cannot skip aggregation.")
                if in_replica:
                    raise TypeError("In a replica context, each replica passes its own gradients.")
                g = tuple(_checked(_convert(r), v) for r in g)
            elif g is not None:
                g = _checked(_convert(g), v)
            grads[self._index(v)] = g
        if not in_replica:
            self._apply(grads, masks)
            return self._iterations
        kinds = [_kind(e) for e in _flatten(grads)[1]]
        static = self._static(kinds, self._count)
        context = tf.distribute.get_replica_context()
        aggregated = not skip_gradients_aggregation and context.num_replicas_in_sync > 1
        if aggregated:
            if static.accumulation:
                raise NotImplementedError(
                    "Gradient accumulation with several replicas is outside the reference's scope."
                )
            if core.split_pipeline(static.profile)[0]:
                live = self._replica_function(static)(grads, self._hyper)
            else:
                live = [g for g in grads if g is not None]
            live = iter(context.all_reduce(tf.distribute.ReduceOp.SUM, live))
            grads = [None if kind is None else next(live) for kind in kinds]
        context.merge_call(
            lambda strategy, grads: self._apply(grads, masks, aggregated), args=(grads,)
        )
        return self._iterations

    def _apply(self, grads, masks, aggregated=False):
        """The host side of one step (the learning rate, the count) and the compiled
        step: on the variables, or on each device's components of mirrored ones."""
        k = self._options["accumulation"]
        update = not k or (self._count + 1) % k == 0
        if update:
            self._lr = self._learning_rate(self._count)
        lr = self._lr_tensor(self._lr if self._lr is not None else self._learning_rate(0))
        names = tuple(sorted(masks)) if masks else ()
        mask_values = [tf.constant(masks[n]) for n in names]
        if self._strategy is None:
            state = (self._variables, self._slots, self._glob, self._iterations)
            self._run(state, None, (update, aggregated, names), lr, grads, mask_values)
        else:

            def on_device(iterations, grads):
                device = iterations.device
                key = (update, aggregated, names)
                self._run(self._components[device], device, key, lr, grads, mask_values)

            self._strategy.extended.update(self._iterations, on_device, args=(grads,), group=False)
        self._count += 1

    def _lr_tensor(self, value):
        held, tensor = self._lr_input
        if held is None or held.dtype != value.dtype or held.tobytes() != value.tobytes():
            tensor = tf.constant(value)
            self._lr_input = (value, tensor)
        return tensor

    def _run(self, state, device, key, lr, grads, masks):
        """Call the compiled step on ``state`` — traced once per gradient layout, phase,
        masks and device, a concrete function whose inputs are only tensors: the learning
        rate, the gradients' tensors and the masks (state and hyper-parameters are
        captured)."""
        flat, layout = _flatten(grads)
        inputs = [lr, *flat, *masks]
        signature = (layout, tuple(t.dtype for t in flat), device, *key)
        call = self._functions.get(signature)
        if call is None:
            _, aggregated, names = key  # the phase: self._static reads it from the count
            call = self._functions[signature] = _flat_call(
                self._compile(state, layout, aggregated, names, inputs)
            )
        call(inputs)

    def _compile(self, state, layout, aggregated, names, inputs):
        """The step (``aggregated``: from aggregation on) as a concrete function of
        :meth:`_run`'s inputs."""
        variables, slots, glob, iterations = state
        kinds = [_kind(entry) for entry in layout]
        replicas = next((len(e[1]) for e in layout if e and e[0] == "replicas"), 0)
        static = self._static(kinds, self._count, replicas)
        ops, hyper = self._ops, self._hyper
        shapes = [tuple(v.shape) for v in variables]

        def apply(lr, *flat):
            tensors = iter(flat)
            grads = [_unflatten(e, tensors, shape) for e, shape in zip(layout, shapes, strict=True)]
            masks = dict(zip(names, tensors, strict=True)) or None
            params = [v.read_value() for v in variables]
            slot_values = [{n: s.read_value() for n, s in d.items()} for d in slots]
            glob_values = {n: g.read_value() for n, g in glob.items()}
            params, slot_values, glob_values = core.step(
                ops, static, hyper, lr, iterations.read_value(), params, slot_values,
                glob_values, grads, masks=masks, aggregated=aggregated,
            )  # fmt: skip
            for v, value, kind in zip(variables, params, static.kinds, strict=True):
                if kind is not None or static.use_ema:
                    v.assign(value)
            for d, values in zip(slots, slot_values, strict=True):
                for n, value in values.items():
                    d[n].assign(value)
            for n, value in glob_values.items():
                glob[n].assign(value)
            iterations.assign_add(1)

        fn = tf.function(apply, jit_compile=self.jit_compile, autograph=False)
        return fn.get_concrete_function(*inputs)

    def _replica_function(self, static):
        """One replica's stages before the all-reduce (:func:`core.replica_stages`),
        compiled: the live variables' gradients."""
        fn = self._functions.get((static, "replica"))
        if fn is None:
            ops, shapes = self._ops, [tuple(v.shape) for v in self._variables]

            def stages(grads, hyper):
                grads = [_sparse(g, shape) for g, shape in zip(grads, shapes, strict=True)]
                return [_slices(g) for g in core.replica_stages(ops, static, hyper, grads)]

            fn = tf.function(stages, jit_compile=self.jit_compile, autograph=False)
            self._functions[(static, "replica")] = fn
        return fn

    # -- EMA ----------------------------------------------------------------------------
    def finalize_variable_values(self, var_list):
        """With EMA, overwrite each variable with its moving average."""
        if not self.reference.use_ema:
            return
        for v in var_list:
            v.assign(self._slots[self._index(v)]["average"])


def _sparse(g, shape):
    """``tf.IndexedSlices`` (also per replica) as the core's :class:`~.core.Sparse` of a
    variable of ``shape``."""
    if isinstance(g, tuple):
        return tuple(_sparse(r, shape) for r in g)
    if isinstance(g, tf.IndexedSlices):
        return core.Sparse(g.values, g.indices, shape)
    return g


def _checked(g, v):
    """``g`` if it fits variable ``v`` (the reference's TypeError / ValueError, naming
    the variable, before any state changes; TensorFlow would fail inside the trace)."""
    values = g.values if isinstance(g, tf.IndexedSlices) else g
    if values.dtype != v.dtype:
        raise TypeError(
            f"The gradient of variable '{v.name}' has dtype {values.dtype.name} but the "
            f"variable is {v.dtype.name}."
        )
    if isinstance(g, tf.IndexedSlices):
        if tuple(values.shape[1:]) != tuple(v.shape[1:]):
            raise ValueError(
                f"The gradient of variable '{v.name}' has rows of shape "
                f"{tuple(values.shape[1:])} but the variable's rows have shape "
                f"{tuple(v.shape[1:])}."
            )
    elif tuple(values.shape) != tuple(v.shape):
        raise ValueError(
            f"The gradient of variable '{v.name}' has shape {tuple(values.shape)} but the "
            f"variable has shape {tuple(v.shape)}."
        )
    return g


def _flat_call(fn):
    """``fn``'s call on a list of tensors of the traced signature. Its public call binds
    and casts every input to the structured signature in Python (half a step's time
    with 1000 gradients); ``_call_flat`` with the captured variables taken once skips
    that, as Keras does. :meth:`Optimizer._run` keys functions by the inputs' shapes and
    dtypes, so the inputs match."""
    flat = getattr(fn, "_call_flat", None)
    if flat is None:  # a TensorFlow without it
        return lambda inputs: fn(*inputs)
    captured = fn.captured_inputs
    return lambda inputs: flat(inputs, captured)


def _convert(g):
    if isinstance(g, tf.Tensor):  # what convert_to_tensor returns, in a tenth of its time
        return g
    if isinstance(g, tf.IndexedSlices):
        return tf.IndexedSlices(g.values, tf.cast(g.indices, tf.int64), g.dense_shape)
    return tf.convert_to_tensor(g)


def _flatten(grads):
    """The gradients' tensors in order (IndexedSlices: values, indices; per-replica
    tuples: each replica's), and their layout, which shapes the program: per variable
    None, ``("dense", shape)``, ``("sparse", rows)`` or ``("replicas", (layouts…))``."""
    flat = []

    def entry(g):
        if isinstance(g, tf.IndexedSlices):
            flat.extend((g.values, g.indices))
            return ("sparse", g.values.shape[0])
        flat.append(g)
        return ("dense", tuple(g.shape))

    layout = tuple(
        None if g is None
        else ("replicas", tuple(entry(r) for r in g)) if isinstance(g, tuple)
        else entry(g)
        for g in grads
    )  # fmt: skip
    return flat, layout


def _unflatten(entry, tensors, shape):
    """One gradient of :func:`_flatten`'s ``layout`` from the iterator of its tensors,
    IndexedSlices as the core's :class:`~.core.Sparse` of a variable of ``shape``."""
    if entry is None:
        return None
    if entry[0] == "replicas":
        return tuple(_unflatten(e, tensors, shape) for e in entry[1])
    if entry[0] == "sparse":
        return core.Sparse(next(tensors), next(tensors), shape)
    return next(tensors)


def _kind(entry):
    if entry is None:
        return None
    return _kind(entry[1][0]) if entry[0] == "replicas" else entry[0]


def _slices(g):
    """The core's :class:`~.core.Sparse` as ``tf.IndexedSlices`` (for the all-reduce)."""
    if isinstance(g, core.Sparse):
        return tf.IndexedSlices(g.values, g.indices, tf.constant(g.shape, tf.int64))
    return g
