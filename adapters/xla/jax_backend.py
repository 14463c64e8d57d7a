"""The golden semantics in JAX: a functional optimizer compiled with ``jax.jit``.

::

    from optcheck.adapters.xla import jax_backend as xj

    opt = xj.optimizer({"class_name": "Adam", "config": {"learning_rate": 1e-3}})
    state = opt.init(params)                          # params: a list of arrays
    params, state = opt.update(grads, state, params)  # grads: arrays or None

``update`` runs one ``apply_gradients`` of the reference (:mod:`.core`) as one XLA
program. The program is cached by its static structure (optimizer options, which
gradients are None, clipping kind, …) and by shapes, so one compilation serves every
hyper-parameter value: learning rate, betas, ε, clip thresholds, weight decay and EMA
momentum are traced float64 scalars. ``params`` and ``state`` are donated, so XLA
updates them in place (do not reuse the arrays you passed in).

The learning rate of a schedule is the reference schedule's value at the current
step, computed on the host; a schedule or Keras 3 gradient accumulation therefore
reads the step counter from the device once per step. A float learning rate never
does, and goes to the device again only when its value changes.

``flatten=True`` packs the variables of each dtype into one buffer (``pack`` /
``unpack``), for optimizers whose update is element-wise (all but Adafactor) and
without per-tensor clipping or weight-decay exclusions: many small tensors then cost
one fused loop.

Float64 variables need JAX's 64-bit mode, which importing this module turns on
(``jax_enable_x64``). On a GPU or TPU, arrays live on the default device; run with
``JAX_PLATFORMS=cpu`` to force the CPU.
"""

from __future__ import annotations

import functools

import numpy as np

from . import set_xla_flags

set_xla_flags()
import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402

from optcheck.reference import optimizers as reference_optimizers  # noqa: E402
from optcheck.reference.schedules import LearningRateSchedule  # noqa: E402

from . import core  # noqa: E402
from .ops import JaxOps  # noqa: E402

OPS = JaxOps()

#: Default ``fuse_min_size``: 2¹³ elements, below TensorFlow's (``core.FUSE_MIN_SIZE``).
#: Adam on 1000 variables of 10⁴ elements: 18.7 → 13.2 ms a step with each variable in
#: one loop, compilation 8.2 → 12.9 s; of 10³ elements (in the cache): 14.1 → 13.3 ms.
FUSE_MIN_SIZE = 1 << 13

#: Optimizers whose update reads every element independently (flattening is exact).
ELEMENTWISE = frozenset(core.RULES) - core.NOT_ELEMENTWISE


def optimizer(spec, profile="keras2", flatten=False, fuse_min_size=None) -> Optimizer:
    """An optimizer from a Keras serialization dict (or a reference optimizer)."""
    if isinstance(spec, dict | str):
        spec = reference_optimizers.deserialize(spec, profile=profile)
    return Optimizer(spec, flatten=flatten, fuse_min_size=fuse_min_size)


def replica_sum(replicas: int):
    """A cross-device aggregation for ``replicas`` replicas, or None when this process
    has fewer devices: replica r's gradients go to device r of a mesh and are summed by
    ``psum`` inside ``shard_map`` (an all-reduce)."""
    devices = jax.devices()
    if replicas < 2 or len(devices) < replicas:
        return None
    from jax.sharding import Mesh, PartitionSpec

    mesh = Mesh(np.array(devices[:replicas]), ("replica",))

    def total(stacked):
        return jax.lax.psum(stacked[0], "replica")

    summed = jax.shard_map(
        total, mesh=mesh, in_specs=PartitionSpec("replica"), out_specs=PartitionSpec()
    )

    def aggregate(per_replica):
        per_variable = zip(*per_replica, strict=True)
        return [summed(jnp.stack(list(gs))) for gs in per_variable]

    return aggregate


@functools.cache
def _compiled(static: core.Static, hyper_names: tuple):
    aggregate = replica_sum(static.replicas)

    def run(hyper, lr, params, state, grads, masks):
        # One float64 vector rather than a scalar per hyper-parameter: fewer arguments
        # to dispatch each step, the same values.
        hyper = {name: hyper[i] for i, name in enumerate(hyper_names)}
        count = state["count"]
        params, slots, glob = core.step(
            OPS, static, hyper, lr, count, params, state["slots"], state["glob"], grads,
            aggregate=aggregate, masks=masks,
        )  # fmt: skip
        return params, {"count": count + 1, "slots": slots, "glob": glob}

    # keep_unused: a slot the step overwrites without reading (Adafactor's v) is still
    # passed, so XLA writes it in place rather than into a fresh buffer every step.
    return jax.jit(run, donate_argnums=(2, 3), keep_unused=True)


class Optimizer:
    """A reference optimizer's configuration with a compiled, functional step."""

    def __init__(self, reference, flatten=False, stacked=False, fuse_min_size=None):
        self.reference = reference
        #: Variables of at least this many elements are updated in one loop each
        #: (default ``core.FUSE_MIN_SIZE``; 0: every variable).
        self.fuse_min_size = core.fuse_min_size_of(fuse_min_size, FUSE_MIN_SIZE)
        self.flatten = flatten
        #: Variables are the rows of one array, with row masks (see :mod:`.buckets`).
        self.stacked = stacked
        self._options = None
        self._hyper = None
        self._hyper_names = ()
        self._layout = None
        #: Compiled steps by what the step's Static depends on (kinds, replicas, count).
        self._programs = {}
        #: The last learning rate as (dtype, bits) and on the device: a constant one is
        #: transferred once, not every step.
        self._lr_key = None
        self._lr_device = None

    # -- state ------------------------------------------------------------------------
    def init(self, params, iterations: int = 0, names=None, exclude=()):
        """Slots for ``params`` (their values now: keras2's EMA starts as a copy).

        ``names`` (the variables' names) and ``exclude`` (indices) select the variables
        weight decay skips, with the reference optimizer's ``exclude_from_weight_decay``
        name patterns.
        """
        params = list(params)
        if self.flatten:
            params = self.pack(params)
        dtypes = [OPS.dtype(p) for p in params]
        self._options, hyper = core.plan(self.reference, dtypes)
        self._hyper_names = tuple(hyper)
        self._hyper = jnp.asarray(list(hyper.values()), dtype=jnp.float64)
        self._programs = {}
        if self.stacked:  # rows to decay come in the traced mask
            self._decay = (self.reference.weight_decay is not None,)
        else:
            self._decay = tuple(
                core.decays(self.reference, i, names, exclude) for i in range(len(params))
            )
        static = self._static(["dense"] * len(params), 0)
        hyper = {k: jnp.asarray(v, dtype=jnp.float64) for k, v in hyper.items()}
        slots, glob = core.initial_slots(OPS, static, hyper, params)
        return {"count": jnp.asarray(iterations, jnp.int64), "slots": slots, "glob": glob}

    def _static(self, kinds, count, replicas=0) -> core.Static:
        return core.make_static(
            self._options, self._decay, kinds, count, replicas, stacked=self.stacked,
            fuse_min_size=self.fuse_min_size,
        )  # fmt: skip

    # -- step -------------------------------------------------------------------------
    def learning_rate(self, count: int):
        """The step's learning rate, in the dtype the reference holds it."""
        return core.learning_rate(self.reference, count)

    def needs_host_count(self) -> bool:
        return isinstance(self.reference._learning_rate, LearningRateSchedule) or bool(
            self.reference.gradient_accumulation_steps
        )

    def update(self, grads, state, params, count: int | None = None, masks=None):
        """Apply one step; returns ``(params, state)``. ``count``, when the caller knows
        it, spares reading the step counter from the device; ``masks`` are the row
        masks of a stacked optimizer."""
        grads = list(grads)
        if self._options is None:
            raise RuntimeError("Call init(params) before update().")
        if count is None:
            count = int(state["count"]) if self.needs_host_count() else 0
        kinds = tuple(None if g is None else "dense" for g in grads)
        replicas = next((len(g) for g in grads if isinstance(g, tuple)), 0)
        k = self._options["accumulation"]
        key = (kinds, replicas, count % k if k else 0)
        program = self._programs.get(key)
        if program is None:
            static = self._static(kinds, count, replicas)
            program = self._programs[key] = _compiled(static, self._hyper_names)
        lr = self._device_learning_rate(count)
        return program(self._hyper, lr, list(params), state, grads, masks)

    def _device_learning_rate(self, count: int):
        lr = self.learning_rate(count)
        key = (lr.dtype, lr.tobytes())
        if key != self._lr_key:
            self._lr_key, self._lr_device = key, jnp.asarray(lr)
        return self._lr_device

    # -- flattening -------------------------------------------------------------------
    def pack(self, tensors):
        """Concatenate tensors into one flat buffer (the layout is remembered)."""
        tensors = list(tensors)
        if self._layout is None:
            self._check_flattenable()
            self._layout = [(tuple(t.shape), OPS.dtype(t)) for t in tensors]
            if len({d for _, d in self._layout}) != 1:
                raise ValueError("flatten=True needs variables of one dtype.")
        return [jnp.concatenate([jnp.ravel(t) for t in tensors])]

    def unpack(self, flat):
        """The tensors of a packed buffer, in their shapes."""
        (buffer,) = flat
        out, start = [], 0
        for shape, _ in self._layout:
            size = int(np.prod(shape))
            out.append(buffer[start : start + size].reshape(shape))
            start += size
        return out

    def _check_flattenable(self):
        ref = self.reference
        name = type(ref).__name__
        if name not in ELEMENTWISE:
            raise ValueError(f"flatten=True: {name}'s update is not element-wise.")
        if ref.clipnorm:
            raise ValueError("flatten=True: clipnorm clips each tensor separately.")
        if ref._exclude_from_weight_decay or ref._exclude_from_weight_decay_names:
            raise ValueError("flatten=True: weight-decay exclusions are per tensor.")
