"""The Keras 3 adapters (``keras3-<backend>``, ``keras3-jax-jit``,
``keras3-tensorflow-function``): exact conformance in the keras3 profile, the wrong-backend
guard, unsupported features with reasons. Skipped where keras is not installed.

Keras 3 fixes its backend per process at import, so each backend runs in a subprocess
(:data:`SCRIPT`), which prints one JSON object: case -> "pass" or the divergence.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from optcheck.adapters.registry import describe, load_adapter

# Not imported here: importing keras fixes this process's backend (TensorFlow by
# default, so the import fails where only JAX or torch is installed).
if importlib.util.find_spec("keras") is None:
    pytest.skip("keras is not installed", allow_module_level=True)

KERAS3 = ("keras3-jax", "keras3-jax-jit", "keras3-tensorflow", "keras3-tensorflow-function",
          "keras3-torch", "keras3-torch-compile", "keras3-numpy")  # fmt: skip

SCRIPT = r"""
import json, sys
import numpy as np
from optcheck.adapters.registry import load_adapter
from optcheck.conformance import diagnosis, engine
from optcheck.conformance.tolerance import Policy
from optcheck.conformance.scenario import Scenario
from optcheck.reference.sparse import IndexedSlices

def arrays(seed, *shapes, dtype="float32"):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=s).astype(dtype) for s in shapes]

def scenario(optimizer, config, dtype="float32", steps=3, **options):
    shapes = [(3, 2), (4,), ()]
    grads = [arrays(10 + i, *shapes, dtype=dtype) for i in range(steps)]
    return Scenario(optimizer, config, "keras3", dtype, arrays(1, *shapes, dtype=dtype),
                    grads, **options)

decay = {"class_name": "ExponentialDecay",
         "config": {"initial_learning_rate": 0.1, "decay_steps": 2, "decay_rate": 0.5}}
CASES = {
    "adam": scenario("Adam", {"learning_rate": 0.01}),
    "adam_bfloat16": scenario("Adam", {"learning_rate": 0.01}, "bfloat16"),
    "sgd_momentum": scenario("SGD", {"learning_rate": 0.1, "momentum": 0.9, "nesterov": True}),
    "ema": scenario("SGD", {"learning_rate": 0.05, "momentum": 0.5, "use_ema": True,
                            "ema_momentum": 0.9, "ema_overwrite_frequency": 2},
                    finalize=True),
    "clipnorm": scenario("Adam", {"learning_rate": 0.01, "clipnorm": 0.5}),
    "schedule": scenario("SGD", {"learning_rate": decay}),
    "gradient_accumulation": scenario(
        "Adam", {"learning_rate": 0.01, "gradient_accumulation_steps": 2}, steps=5),
    "round_trip": scenario("RMSprop", {"learning_rate": 0.01, "momentum": 0.5}, steps=4,
                           round_trip_at=2),
    # β1 within 1e-16 of 1: the cast form of 1 − β1 is 0 in float32 (docs/keras3.md, 13).
    "lion_beta_1_near_one": scenario("Lion", {"learning_rate": 0.01,
                                              "beta_1": 0.9999999999999999}, steps=2),
    # float64 on torch (docs/keras3.md, 16): Python floats of ops calls through float32.
    "torch64_adamw": scenario("AdamW", {"learning_rate": 0.01, "weight_decay": 0.05,
                                        "clipnorm": 0.7, "use_ema": True,
                                        "ema_momentum": 0.9}, "float64"),
    "torch64_global_clipnorm": scenario("SGD", {"learning_rate": 0.1,
                                                "global_clipnorm": 0.3}, "float64"),
    "torch64_ftrl": scenario("Ftrl", {"learning_rate": 0.1, "learning_rate_power": -0.3,
                                      "l1_regularization_strength": 0.01,
                                      "l2_shrinkage_regularization_strength": 0.07},
                             "float64"),
    # A norm beyond float32's range: its float32 maximum is inf, the update NaN.
    "torch64_huge_clipnorm": Scenario("SGD", {"learning_rate": 2.0**-170,
                                              "clipnorm": 2.0**169}, "keras3", "float64",
                                      [np.array([1.0, 2.0])], [[np.array([1e50, -1e50])]]),
    "sparse": Scenario("SGD", {"learning_rate": 0.1, "momentum": 0.5}, "keras3", "float32",
                       arrays(1, (4, 2)),
                       [[IndexedSlices(arrays(20 + i, (3, 2))[0], np.array([0, 2, 0]),
                                       (4, 2))] for i in range(2)], needs=("sparse",)),
}
results = {}
for adapter_name in sys.argv[2:]:
    adapter = load_adapter(adapter_name)
    caps = adapter.capabilities()
    for key in sys.argv[1].split(","):
        s = CASES[key]
        if caps.missing(s.optimizer, s.needs, s.dtype, s.profile):
            results[f"{adapter_name}:{key}"] = "unsupported"
            continue
        found = engine.check(s, adapter)
        results[f"{adapter_name}:{key}"] = "pass" if found is None else (
            f"step {found.step} {found.quantity}: {found.expected} != {found.actual}; "
            + diagnosis.diagnose(s, adapter, Policy())["verdict"])
# The guard: this process's keras has one backend; an adapter for another refuses.
other = "keras3-torch" if "jax" in sys.argv[2] else "keras3-jax"
results["guard"] = list(load_adapter(other).availability())
print("RESULT " + json.dumps(results))
"""

BASIC = "adam,adam_bfloat16,sgd_momentum,ema,clipnorm,schedule,gradient_accumulation,round_trip"
#: keras3-torch in float64, and the diagnosis each must get (docs/keras3.md, 16).
TORCH64 = {
    "torch64_adamw": "backend=torch",
    "torch64_global_clipnorm": "ops_python_float=float32",
    "torch64_ftrl": "backend=torch",
    "torch64_huge_clipnorm": "ops_python_float=float32",
}


def _run(cases: str, *adapters: str) -> dict:
    env = dict(os.environ)
    env.pop("KERAS_BACKEND", None)  # the factory chooses the backend
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, cases, *adapters],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT ") :])


@pytest.fixture(scope="module")
def jax_results():
    pytest.importorskip("jax")
    return _run(BASIC + ",sparse", "keras3-jax", "keras3-jax-jit")


@pytest.fixture(scope="module")
def torch_results():
    pytest.importorskip("torch")
    return _run(BASIC + ",lion_beta_1_near_one," + ",".join(TORCH64), "keras3-torch")


@pytest.fixture(scope="module")
def tensorflow_results():
    pytest.importorskip("tensorflow")
    return _run("adam,ema,clipnorm,gradient_accumulation,sparse", "keras3-tensorflow",
                "keras3-tensorflow-function")  # fmt: skip


# -- loading without the library ---------------------------------------------------------
@pytest.mark.parametrize("name", KERAS3)
def test_factories_load_without_keras(monkeypatch, name):
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.setitem(sys.modules, "keras", None)  # import fails as if not installed
    info = describe(name)
    assert not info.available and "keras is not installed" in info.reason


def test_factory_names_the_backend_library(monkeypatch):
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.setitem(sys.modules, "keras", None)
    monkeypatch.setitem(sys.modules, "torch", None)
    adapter = load_adapter("keras3-torch")
    assert "KERAS_BACKEND" not in os.environ  # loading an adapter chooses no backend
    monkeypatch.delitem(sys.modules, "keras")  # keras installed but not imported
    assert adapter.availability() == (
        False,
        "torch is not installed (Keras 3's torch backend needs it)",
    )


# -- exact conformance ---------------------------------------------------------------------
@pytest.mark.parametrize("adapter", ["keras3-jax", "keras3-jax-jit"])
@pytest.mark.parametrize("case", BASIC.split(","))
def test_jax_conforms(jax_results, adapter, case):
    assert jax_results[f"{adapter}:{case}"] == "pass"


@pytest.mark.parametrize("case", BASIC.split(","))
def test_torch_conforms(torch_results, case):
    assert torch_results[f"keras3-torch:{case}"] == "pass"


def test_torch_lion_computes_one_minus_beta_in_python(torch_results):
    """Keras's torch Lion (``torch_lion.py``) passes ``alpha=1 - self.beta_1``: with β1 =
    1 − 1e-16 its first step moves the variable where Keras's generic Lion (cast β1: 1 − β1
    = 0 in float32) leaves it; the diagnosis names the variant (docs/keras3.md, 13)."""
    found = torch_results["keras3-torch:lion_beta_1_near_one"]
    assert found.startswith("step 1 variable") and found.endswith(
        "matches variant lion_one_minus_beta=python"), found


@pytest.mark.parametrize("case", sorted(TORCH64))
def test_torch_float64_routes_python_floats_through_float32(torch_results, case):
    """Keras's torch backend converts a Python float operand of an ``ops`` call to a
    float32 tensor, and ``ops.minimum``/``maximum`` of a float64 tensor and a Python
    float compute in float32; with its weight decay v·(1 − wd·lr) in float32 that is
    the variant ``backend=torch`` (one cause alone: that cause's own variant). A norm
    beyond float32's range makes the clipnorm step NaN (docs/keras3.md, 16)."""
    found = torch_results[f"keras3-torch:{case}"]
    assert found.startswith("step 1 ") and found.endswith(f"matches variant {TORCH64[case]}"), (
        found)
    if case == "torch64_huge_clipnorm":
        assert found.split(";")[0].endswith("!= nan"), found


@pytest.mark.parametrize("adapter", ["keras3-tensorflow", "keras3-tensorflow-function"])
def test_tensorflow_conforms_sparse_included(tensorflow_results, adapter):
    for case in ("adam", "ema", "clipnorm", "gradient_accumulation", "sparse"):
        assert tensorflow_results[f"{adapter}:{case}"] == "pass", case


# -- the backend guard ---------------------------------------------------------------------
def test_wrong_backend_is_refused(jax_results, torch_results):
    for results, mine, other in ((jax_results, "jax", "torch"), (torch_results, "torch", "jax")):
        available, reason = results["guard"]
        assert not available
        assert f"'{mine}' backend" in reason and f"'{other}' backend" in reason


# -- unsupported, with reasons -------------------------------------------------------------
def test_sparse_only_on_tensorflow(jax_results):
    assert jax_results["keras3-jax:sparse"] == "unsupported"
    for name in KERAS3:
        caps = load_adapter(name).capabilities()
        if "tensorflow" in name:
            assert "sparse" in caps.features
        else:
            assert "sparse" not in caps.features
            assert "IndexedSlices" in caps.notes["sparse"]


@pytest.mark.parametrize("name", KERAS3)
def test_unsupported_features_carry_reasons(name):
    caps = load_adapter(name).capabilities()
    assert caps.optimizers == {"SGD", "Adam", "AdamW", "Adagrad", "Adadelta", "Adamax", "Ftrl",
                               "Nadam", "RMSprop", "Adafactor", "Lion"}  # fmt: skip
    assert caps.profiles == {"keras2", "keras3"}
    for feature in ("replicas", "skip_aggregation"):
        assert feature not in caps.features and caps.notes[feature]
        assert caps.missing("SGD", [feature], "float32", "keras3") == [f"feature {feature}"]
    assert "skip_gradients_aggregation" in caps.notes["skip_aggregation"]
