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

from optcheck.conformance import engine
from optcheck.conformance.features import features_for
from optcheck.conformance.strategies import scenarios
from optcheck.reference.optimizers import MODULES

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
