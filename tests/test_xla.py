"""optcheck's own XLA implementations (optcheck.adapters.xla): conformance on a sample
of the suite, the functional JAX API, the TensorFlow optimizer API, the cross-device
sum. Skipped where JAX / TensorFlow are not installed; ``gpu`` tests skip without a GPU.
The full ``optcheck verify --adapter jax|tf --level ci`` runs are recorded in the issue
notes (minutes each)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from optcheck.adapters.numpy_reference import ReferenceAdapter
from optcheck.conformance import engine
from optcheck.conformance.features import features_for
from optcheck.conformance.scenario import Scenario
from optcheck.conformance.strategies import scenarios
from optcheck.reference.optimizers import MODULES

from .helpers import cancelling_clipped_replicas

PROFILES = ("keras2", "keras3")
SETTINGS = settings(
    max_examples=2, deadline=None, derandomize=True, database=None,
    suppress_health_check=list(HealthCheck),
)  # fmt: skip


def _conforms(adapter, optimizer, profile, data, exclude=()):
    features = [f for f in features_for(optimizer, profile) if f not in exclude]
    feature = data.draw(st.sampled_from(features), label="feature")
    dtype = data.draw(st.sampled_from(["float32", "bfloat16", "float64"]), label="dtype")
    scenario = data.draw(scenarios(optimizer, feature, dtype, profile), label="scenario")
    assume(not adapter.capabilities().missing(optimizer, scenario.needs, dtype, profile))
    found = engine.check(scenario, adapter)
    assert found is None, f"{adapter.name} deviates: {found}\n{scenario.to_json()}"


# -- JAX ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def jax_adapter():
    pytest.importorskip("jax")
    from optcheck.adapters.jax_xla import factory

    return factory()


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("optimizer", sorted(MODULES))
@SETTINGS
@given(data=st.data())
def test_jax_conforms(jax_adapter, optimizer, profile, data):
    _conforms(jax_adapter, optimizer, profile, data, exclude=("sparse",))


def test_jax_functional_api_donates_and_flattens():
    pytest.importorskip("jax")
    from optcheck.adapters.xla import jax_backend as xj

    jnp = xj.jnp
    spec = {"class_name": "Adam", "config": {"learning_rate": 0.1, "use_ema": True}}
    rng = np.random.default_rng(0)
    values = [rng.normal(size=s).astype(np.float32) for s in [(3, 4), (5,), (2, 2, 2)]]
    grads = [rng.normal(size=v.shape).astype(np.float32) for v in values]

    opt = xj.optimizer(spec)
    params = [jnp.asarray(v) for v in values]
    state = opt.init(params)
    given_params = params
    params, state = opt.update([jnp.asarray(g) for g in grads], state, params)
    assert all(p.is_deleted() for p in given_params), "params must be donated"

    flat = xj.optimizer(spec, flatten=True)
    flat_params = flat.pack([jnp.asarray(v) for v in values])
    flat_state = flat.init(flat.unpack(flat_params))
    flat_params, flat_state = flat.update(
        flat.pack([jnp.asarray(g) for g in grads]), flat_state, flat_params
    )
    for a, b in zip(flat.unpack(flat_params), params, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)

    with pytest.raises(ValueError, match="Adafactor's update is not element-wise"):
        xj.optimizer({"class_name": "Adafactor", "config": {}}, flatten=True).pack(params)


def test_jax_replicas_are_summed_across_devices():
    """Three host devices; the per-replica gradients are summed by an all-reduce."""
    pytest.importorskip("jax")
    script = textwrap.dedent(
        """
        import numpy as np
        from optcheck.adapters.xla import jax_backend as xj
        import jax
        assert len(jax.devices()) >= 3, jax.devices()
        jnp = xj.jnp
        aggregate = xj.replica_sum(3)
        parts = [jnp.full((4,), float(2 ** r), jnp.float32) for r in range(3)]
        text = jax.jit(lambda ps: aggregate([[p] for p in ps])).lower(parts).as_text()
        assert "all_reduce" in text or "all-reduce" in text, text[:2000]
        opt = xj.optimizer({"class_name": "SGD", "config": {"learning_rate": 1.0}})
        params = [jnp.zeros((4,), jnp.float32)]
        state = opt.init(params)
        params, state = opt.update([tuple(parts)], state, params)
        np.testing.assert_array_equal(np.asarray(params[0]), -7.0)
        print("ok")
        """
    )
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               JAX_PLATFORMS="cpu")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-3000:]


@pytest.mark.gpu
def test_jax_runs_on_the_gpu(jax_adapter):
    import jax

    if jax.default_backend() != "gpu":
        pytest.skip("no GPU visible to JAX")
    from optcheck.adapters.xla import jax_backend as xj

    opt = xj.optimizer({"class_name": "Adam", "config": {}})
    params = [xj.jnp.ones((8,), xj.jnp.float32)]
    state = opt.init(params)
    params, state = opt.update([xj.jnp.ones((8,), xj.jnp.float32)], state, params)
    assert params[0].devices().pop().platform == "gpu"


@pytest.mark.parametrize("backend", ["jax_adapter", "tf_adapter"])
def test_clipped_replicas_that_cancel_in_keras_cancel_here(backend, request):
    """clipnorm's division by the norm is not XLA's multiplication by the reciprocal in
    16-bit types (core._by_broadcast): Keras 3's float16 Adamax gives 0/0 and so do we."""
    adapter = request.getfixturevalue(backend)
    scenario = cancelling_clipped_replicas()
    assert np.isnan(ReferenceAdapter().open(scenario).step(scenario.steps[0]).variables[0])
    found = engine.check(scenario, adapter)
    assert found is None, f"{adapter.name} deviates: {found}"


def _adafactor_scenario(profile, dtype, gradients):
    d = np.dtype(dtype)
    rng = np.random.default_rng(3)
    shape = gradients[0].shape
    return Scenario(
        optimizer="Adafactor", config={}, profile=profile, dtype=dtype,
        initial_values=[rng.normal(size=shape).astype(d)],
        steps=[[g.astype(d)] for g in gradients], needs=(),
    )  # fmt: skip


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("backend", ["jax_adapter", "tf_adapter"])
def test_adafactor_factored_square_root_conforms_and_falls_back(backend, profile, request):
    """float32 Adafactor takes rsqrt(v) as rsqrt(row)·rsqrt(c) (core._factored_rms_and_u):
    within the tolerance on a 3-D variable, and where row·c underflows (an all-zero row
    and column with ε1 = 1e-30: v = 1e-61 → 0, u = 0·∞) the element-wise formula's NaN,
    as Keras computes it."""
    adapter = request.getfixturevalue(backend)
    rng = np.random.default_rng(4)
    dense = [rng.normal(size=(3, 6, 5)) * 10 for _ in range(3)]
    sparse = np.zeros((6, 5))
    sparse[0, 0] = 5.0
    for steps in (dense, [sparse]):
        scenario = _adafactor_scenario(profile, "float32", steps)
        found = engine.check(scenario, adapter)
        assert found is None, f"{adapter.name} deviates: {found}"
    golden = ReferenceAdapter().open(scenario).step(scenario.steps[0]).variables[0]
    assert np.isnan(golden).all()  # what the fallback must reproduce


# -- TensorFlow -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def tf_adapter():
    pytest.importorskip("tensorflow")
    from optcheck.adapters.tf_xla import factory

    return factory()


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("optimizer", ["SGD", "Adam", "Ftrl", "Nadam", "RMSprop", "Lion"])
@settings(SETTINGS, max_examples=1)
@given(data=st.data())
def test_tf_conforms(tf_adapter, optimizer, profile, data):
    _conforms(tf_adapter, optimizer, profile, data)


def test_tf_optimizer_has_the_seed_page_api():
    tf = pytest.importorskip("tensorflow")
    from optcheck.adapters.xla import tf_backend as xt

    var = tf.Variable([1.0, 2.0])
    table = tf.Variable([[1.0], [2.0], [3.0]])
    opt = xt.Optimizer.from_spec({"class_name": "SGD", "config": {"learning_rate": 0.1}})
    opt.minimize(lambda: tf.reduce_sum(var**2), [var])
    np.testing.assert_allclose(var.numpy(), [0.8, 1.6], rtol=1e-6)
    assert int(opt.iterations.numpy()) == 1
    # Sparse rows with a repeated index are summed (keras2), inside the XLA program.
    sparse = xt.Optimizer.from_spec({"class_name": "SGD", "config": {"learning_rate": 1.0}})
    grad = tf.IndexedSlices(tf.constant([[1.0], [2.0]]), tf.constant([1, 1]), tf.constant([3, 1]))
    sparse.apply_gradients([(grad, table)])
    np.testing.assert_array_equal(table.numpy()[:, 0], [1.0, -1.0, 3.0])
    assert opt.get_config()["learning_rate"] == pytest.approx(0.1)


def test_tf_gradients_that_do_not_fit_raise_naming_the_variable():
    """A gradient of another dtype or shape raises the reference's TypeError /
    ValueError naming the variable, before any state changes; the compiled step is
    called on flat tensors, so it must never see inputs of another signature."""
    tf = pytest.importorskip("tensorflow")
    from optcheck.adapters.xla import tf_backend as xt

    var = tf.Variable(np.ones((2, 3), np.float32), name="kernel")
    table = tf.Variable(np.ones((4, 3), np.float32), name="table")
    opt = xt.Optimizer.from_spec({"class_name": "Adam", "config": {}})
    opt.apply_gradients([(tf.fill((2, 3), 0.5), var)])
    before = [var.numpy(), *(s.numpy() for s in opt._slots[0].values()), opt.iterations.numpy()]
    with pytest.raises(TypeError, match=r"'kernel.*dtype float64 but the variable is float32"):
        opt.apply_gradients([(tf.fill((2, 3), np.float64(0.5)), var)])
    with pytest.raises(ValueError, match=r"shape \(3, 2\) but the variable has shape \(2, 3"):
        opt.apply_gradients([(tf.fill((3, 2), 0.5), var)])
    half = tf.fill((2, 3), np.float16(1))
    with pytest.raises(TypeError, match=r"variable 'kernel.*dtype float16"):
        opt.apply_gradients([((half, half), var)])
    after = [var.numpy(), *(s.numpy() for s in opt._slots[0].values()), opt.iterations.numpy()]
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)
    sparse = xt.Optimizer.from_spec({"class_name": "SGD", "config": {}})
    rows = tf.IndexedSlices(tf.ones((2, 2)), tf.constant([0, 1]), tf.constant([4, 3]))
    with pytest.raises(ValueError, match=r"variable 'table.*rows of shape \(2,\)"):
        sparse.apply_gradients([(rows, table)])
    # a new layout (sparse, then dense) traces its own step and runs it
    row = tf.IndexedSlices(tf.ones((1, 3)), tf.constant([2]), tf.constant([4, 3]))
    sparse.apply_gradients([(row, table)])
    sparse.apply_gradients([(tf.ones((4, 3)), table)])
    np.testing.assert_allclose(table.numpy()[:, 0], [0.99, 0.99, 0.98, 0.99], rtol=1e-6)


def test_tf_graph_mode_matches_xla():
    tf = pytest.importorskip("tensorflow")
    from optcheck.adapters.xla import tf_backend as xt

    spec = {"class_name": "Adam", "config": {"learning_rate": 0.1, "global_clipnorm": 1.0}}
    out = []
    for jit in (True, False):
        var = tf.Variable(np.linspace(-1, 1, 7).astype(np.float32))
        opt = xt.Optimizer.from_spec(spec, jit_compile=jit)
        for _ in range(3):
            opt.apply_gradients([(tf.constant(np.arange(7, dtype=np.float32)), var)])
        out.append(var.numpy())
    np.testing.assert_allclose(out[0], out[1], rtol=1e-6, atol=1e-7)


def test_tf_max_and_min_propagate_nan_under_jit():
    """TF's XLA:CPU max/min drop a NaN second operand (fast min/max); the golden's
    ``np.maximum`` keeps it, so our TF ops must too, in either order."""
    tf = pytest.importorskip("tensorflow")
    from optcheck.adapters.xla.ops import TfOps

    ops = TfOps()
    a = tf.constant([0.006, np.nan, 1.0, 2.0])
    b = tf.constant([np.nan, 0.006, np.nan, 3.0])
    step = tf.function(lambda a, b: (ops.maximum(a, b), ops.minimum(a, b), ops.maximum(b, a)),
                       jit_compile=True)  # fmt: skip
    for got, last in zip(step(a, b), (3.0, 2.0, 3.0), strict=True):
        np.testing.assert_array_equal(got.numpy(), [np.nan, np.nan, np.nan, last])
    scalar = tf.function(lambda x: ops.maximum(tf.constant(0.006), x), jit_compile=True)
    assert np.isnan(scalar(tf.constant(np.nan)).numpy())


def _run_tf(script: str, cpus=0, timeout=600):
    """``script`` in a fresh interpreter, after splitting the host CPU into ``cpus``
    logical devices (possible only before TensorFlow initialises); it prints "ok" when
    its assertions hold."""
    prelude = (
        "import tensorflow as tf\n"
        "tf.config.set_logical_device_configuration(tf.config.list_physical_devices('CPU')[0], "
        f"[tf.config.LogicalDeviceConfiguration()] * {cpus})\n"
    )
    code = (prelude if cpus else "") + textwrap.dedent(script)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-3000:]


def test_tf_mirrored_strategy_matches_the_golden():
    """MirroredStrategy over two logical CPUs, each replica its own gradients: with
    aggregation every device's copy is the golden's step on the PerReplica sum; with
    skip_gradients_aggregation device r's copy is the golden's step on replica r's
    gradients. Clipping shows the profiles' order (keras3 clips each replica first)."""
    pytest.importorskip("tensorflow")
    _run_tf(
        """
        import numpy as np
        import tensorflow as tf
        from optcheck.adapters.xla import tf_backend as xt
        from optcheck.reference import optimizers
        from optcheck.reference.sparse import PerReplica
        from optcheck.reference.variable import Variable

        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        local = strategy.experimental_local_results
        rng = np.random.default_rng(0)
        init = rng.normal(size=(2, 3)).astype(np.float32)
        steps = [[rng.normal(size=(2, 3)).astype(np.float32) for _ in range(2)] for _ in range(3)]

        def golden(spec, profile, grads, skip):
            opt, var = optimizers.deserialize(spec, profile=profile), Variable(init)
            for g in grads:
                opt.apply_gradients([(g, var)], skip_gradients_aggregation=skip)
            return var.numpy()

        def mirrored(spec, profile, skip):
            with strategy.scope():
                var = tf.Variable(init)
                opt = xt.Optimizer.from_spec(spec, profile=profile)
            for parts in steps:
                def replica():
                    r = int(tf.distribute.get_replica_context().replica_id_in_sync_group)
                    opt.apply_gradients([(tf.constant(parts[r]), var)],
                                        skip_gradients_aggregation=skip)
                strategy.run(replica)
            assert [int(i.numpy()) for i in local(opt.iterations)] == [3, 3]
            return [c.numpy() for c in local(var)]

        for profile in ("keras2", "keras3"):
            for spec in ({"class_name": "SGD", "config": {"learning_rate": 0.1, "momentum": 0.9}},
                         {"class_name": "Adam", "config": {"learning_rate": 0.1, "clipnorm": 1.0}}):
                want = golden(spec, profile, [PerReplica(tuple(p)) for p in steps], False)
                for got in mirrored(spec, profile, skip=False):
                    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
                got = mirrored(spec, profile, skip=True)
                for r in range(2):
                    want = golden(spec, profile, [p[r] for p in steps], True)
                    np.testing.assert_allclose(got[r], want, rtol=1e-6, atol=1e-6)
        print("ok")
        """,
        cpus=2,
    )


def test_tf_mirrored_strategy_all_reduces_across_devices():
    """Replica r holds only its own gradients (2^r, and rows at r, r + 1): every
    device ending at the sum proves the cross-replica all-reduce; without it (skip)
    the devices keep apart. The seed page's cross-replica call updates every copy."""
    pytest.importorskip("tensorflow")
    _run_tf(
        """
        import numpy as np
        import tensorflow as tf
        from optcheck.adapters.xla import tf_backend as xt

        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        local = strategy.experimental_local_results
        with strategy.scope():
            var = tf.Variable(np.zeros(4, np.float32))
            table = tf.Variable(np.zeros((3, 1), np.float32))
            opt = xt.Optimizer.from_spec({"class_name": "SGD", "config": {"learning_rate": 1.0}})
        assert isinstance(var, tf.distribute.DistributedValues) and len(local(var)) == 2

        def replica(skip):
            r = int(tf.distribute.get_replica_context().replica_id_in_sync_group)
            rows = tf.IndexedSlices(tf.constant([[1.0], [2.0]]) * 4.0**r, tf.constant([r, r + 1]),
                                    tf.constant([3, 1]))
            opt.apply_gradients([(tf.fill([4], 2.0**r), var), (rows, table)],
                                skip_gradients_aggregation=skip)

        strategy.run(replica, args=(False,))
        for c in local(var):
            np.testing.assert_array_equal(c.numpy(), [-3.0] * 4)
        for c in local(table):  # rows concatenated across replicas, the repeated one summed
            np.testing.assert_array_equal(c.numpy()[:, 0], [-1.0, -6.0, -8.0])
        strategy.run(replica, args=(True,))
        np.testing.assert_array_equal([c.numpy()[0] for c in local(var)], [-4.0, -5.0])
        with strategy.scope():
            opt.apply_gradients([(tf.ones(4), var)], skip_gradients_aggregation=True)
        np.testing.assert_array_equal([c.numpy()[0] for c in local(var)], [-5.0, -6.0])
        assert [int(i.numpy()) for i in local(opt.iterations)] == [3, 3]
        print("ok")
        """,
        cpus=2,
    )


def test_tf_adapter_runs_replicas_through_mirrored_strategy():
    """The conformance engine on replica scenarios through the ``tf`` adapter, whose
    factory gives the process four logical CPUs: the sessions run under a
    MirroredStrategy with as many replicas as the scenario, and conform."""
    pytest.importorskip("tensorflow")
    _run_tf(
        """
        import numpy as np
        from optcheck.adapters.tf_xla import factory
        from optcheck.conformance import engine
        from optcheck.conformance.scenario import Scenario
        from optcheck.reference.sparse import IndexedSlices, PerReplica

        adapter = factory()
        rng = np.random.default_rng(1)

        def arrays(*shape):
            return rng.normal(size=shape).astype(np.float32)

        def rows(*indices):
            return IndexedSlices(arrays(len(indices), 2), np.asarray(indices), (3, 2))

        cases = [
            # keras3 clips each replica before the sum; a None gradient at step 2.
            Scenario("Adam", {"learning_rate": 0.1, "clipnorm": 0.5}, "keras3", "float32",
                     [arrays(3, 2), arrays(4)],
                     [[PerReplica((arrays(3, 2), arrays(3, 2), arrays(3, 2))),
                       PerReplica((arrays(4), arrays(4), arrays(4)))],
                      [PerReplica((arrays(3, 2), arrays(3, 2), arrays(3, 2))), None]],
                     feature="replicas"),
            # keras2 concatenates the replicas' rows, clips, then sums repeated indices.
            Scenario("Adagrad", {"learning_rate": 0.1, "clipnorm": 1.0}, "keras2", "float32",
                     [arrays(3, 2)], [[PerReplica((rows(0, 1), rows(1, 1)))]] * 2,
                     feature="replicas", needs=("sparse",)),
            Scenario("SGD", {"learning_rate": 0.1, "momentum": 0.5}, "keras2", "float32",
                     [arrays(5)], [[arrays(5)], [arrays(5)]], feature="skip_aggregation",
                     skip_gradients_aggregation=True),
        ]
        for scenario, replicas in zip(cases, (3, 2, 2)):
            session = adapter.open(scenario)
            assert session._strategy.num_replicas_in_sync == replicas, scenario.describe()
            found = engine.check(scenario, adapter)
            assert found is None, (found, scenario.describe())
        print("ok")
        """
    )


# -- one loop per variable ---------------------------------------------------------------
FUSED_SPECS = [
    (name, config)
    for name in sorted(set(MODULES) - {"Adafactor"})
    for config in ({}, {"use_ema": True, "ema_overwrite_frequency": 2}, {"weight_decay": 0.1},
                   {"global_clipnorm": 0.5})
]  # fmt: skip


def steps_jax(spec, profile, fused, steps=3):
    """Parameters and slots after ``steps`` steps of the jax backend with the fused
    (one loop per variable) or the plain trace, and the step's optimized HLO."""
    from optcheck.adapters.xla import jax_backend as xj
    from optcheck.adapters.xla.ops import JaxOps

    ops, saved = JaxOps(), xj.OPS
    if not fused:
        ops.__dict__["barrier"] = None  # the plain trace
    elif ops.barrier is None:
        pytest.skip("this XLA does not fuse sibling outputs")
    xj.OPS = ops
    xj._compiled.cache_clear()
    try:
        rng = np.random.default_rng(1)
        shapes = [(8, 16), (5,), (3, 4)]
        opt = xj.optimizer(spec, profile=profile, fuse_min_size=0)
        params = [xj.jnp.asarray(rng.normal(size=s).astype(np.float32)) for s in shapes]
        state = opt.init(params)
        for _ in range(steps):
            grads = [xj.jnp.asarray(rng.normal(size=s).astype(np.float32)) for s in shapes]
            params, state = opt.update(grads, state, params)
        program = next(iter(opt._programs.values()))
        hlo = program.lower(opt._hyper, opt._device_learning_rate(0), params, state, grads,
                            None).compile().as_text()  # fmt: skip
    finally:
        xj.OPS = saved
        xj._compiled.cache_clear()
    values = [np.asarray(p) for p in params]
    values += [np.asarray(v) for s in state["slots"] for v in s.values()]
    return values, hlo


def _loops_writing(hlo: str, shape) -> int:
    """Fusions in the entry computation with an output of ``shape`` (float32)."""
    entry = hlo[hlo.index("ENTRY"):]
    target = "f32[" + ",".join(map(str, shape)) + "]"
    return sum(
        1 for line in entry.splitlines()
        if " fusion(" in line and target in line.split(" fusion(")[0]
    )  # fmt: skip


def _spec(name, config):
    return {"class_name": name, "config": {"learning_rate": 0.01, **config}}


def _python(script: str, **env) -> subprocess.CompletedProcess:
    """Run ``script`` in a fresh Python at the repository root: XLA options only take
    effect before a process's first XLA backend."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    environ = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", CPU_FUSION_ENV)}
    environ.update(JAX_PLATFORMS="cpu", **env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], env=environ,
                          capture_output=True, text=True, timeout=600, cwd=root)  # fmt: skip


CPU_FUSION_ENV = "OPTCHECK_XLA_CPU_FUSION"


def _each_fused_spec(check: str, **env) -> None:
    """Run ``check`` — statements that append a message to ``bad`` for a failure, with
    ``name``, ``config``, ``profile`` and ``spec`` bound — for every spec of
    :data:`FUSED_SPECS` in both profiles, in a fresh process with the opt-in fusion;
    assert that none failed."""
    script = (
        "import numpy as np\n"
        "from tests.test_xla import FUSED_SPECS, PROFILES, _loops_writing, _spec, steps_jax\n"
        "bad = []\n"
        "for name, config in FUSED_SPECS:\n"
        "    for profile in PROFILES:\n"
        "        spec = _spec(name, config)\n"
        + textwrap.indent(textwrap.dedent(check).strip() + "\n", " " * 8)
        + "print('\\n'.join(bad) or 'ok', len(FUSED_SPECS) * len(PROFILES))\n"
    )
    done = _python(script, **{CPU_FUSION_ENV: "1"}, **env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == f"ok {len(FUSED_SPECS) * len(PROFILES)}", done.stdout


def test_jax_fused_step_is_one_loop_per_variable():
    """With XLA:CPU's multi-output fusion (opt-in), XLA writes each variable's
    parameter and slots (and average) in one loop, for every element-wise optimizer with
    EMA, weight decay and global clipping, in both profiles: the plain trace takes one
    loop per array written (core._fused_tail)."""
    pytest.importorskip("jax")
    _each_fused_spec(
        """
        _, hlo = steps_jax(spec, profile, fused=True)
        loops = _loops_writing(hlo, (8, 16))
        if loops != 1:
            bad.append(f"{name} {config} {profile}: {loops} loops")
        """
    )


def test_jax_fused_step_computes_the_plain_steps_values():
    """The fused trace does the plain trace's operations: bit-identical results for
    every spec of the test above. Checked with XLA:CPU limited to AVX, i.e. without
    FMA instructions: with them LLVM contracts a multiply and an add into one rounding
    wherever the loop's code allows, which differs between two loop structures (Nadam
    by one ulp) and is a rounding the tolerance policy bounds for every adapter."""
    pytest.importorskip("jax")
    _each_fused_spec(
        """
        fused, _ = steps_jax(spec, profile, fused=True)
        plain, _ = steps_jax(spec, profile, fused=False)
        for i, (a, b) in enumerate(zip(fused, plain, strict=True)):
            if not np.array_equal(a, b, equal_nan=True):
                bad.append(f"{name} {config} {profile} output {i}: "
                           f"max |diff| {np.nanmax(np.abs(a - b))}")
        """,
        XLA_FLAGS="--xla_cpu_max_isa=AVX",
    )


def test_jax_fuses_variables_from_fuse_min_size_on():
    """By default a variable of at least jax_backend.FUSE_MIN_SIZE elements (2¹³, so
    10⁴) gets one loop and a smaller one in the same step keeps the plain trace's loops;
    a bad threshold is refused when the optimizer is made."""
    pytest.importorskip("jax")
    done = _python(
        """
        import pytest
        from optcheck.adapters.xla import core
        from optcheck.adapters.xla import jax_backend as xj
        from tests.test_xla import _loops_writing
        assert xj.OPS.barrier is not None
        assert xj.FUSE_MIN_SIZE <= 10**4 < core.FUSE_MIN_SIZE
        big = (128, xj.FUSE_MIN_SIZE // 128)
        opt = xj.optimizer({"class_name": "Adam", "config": {}})
        params = [xj.jnp.ones(big, xj.jnp.float32), xj.jnp.ones((8, 16), xj.jnp.float32)]
        grads = [xj.jnp.full(p.shape, 0.5, xj.jnp.float32) for p in params]
        state = opt.init(params)
        params, state = opt.update(grads, state, params)
        program = next(iter(opt._programs.values()))
        hlo = program.lower(opt._hyper, opt._device_learning_rate(0), params, state, grads,
                            None).compile().as_text()
        print(_loops_writing(hlo, big), _loops_writing(hlo, (8, 16)) > 1)
        for bad in (-1, 1.5, True):
            with pytest.raises(ValueError, match="fuse_min_size must be an integer"):
                xj.optimizer({"class_name": "Adam", "config": {}}, fuse_min_size=bad)
        """,
        **{CPU_FUSION_ENV: "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["1", "True"], done.stdout


def test_jax_adafactor_keeps_no_full_size_temporary():
    """Adafactor's step writes two full-size arrays, the parameter and its v slot (in
    place: the donated v is kept though the step does not read it), and no temporary:
    the row and column statistics and RMS(u) each recompute g² + ε1 or u inside their
    reduction (core.recomputed). The values are the shared trace's, bit for bit (XLA:CPU
    limited to AVX, as for the fused tail), for variables of rank 1, 2 and 3."""
    pytest.importorskip("jax")
    done = _python(
        """
        import numpy as np
        from optcheck.adapters.xla import jax_backend as xj
        from optcheck.adapters.xla.ops import JaxOps
        from tests.test_xla import _loops_writing

        def run(shapes, shared, steps=3):
            ops = JaxOps()
            if shared:
                ops.__dict__["unshare"] = None
            saved, xj.OPS = xj.OPS, ops
            xj._compiled.cache_clear()
            try:
                rng = np.random.default_rng(2)
                opt = xj.optimizer({"class_name": "Adafactor", "config": {}})
                params = [xj.jnp.asarray(rng.normal(size=s).astype(np.float32)) for s in shapes]
                state = opt.init(params)
                for _ in range(steps):
                    grads = [xj.jnp.asarray(rng.normal(size=s).astype(np.float32))
                             for s in shapes]
                    params, state = opt.update(grads, state, params)
                program = next(iter(opt._programs.values()))
                compiled = program.lower(opt._hyper, opt._device_learning_rate(0), params,
                                         state, grads, None).compile()
            finally:
                xj.OPS = saved
                xj._compiled.cache_clear()
            values = [np.asarray(p) for p in params]
            values += [np.asarray(v) for s in state["slots"] for v in s.values()]
            return values, compiled.as_text()

        big = (256, 384)
        _, hlo = run([big], shared=False, steps=1)
        _, shared_hlo = run([big], shared=True, steps=1)
        alias = hlo.splitlines()[0].count("may-alias")
        print(_loops_writing(hlo, big), _loops_writing(shared_hlo, big), alias)
        shapes = [(8, 16), (5,), (2, 3, 4)]
        a, _ = run(shapes, shared=False)
        b, _ = run(shapes, shared=True)
        print(all(np.array_equal(x, y, equal_nan=True) for x, y in zip(a, b, strict=True)))
        """,
        XLA_FLAGS="--xla_cpu_max_isa=AVX",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    loops, shared_loops, aliased = done.stdout.split()[:3]
    # p and v; the shared trace also writes g² + ε1 and u
    assert (int(loops), int(shared_loops)) == (2, 4), done.stdout
    # parameter, count, r, c and v are updated in place
    assert int(aliased) == 5, done.stdout
    assert done.stdout.split()[3] == "True", done.stdout


def test_cpu_fusion_is_opt_in_and_scatters_compile_by_default():
    """optcheck never sets XLA:CPU's multi-output fusion silently: it aborts the
    process on a program with a scatter beside another use of its operand (jaxlib
    0.10.2). Importing the backend leaves a user's scatter working and traces the plain
    step; with the opt-in the same step is one loop."""
    pytest.importorskip("jax")
    done = _python(
        """
        import os
        from optcheck.adapters.xla import CPU_FUSION, jax_backend as xj
        import jax, jax.numpy as jnp
        assert CPU_FUSION not in os.environ.get("XLA_FLAGS", ""), os.environ["XLA_FLAGS"]
        x = jnp.ones((8, 4))
        y, z = jax.jit(lambda x, i, v: (x.at[i].add(v), x * 2.0))(
            x, jnp.array([1, 3]), jnp.ones((2, 4)))
        assert float(y.sum()) == 40.0 and float(z.sum()) == 64.0
        print(xj.OPS.barrier is None)
        """
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["True"], done.stdout


def test_jax_warns_and_traces_plainly_when_xla_cannot_fuse_siblings():
    """With the opt-in, a process whose JAX backend exists before optcheck.adapters.xla
    sets its XLA options gets the plain trace (same values) and a warning naming the
    fix."""
    pytest.importorskip("jax")
    done = _python(
        """
        import warnings
        import jax
        jax.devices()  # the CPU backend now exists, without multi-output fusion
        from optcheck.adapters.xla import jax_backend as xj
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert xj.OPS.barrier is None
        assert any("import optcheck.adapters.xla before using JAX" in str(w.message)
                   for w in caught), [str(w.message) for w in caught]
        opt = xj.optimizer({"class_name": "SGD", "config": {"learning_rate": 0.5}},
                           fuse_min_size=0)
        params = [xj.jnp.ones((4,), xj.jnp.float32)]
        state = opt.init(params)
        params, state = opt.update([xj.jnp.ones((4,), xj.jnp.float32)], state, params)
        assert float(params[0][0]) == 0.5, params
        print("ok")
        """,
        **{CPU_FUSION_ENV: "1"},
    )
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-3000:]


def test_tf_fused_step_computes_the_plain_steps_values():
    """TensorFlow with the opt-in fusion: the one-loop-per-variable step (every
    variable fused) gives the plain XLA trace's values bit for bit, without FMA as for
    JAX, for the element-wise optimizers with EMA and global clipping."""
    pytest.importorskip("tensorflow")
    done = _python(
        """
        import numpy as np
        import tensorflow as tf
        from optcheck.adapters.xla import tf_backend as xt
        from optcheck.adapters.xla.ops import TfOps
        from tests.test_xla import FUSED_SPECS, _spec
        assert xt.OPS[True].barrier is not None
        def run(spec, fused):
            rng = np.random.default_rng(1)
            shapes = [(8, 16), (5,)]
            opt = xt.Optimizer.from_spec(spec)
            if not fused:
                opt._ops = TfOps()
                opt._ops.unique_sum = xt.OPS[True].unique_sum
            opt.fuse_min_size = 0
            vs = [tf.Variable(rng.normal(size=s).astype(np.float32)) for s in shapes]
            for _ in range(3):
                gs = [tf.constant(rng.normal(size=s).astype(np.float32)) for s in shapes]
                opt.apply_gradients(zip(gs, vs))
            out = [v.numpy() for v in vs]
            for slots in opt._slots:
                out += [slots[n].numpy() for n in sorted(slots)]
            return out
        bad, n = [], 0
        for name, config in FUSED_SPECS:
            if config.get("weight_decay"):
                continue
            n += 1
            spec = _spec(name, config)
            for i, (a, b) in enumerate(zip(run(spec, True), run(spec, False), strict=True)):
                if not np.array_equal(a, b, equal_nan=True):
                    bad.append(f"{name} {config} output {i}")
        print("\\\\n".join(bad) or "ok", n)
        """,
        XLA_FLAGS="--xla_cpu_max_isa=AVX", **{CPU_FUSION_ENV: "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().startswith("ok "), done.stdout
