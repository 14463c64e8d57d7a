"""The golden semantics as one pure, compilable step function.

``step`` is the part of ``apply_gradients`` that runs on the device, in the profile's
stage order (:mod:`optcheck.reference.profiles`): loss-scale division, accumulation,
clipping, sparse handling, aggregation, weight decay, the optimizer's update, EMA and
its overwrite. Everything the reference decides on the host — which gradients are
None, which clipping transform runs, the learning rate of the step — arrives in
:class:`Static` (compile-time) or as traced scalars, so one compilation serves every
hyper-parameter value.

The arithmetic follows the reference module of each optimizer operation by operation,
with its casting rules: hyper-parameters arrive as float64 scalars; ``const`` rounds
one to a dtype once (a Python-float operand), ``cast_scalar`` goes via float32 when the
profile says TensorFlow's ``tf.cast`` does. XLA may still round differently (a division
rewritten as a multiplication by a reciprocal, a fused multiply-add, a reduction in
another order): the conformance tolerance bounds those like any other rounding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from optcheck.reference.profiles import get_profile

#: Numeric hyper-parameters read from a reference optimizer (traced, float64).
HYPER = (
    "beta_1", "beta_2", "epsilon", "momentum", "rho", "initial_accumulator_value",
    "learning_rate_power", "l1_regularization_strength", "l2_regularization_strength",
    "l2_shrinkage_regularization_strength", "beta", "beta_2_decay", "epsilon_1", "epsilon_2",
    "clip_threshold", "weight_decay", "ema_momentum", "loss_scale_factor",
)  # fmt: skip


#: Default :attr:`Static.fuse_min_size` (TensorFlow's; JAX has its own,
#: ``jax_backend.FUSE_MIN_SIZE``): 2¹⁴ elements (64 KiB of float32). Below it a
#: variable's arrays sit in the cache, a step costs its per-array overhead rather than
#: its bandwidth, and each copy of the tail would only add tracing and compile time
#: (1000 variables of 10⁴ elements: TensorFlow's compilation 48 s → 140 s, no faster).
FUSE_MIN_SIZE = 1 << 14


@dataclass(frozen=True)
class Sparse:
    """An IndexedSlices gradient: rows ``values`` at ``indices`` of a ``shape`` tensor."""

    values: object
    indices: object
    shape: tuple


@dataclass(frozen=True)
class Static:
    """What shapes the compiled program (hashable: a compilation-cache key)."""

    optimizer: str
    profile: str
    #: Optimizer options that change the program: amsgrad, nesterov, centered, …
    options: tuple = ()
    #: "norm", "global", "value" or None: the one clipping transform that runs.
    clip: str | None = None
    loss_scale: bool = False
    accumulation: int = 0
    #: "update", or "micro" for a Keras 3 accumulation step that only accumulates.
    phase: str = "update"
    use_ema: bool = False
    ema_frequency: int = 0
    #: Per variable: weight decay applies.
    decay: tuple = ()
    #: Per variable: "dense", "sparse" or None (no gradient this step).
    kinds: tuple = ()
    #: Replicas of PerReplica gradients (0: plain gradients).
    replicas: int = 0
    lr_dtype: str = "float32"
    #: Nadam: the dtype of the momentum product Π (its first variable's).
    product_dtype: str | None = None
    #: The variables are the rows of one padded ``[V, L]`` array, with traced row masks
    #: ``live`` (gradient present) and ``decay`` (see :mod:`.buckets`).
    stacked: bool = False
    #: Variables of at least this many elements get one loop each (``_fused_tail``).
    fuse_min_size: int = FUSE_MIN_SIZE

    def option(self, name, default=None):
        return dict(self.options).get(name, default)


def plan(optimizer, variable_dtypes) -> tuple[dict, dict]:
    """Static options and traced hyper-parameters of a reference optimizer.

    Returns ``(options, hyper)``: the keyword arguments of :class:`Static` that depend
    only on the optimizer's configuration, and ``{name: float}``.
    """
    from optcheck.reference.schedules import LearningRateSchedule
    from optcheck.reference.variable import Variable

    name = type(optimizer).__name__
    profile = optimizer.profile
    hyper = {k: float(getattr(optimizer, k)) for k in HYPER if _number(getattr(optimizer, k, None))}
    options = []
    if name in ("Adam", "AdamW"):
        options.append(("amsgrad", bool(optimizer.amsgrad)))
    if name == "SGD":
        options.append(("nesterov", bool(optimizer.nesterov)))
        options.append(("slot", optimizer.momentum != 0 or not profile.strict_hyperparameters))
    if name == "RMSprop":
        options += [("centered", bool(optimizer.centered)), ("momentum", optimizer.momentum > 0)]
    if name == "Adafactor":
        lr_variable = isinstance(optimizer._learning_rate, Variable)
        options.append(("relative_step", bool(optimizer.relative_step) and lr_variable))
    if name == "Ftrl":
        # The default power: n^0.5 as sqrt, within an ulp of pow and, on XLA:CPU, a
        # vector instruction rather than a scalar libm call per element.
        options.append(("sqrt_power", optimizer.learning_rate_power == -0.5))
    clip = None
    if optimizer.clipnorm and optimizer.clipnorm > 0:
        clip, hyper["clip"] = "norm", float(optimizer.clipnorm)
    elif optimizer.global_clipnorm and optimizer.global_clipnorm > 0:
        clip, hyper["clip"] = "global", float(optimizer.global_clipnorm)
    elif optimizer.clipvalue and optimizer.clipvalue > 0:
        clip, hyper["clip"] = "value", float(optimizer.clipvalue)
    if optimizer.weight_decay is None:
        hyper.pop("weight_decay", None)
    lr = optimizer._learning_rate
    if isinstance(lr, LearningRateSchedule):
        import numpy as np

        lr_dtype = _dtype_name(np.asarray(lr(0)).dtype)
    else:
        lr_dtype = "float32"
    frequency = optimizer.ema_overwrite_frequency if optimizer.use_ema else None
    static = {
        "optimizer": name,
        "profile": profile.name,
        "options": tuple(options),
        "clip": clip,
        "loss_scale": optimizer.loss_scale_factor is not None,
        "accumulation": optimizer.gradient_accumulation_steps or 0,
        "use_ema": bool(optimizer.use_ema),
        "ema_frequency": int(frequency or 0),
        "lr_dtype": lr_dtype,
        "product_dtype": variable_dtypes[0] if name == "Nadam" and variable_dtypes else None,
    }
    return static, hyper


def make_static(
    options, decay, kinds, count, replicas=0, stacked=False, fuse_min_size=None
) -> Static:
    """The :class:`Static` of one step: ``options`` from :func:`plan`, and what this
    step's gradients and raw step ``count`` decide (a Keras 3 accumulation micro-step)."""
    k = options["accumulation"]
    phase = "update" if not k or (count + 1) % k == 0 else "micro"
    return Static(
        **options, decay=tuple(decay), kinds=tuple(kinds), replicas=replicas, phase=phase,
        stacked=stacked, fuse_min_size=fuse_min_size_of(fuse_min_size),
    )  # fmt: skip


def learning_rate(optimizer, count: int):
    """The learning rate of step ``count`` as the reference holds it (a schedule's value
    in its dtype, otherwise the float32 variable), evaluated on the host."""
    import numpy as np

    from optcheck.reference.schedules import LearningRateSchedule

    lr = optimizer._learning_rate
    if isinstance(lr, LearningRateSchedule):
        return np.asarray(lr(np.asarray(count, np.int64)))
    if callable(lr) and not hasattr(lr, "numpy"):
        return np.asarray(lr(), np.float32)
    return np.asarray(lr.numpy(), np.float32)


def decays(optimizer, index, names=None, exclude=()) -> bool:
    """Whether weight decay applies to variable ``index`` (named ``names[index]``):
    not excluded by index, nor by one of the optimizer's name patterns."""
    import re

    if optimizer.weight_decay is None or index in exclude:
        return False
    patterns = optimizer._exclude_from_weight_decay_names
    name = None if names is None else names[index]
    return name is None or not any(re.search(p, name) for p in patterns)


def _number(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _dtype_name(dtype) -> str:
    return "bfloat16" if str(dtype) == "bfloat16" else str(dtype)


@dataclass
class Context:
    """What an update rule reads: the namespace, profile, hyper-parameters, step."""

    ops: object
    static: Static
    hyper: dict
    lr: object
    count: object
    masks: dict | None = None
    profile: object = field(init=False)

    def __post_init__(self):
        self.profile = get_profile(self.static.profile)

    @property
    def update_count(self):
        """Updates completed before this one (Keras 3 accumulation counts micro-steps)."""
        k = self.static.accumulation
        return self.count // k if k else self.count

    def const(self, value, dtype):
        """A Python-float operand (a hyper-parameter expression or a literal): one rounding."""
        if isinstance(value, int | float):
            return self.ops.constant(value, dtype)
        return self.ops.cast(value, dtype)

    def cast_scalar(self, value, dtype):
        """``tf.cast`` / ``ops.cast`` of a Python hyper-parameter, per the profile."""
        if self.profile.python_scalar_cast == "via_float32":
            return self.ops.cast(self.const(value, "float32"), dtype)
        return self.const(value, dtype)

    def h(self, name):
        return self.hyper[name]

    def lr_for(self, dtype):
        return self.ops.cast(self.lr, dtype)

    def local_step(self, dtype):
        return self.ops.cast(self.update_count + 1, dtype)


# ---------------------------------------------------------------------------------------
# gradient stages
# ---------------------------------------------------------------------------------------
def _values(g):
    return g.values if isinstance(g, Sparse) else g


def _rewrap(g, values):
    return Sparse(values, g.indices, g.shape) if isinstance(g, Sparse) else values


# A gradient stage is ``stage(ctx, values) -> maps``: it takes whatever reductions it
# needs of the gradients' values and returns one element-wise function per gradient.
# Applied at once (``Flow.transform``) or, in the one-loop-per-variable step, composed
# and applied inside each variable's loop (``_fused_tail``): the same operations.
def unscale(ctx, values):
    """``g / loss_scale_factor`` (Keras 3), values of sparse gradients included."""
    ops = ctx.ops
    return [lambda t: t / ctx.const(ctx.h("loss_scale_factor"), ops.dtype(t))] * len(values)


def clip(ctx, values):
    """The profile's clipping (reference ``clipping``): exactly one transform."""
    ops, kind = ctx.ops, ctx.static.clip
    if kind == "norm":

        def by_norm(v):
            c = ctx.const(ctx.h("clip"), ops.dtype(v))
            axis = -1 if ctx.static.stacked else None  # per row of a stack
            l2sum = ops.sum(v * v, axis=axis, keepdims=True)
            positive = l2sum > ops.zeros_like(l2sum)
            safe = ops.where(positive, l2sum, ops.constant(1, ops.dtype(v)))
            l2norm = ops.where(positive, ops.sqrt(safe), l2sum)
            return lambda t: _by_broadcast(ops, t * c, ops.maximum(l2norm, c))

        return [by_norm(v) for v in values]
    if kind == "value":

        def by_value(t):
            cv = ctx.const(ctx.h("clip"), ops.dtype(t))
            return ops.maximum(ops.minimum(t, cv), -cv)

        return [by_value] * len(values)
    if kind == "global":
        return _clip_by_global_norm(ctx, values)
    return [_identity] * len(values)


def _identity(t):
    return t


def _clip_by_global_norm(ctx, values):
    ops = ctx.ops
    kinds = {ops.dtype(v) for v in values}
    dtype = kinds.pop() if len(kinds) == 1 else ("float64" if "float64" in kinds else "float32")
    if ctx.profile.global_norm_form == "half_squared":
        halves = [ops.cast(ops.sum(v * v) / ops.constant(2, ops.dtype(v)), dtype) for v in values]
        norm = ops.sqrt(_add_all(halves) * ops.constant(2, dtype))
    else:
        norm = ops.sqrt(_add_all([ops.cast(ops.sum(v * v), dtype) for v in values]))
    c = ctx.const(ctx.h("clip"), dtype)
    one = ops.constant(1, dtype)
    scale = c * ops.minimum(one / norm, one / c) + (norm - norm)
    return [lambda t: t * ops.cast(scale, ops.dtype(t))] * len(values)


def _add_all(xs):
    total = xs[0]
    for x in xs[1:]:
        total = total + x
    return total


def sparse(ctx, grads):
    """keras2: sum repeated rows (the optimizers' sparse paths follow); keras3: densify."""
    ops = ctx.ops
    out = []
    for g in grads:
        if not isinstance(g, Sparse):
            out.append(g)
        elif ctx.profile.sparse_gradients == "deduplicate":
            values, indices = ops.unique_sum(g.values, g.indices)
            out.append(Sparse(values, indices, g.shape))
        else:
            out.append(ops.to_dense(g.values, g.indices, g.shape))
    return out


def to_dense(ctx, g):
    return ctx.ops.to_dense(g.values, g.indices, g.shape) if isinstance(g, Sparse) else g


def sum_replicas(ctx, per_replica):
    """Replica gradients added in replica order (sparse ones concatenated)."""
    first = per_replica[0]
    if all(isinstance(g, Sparse) for g in per_replica):
        tf = ctx.ops.tf
        return Sparse(
            tf.concat([g.values for g in per_replica], 0),
            tf.concat([g.indices for g in per_replica], 0),
            first.shape,
        )
    total = to_dense(ctx, first)
    for g in per_replica[1:]:
        total = total + to_dense(ctx, g)
    return total


def local_sum(ctx, per_replica):
    """Aggregation on one device: per variable, the replicas added in order."""
    return [sum_replicas(ctx, list(gs)) for gs in zip(*per_replica, strict=True)]


# ---------------------------------------------------------------------------------------
# the step: the device-side stages of the profile's pipeline, in its order
# ---------------------------------------------------------------------------------------
class Flow:
    """What passes between stages: state, and the gradients of the live variables —
    a list per replica until ``aggregate`` has run, then one list."""

    def __init__(self, ctx, params, slots, glob, grads):
        static = ctx.static
        self.ctx = ctx
        self.params, self.slots, self.glob = list(params), [dict(s) for s in slots], dict(glob)
        self.live = [i for i, kind in enumerate(static.kinds) if kind is not None]
        if static.replicas:
            self.replicas = [[grads[i][r] for i in self.live] for r in range(static.replicas)]
        else:
            self.replicas = [[grads[i] for i in self.live]]
        self.aggregated = False
        self.skip_to = None
        #: Deferred mode (one loop per variable): the raw gradients stay in
        #: ``replicas`` and ``deferred`` holds each one's pending element-wise map.
        self.deferred = None

    def map(self, fn):
        self.replicas = [fn(self.ctx, gs) for gs in self.replicas]

    def transform(self, stage):
        """Apply a gradient ``stage`` (``stage(ctx, values) -> maps``) to each
        replica's gradients; deferred: compose its maps with the pending ones."""
        if self.deferred is not None:
            (raw,) = self.replicas
            values = [f(g) for f, g in zip(self.deferred, raw, strict=True)]
            maps = stage(self.ctx, values)
            self.deferred = [_compose(m, f) for m, f in zip(maps, self.deferred, strict=True)]
            return
        for r, gs in enumerate(self.replicas):
            maps = stage(self.ctx, [_values(g) for g in gs])
            self.replicas[r] = [_rewrap(g, m(_values(g))) for m, g in zip(maps, gs, strict=True)]

    def select(self, mask, new, old):
        """``new`` where a stacked row's ``mask`` holds (everything when not stacked)."""
        if not self.ctx.static.stacked or mask is None:
            return new
        return self.ctx.ops.where(self.ctx.masks[mask], new, old)

    @property
    def grads(self):
        (gs,) = self.replicas
        return gs


def _compose(outer, inner):
    return lambda t: outer(inner(t))


def _stage_gradients(fn):
    def stage(flow, aggregate):
        flow.transform(fn)

    return stage


def _stage_sparse(flow, aggregate):
    if flow.deferred is None:  # deferred: no gradient is sparse
        flow.map(sparse)


def _stage_unscale(flow, aggregate):
    if flow.ctx.static.loss_scale:
        flow.transform(unscale)


def _stage_accumulate(flow, aggregate):
    ctx = flow.ctx
    k = ctx.static.accumulation
    if not k:
        return
    ops = ctx.ops
    grads = [to_dense(ctx, g) for g in local_sum(ctx, flow.replicas)]
    if ctx.static.phase == "micro":
        for i, g in zip(flow.live, grads, strict=True):
            acc = flow.slots[i]["gradient_accumulator"]
            flow.slots[i]["gradient_accumulator"] = flow.select("live", acc + g, acc)
        flow.skip_to = "ema"  # a micro-step: no clipping, decay or update
        return
    merged = []
    for i, g in zip(flow.live, grads, strict=True):
        acc = flow.slots[i]["gradient_accumulator"]
        merged.append((g + acc) / ops.constant(k, ops.dtype(g)))
        flow.slots[i]["gradient_accumulator"] = flow.select("live", ops.zeros_like(acc), acc)
    flow.replicas = [merged]


def _stage_aggregate(flow, aggregate):
    if aggregate is not None:
        flow.replicas = [aggregate(flow.replicas)]
    elif len(flow.replicas) > 1:
        flow.replicas = [local_sum(flow.ctx, flow.replicas)]
    flow.aggregated = True


def _stage_weight_decay(flow, aggregate):
    ctx = flow.ctx
    if "weight_decay" not in ctx.hyper:
        return
    ops = ctx.ops
    for i in flow.live:
        if ctx.static.decay[i]:
            v = flow.params[i]
            dtype = ops.dtype(v)
            wd = ctx.cast_scalar(ctx.h("weight_decay"), dtype)
            flow.params[i] = flow.select("decay", v - v * wd * ctx.lr_for(dtype), v)


def _stage_update(flow, aggregate):
    ctx = flow.ctx
    rule = RULES[ctx.static.optimizer]
    if ctx.static.optimizer == "Nadam":
        flow.glob["u_product"] = _nadam_product(ctx, flow.glob["u_product"])
    for i, g in zip(flow.live, flow.grads, strict=True):
        old, old_slots = flow.params[i], flow.slots[i]
        new, new_slots = rule(ctx, g, old, dict(old_slots), flow.glob)
        flow.params[i] = flow.select("live", new, old)
        flow.slots[i] = {k: flow.select("live", v, old_slots[k]) for k, v in new_slots.items()}


def _ema_scope(flow):
    """(variables, stacked-row mask) the EMA stages update."""
    if flow.ctx.profile.ema_scope == "all":
        return range(len(flow.params)), None
    return flow.live, "live"


def _stage_ema(flow, aggregate):
    ctx = flow.ctx
    if not ctx.static.use_ema:
        return
    ops = ctx.ops
    momentum = ctx.h("ema_momentum")
    scope, mask = _ema_scope(flow)
    for i in scope:
        v = flow.params[i]
        dtype = ops.dtype(v)
        if ctx.profile.ema_arithmetic == "python":
            m, one_minus_m = ctx.const(momentum, dtype), ctx.const(1.0 - momentum, dtype)
        else:
            m = ops.cast(ctx.update_count != 0, dtype) * ctx.const(momentum, dtype)
            one_minus_m = ops.constant(1, dtype) - m
        average = flow.slots[i]["average"]
        flow.slots[i]["average"] = flow.select(mask, m * average + one_minus_m * v, average)


def _stage_ema_overwrite(flow, aggregate):
    ctx = flow.ctx
    frequency = ctx.static.ema_frequency
    if not (ctx.static.use_ema and frequency):
        return
    overwrite = (ctx.update_count + 1) % frequency == 0
    scope, mask = _ema_scope(flow)
    for i in scope:
        new = ctx.ops.where(overwrite, flow.slots[i]["average"], flow.params[i])
        flow.params[i] = flow.select(mask, new, flow.params[i])


#: Device-side stages by pipeline name. The others (learning_rate, collect, build,
#: filter_none, increment, …) are the front-end's, on the host or around this function.
STAGES = {
    "unscale": _stage_unscale,
    "accumulate": _stage_accumulate,
    "clip": _stage_gradients(clip),
    "sparse": _stage_sparse,
    "aggregate": _stage_aggregate,
    "weight_decay": _stage_weight_decay,
    "update": _stage_update,
    "ema": _stage_ema,
    "ema_overwrite": _stage_ema_overwrite,
}


#: Stages that read and change only gradients (they may run on each replica).
GRADIENT_ONLY = ("unscale", "accumulate", "clip", "sparse")


def split_pipeline(profile):
    """Device-side stage names: the gradient-only ones before ``aggregate`` (each
    replica's part under a distribution strategy), then the rest in order. Keras 3's
    weight decay precedes ``aggregate`` but reads no gradient, so it commutes with it."""
    names = [s for s in get_profile(profile).pipeline if s in STAGES]
    cut = names.index("aggregate")
    before = tuple(s for s in names[:cut] if s in GRADIENT_ONLY)
    return before, tuple(s for s in names if s not in before)


def run_stages(flow, names, aggregate=None):
    for name in names:
        if flow.skip_to is not None:
            if name != flow.skip_to:
                continue
            flow.skip_to = None
        STAGES[name](flow, aggregate)
    return flow


def step(
    ops, static: Static, hyper, lr, count, params, slots, glob, grads, aggregate=None, masks=None,
    aggregated=False,
):  # fmt: skip
    """One ``apply_gradients``: new ``(params, slots, glob)``; the caller increments.

    ``grads`` has one entry per variable: None, an array, a :class:`Sparse`, or (with
    ``static.replicas``) a tuple of per-replica entries. ``aggregate`` sums a list of
    per-replica gradient lists (default: in replica order, on this device). With
    ``static.stacked``, ``masks`` holds the traced row masks ``live`` and ``decay``.
    ``aggregated``: the gradients went through :func:`replica_stages` on each replica
    and were summed across replicas; only the stages from aggregation on run.
    """
    ctx = Context(ops, static, hyper, lr, count, masks)
    flow = Flow(ctx, params, slots, glob, grads)
    before, after = split_pipeline(static.profile)
    names = after if aggregated else before + after
    if not fuses_outputs(ops, static) or not any(_fused(ops, static, p) for p in flow.params):
        run_stages(flow, names, aggregate)
        return flow.params, flow.slots, flow.glob
    head, tail = split_tail(names)
    flow.deferred = [_identity] * len(flow.grads)
    run_stages(flow, head, aggregate)
    return _fused_tail(flow, tail)


# ---------------------------------------------------------------------------------------
# one loop per variable
# ---------------------------------------------------------------------------------------
def fuse_min_size_of(value, default=FUSE_MIN_SIZE) -> int:
    """A ``fuse_min_size`` argument checked (None: ``default``)."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"fuse_min_size must be an integer >= 0 or None, got {value!r}")
    return value


def _fused(ops, static: Static, x) -> bool:
    """Whether variable ``x`` gets its own loop: at least ``fuse_min_size`` elements."""
    return math.prod(int(d) for d in ops.shape(x)) >= static.fuse_min_size


#: Stages that change each variable from its own gradient, slots and scalars only,
#: element by element: the tail of the step in every profile.
PER_VARIABLE = ("weight_decay", "update", "ema", "ema_overwrite")


def fuses_outputs(ops, static: Static) -> bool:
    """Whether the step is traced for one loop per variable: the namespace has an
    optimization barrier and its compiler fuses sibling outputs (``ops.barrier`` is None
    otherwise), the update is element-wise, and the gradients reach it through
    element-wise stages only: none sparse, no replicas, no Keras 3 accumulation."""
    return (
        getattr(ops, "barrier", None) is not None
        and static.optimizer not in NOT_ELEMENTWISE
        and "sparse" not in static.kinds
        and not static.replicas
        and not static.accumulation
    )


def split_tail(names) -> tuple[tuple, tuple]:
    """``(head, tail)``: the :data:`PER_VARIABLE` stages last, the others in order.
    Only ``aggregate`` may follow a per-variable stage (Keras 3's weight decay): it
    reads no gradient and commutes with the aggregation."""
    first = min((names.index(s) for s in PER_VARIABLE if s in names), default=len(names))
    moved = [s for s in names[first:] if s not in PER_VARIABLE]
    if any(s != "aggregate" for s in moved):
        raise ValueError(f"stages {moved} follow a per-variable stage in {names}")
    return (
        tuple(s for s in names if s not in PER_VARIABLE),
        tuple(s for s in names if s in PER_VARIABLE),
    )


def barrier_view(ops, arrays, k):
    """The k-th optimization-barrier view of ``arrays`` (same values, in order): an
    expression of view j is not merged with the same expression of view k ≠ j. Each
    view's barrier takes the arrays in another order, because XLA's CSE, which runs
    before barriers are removed, merges two barriers of the same operands (k modulo
    ``len(arrays)`` views are distinct)."""
    shift = k % len(arrays)
    viewed = ops.barrier(arrays[shift:] + arrays[:shift])
    return viewed[len(arrays) - shift :] + viewed[: len(arrays) - shift]


def _fused_tail(flow, tail):
    """Run the per-variable stages so that XLA computes each variable's outputs
    (parameter, slots, average) in one loop over its elements.

    Traced once, the step makes the parameter's new value a consumer of the new slots,
    and XLA:CPU fuses only siblings (outputs that share operands, not producer and
    consumer): each array written becomes its own loop, re-reading what an earlier one
    wrote — Adam moves 10 arrays per element instead of 7. So output k of every
    variable is taken from the k-th copy of the tail, each copy tracing the same
    operations on its own optimization-barrier view of the inputs: no output consumes
    another, the copies share only scalars, and the compiler fuses them as siblings.
    The values are the same operations on the same inputs, bit for bit; the arithmetic
    shared by two outputs is done twice, which costs nothing in a bandwidth-bound loop.
    """
    ops = flow.ctx.ops

    def run(params, slots, grads):
        copy = Flow.__new__(Flow)
        copy.__dict__.update(flow.__dict__)
        copy.params, copy.slots, copy.glob = list(params), [dict(s) for s in slots], dict(flow.glob)
        copy.replicas = [list(grads)]
        return run_stages(copy, tail)

    params, slots, (raw,) = flow.params, flow.slots, flow.replicas
    flat = [*params, *(v for s in slots for v in s.values()), *raw]

    def view(k):
        """Copy k of the tail on its own barrier view of the inputs, the gradients'
        deferred maps applied inside."""
        viewed = iter(barrier_view(ops, flat, k))
        params_k = [next(viewed) for _ in params]
        slots_k = [{key: next(viewed) for key in s} for s in slots]
        grads_k = [f(next(viewed)) for f in flow.deferred]
        return run(params_k, slots_k, grads_k), params_k, slots_k

    first, given, given_slots = view(0)
    # Output keys per variable: what the tail changed ("" = the parameter); a variable
    # below fuse_min_size keeps every output of copy 0 (the plain trace's loops).
    outputs = [
        ([""] if first.params[i] is not given[i] else [])
        + sorted(k for k, v in first.slots[i].items() if v is not given_slots[i].get(k))
        if _fused(ops, flow.ctx.static, params[i])
        else []
        for i in range(len(params))
    ]
    for k in range(1, max(map(len, outputs), default=0)):
        copy = view(k)[0]
        for i, keys in enumerate(outputs):
            if k < len(keys):
                key = keys[k]
                if key:
                    first.slots[i][key] = copy.slots[i][key]
                else:
                    first.params[i] = copy.params[i]
    return first.params, first.slots, first.glob


def replica_stages(ops, static: Static, hyper, grads):
    """One replica's gradient-only stages before aggregation, for a front-end whose
    aggregation is a collective between two compiled programs (a ``tf.distribute``
    all-reduce): ``grads`` as for :func:`step` without replicas; returns the live
    variables' gradients. Not with gradient accumulation (its stage reads slots)."""
    if static.accumulation:
        raise ValueError("replica_stages: gradient accumulation reads and writes slots")
    n = len(static.kinds)
    flow = Flow(Context(ops, static, hyper, None, None), [None] * n, [{}] * n, {}, grads)
    run_stages(flow, split_pipeline(static.profile)[0])
    return flow.grads


# ---------------------------------------------------------------------------------------
# slots
# ---------------------------------------------------------------------------------------
def initial_slots(ops, static: Static, hyper, params) -> tuple[list[dict], dict]:
    """Slots (tf-keras names) at build time, and the optimizer-wide state."""
    profile = get_profile(static.profile)
    ctx = Context(ops, static, hyper, None, None)
    out = []
    for p in params:
        dtype, shape = ops.dtype(p), ops.shape(p)
        zeros = ops.zeros_like(p)
        s = {}
        if static.use_ema:
            s["average"] = p + zeros if profile.ema_init == "copy_at_build" else zeros
        if static.accumulation:
            s["gradient_accumulator"] = zeros
        s.update(SLOTS[static.optimizer](ctx, p, dtype, shape, zeros))
        # Distinct buffers: the front-ends update (JAX: donate) each slot in place.
        out.append({name: ops.copy(value) for name, value in s.items()})
    glob = {}
    if static.optimizer == "Nadam":
        glob["u_product"] = ops.constant(1.0, static.product_dtype or "float32")
    return out, glob


def _sgd_slots(ctx, p, dtype, shape, zeros):
    return {"m": zeros} if ctx.static.option("slot") else {}


def _adam_slots(ctx, p, dtype, shape, zeros):
    s = {"m": zeros, "v": zeros}
    if ctx.static.option("amsgrad"):
        s["vhat"] = zeros
    return s


def _accumulator(ctx, p, dtype, zeros, via_float32):
    value = ctx.h("initial_accumulator_value")
    if via_float32:
        return zeros + ctx.ops.cast(ctx.const(value, "float32"), dtype)
    return zeros + ctx.const(value, dtype)


def _adagrad_slots(ctx, p, dtype, shape, zeros):
    via = ctx.profile.constant_initializer != "direct"
    return {"accumulator": _accumulator(ctx, p, dtype, zeros, via)}


def _ftrl_slots(ctx, p, dtype, shape, zeros):
    # tf.cast(tf.fill(shape, value), dtype): the fill is float32.
    return {"accumulator": _accumulator(ctx, p, dtype, zeros, True), "linear": zeros}


def _rmsprop_slots(ctx, p, dtype, shape, zeros):
    s = {"velocity": zeros}
    if ctx.static.option("momentum"):
        s["momentum"] = zeros
    if ctx.static.option("centered"):
        s["average_gradient"] = zeros
    return s


def _adafactor_slots(ctx, p, dtype, shape, zeros):
    ops = ctx.ops
    s = {}
    if len(shape) >= 2:
        s["r"] = ops.sum(zeros, axis=-1)  # zeros of shape[:-1]
        s["c"] = ops.sum(zeros, axis=-2)  # zeros of shape[:-2] + shape[-1:]
    s["v"] = zeros
    return s


SLOTS = {
    "SGD": _sgd_slots,
    "Adam": _adam_slots,
    "AdamW": _adam_slots,
    "Adagrad": _adagrad_slots,
    "Adadelta": lambda ctx, p, d, s, z: {"accumulated_grad": z, "accumulated_delta_var": z},
    "Adamax": lambda ctx, p, d, s, z: {"m": z, "u": z},
    "Ftrl": _ftrl_slots,
    "Nadam": lambda ctx, p, d, s, z: {"m": z, "v": z},
    "RMSprop": _rmsprop_slots,
    "Adafactor": _adafactor_slots,
    "Lion": lambda ctx, p, d, s, z: {"m": z},
}


# ---------------------------------------------------------------------------------------
# update rules: (ctx, gradient, variable, slots, glob) -> (variable, slots)
# Each mirrors optcheck/reference/optimizers/<name>.py (its docstring has the formula).
# ---------------------------------------------------------------------------------------
def _scatter(ctx, x, g, rows):
    return ctx.ops.scatter_add(x, g.indices, rows)


def sgd(ctx, g, var, s, glob):
    dtype = ctx.ops.dtype(var)
    lr = ctx.lr_for(dtype)
    momentum = ctx.cast_scalar(ctx.h("momentum"), dtype)
    has_m, nesterov = "m" in s, ctx.static.option("nesterov")
    if isinstance(g, Sparse):
        add = -g.values * lr
        if not has_m:
            return _scatter(ctx, var, g, add), s
        m = _scatter(ctx, s["m"] * momentum, g, add)
        s["m"] = m
        if nesterov:
            return _scatter(ctx, var, g, add) + m * momentum, s
        return var + m, s
    if not has_m:
        return var + (-g * lr), s
    m = -g * lr + s["m"] * momentum
    s["m"] = m
    if nesterov:
        return var + (-g * lr + m * momentum), s
    return var + m, s


def adam(ctx, g, var, s, glob):
    ops, dtype = ctx.ops, ctx.ops.dtype(var)
    lr = ctx.lr_for(dtype)
    t = ctx.local_step(dtype)
    beta_1_power = ops.power(ctx.cast_scalar(ctx.h("beta_1"), dtype), t)
    beta_2_power = ops.power(ctx.cast_scalar(ctx.h("beta_2"), dtype), t)
    one = ops.constant(1, dtype)
    alpha = lr * ops.sqrt(one - beta_2_power) / (one - beta_1_power)
    c1 = ctx.const(1.0 - ctx.h("beta_1"), dtype)
    c2 = ctx.const(1.0 - ctx.h("beta_2"), dtype)
    m, v = s["m"], s["v"]
    if isinstance(g, Sparse):
        m = _scatter(ctx, m + (-m * c1), g, g.values * c1)
        v = _scatter(ctx, v + (-v * c2), g, ops.square(g.values) * c2)
    else:
        m = m + (g - m) * c1
        v = v + (ops.square(g) - v) * c2
    s["m"], s["v"] = m, v
    used = v
    if ctx.static.option("amsgrad"):
        used = s["vhat"] = ops.maximum(s["vhat"], v)
    epsilon = ctx.const(ctx.h("epsilon"), dtype)
    return var - (m * alpha) / (ops.sqrt(used) + epsilon), s


def adagrad(ctx, g, var, s, glob):
    ops, dtype = ctx.ops, ctx.ops.dtype(var)
    lr = ctx.lr_for(dtype)
    epsilon = ctx.const(ctx.h("epsilon"), dtype)
    acc = s["accumulator"]
    if isinstance(g, Sparse):
        acc = _scatter(ctx, acc, g, g.values * g.values)
        denominator = ops.sqrt(ops.gather(acc, g.indices) + epsilon)
        s["accumulator"] = acc
        return _scatter(ctx, var, g, -lr * g.values / denominator), s
    acc = acc + g * g
    s["accumulator"] = acc
    return var - lr * g / ops.sqrt(acc + epsilon), s


def adadelta(ctx, g, var, s, glob):
    ops, dtype = ctx.ops, ctx.ops.dtype(var)
    lr = ctx.lr_for(dtype)
    rho = ctx.const(ctx.h("rho"), dtype)
    one_minus_rho = ctx.const(1.0 - ctx.h("rho"), dtype)
    epsilon = ctx.const(ctx.h("epsilon"), dtype)

    def scaled_square(c, x):
        return c * x * x if ctx.profile.scaled_square == "left_to_right" else c * ops.square(x)

    acc_g, acc_d = s["accumulated_grad"], s["accumulated_delta_var"]
    if isinstance(g, Sparse):
        acc_g = acc_g + ctx.const(ctx.h("rho") - 1.0, dtype) * acc_g
        acc_g = _scatter(ctx, acc_g, g, one_minus_rho * ops.square(g.values))
        g = to_dense(ctx, g)
    else:
        acc_g = rho * acc_g + scaled_square(one_minus_rho, g)
    delta = -ops.sqrt(acc_d + epsilon) * g / ops.sqrt(acc_g + epsilon)
    s["accumulated_grad"] = acc_g
    s["accumulated_delta_var"] = rho * acc_d + scaled_square(one_minus_rho, delta)
    return var + lr * delta, s


def adamax(ctx, g, var, s, glob):
    ops, dtype = ctx.ops, ctx.ops.dtype(var)
    lr = ctx.lr_for(dtype)
    beta_1_power = ops.power(ctx.cast_scalar(ctx.h("beta_1"), dtype), ctx.local_step(dtype))
    c1 = ctx.const(1.0 - ctx.h("beta_1"), dtype)
    beta_2 = ctx.const(ctx.h("beta_2"), dtype)
    m, u = s["m"], s["u"]
    if isinstance(g, Sparse):
        m = _scatter(ctx, m + (-m * c1), g, g.values * c1)
        u = u * beta_2
        u_rows = ops.gather(u, g.indices)
        u = _scatter(ctx, u, g, ops.maximum(u_rows, ops.abs(g.values)) - u_rows)
    else:
        m = m + (g - m) * c1
        u = ops.maximum(beta_2 * u, ops.abs(g))
    s["m"], s["u"] = m, u
    one = ops.constant(1, dtype)
    epsilon = ctx.const(ctx.h("epsilon"), dtype)
    return var - (lr * m) / ((one - beta_1_power) * (u + epsilon)), s


def ftrl(ctx, g, var, s, glob):
    ops, dtype = ctx.ops, ctx.ops.dtype(var)
    g = to_dense(ctx, g)
    lr = ctx.lr_for(dtype)
    h, c = ctx.h, ctx.const
    two = ops.constant(2, dtype)
    minus_lr_power = c(-h("learning_rate_power"), dtype)
    l1 = c(h("l1_regularization_strength"), dtype)
    minus_l1 = c(-h("l1_regularization_strength"), dtype)
    l2 = c(h("l2_regularization_strength"), dtype)
    beta = c(h("beta"), dtype)
    two_l2_shrinkage = c(2.0 * h("l2_shrinkage_regularization_strength"), dtype)
    acc, linear = s["accumulator"], s["linear"]
    l2_reg = l2 + beta / (two * lr)
    grad_to_use = g + two_l2_shrinkage * var
    new_acc = acc + g * g
    if ctx.static.option("sqrt_power"):
        # sqrt(−0) = −0 where pow gives +0: only acc_power can be −0, and it is subtracted.
        new_acc_power, acc_power = ops.sqrt(new_acc), ops.sqrt(acc)
    else:
        new_acc_power = ops.power(new_acc, minus_lr_power)
        acc_power = ops.power(acc, minus_lr_power)
    linear = linear + (grad_to_use - (new_acc_power - acc_power) / lr * var)
    quadratic = new_acc_power / lr + two * l2_reg
    clipped = ops.maximum(ops.minimum(linear, l1), minus_l1)
    s["accumulator"], s["linear"] = new_acc, linear
    return (clipped - linear) / quadratic, s


def _nadam_product(ctx, product):
    """Advance Π once per step (reference ``Nadam._advance_u_product``)."""
    ops = ctx.ops
    dtype = ops.dtype(product)
    t = ops.cast(ctx.update_count + 1, dtype)
    one, half = ops.constant(1.0, dtype), ops.constant(0.5, dtype)
    if ctx.profile.nadam_u_product == "u_t":
        beta_1, decay = ctx.cast_scalar(ctx.h("beta_1"), dtype), ctx.cast_scalar(0.96, dtype)
        return product * (beta_1 * (one - half * ops.power(decay, t)))
    beta_1, decay = ctx.const(ctx.h("beta_1"), dtype), ops.constant(0.96, dtype)
    return product * beta_1 * (one - half * ops.power(decay, t))


def nadam(ctx, g, var, s, glob):
    ops, dtype = ctx.ops, ctx.ops.dtype(var)
    lr = ctx.lr_for(dtype)
    t = ctx.local_step(dtype)
    next_t = ops.cast(ctx.update_count + 2, dtype)
    decay = ctx.cast_scalar(0.96, dtype)
    beta_1 = ctx.cast_scalar(ctx.h("beta_1"), dtype)
    beta_2 = ctx.cast_scalar(ctx.h("beta_2"), dtype)
    one, half = ops.constant(1.0, dtype), ops.constant(0.5, dtype)
    u_t = beta_1 * (one - half * ops.power(decay, t))
    u_t_1 = beta_1 * (one - half * ops.power(decay, next_t))
    product_t = ops.cast(glob["u_product"], dtype)
    product_t_1 = product_t * u_t_1
    beta_2_power = ops.power(beta_2, t)
    m, v = s["m"], s["v"]
    if isinstance(g, Sparse):
        m = _scatter(ctx, m + (-m * (one - beta_1)), g, g.values * (one - beta_1))
        v = _scatter(ctx, v + (-v * (one - beta_2)), g, ops.square(g.values) * (one - beta_2))
        g = to_dense(ctx, g)
    else:
        m = m + (g - m) * (one - beta_1)
        v = v + (ops.square(g) - v) * (one - beta_2)
    s["m"], s["v"] = m, v
    m_hat = u_t_1 * m / (one - product_t_1) + (one - u_t) * g / (one - product_t)
    v_hat = v / (one - beta_2_power)
    epsilon = ctx.const(ctx.h("epsilon"), dtype)
    return var - (m_hat * lr) / (ops.sqrt(v_hat) + epsilon), s


def _times_rsqrt(ctx, x, y):
    ops = ctx.ops
    if ctx.profile.reciprocal_sqrt == "rsqrt":
        return x * (ops.constant(1, ops.dtype(y)) / ops.sqrt(y))
    return x / ops.sqrt(y)


def rmsprop(ctx, g, var, s, glob):
    ops, dtype = ctx.ops, ctx.ops.dtype(var)
    lr = ctx.lr_for(dtype)
    rho = ctx.const(ctx.h("rho"), dtype)
    one_minus_rho = ctx.const(1.0 - ctx.h("rho"), dtype)
    epsilon = ctx.const(ctx.h("epsilon"), dtype)
    centered, has_momentum = ctx.static.option("centered"), ctx.static.option("momentum")
    velocity = s["velocity"]
    if isinstance(g, Sparse):
        velocity = _scatter(ctx, rho * velocity, g, ops.square(g.values) * one_minus_rho)
        if centered:
            average = _scatter(ctx, rho * s["average_gradient"], g, g.values * one_minus_rho)
            s["average_gradient"] = average
            denominator = velocity - ops.square(average) + epsilon
        else:
            denominator = velocity + epsilon
        s["velocity"] = velocity
        increment = _times_rsqrt(ctx, lr * g.values, ops.gather(denominator, g.indices))
        if has_momentum:
            momentum = ctx.const(ctx.h("momentum"), dtype) * s["momentum"]
            s["momentum"] = momentum = _scatter(ctx, momentum, g, increment)
            return var + (-momentum), s
        return _scatter(ctx, var, g, -increment), s
    velocity = rho * velocity + one_minus_rho * ops.square(g)
    s["velocity"] = velocity
    if centered:
        average = rho * s["average_gradient"] + one_minus_rho * g
        s["average_gradient"] = average
        denominator = velocity - ops.square(average) + epsilon
    else:
        denominator = velocity + epsilon
    increment = _times_rsqrt(ctx, lr * g, denominator)
    if has_momentum:
        s["momentum"] = ctx.const(ctx.h("momentum"), dtype) * s["momentum"] + increment
        return var + (-s["momentum"]), s
    return var + (-increment), s


def _mean(ops, x, axis=None, keepdims=False):
    """``reduce_mean`` with float32 accumulation below 32 bits (reference ``_mean``)."""
    dtype = ops.dtype(x)
    wide = "float64" if dtype == "float64" else "float32"
    return ops.cast(ops.mean(ops.cast(x, wide), axis=axis, keepdims=keepdims), dtype)


def _by_broadcast(ops, x, divisor):
    """``x / divisor`` for a ``divisor`` broadcast to ``x`` (a row, a tensor's norm).

    XLA rewrites ``a / broadcast(b)`` as ``a * broadcast(1 / b)``. In 16-bit types that
    is more than one rounding apart: ``1 / b`` overflows for a small ``b`` (1 / 8e-6 >
    float16 max) where ``a / b`` is finite, and an exact quotient (a clipped gradient
    ``−5.97 / 5.97``) comes out an ulp off, so clipped replicas that cancel in Keras
    leave an ulp (0/0 in Keras 3's float16 Adamax, a finite step here). The quotient is
    taken in float32 and rounded back: float32's 24 bits (≥ 2·11 + 2) make that one
    rounding as good as a float16 division, and the reciprocal's extra float32 rounding
    is inside the operation count of the tolerance policy.
    """
    dtype = ops.dtype(x)
    if dtype in ("float16", "bfloat16"):
        return ops.cast(ops.cast(x, "float32") / ops.cast(divisor, "float32"), dtype)
    return x / divisor


def _rms(ops, x):
    return ops.sqrt(_mean(ops, ops.square(x)))


def recomputed(ops, arrays, k=0):
    """``arrays`` behind an optimization barrier (same values), view ``k``: an
    expression of the view is not merged with the same expression of the plain arrays
    or of another view, so each consumer fuses its own copy of the arithmetic rather
    than reading a full-size temporary that one loop wrote for all of them. Views
    differ in the order of their operands, as in :func:`barrier_view`. Without an
    optimization barrier (a plain TensorFlow graph) the arrays themselves."""
    if getattr(ops, "unshare", None) is None:
        return list(arrays)
    arrays = list(arrays)
    shift = k % len(arrays)
    viewed = ops.unshare(arrays[shift:] + arrays[:shift])
    return viewed[len(arrays) - shift :] + viewed[: len(arrays) - shift]


#: Dtypes whose Adafactor step takes the factored square root (:func:`adafactor`); the
#: 16-bit types keep the element-wise one (their sums of g²/c_j overflow where Keras's
#: terms do not).
FACTORED_DTYPES = ("float32", "float64")


def adafactor(ctx, g, var, s, glob):
    """Keras's Adafactor, traced so that XLA keeps no full-size temporary.

    The row and column statistics both reduce g² + ε1, and RMS(u) and the update both
    read u = g·rsqrt(v): traced once and shared, XLA writes g² + ε1 and u to memory
    and reads them back (two extra arrays written, two read, and a fresh temporary's
    page faults every step). Each reduction therefore takes its operands through
    :func:`recomputed`: the same operations on the same values, computed inside the
    reduction's loop. v (a slot) is written once. In float32 and float64 the square
    root of v is taken per row and per column (``FACTORED_DTYPES``, below).
    """
    ops, dtype = ctx.ops, ctx.ops.dtype(var)
    g = to_dense(ctx, g)
    lr = ctx.lr_for(dtype)
    epsilon_2 = ctx.cast_scalar(ctx.h("epsilon_2"), dtype)
    one = ops.constant(1, dtype)
    t = ctx.local_step(dtype)
    if ctx.static.option("relative_step"):
        lr = ops.minimum(lr, one / ops.sqrt(t))
    rho_t = ops.minimum(lr, one / ops.sqrt(t))
    alpha_t = ops.maximum(epsilon_2, _rms(ops, var)) * rho_t
    epsilon_1 = ctx.const(ctx.h("epsilon_1"), dtype)
    beta_2_t = one - ops.power(t, ctx.const(ctx.h("beta_2_decay"), dtype))
    one_minus_beta_2_t = one - beta_2_t

    def regulated(x, eps=epsilon_1):
        return ops.square(x) + eps

    def outer(row, col):
        return ops.expand_dims(row, -1) * ops.expand_dims(col, -2)

    row = c = None
    if len(ops.shape(var)) >= 2:
        # ε1 passes the barrier too: a scalar sliced from the hyper-parameters is
        # otherwise fused into its broadcast, which XLA:CPU then writes full size.
        g_r, eps_r = recomputed(ops, [g, epsilon_1])
        g_c, eps_c, c_old = recomputed(ops, [g, epsilon_1, s["c"]])
        r = beta_2_t * s["r"] + one_minus_beta_2_t * _mean(ops, regulated(g_r, eps_r), -1)
        c = beta_2_t * c_old + one_minus_beta_2_t * _mean(ops, regulated(g_c, eps_c), -2)
        s["r"], s["c"] = r, c
        row = _by_broadcast(ops, r, _mean(ops, r, -1, keepdims=True))
        s["v"] = outer(row, c)
    else:
        s["v"] = beta_2_t * s["v"] + one_minus_beta_2_t * regulated(g)
    clip_threshold = ctx.const(ctx.h("clip_threshold"), dtype)

    def rms_of_u():
        if len(ops.shape(var)) >= 2:
            g_u, row_u, c_u = recomputed(ops, [g, row, c])
            v_u = outer(row_u, c_u)
        else:
            g_u, v_u = recomputed(ops, [g, s["v"]])
        return _rms(ops, _times_rsqrt(ctx, g_u, v_u))

    if len(ops.shape(var)) < 2 or dtype not in FACTORED_DTYPES or ops.cond is None:
        rms_u, u_t = rms_of_u(), _times_rsqrt(ctx, g, s["v"])
    else:
        rms_u, u_t = _factored_rms_and_u(ops, g, row, c, rms_of_u)
    u_t_hat = u_t / ops.maximum(one, rms_u / clip_threshold)
    return var + (-alpha_t * u_t_hat), s


def _factored_rms_and_u(ops, g, row, c, rms_of_u):
    """RMS(u) and u = g·rsqrt(v) for Adafactor's ``v = row ⊗ c`` with no square root or
    division per element (both compute-bound on a CPU, 2.6× Adam's step at N = 10⁷).

    ``rsqrt(row_i·c_j) = rsqrt(row_i)·rsqrt(c_j)``, and ``RMS(u)² = mean_i(S_i / row_i) /
    cols`` with ``S_i = Σ_j g_ij² / c_j``, one row reduction. These round three or four
    times where Keras's formula rounds three times, inside the tolerance policy's
    operation count, wherever every ``row_i·c_j`` is positive and finite, which the
    extremes of row and c tell. Elsewhere (a product that underflows, NaN, ∞; the
    ``0·∞`` of an all-zero row and column in float32) RMS(u) is the element-wise
    reduction (``rms_of_u``, in a conditional with a scalar result, so it costs only
    when taken), and u is rsqrt(v) itself where v is 0 or ∞, Keras's ±∞, 0 and NaN.
    """
    dtype = ops.dtype(g)
    one, zero, inf = (ops.constant(value, dtype) for value in (1, 0, math.inf))
    g_s, inv_c = recomputed(ops, [g, one / c])
    sums = ops.sum(ops.square(g_s) * ops.expand_dims(inv_c, -2), axis=-1)
    factored = ops.logical_and(
        ops.logical_and(ops.min(row) * ops.min(c) > zero, ops.max(row) * ops.max(c) < inf),
        ops.all(ops.isfinite(sums)),
    )
    cols = ops.constant(ops.shape(g)[-1], dtype)
    rms_u = ops.cond(factored, lambda: ops.sqrt(_mean(ops, sums * (one / row)) / cols), rms_of_u)
    # The barrier keeps XLA from fusing the square roots into their broadcasts (one per
    # element again): each row's and each column's is taken once.
    inv_row, inv_col = recomputed(ops, [one / ops.sqrt(row), one / ops.sqrt(c)])
    v = ops.expand_dims(row, -1) * ops.expand_dims(c, -2)
    factor = ops.expand_dims(inv_row, -1) * ops.expand_dims(inv_col, -2)
    return rms_u, g * ops.where(v == zero, inf, ops.where(v == inf, zero, factor))


def lion(ctx, g, var, s, glob):
    ops, dtype = ctx.ops, ctx.ops.dtype(var)
    lr = ctx.lr_for(dtype)
    beta_1 = ctx.cast_scalar(ctx.h("beta_1"), dtype)
    beta_2 = ctx.cast_scalar(ctx.h("beta_2"), dtype)
    one = ops.constant(1, dtype)
    m = s["m"]
    if isinstance(g, Sparse):
        m = _scatter(ctx, m * beta_1, g, g.values * (one - beta_1))
        var = var - lr * ops.sign(m)
        s["m"] = _scatter(ctx, m * beta_2 / beta_1, g, g.values * (one - beta_2 / beta_1))
        return var, s
    var = var - lr * ops.sign(m * beta_1 + g * (one - beta_1))
    s["m"] = m * beta_2 + g * (one - beta_2)
    return var, s


RULES = {
    "SGD": sgd,
    "Adam": adam,
    "AdamW": adam,
    "Adagrad": adagrad,
    "Adadelta": adadelta,
    "Adamax": adamax,
    "Ftrl": ftrl,
    "Nadam": nadam,
    "RMSprop": rmsprop,
    "Adafactor": adafactor,
    "Lion": lion,
}

#: Update rules that are not element-wise (row and column statistics).
NOT_ELEMENTWISE = frozenset({"Adafactor"})
