"""Benchmark machinery: the grid, the implementations, the roof and the records.

Importable without pytest-benchmark (and without JAX, TensorFlow or torch): the CI
smoke test (``tests/test_benchmarks_smoke.py``) drives :func:`bench_case` with
:class:`PlainBenchmark`, the suite (``benchmarks/test_step.py``) with pytest-benchmark's
``benchmark`` fixture; both go through the same build, plan and record code.

One case = implementation × optimizer × feature × N × layout × device. A step is
timed in steady state after its first call, which is timed apart (``compile_s``:
tracing and compilation plus that first step). Each record holds the byte model's
bytes per parameter (:mod:`optcheck.reference.optimizers.bytes`), the effective
GB/s it implies and the fraction of the in-place bandwidth roof measured in the
same session on the same device (:func:`measure_roof`).
"""

from __future__ import annotations

import gc
import importlib.metadata
import importlib.util
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np

from optcheck.reference.optimizers import bytes as byte_model

OPTIMIZERS = (
    "SGD",
    "Adam",
    "AdamW",
    "Adagrad",
    "Adadelta",
    "Adamax",
    "Ftrl",
    "Nadam",
    "RMSprop",
    "Adafactor",
    "Lion",
)
#: Grid names for configurations whose byte count differs from the default one.
VARIANTS: dict[str, tuple[str, dict]] = {
    "SGD+momentum": ("SGD", {"momentum": 0.9}),
    "Adam+amsgrad": ("Adam", {"amsgrad": True}),
    "RMSprop+centered+momentum": ("RMSprop", {"centered": True, "momentum": 0.9}),
}
#: Feature -> the config entries it adds to the optimizer's spec.
FEATURES: dict[str, dict] = {
    "plain": {},
    "ema": {"use_ema": True},
    "clipnorm": {"global_clipnorm": 1.0},
}
#: Byte-model feature names (``bytes.FEATURES``) of the grid's features.
BYTE_FEATURES = {"plain": (), "ema": ("ema",), "clipnorm": ("global_clipnorm",)}
#: The semantics every implementation is built with (the golden's default profile).
PROFILE = "keras2"
#: Its state is part of the semantics: tf-keras keeps SGD's momentum slot at μ = 0
#: (read and rewritten: m·0 keeps a NaN) and Adafactor's full-size v, so the byte
#: model counts them (``bytes.passes(keras_slots=True)``).
KERAS_SLOTS = PROFILE == "keras2"
SIZES = (10**3, 10**4, 10**5, 10**6, 10**7)
LARGE = 3 * 10**7
LAYOUTS = (1, 10, 100, 1000)
GOLDEN = "numpy"
OURS = ("jax", "jax-flat", "tf")
PEERS = ("optax", "torch-fused", "torch-foreach")
IMPLEMENTATIONS = (GOLDEN, *OURS, *PEERS)
#: The golden reference makes several NumPy passes and temporaries per step: it is
#: capped in the default grid to keep the run short.
GOLDEN_MAX_N = 10**6
#: Keras default EMA momentum (the peers' EMA mapping uses it).
EMA_MOMENTUM = 0.99
#: A timed round lasts at least this long (timer resolution and loop overhead vanish).
ROUND_S = 2e-3


class Unavailable(Exception):
    """The case cannot run here (library missing, no GPU, no mapping): a skip, not a failure."""


def label(n: int) -> str:
    """``1000 -> "1e3"``, ``30_000_000 -> "3e7"`` (ids and tables)."""
    exponent = len(str(n)) - 1
    mantissa, rest = divmod(n, 10**exponent)
    return f"{mantissa}e{exponent}" if rest == 0 else str(n)


def split(n: int, tensors: int) -> list[int]:
    """``n`` elements in ``tensors`` near-equal parts (the first ones one larger)."""
    if not 1 <= tensors <= n:
        raise ValueError(f"Need 1 <= tensors <= N; got tensors={tensors}, N={n}.")
    q, r = divmod(n, tensors)
    return [q + 1 if i < r else q for i in range(tensors)]


def near_square(n: int) -> tuple[int, int]:
    """``rows × cols == n`` with rows the largest divisor ≤ √n (1e7 -> 3125 × 3200).

    Every tensor is 2-D so that Adafactor factors its second moment in every layout of
    every implementation; a prime size degenerates to 1 × n.
    """
    rows = math.isqrt(n)
    while n % rows:
        rows -= 1
    return rows, n // rows


@dataclass(frozen=True)
class Case:
    """One benchmark: implementation × optimizer × feature × N × layout × device."""

    implementation: str
    optimizer: str  # a name of OPTIMIZERS or VARIANTS
    feature: str = "plain"
    n: int = 10**3
    tensors: int = 1
    device: str = "cpu"
    dtype: str = "float32"

    @property
    def class_name(self) -> str:
        return VARIANTS[self.optimizer][0] if self.optimizer in VARIANTS else self.optimizer

    @property
    def config(self) -> dict:
        base = VARIANTS[self.optimizer][1] if self.optimizer in VARIANTS else {}
        return {**base, **FEATURES[self.feature]}

    @property
    def spec(self) -> dict:
        """The Keras serialization dict every implementation is built from."""
        return {"class_name": self.class_name, "config": self.config}

    @property
    def shapes(self) -> list[tuple[int, int]]:
        return [near_square(size) for size in split(self.n, self.tensors)]

    @property
    def itemsize(self) -> int:
        return np.dtype(self.dtype).itemsize

    @property
    def bytes_per_param(self) -> int:
        return byte_model.bytes_per_parameter(
            self.class_name, self.config, self.itemsize, BYTE_FEATURES[self.feature],
            keras_slots=KERAS_SLOTS,
        )

    @property
    def id(self) -> str:
        return (
            f"{self.implementation}-{self.optimizer}-{self.feature}"
            f"-N{label(self.n)}-T{self.tensors}-{self.device}"
        )

    @property
    def group(self) -> str:
        """pytest-benchmark group: the implementations of one problem side by side."""
        return (
            f"{self.optimizer} {self.feature} N={label(self.n)} T={self.tensors} "
            f"{self.device} {self.dtype}"
        )

    @property
    def marks(self) -> tuple[str, ...]:
        marks = []
        if self.n >= LARGE:
            marks.append("large")
        if self.device == "gpu":
            marks.append("gpu")
        marks.append(
            "golden" if self.implementation == GOLDEN
            else "peer" if self.implementation in PEERS else "ours"
        )  # fmt: skip
        return tuple(marks)


def _cases(impls, optimizers, features, sizes, layouts, devices=("cpu",), golden_max=None):
    out = []
    for device in devices:
        for optimizer in optimizers:
            for feature in features:
                for n in sizes:
                    for tensors in layouts:
                        for impl in impls:
                            if tensors > n or (impl == GOLDEN and device != "cpu"):
                                continue
                            if impl == GOLDEN and golden_max and n > golden_max:
                                continue
                            if impl == "jax-flat" and tensors == 1:
                                continue  # one tensor packs to itself: that is "jax"
                            if impl in PEERS and VARIANTS.get(optimizer, (optimizer,))[0] != "Adam":
                                continue  # the peers are Adam only (the issue)
                            out.append(Case(impl, optimizer, feature, n, tensors, device))
    return out


def grid(name: str = "default") -> list[Case]:
    """The cases of a named grid (README: "The grid").

    ``smoke``: N = 1e3; Adam, SGD, Adafactor; every implementation and feature in 1 and
    10 tensors — a few minutes, mostly compilation, for checking the machinery.
    ``default``: Adam for every implementation at every N in 1 and 100 tensors and at
    1e3/1e5/1e7 in 10 and 1000 too, its features at 1e3/1e5/1e7 in 1 and 100 tensors;
    the 10 other optimizers for numpy/jax/tf in one tensor at every N, in 100 tensors at
    1e6, with the features at 1e5; the 3e7 cases (marker ``large``) and a GPU subset
    (marker ``gpu``). ``full``: the whole product, variants included, on cpu and gpu;
    the golden reference up to 1e7. ``report``: what the README's main command measures
    for its report, in minutes — every optimizer plain in one tensor at 1e3–1e6 (Adam
    to 1e7), Adam in 10, 100 and 1000 tensors at 1e5 and with each feature at 1e5, on
    the CPU and the GPU subset of the same.
    """
    ours_and_golden = (GOLDEN, *OURS)
    others = [o for o in OPTIMIZERS if o != "Adam"]
    features = tuple(FEATURES)
    if name == "smoke":
        return _cases(IMPLEMENTATIONS, ("Adam", "SGD", "Adafactor"), features, (10**3,), (1, 10))
    if name == "default":
        # 10 and 1000 tensors at three sizes only: compiling 1000 tensors takes seconds.
        cases = _cases(IMPLEMENTATIONS, ("Adam",), ("plain",), SIZES, (1, 100),
                       golden_max=GOLDEN_MAX_N)  # fmt: skip
        cases += _cases(IMPLEMENTATIONS, ("Adam",), ("plain",), (10**3, 10**5, 10**7), (10, 1000),
                        golden_max=GOLDEN_MAX_N)  # fmt: skip
        cases += _cases(IMPLEMENTATIONS, ("Adam",), ("ema", "clipnorm"), (10**3, 10**5, 10**7),
                        (1, 100), golden_max=GOLDEN_MAX_N)  # fmt: skip
        cases += _cases(IMPLEMENTATIONS, ("Adam",), ("plain",), (LARGE,), (1, 1000),
                        golden_max=GOLDEN_MAX_N)  # fmt: skip
        cases += _cases(ours_and_golden, others, ("plain",), SIZES, (1,), golden_max=GOLDEN_MAX_N)
        cases += _cases(ours_and_golden, others, ("plain",), (10**6,), (100,))
        cases += _cases(ours_and_golden, others, ("ema", "clipnorm"), (10**5,), (1,))
        gpu = ("gpu",)
        cases += _cases(IMPLEMENTATIONS, ("Adam",), ("plain",), (*SIZES, LARGE), (1, 1000), gpu)
        cases += _cases(OURS, others, ("plain",), (10**7,), (1,), gpu)
        return cases
    if name == "report":
        sizes = (10**3, 10**4, 10**5, 10**6)
        cases = []
        for device in ("cpu", "gpu"):
            cases += _cases(IMPLEMENTATIONS, ("Adam",), ("plain",), (*sizes, 10**7), (1,),
                            (device,), golden_max=GOLDEN_MAX_N)  # fmt: skip
            cases += _cases(ours_and_golden, others, ("plain",), sizes, (1,), (device,))
            cases += _cases(IMPLEMENTATIONS, ("Adam",), ("plain",), (10**5,), (10, 100, 1000),
                            (device,))  # fmt: skip
            cases += _cases(IMPLEMENTATIONS, ("Adam",), ("ema", "clipnorm"), (10**5,), (1,),
                            (device,))  # fmt: skip
        return cases
    if name == "full":
        optimizers = (*OPTIMIZERS, *VARIANTS)
        sizes = (*SIZES, LARGE)
        return _cases(IMPLEMENTATIONS, optimizers, features, sizes, LAYOUTS, ("cpu", "gpu"),
                      golden_max=10**7)  # fmt: skip
    raise ValueError(f"Unknown grid {name!r}: expected smoke, default, report or full.")


# --- devices and versions ---------------------------------------------------------------


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def gpu_visible(library: str) -> bool:
    """Whether ``library`` ("jax", "torch", "tf") sees a GPU; False when not installed."""
    try:
        if library == "jax" and _installed("jax"):
            import jax

            return any(d.platform == "gpu" for d in jax.devices())
        if library == "torch" and _installed("torch"):
            import torch

            return torch.cuda.is_available()
        if library == "tf" and _installed("tensorflow"):
            import tensorflow as tf

            return bool(tf.config.list_physical_devices("GPU"))
    except RuntimeError:  # a backend that fails to initialise sees no GPU
        return False
    return False


def device_name(device: str) -> str:
    if device == "cpu":
        model = platform.processor() or platform.machine()
        try:
            with open("/proc/cpuinfo") as f:
                for line in f:
                    if line.startswith("model name"):
                        model = line.split(":", 1)[1].strip()
                        break
        except OSError:
            pass
        return f"{model} ({os.cpu_count()} logical cores)"
    if gpu_visible("torch"):
        import torch

        return torch.cuda.get_device_name(0)
    if gpu_visible("jax"):
        import jax

        return jax.devices("gpu")[0].device_kind
    return "gpu"


_LIBRARIES = {
    GOLDEN: ("numpy",),
    "jax": ("jax", "jaxlib"),
    "jax-flat": ("jax", "jaxlib"),
    "tf": ("tensorflow",),
    "optax": ("jax", "jaxlib", "optax"),
    "torch-fused": ("torch",),
    "torch-foreach": ("torch",),
}


#: The library whose view of the devices decides where an implementation runs.
_GPU_LIBRARY = {"jax": "jax", "jax-flat": "jax", "optax": "jax", "tf": "tf",
                "torch-fused": "torch", "torch-foreach": "torch"}  # fmt: skip


def versions(implementation: str) -> dict[str, str | None]:
    out = {}
    for dist in ("optcheck", "numpy", *_LIBRARIES.get(implementation, ())):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    return out


# --- the roof ---------------------------------------------------------------------------


@dataclass
class Roof:
    """In-place memory-bandwidth roof of a device: the best GB/s of in-place streams.

    ``a += b`` on float32 reads a and b and writes a: 3 × 4 bytes per element, the
    traffic pattern of an in-place optimizer step (read g and state, write state). It
    runs as NumPy's single-threaded ufunc, torch's multi-threaded ``add_`` and XLA's
    donated add. Some CPUs stream more per core with more concurrent streams, so an
    Adam-shaped kernel joins them (``jax-4r3w``: read a, b, c, d, write a, b, c in
    place, 7 × 4 bytes per element). The roof is the best method, each timed best of
    ``repeats``; ``triad_gbps`` (torch ``add(b, c, alpha=s, out=a)``, 3 arrays) is for
    information. Every method touches 2n elements (n = 2²⁵: 256 MiB).
    """

    device: str
    gbps: float
    method: str
    by_method: dict[str, float]
    n: int
    triad_gbps: float | None = None
    device_name: str = ""


#: Roof methods: (library needed, devices it runs on).
ROOF_METHODS = {
    "numpy": ("numpy", ("cpu",)),
    "torch": ("torch", ("cpu", "gpu")),
    "jax": ("jax", ("cpu", "gpu")),
    "jax-4r3w": ("jax", ("cpu", "gpu")),
    "torch-triad": ("torch", ("cpu", "gpu")),  # information only
}


def _kernel(device: str, method: str, n: int):
    """``(run, sync, bytes moved per run)`` of a roof method over 2n float32 elements."""
    if method == "numpy":
        a, b = np.full(n, 0.5, np.float32), np.full(n, 1e-3, np.float32)
        return (lambda: np.add(a, b, out=a)), (lambda: None), 12 * n
    if method.startswith("torch"):
        import torch

        dev = torch.device("cuda" if device == "gpu" else "cpu")
        sync = torch.cuda.synchronize if device == "gpu" else (lambda: None)
        a, b = (torch.full((n,), v, dtype=torch.float32, device=dev) for v in (0.5, 1e-3))
        if method == "torch-triad":
            half = n // 2  # a = b + s·c on three arrays of n/2 elements
            a, b, c = a[:half], b[:half], b[half:]
            return (lambda: torch.add(b, c, alpha=0.5, out=a)), sync, 12 * half
        return (lambda: a.add_(b)), sync, 12 * n
    if method.startswith("jax"):
        import jax
        import jax.numpy as jnp

        dev = jax.devices("gpu" if device == "gpu" else "cpu")[0]
        if method == "jax":
            fn = jax.jit(lambda a, b: (a + b,), donate_argnums=0)
            arrays, nbytes = [jnp.full((n,), 0.5, jnp.float32, device=dev)], 12 * n
            extra = (jnp.full((n,), 1e-3, jnp.float32, device=dev),)
        else:
            fn = jax.jit(
                lambda a, b, c, d: (a + d, b * 0.9 + d, c * 0.99 + d * d), donate_argnums=(0, 1, 2)
            )
            half = n // 2
            arrays = [jnp.full((half,), 0.5, jnp.float32, device=dev) for _ in range(3)]
            extra, nbytes = (jnp.full((half,), 1e-3, jnp.float32, device=dev),), 28 * half

        def run():
            arrays[:] = fn(*arrays, *extra)

        return run, (lambda: arrays[0].block_until_ready()), nbytes
    raise ValueError(f"Unknown roof method {method!r}")


def _best_rate(run: Callable[[], None], sync: Callable[[], None], nbytes: int, repeats: int):
    """Best GB/s over ``repeats`` timed blocks of calls, each block ≥ ~20 ms."""
    run()
    sync()  # first touch and compilation out of the way
    t0 = time.perf_counter()
    run()
    sync()
    inner = max(1, min(1000, math.ceil(0.02 / max(time.perf_counter() - t0, 1e-9))))
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            run()
        sync()
        best = min(best, (time.perf_counter() - t0) / inner)
    return nbytes / best / 1e9


def measure_roof(device: str = "cpu", n: int = 1 << 25, repeats: int = 10, methods=None) -> Roof:
    """Measure the in-place bandwidth roof of ``device`` ("cpu" or "gpu").

    ``methods``: names of :data:`ROOF_METHODS`; by default every one whose library is
    installed and sees the device.
    """
    rates = {}
    for method in methods or ROOF_METHODS:
        library, devices = ROOF_METHODS[method]
        if device not in devices or not _installed(library):
            continue
        if device == "gpu" and not gpu_visible(library):
            continue
        run, sync, nbytes = _kernel(device, method, n)
        rates[method] = _best_rate(run, sync, nbytes, repeats)
        del run, sync  # free the arrays before the next method
        gc.collect()
    triad = rates.pop("torch-triad", None)
    if not rates:
        raise Unavailable(f"no roof method runs on {device} here")
    method = max(rates, key=rates.get)
    return Roof(device, rates[method], method, rates, n, triad, device_name(device))


def roof_kernel(device: str, method: str, n: int) -> tuple[Callable[[], None], int]:
    """One synchronised run of a roof method and the bytes it moves (to time the roof
    under pytest-benchmark)."""
    run, sync, nbytes = _kernel(device, method, n)

    def kernel():
        run()
        sync()

    return kernel, nbytes


class RoofCache:
    """One roof per device per session, measured when a case first needs it."""

    def __init__(self, n: int = 1 << 25, repeats: int = 10, methods=None):
        self.n, self.repeats, self.methods = n, repeats, methods
        self._roofs: dict[str, Roof] = {}

    def get(self, device: str) -> Roof:
        if device not in self._roofs:
            self._roofs[device] = measure_roof(device, self.n, self.repeats, self.methods)
        return self._roofs[device]


# --- implementations --------------------------------------------------------------------


@dataclass
class Built:
    """A ready case: ``step()`` runs one synchronous optimizer step."""

    case: Case
    step: Callable[[], None]
    init_s: float = 0.0
    compile_s: float = 0.0
    estimate_s: float = 0.0
    mapping: str = ""


def _golden(case, params, grads):
    from optcheck.reference import Variable, optimizers

    opt = optimizers.deserialize(case.spec, profile=PROFILE)
    variables = [Variable(p) for p in params]
    pairs = list(zip(grads, variables, strict=True))
    return (lambda: opt.apply_gradients(pairs)), "optcheck.reference (keras2 profile)"


def _jax_device(device):
    import jax

    try:
        return jax.devices("gpu" if device == "gpu" else "cpu")[0]
    except RuntimeError as e:
        raise Unavailable(f"JAX sees no {device}: {e}") from None


def _ours_jax(case, params, grads, flatten):
    try:
        import jax.numpy as jnp

        from optcheck.adapters.xla import jax_backend as xj
    except ImportError as e:
        raise Unavailable(f"optcheck.adapters.xla.jax_backend is not importable: {e}") from None
    dev = _jax_device(case.device)
    ps = [jnp.array(p, device=dev) for p in params]  # copies: donation never aliases NumPy
    gs = [jnp.array(g, device=dev) for g in grads]
    opt = xj.optimizer(case.spec, profile=PROFILE, flatten=flatten)
    try:
        state = opt.init(ps)
    except ValueError as e:
        if flatten and "flatten" in str(e):  # e.g. Adafactor is not element-wise
            raise Unavailable(str(e)) from None
        raise
    if flatten:
        # The step runs on packed buffers, as a model whose parameters and gradients
        # live in one flat buffer has them; packing per-tensor gradients every step
        # would cost 2 more arrays of traffic, which this does not time.
        ps, gs = opt.pack(ps), opt.pack(gs)
    box = [ps, state]

    def step():
        box[0], box[1] = opt.update(gs, box[1], box[0])
        # One executable produces every output: the last parameter being ready means
        # the step is done (blocking on all 1000+ leaves would time Python instead).
        box[0][-1].block_until_ready()

    return step, f"optcheck.adapters.xla.jax_backend.optimizer(flatten={flatten})"


def _ours_tf(case, params, grads):
    try:
        import tensorflow as tf

        from optcheck.adapters.xla import tf_backend as xt
    except ImportError as e:
        raise Unavailable(f"optcheck.adapters.xla.tf_backend is not importable: {e}") from None
    on_gpu = gpu_visible("tf")
    if case.device == "gpu" and not on_gpu:
        raise Unavailable("TensorFlow sees no GPU")
    dev = "/GPU:0" if case.device == "gpu" else "/CPU:0"
    with tf.device(dev):
        variables = [tf.Variable(p) for p in params]
        gs = [tf.constant(g) for g in grads]
    opt = xt.Optimizer.from_spec(case.spec, profile=PROFILE, jit_compile=True)
    pairs = list(zip(gs, variables, strict=True))

    if not on_gpu:
        # Eager TensorFlow runs synchronously on the CPU: the call returns when done.
        def step():
            opt.apply_gradients(pairs)

    else:

        def step():
            with tf.device(dev):
                opt.apply_gradients(pairs)
            if case.device == "gpu":
                # Reading the step counter waits for the compiled step that wrote it.
                opt.iterations.numpy()

    return step, "optcheck.adapters.xla.tf_backend.Optimizer.from_spec(jit_compile=True)"


def _adam_hyper(case):
    if case.class_name != "Adam":
        raise Unavailable(f"the peers are mapped for Adam only, not {case.class_name}")
    cfg = case.config
    return dict(
        lr=cfg.get("learning_rate", 1e-3),
        b1=cfg.get("beta_1", 0.9),
        b2=cfg.get("beta_2", 0.999),
        eps=cfg.get("epsilon", 1e-7),
        amsgrad=bool(cfg.get("amsgrad")),
        ema=bool(cfg.get("use_ema")),
        clip=cfg.get("global_clipnorm"),
    )


def _optax(case, params, grads):
    if not (_installed("jax") and _installed("optax")):
        raise Unavailable("jax and optax are not installed")
    import jax
    import jax.numpy as jnp
    import optax

    h = _adam_hyper(case)
    dev = _jax_device(case.device)
    make = optax.amsgrad if h["amsgrad"] else optax.adam
    tx = make(h["lr"], b1=h["b1"], b2=h["b2"], eps=h["eps"])
    if h["clip"]:
        tx = optax.chain(optax.clip_by_global_norm(h["clip"]), tx)
    ema = h["ema"]

    def update(grads, state, params):
        opt_state, average = state
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        if ema:  # Keras EMA of the variables: average ← m·average + (1 − m)·p
            average = optax.incremental_update(params, average, 1 - EMA_MOMENTUM)
        return params, (opt_state, average)

    fn = jax.jit(update, donate_argnums=(1, 2))
    ps = [jnp.array(p, device=dev) for p in params]
    gs = [jnp.array(g, device=dev) for g in grads]
    average = [jnp.array(p, device=dev) for p in params] if ema else None
    box = [ps, (tx.init(ps), average)]

    def step():
        box[0], box[1] = fn(gs, box[1], box[0])
        box[0][-1].block_until_ready()

    mapping = f"optax.{make.__name__} under jax.jit, params and state donated"
    if h["clip"]:
        mapping += "; optax.clip_by_global_norm chained before"
    if ema:
        mapping += "; EMA of params by optax.incremental_update in the same jit"
    return step, mapping


def _torch(case, params, grads, mode):
    if not _installed("torch"):
        raise Unavailable("torch is not installed")
    import torch

    h = _adam_hyper(case)
    if case.device == "gpu" and not torch.cuda.is_available():
        raise Unavailable("torch sees no GPU")
    dev = torch.device("cuda" if case.device == "gpu" else "cpu")
    ps = [torch.nn.Parameter(torch.from_numpy(p).to(dev, copy=True)) for p in params]
    for p, g in zip(ps, grads, strict=True):
        p.grad = torch.from_numpy(g).to(dev, copy=True)
    opt = torch.optim.Adam(
        ps, lr=h["lr"], betas=(h["b1"], h["b2"]), eps=h["eps"], amsgrad=h["amsgrad"],
        **{mode: True},
    )  # fmt: skip
    average = [p.detach().clone() for p in ps] if h["ema"] else None
    clip = h["clip"]
    sync = torch.cuda.synchronize if dev.type == "cuda" else None

    def step():
        if clip:
            torch.nn.utils.clip_grad_norm_(ps, clip, foreach=True)
        opt.step()
        if average is not None:
            with torch.no_grad():
                torch._foreach_lerp_(average, ps, 1 - EMA_MOMENTUM)
        if sync:
            sync()

    mapping = f"torch.optim.Adam({mode}=True)"
    if clip:
        mapping += "; clip_grad_norm_(foreach=True) first (rescales .grad in place)"
    if average is not None:
        mapping += "; EMA as torch._foreach_lerp_(average, params, 1 - 0.99) after the step"
    return step, mapping


BUILDERS: dict[str, Callable] = {
    GOLDEN: _golden,
    "jax": lambda c, p, g: _ours_jax(c, p, g, flatten=False),
    "jax-flat": lambda c, p, g: _ours_jax(c, p, g, flatten=True),
    "tf": _ours_tf,
    "optax": _optax,
    "torch-fused": lambda c, p, g: _torch(c, p, g, "fused"),
    "torch-foreach": lambda c, p, g: _torch(c, p, g, "foreach"),
}


# -- the layout floor -----------------------------------------------------------------
#: The layout floor, timed in the layout groups of ``test_paired``: the least update
#: there is, ``p ← p − c·g`` in one compiled program over a layout's separate arrays.
#: What it costs with 1000 tensors beyond one tensor is what XLA charges per array and
#: per loop, which any optimizer's step over those arrays pays on top of its arithmetic
#: (docs/xla.md, "Many tensors").
FLOOR_C = 1e-3


def _floor_jax(case, params, grads):
    """``jax.jit`` of ``p − c·g`` for every tensor, the parameters donated."""
    try:
        import jax
        import jax.numpy as jnp
    except ImportError as e:
        raise Unavailable(f"jax is not importable: {e}") from None
    dev = _jax_device(case.device)
    box = [[jnp.array(p, device=dev) for p in params]]
    gs = [jnp.array(g, device=dev) for g in grads]
    program = jax.jit(lambda ps, gs: [p - FLOOR_C * g for p, g in zip(ps, gs, strict=True)],
                      donate_argnums=0)  # fmt: skip

    def step():
        box[0] = program(box[0], gs)
        box[0][-1].block_until_ready()

    return step, f"jax.jit(p - {FLOOR_C}*g for each tensor), p donated"


def _floor_tf(case, params, grads):
    """One ``jit_compile`` function assigning ``p − c·g`` to each variable, called on the
    flat gradients as optcheck's TensorFlow optimizer calls its step."""
    try:
        import tensorflow as tf

        from optcheck.adapters.xla.tf_backend import _flat_call
    except ImportError as e:
        raise Unavailable(f"optcheck.adapters.xla.tf_backend is not importable: {e}") from None
    with tf.device("/CPU:0"):
        variables = [tf.Variable(p) for p in params]
        gs = [tf.constant(g) for g in grads]

    def run(*gs):
        for v, g in zip(variables, gs, strict=True):
            v.assign_sub(FLOOR_C * g)

    fn = tf.function(run, jit_compile=True, autograph=False).get_concrete_function(*gs)
    call = _flat_call(fn)

    def step():
        call(gs)

    return step, f"tf.function(jit_compile=True): v.assign_sub({FLOOR_C}*g) each, flat call"


FLOOR_BUILDERS: dict[str, Callable] = {"jax": _floor_jax, "tf": _floor_tf}


def floor_record(case: Case, built: Built, stats: dict) -> dict:
    """The ``extra_info`` of a floor (``kind: "floor"``; ``floor_s``, not ``step_s``, so
    no report takes it for a step)."""
    return {
        "kind": "floor",
        "floor_of": case.implementation,
        "N": case.n,
        "layout": case.tensors,
        "tensor_shape": list(case.shapes[0]),
        "dtype": case.dtype,
        "mapping": built.mapping,
        "compile_s": built.compile_s,
        "device": case.device,
        "versions": versions(case.implementation),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "floor_s": stats["min"],
        "floor_s_median": stats["median"],
    }


def make_data(case: Case, seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Parameters and gradients in the case's layout (2-D shapes, the case's dtype)."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(case.dtype)
    params = [rng.standard_normal(s, dtype=np.float32).astype(dtype) for s in case.shapes]
    grads = [rng.standard_normal(s, dtype=np.float32).astype(dtype) for s in case.shapes]
    return params, grads


def build(case: Case, builders=None) -> Built:
    """Build the case (with ``builders``, default :data:`BUILDERS`), run and time its
    first step, and estimate the steady-state step."""
    if case.device == "gpu" and case.implementation == GOLDEN:
        raise Unavailable("the NumPy golden runs on the CPU only")
    params, grads = make_data(case)
    t0 = time.perf_counter()
    step, mapping = (builders or BUILDERS)[case.implementation](case, params, grads)
    init_s = time.perf_counter() - t0
    del params, grads  # each implementation holds its own copies
    t0 = time.perf_counter()
    step()  # traces and compiles where the implementation compiles
    compile_s = time.perf_counter() - t0
    # A few more steps: the estimate sizes the rounds and doubles as warm-up.
    estimate, spent = math.inf, 0.0
    for _ in range(5):
        t0 = time.perf_counter()
        step()
        took = time.perf_counter() - t0
        estimate, spent = min(estimate, took), spent + took
        if spent > 0.2:
            break
    return Built(case, step, init_s, compile_s, estimate, mapping)


def plan(estimate_s: float, budget_s: float, min_rounds: int = 5, max_rounds: int = 1000):
    """(rounds, iterations, warmup_rounds) for about ``budget_s`` of steady-state timing."""
    iterations = max(1, min(10_000, math.ceil(ROUND_S / max(estimate_s, 1e-9))))
    rounds = int(budget_s / (estimate_s * iterations)) if estimate_s > 0 else max_rounds
    return max(min_rounds, min(max_rounds, rounds)), iterations, 1


# --- timing and records -----------------------------------------------------------------


class PlainBenchmark:
    """The part of pytest-benchmark's ``benchmark`` fixture that :func:`bench_case` uses,
    timed with ``time.perf_counter`` (for runs without pytest-benchmark)."""

    def __init__(self):
        self.extra_info: dict = {}
        self.group = None
        self.stats = None

    def pedantic(self, target, rounds=1, iterations=1, warmup_rounds=0):
        for _ in range(warmup_rounds * iterations):
            target()
        data = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            for _ in range(iterations):
                target()
            data.append((time.perf_counter() - t0) / iterations)
        stats = SimpleNamespace(**summary(data), data=data)
        self.stats = SimpleNamespace(stats=stats, iterations=iterations)


def summary(data: list[float]) -> dict:
    """min, max, mean, median, stddev and rounds of per-round (per-block) times."""
    return {
        "min": min(data),
        "max": max(data),
        "mean": statistics.fmean(data),
        "median": statistics.median(data),
        "stddev": statistics.stdev(data) if len(data) > 1 else 0.0,
        "rounds": len(data),
    }


def step_stats(benchmark) -> dict | None:
    """min/median/mean/stddev/rounds/iterations of a finished benchmark (None if disabled)."""
    meta = getattr(benchmark, "stats", None)
    if not meta:
        return None
    s = meta.stats
    return {
        "min": s.min,
        "median": s.median,
        "mean": s.mean,
        "stddev": s.stddev,
        "rounds": s.rounds,
        "iterations": meta.iterations,
    }


def record(case: Case, built: Built, stats: dict | None, roof: Roof | None) -> dict:
    """The ``extra_info`` of a case: what was run, the byte model, GB/s, roof fraction."""
    bpp = case.bytes_per_param
    info = {
        "implementation": case.implementation,
        "optimizer": case.optimizer,
        "class_name": case.class_name,
        "spec": case.spec,
        "feature": case.feature,
        "N": case.n,
        "layout": case.tensors,
        "tensor_shape": list(case.shapes[0]),
        "dtype": case.dtype,
        "itemsize": case.itemsize,
        "bytes_per_param": bpp,
        "bytes_per_step": bpp * case.n,
        "byte_model": byte_model.describe(
            case.class_name, case.config, BYTE_FEATURES[case.feature], keras_slots=KERAS_SLOTS
        ),
        "profile": PROFILE,
        "mapping": built.mapping,
        "init_s": built.init_s,
        "compile_s": built.compile_s,
        "device": case.device,
        "device_name": roof.device_name if roof else device_name(case.device),
        "versions": versions(case.implementation),
        "jax_cpu_async_dispatch": _jax_async_dispatch(case),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "step_s": None,
        "step_s_median": None,
        "gbps": None,
        "gbps_median": None,
        "roof_gbps": roof.gbps if roof else None,
        "roof_method": roof.method if roof else None,
        "roof_fraction": None,
    }
    if stats:
        info.update(
            step_s=stats["min"],
            step_s_median=stats["median"],
            gbps=bpp * case.n / stats["min"] / 1e9,
            gbps_median=bpp * case.n / stats["median"] / 1e9,
            rounds=stats["rounds"],
            iterations=stats["iterations"],
        )
        if roof:
            info["roof_fraction"] = info["gbps"] / roof.gbps
    return info


def _jax_async_dispatch(case: Case) -> bool | None:
    """JAX's ``jax_cpu_enable_async_dispatch`` for a JAX implementation on the CPU."""
    if case.device != "cpu" or _LIBRARIES.get(case.implementation, ("",))[0] != "jax":
        return None
    import jax

    return bool(jax.config.values["jax_cpu_enable_async_dispatch"])


def bench_case(
    case: Case, benchmark, roofs: RoofCache | None, budget_s: float = 0.5, pause_s: float = 0.0
) -> dict:
    """Build, time and record one case with a pytest-benchmark-like ``benchmark``.

    Raises :class:`Unavailable` when the case cannot run here. The roof is measured
    (once per device) before the case is built, so no case's memory is in the way.
    ``pause_s``: sleep before the timed rounds. On a CPU shared with other processes a
    thread pool that just ran flat out (XLA's, say) waits for its turn on the cores;
    a thread that slept gets it sooner, so multi-threaded kernels (torch fused Adam)
    are not billed a scheduler time slice per step.
    """
    if case.device == "gpu":
        library = _GPU_LIBRARY.get(case.implementation)
        if library is None or not gpu_visible(library):
            raise Unavailable(f"{library or case.implementation} sees no GPU")
    roof = roofs.get(case.device) if roofs is not None else None
    built = build(case)
    try:
        rounds, iterations, warmup = plan(built.estimate_s, budget_s)
        if pause_s:
            time.sleep(pause_s)
        benchmark.group = case.group
        benchmark.pedantic(built.step, rounds=rounds, iterations=iterations,
                           warmup_rounds=warmup)  # fmt: skip
        info = record(case, built, step_stats(benchmark), roof)
    finally:
        del built
        gc.collect()
    benchmark.extra_info.update(info)
    return info


# -- interleaved groups ------------------------------------------------------------------
#: Blocks of a ``test_paired`` group: each block times every case of the group in turn.
PAIRED_BLOCKS = 32


@dataclass
class Group:
    """Cases timed together by ``test_paired``, and layout floors (:data:`FLOOR_BUILDERS`,
    ``SGD`` cases: the floor's arrays are the parameters and the gradients)."""

    cases: list[Case]
    floors: list[Case] = field(default_factory=list)


def paired_groups(grid_name: str) -> dict[str, Group]:
    """The cases each ratio target of :mod:`benchmarks.targets` compares (N = 1e7, one
    tensor unless named, cpu), by group, for ``test_paired``; the default and full grids
    only."""
    if grid_name not in ("default", "full"):
        return {}
    n = 10**7

    def adam(impl, tensors=1):
        return Case(impl, "Adam", n=n, tensors=tensors)

    def floors(impl):
        return [Case(impl, "SGD", n=n, tensors=t) for t in (1, 1000)]

    return {
        "vs-torch": Group([adam("torch-fused"), adam("jax"), adam("tf")]),
        "layout-jax": Group(
            [adam("jax"), adam("jax", 1000), adam("jax-flat", 1000)], floors("jax")
        ),
        "layout-tf": Group([adam("tf"), adam("tf", 1000)], floors("tf")),
        "bytes-jax": Group([Case("jax", name, n=n) for name in OPTIMIZERS]),
        "bytes-tf": Group([Case("tf", name, n=n) for name in OPTIMIZERS]),
    }


def _first_and_second(kernel: Callable[[], None]) -> float:
    """Run ``kernel`` twice (compilation and first touch, then steady state); the
    second run's time."""
    kernel()
    t0 = time.perf_counter()
    kernel()
    return time.perf_counter() - t0


def bench_paired(
    name: str, group: Group, benchmark, roofs: RoofCache | None, budget_s: float = 0.5,
    pause_s: float = 0.0, blocks: int = PAIRED_BLOCKS,
) -> dict:  # fmt: skip
    """Time the cases of one group in alternating blocks: all built first, then each
    block times every case for ``budget_s / blocks`` in turn, and the session roof's
    kernels (:func:`roof_kernel`) over the cases' working set. A shared machine's
    bandwidth moves by tens of per cent within seconds (benchmarks/README.md), so cases timed
    one after the other, or a roof measured at the start, compare different machines;
    interleaved, each had the same chances. ``extra_info``: ``kind: "paired"`` and one
    step record per case (:func:`record`, with ``timing: "interleaved"``, the group, each
    block's best step, and the roof of these blocks: the best, and each block's best
    kernel in ``roof_block_gbps``), whose ``min`` is the best block and
    ``median`` the median block, and the group's floors (``floors``, :func:`floor_record`,
    timed in the same blocks). Cases that cannot run here are listed in ``skipped``;
    fewer than two raise :class:`Unavailable`.
    """
    session_roof = roofs.get("cpu") if roofs is not None else None
    n = group.cases[0].n
    built, floors, skipped = [], [], {}
    try:
        for cases, builders, out in ((group.cases, None, built),
                                     (group.floors, FLOOR_BUILDERS, floors)):  # fmt: skip
            for case in cases:
                try:
                    out.append(build(case, builders))
                except Unavailable as e:
                    skipped[case.id] = str(e)
        if len(built) < 2:
            raise Unavailable(f"fewer than two cases of {name} run here: {skipped}")
        # The roof's kernels over the cases' working set, timed in the same blocks.
        kernels = {method: roof_kernel("cpu", method, 2 * n) for method in
                   (session_roof.by_method if session_roof else ())}  # fmt: skip
        timed = [(b.step, b.estimate_s) for b in built + floors]
        timed += [(kernel, _first_and_second(kernel)) for kernel, _ in kernels.values()]
        plans = [plan(estimate_s, budget_s / blocks, min_rounds=3)[:2]
                 for _, estimate_s in timed]  # fmt: skip
        block_mins: list[list[float]] = [[] for _ in timed]

        def block():
            for (step, _), (rounds, iterations), mins in zip(timed, plans, block_mins,
                                                             strict=True):  # fmt: skip
                best = math.inf
                for _ in range(rounds):
                    t0 = time.perf_counter()
                    for _ in range(iterations):
                        step()
                    best = min(best, (time.perf_counter() - t0) / iterations)
                mins.append(best)

        block()  # warm-up, not counted
        for mins in block_mins:
            mins.clear()
        if pause_s:
            time.sleep(pause_s)
        benchmark.group = f"paired {name}"
        benchmark.pedantic(block, rounds=blocks, iterations=1)
        steps = len(built) + len(floors)
        kernel_gbps = [[nbytes / t / 1e9 for t in mins] for (_, nbytes), mins
                       in zip(kernels.values(), block_mins[steps:], strict=True)]  # fmt: skip
        by_method = dict(zip(kernels, map(max, kernel_gbps), strict=True))
        block_roof = [max(rates) for rates in zip(*kernel_gbps, strict=True)]
        roof = None
        if by_method:
            best = max(by_method, key=by_method.get)
            roof = Roof("cpu", by_method[best], f"{best}, interleaved", by_method, 2 * n, None,
                        session_roof.device_name)  # fmt: skip
        records, floor_records = [], []
        for i, b in enumerate(built + floors):
            mins = block_mins[i]
            stats = {**summary(mins), "iterations": plans[i][1]}
            if i < len(built):
                info = record(b.case, b, stats, roof)
                info.update(roof_by_method=by_method, roof_block_gbps=block_roof,
                            session_roof_gbps=session_roof.gbps if session_roof else None)
                test, out = "test_paired", records
            else:
                info, test, out = floor_record(b.case, b, stats), "floor", floor_records
            info.update(timing="interleaved", group=name, block_min_s=list(mins))
            out.append({"name": f"{test}[{name}:{b.case.id}]", "extra_info": info,
                        "stats": stats})  # fmt: skip
    finally:
        del built, floors
        gc.collect()
    info = {"kind": "paired", "group": name, "blocks": blocks, "records": records,
            "floors": floor_records, "skipped": skipped}  # fmt: skip
    benchmark.extra_info.update(info)
    return info


def run_case(case: Case, roofs: RoofCache | None = None, budget_s: float = 0.5) -> dict:
    """One case without pytest-benchmark: ``{"extra_info": ..., "stats": ...}``, the shape
    of an entry of pytest-benchmark's JSON ``benchmarks`` list."""
    bench = PlainBenchmark()
    info = bench_case(case, bench, roofs, budget_s)
    return {"name": f"test_step[{case.id}]", "extra_info": info, "stats": step_stats(bench)}
