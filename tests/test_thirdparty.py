"""The third-party adapters (``torch``, ``torch-foreach``, ``torch-fused``, ``optax``):
exact mappings conform, known divergences are found, unsupported combinations are
reported with a reason. Skipped where torch / optax are not installed (CI installs
neither); the full ``optcheck verify`` runs are recorded in the issue notes."""

from __future__ import annotations

import sys

import pytest

from optcheck.adapters.registry import describe, load_adapter
from optcheck.conformance import engine, suite
from optcheck.conformance.scenario import Scenario
from optcheck.conformance.tolerance import Policy
from tests.helpers import arrays as _arrays
from tests.helpers import three_variable_scenario as _scenario

TORCH = ("torch", "torch-foreach", "torch-fused")


@pytest.fixture(scope="module")
def torch_adapters():
    pytest.importorskip("torch")
    return {name: load_adapter(name) for name in TORCH}


@pytest.fixture(scope="module")
def optax_adapter():
    pytest.importorskip("optax")
    return load_adapter("optax")


# -- loading without the libraries ----------------------------------------------------
@pytest.mark.parametrize(
    "name, module",
    [
        ("torch", "torch"),
        ("torch-fused", "torch"),
        ("optax", "optax"),
    ],
)
def test_factories_load_without_the_library(monkeypatch, name, module):
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    info = describe(name)
    assert not info.available and f"{module} is not installed" in info.reason


# -- torch ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", TORCH)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torch_exact_mappings_conform(torch_adapters, name, dtype):
    adapter = torch_adapters[name]
    cases = [
        _scenario("SGD", {"learning_rate": 0.1, "momentum": 0.9, "nesterov": True}, dtype),
        _scenario(
            "SGD",
            {
                "learning_rate": 0.05,
                "momentum": 0.5,
                "use_ema": True,
                "ema_momentum": 0.9,
                "ema_overwrite_frequency": 2,
            },
            dtype,
            profile="keras3",
            finalize=True,
        ),
        _scenario("SGD", {"learning_rate": 0.1, "clipvalue": 0.5}, dtype),
        _scenario(
            "Adagrad", {"learning_rate": 0.1, "epsilon": 1e-30}, dtype, profile="keras3"
        ),  # ε negligible: torch's placement does not matter
        _scenario("Adadelta", {"learning_rate": 1.0, "rho": 0.9}, dtype),
    ]
    for scenario in cases:
        if adapter.capabilities().missing(scenario.optimizer, (), dtype, scenario.profile):
            continue
        found = engine.check(scenario, adapter)
        assert found is None, f"{name}: {found}\n{scenario.describe()}"


def test_torch_nadam_momentum_decay_reproduces_keras_schedule(torch_adapters):
    scenario = _scenario("Nadam", {"learning_rate": 0.01, "epsilon": 1e-30}, steps=5)
    assert engine.check(scenario, torch_adapters["torch"]) is None


@pytest.mark.parametrize("name", TORCH)
def test_torch_known_divergences_are_found(torch_adapters, name):
    adapter = torch_adapters[name]
    cases = {
        # ε added to sqrt of the bias-corrected v (Keras: of the raw v)
        "Adam ε placement": _scenario("Adam", {"learning_rate": 0.01, "epsilon": 1e-2}),
        # torch's weight_decay is an L2 term added to the gradient (Keras: decoupled); the
        # two differ once the term enters the momentum
        "coupled weight decay": _scenario(
            "SGD", {"learning_rate": 0.1, "momentum": 0.9, "weight_decay": 0.1}
        ),
        # clip_grad_norm_ divides by norm + 1e-6 (visible in float64)
        "clip_grad_norm_": _scenario("SGD", {"learning_rate": 0.1, "clipnorm": 1e-3}, "float64"),
        # the momentum buffer excludes the learning rate: differs once the rate changes
        "SGD momentum under a schedule": _scenario(
            "SGD",
            {
                "momentum": 0.9,
                "learning_rate": {
                    "class_name": "ExponentialDecay",
                    "config": {"initial_learning_rate": 0.1, "decay_steps": 1, "decay_rate": 0.5},
                },
            },
        ),
    }
    for what, scenario in cases.items():
        found = engine.check(scenario, adapter)
        assert found is not None, f"{name} does not show the {what}"


def test_torch_counts_steps_per_parameter(torch_adapters):
    """A None gradient skips the parameter's step counter: its bias correction lags. Only
    a free trajectory shows it: re-synchronising loads Keras's iterations into every
    parameter's counter."""
    scenario = _scenario("Adam", {"learning_rate": 0.1, "epsilon": 1e-30}, steps=3)
    scenario.steps[0][0] = None
    scenario.needs = ("none_gradients",)
    assert engine.check(scenario, torch_adapters["torch"], Policy(mode="free")) is not None
    assert engine.check(scenario, torch_adapters["torch"]) is None


# Findings about torch 2.13's fused CPU SGD, shown on torch itself (the adapter keeps the
# runs reproducible: it hands fused SGD zero momentum buffers, see _fresh_state).
def test_finding_torch_fused_sgd_skips_half_precision_chunks():
    torch = pytest.importorskip("torch")
    for dtype in (torch.float16, torch.bfloat16):
        p = torch.nn.Parameter(torch.ones(17, dtype=dtype))
        opt = torch.optim.SGD([p], lr=0.5, fused=True)
        p.grad = torch.ones(17, dtype=dtype)
        opt.step()
        # the first 16 elements are not updated, the 17th is
        assert p.detach()[:16].eq(1).all() and p.detach()[16] == 0.5


def test_finding_torch_fused_sgd_fails_on_a_late_first_gradient():
    torch = pytest.importorskip("torch")
    a, b = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([a, b], lr=0.1, momentum=0.9, fused=True)
    a.grad = torch.ones(3)
    opt.step()  # b has no gradient yet, so no momentum buffer
    a.grad, b.grad = torch.ones(3), torch.ones(3)
    with pytest.raises(TypeError, match="expected Tensor"):
        opt.step()


def test_torch_fused_half_precision_sgd_deviates_reproducibly(torch_adapters):
    adapter = torch_adapters["torch-fused"]
    for momentum in (0.0, 0.9):
        scenario = Scenario("SGD", {"learning_rate": 0.1, "momentum": momentum}, "keras2",
                            "float16", _arrays(1, (4, 4), dtype="float16"),
                            [_arrays(2, (4, 4), dtype="float16")] * 3)  # fmt: skip
        scenario.steps[0] = list(scenario.steps[0])
        found = [engine.check(scenario, adapter, Policy(mode="free")) for _ in range(2)]
        assert found[0] is not None and found[0] == found[1]


@pytest.mark.parametrize(
    "name, optimizer, feature, reason, profile",
    [
        ("torch", "Lion", "plain", "torch.optim has no Lion", "keras2"),
        ("torch", "Ftrl", "plain", "torch.optim has no FTRL", "keras2"),
        ("torch", "SGD", "replicas", "DistributedDataParallel", "keras2"),
        ("torch-foreach", "Adam", "gradient_accumulation", "no gradient accumulation", "keras3"),
        ("torch-fused", "Adadelta", "plain", "no fused implementation", "keras2"),
    ],
)
def test_torch_unsupported_cases_have_reasons(name, optimizer, feature, reason, profile):
    pytest.importorskip("torch")
    _assert_unsupported(name, optimizer, feature, reason, profile)


# -- optax ----------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_optax_exact_mappings_conform(optax_adapter, dtype):
    schedule = {
        "class_name": "PiecewiseConstantDecay",
        "config": {"boundaries": [0, 1], "values": [0.1, 0.05, 0.02]},
    }
    cases = [
        _scenario("SGD", {"learning_rate": 0.1, "momentum": 0.9, "nesterov": True}, dtype),
        # Keras's momentum holds −lr·g: trace after the learning rate follows the schedule
        _scenario("SGD", {"learning_rate": schedule, "momentum": 0.5}, dtype),
        _scenario("RMSprop", {"learning_rate": 0.01, "momentum": 0.5, "centered": True}, dtype),
        _scenario("Adagrad", {"learning_rate": 0.1, "clipnorm": 0.5}, dtype),
        _scenario("Adadelta", {"learning_rate": 1.0, "global_clipnorm": 1.0}, dtype),
        _scenario("Lion", {"learning_rate": 0.01, "use_ema": True}, dtype, finalize=True),
    ]
    cases += [
        # Keras's epsilon hat and float32(β)ᵗ, reproduced with optax blocks
        _scenario("Adam", {"learning_rate": 0.01, "epsilon": 1e-2, "beta_2": 0.9999}, dtype),
        _scenario(
            "AdamW", {"learning_rate": 0.01, "weight_decay": 0.1}, dtype, exclude_indices=[1]
        ),
        _scenario("Adam", {"learning_rate": 0.01, "epsilon": 1e-2, "amsgrad": True}, dtype),
    ]
    for scenario in cases:
        found = engine.check(scenario, optax_adapter)
        assert found is None, f"{found}\n{scenario.describe()}"


def test_optax_known_divergences_are_found(optax_adapter):
    cases = {
        # optax.nadam has no momentum schedule μ_t = β1·(1 − 0.5·0.96ᵗ)
        "Nadam schedule": _scenario("Nadam", {"learning_rate": 0.01}),
        # scale_by_adamax puts ε inside the max
        "Adamax ε": _scenario("Adamax", {"learning_rate": 0.01, "epsilon": 1e-1}),
        # a missing gradient is a zero gradient: Adam's moments still move the variable
        "None gradient": _scenario("Adam", {"learning_rate": 0.1}),
    }
    cases["None gradient"].steps[1][0] = None
    for what, scenario in cases.items():
        assert engine.check(scenario, optax_adapter) is not None, f"optax hides the {what}"


@pytest.mark.parametrize(
    "optimizer, feature, reason",
    [
        ("Ftrl", "plain", "optax has no FTRL"),
        ("SGD", "replicas", "psum"),
    ],
)
def test_optax_unsupported_cases_have_reasons(optimizer, feature, reason):
    pytest.importorskip("optax")
    _assert_unsupported("optax", optimizer, feature, reason)


def test_optax_loss_scale_is_unsupported():
    pytest.importorskip("optax")
    _assert_unsupported("optax", "Adam", "loss_scale", "jmp", profile="keras3")


def _assert_unsupported(name, optimizer, feature, reason, profile="keras2"):
    ctx = suite.Context(
        adapter=name,
        profile=profile,
        optimizers=[optimizer],
        features=[feature],
        dtypes=["float32"],
        fixed_cases=False,
    )
    plan = suite.plan(ctx)
    (case,) = plan.cases
    result = suite.run_case(case, ctx)
    assert result["status"] == "unsupported", result
    assert reason in result["reason"], result["reason"]
