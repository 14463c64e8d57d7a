"""Every code example of the seed page (Keras 2.9 Optimizer API page) against the reference.

The examples are written as close to the page as the NumPy reference allows:
``tf.Variable`` → ``Variable``, ``tf.GradientTape`` → ``GradientTape``,
``tf.keras.optimizers.experimental.SGD`` → ``SGD``.
"""

from __future__ import annotations

import numpy as np
import pytest

from optcheck.adapters import _keras_port as kp
from optcheck.adapters.numpy_reference import ReferenceAdapter
from optcheck.conformance import suite
from optcheck.conformance.scenario import Scenario
from optcheck.reference import SGD, GradientTape, Optimizer, Variable
from optcheck.reference.schedules import ExponentialDecay


def test_usage_minimize():
    # Create an optimizer with the desired parameters.
    opt = SGD(learning_rate=0.1)
    var1, var2 = Variable(1.0), Variable(2.0)
    # `loss` is a callable that takes no argument and returns the value to minimize.
    loss = lambda: 3 * var1 * var1 + 2 * var2 * var2  # noqa: E731
    # Call minimize to update the list of variables.
    opt.minimize(loss, var_list=[var1, var2])
    # d/dv1 = 6·v1 = 6, d/dv2 = 4·v2 = 8; one SGD step of 0.1 in float32.
    assert var1.numpy() == np.float32(1.0) - np.float32(6.0) * np.float32(0.1)
    assert var2.numpy() == np.float32(2.0) - np.float32(8.0) * np.float32(0.1)
    assert var1.dtype == np.float32 and int(opt.iterations.numpy()) == 1


def test_processing_gradients_before_applying_them():
    opt = SGD(learning_rate=0.1)
    var1, var2 = Variable(1.0), Variable(2.0)
    with GradientTape() as tape:
        loss = 3 * var1 * var1 + 2 * var2 * var2
    grads = tape.gradient(loss, [var1, var2])
    assert [float(g) for g in grads] == [6.0, 8.0]
    # Process the gradients.
    grads[0] = grads[0] + 1
    opt.apply_gradients(zip(grads, [var1, var2], strict=True))
    assert var1.numpy() == np.float32(1.0) - np.float32(7.0) * np.float32(0.1)
    assert var2.numpy() == np.float32(2.0) - np.float32(8.0) * np.float32(0.1)


def test_dynamic_learning_rate():
    var = Variable(np.random.default_rng(0).random(size=(1,)))
    learning_rate = ExponentialDecay(initial_learning_rate=0.01, decay_steps=20, decay_rate=0.1)
    opt = SGD(learning_rate=learning_rate)
    loss = lambda: 3 * var  # noqa: E731
    before = var.numpy().copy()
    opt.minimize(loss, var_list=[var])
    # First step uses schedule(0) = 0.01 (held in float32, cast to float64).
    assert var.dtype == np.float64
    assert var.numpy()[0] == before[0] - 3.0 * float(np.float32(0.01))
    opt.minimize(loss, var_list=[var])
    assert int(opt.iterations.numpy()) == 2
    # keras2: learning_rate reports the rate the last step used: schedule(1).
    assert float(opt.learning_rate.numpy()) == pytest.approx(0.01 * 0.1 ** (1 / 20), rel=1e-6)


def test_gradients_clipping():
    opt = SGD(learning_rate=1, clipvalue=1)
    var1, var2 = Variable(2.0), Variable(2.0)
    with GradientTape() as tape:
        loss = 2 * var1 + 2 * var2
    grads = tape.gradient(loss, [var1, var2])
    assert [grads[0].item(), grads[1].item()] == [2.0, 2.0]
    opt.apply_gradients(zip(grads, [var1, var2], strict=True))
    # Without clipping, we should get [0, 0], but as gradients are clipped to
    # have max value 1, we get [1.0, 1.0].
    assert [var1.numpy().item(), var2.numpy().item()] == [1.0, 1.0]


def test_exponential_moving_average():
    opt = SGD(learning_rate=1, use_ema=True, ema_momentum=0.5, ema_overwrite_frequency=3)
    var1, var2 = Variable(2.0), Variable(2.0)
    with GradientTape() as tape:
        loss = var1 + var2
    grads = tape.gradient(loss, [var1, var2])
    seen = []
    for _ in range(3):
        opt.apply_gradients(zip(grads, [var1, var2], strict=True))
        seen.append([var1.numpy().item(), var2.numpy().item()])
    # First iteration [1, 1]; second [0, 0]; third, without EMA [-1, -1], but the
    # overwrite gives 2·0.5³ + 1·0.5·0.5² + 0·0.5·0.5 + (−1)·0.5 = −0.125.
    assert seen == [[1.0, 1.0], [0.0, 0.0], [-0.125, -0.125]]
    averages = [opt.get_slot(v, "average").numpy().item() for v in (var1, var2)]
    assert averages == [-0.125, -0.125]


def test_finalize_variable_values():
    opt = SGD(learning_rate=1, use_ema=True, ema_momentum=0.5)  # no periodic overwrite
    var1, var2 = Variable(2.0), Variable(2.0)
    grads = [np.float32(1.0), np.float32(1.0)]
    for _ in range(3):
        opt.apply_gradients(zip(grads, [var1, var2], strict=True))
    assert var1.numpy() == -1.0  # trained value, never overwritten
    opt.finalize_variable_values([var1, var2])
    assert [var1.numpy().item(), var2.numpy().item()] == [-0.125, -0.125]


def test_finalize_without_ema_is_a_no_op():
    opt = SGD(learning_rate=1)
    var = Variable(2.0)
    opt.apply_gradients([(np.float32(1.0), var)])
    opt.finalize_variable_values([var])
    assert var.numpy() == 1.0


def test_strategy_example_skip_gradients_aggregation():
    """The distributed example: the caller sums replica gradients itself."""
    from optcheck.reference import PerReplica

    replicas = [np.float32(0.25), np.float32(0.5)]
    summed = Variable(1.0)
    SGD().apply_gradients([(PerReplica(replicas), summed)])
    manual = Variable(1.0)
    gradients = replicas[0] + replicas[1]  # strategy.reduce("SUM", gradients)
    SGD().apply_gradients([(gradients, manual)], skip_gradients_aggregation=True)
    assert summed.numpy() == manual.numpy() == np.float32(1.0) - np.float32(0.75) * np.float32(0.01)


class MyMomentum(Optimizer):
    """The page's "Creating a custom optimizer": build / update_step / get_config."""

    def __init__(self, learning_rate=0.1, momentum=0.9, name="MyMomentum", **kwargs):
        super().__init__(name=name, **kwargs)
        self._learning_rate = self._build_learning_rate(learning_rate)
        self.momentum = momentum

    def build(self, var_list):
        super().build(var_list)
        self.momentums = [self.add_variable_from_reference(v, "momentum") for v in var_list]

    def update_step(self, gradient, variable):
        lr = np.asarray(self.learning_rate.numpy()).astype(variable.dtype)
        m = self.momentums[self._get_variable_index(variable)]
        m.assign(m.numpy() * np.asarray(self.momentum, variable.dtype) + gradient)
        variable.assign_sub(lr * m.numpy())

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "learning_rate": self._serialize_hyperparameter(self._learning_rate),
                "momentum": self.momentum,
            }
        )
        return config


def test_custom_optimizer_by_subclassing():
    opt = MyMomentum(learning_rate=0.5, momentum=0.5)
    var = Variable([1.0, 2.0])
    for _ in range(2):
        opt.apply_gradients([(np.array([1.0, 1.0], np.float32), var)])
    # m: 1, then 1.5; var: 1 − 0.5 − 0.75 = −0.25 and 2 − 1.25 = 0.75.
    np.testing.assert_array_equal(var.numpy(), np.array([-0.25, 0.75], np.float32))
    assert [v.name for v in opt.variables] == ["iteration", "momentum/Variable"]
    config = opt.get_config()
    assert config["momentum"] == 0.5 and config["learning_rate"] == np.float32(0.5)
    clone = MyMomentum.from_config(config)
    assert clone.get_config() == config
    # The base default weight_decay is 0 (tf-keras): decay runs and changes nothing.
    assert opt.weight_decay == 0


def test_add_variable_and_from_reference():
    opt = SGD()
    model_var = Variable(np.ones((2, 3), np.float64), name="dense_1")
    momentum = opt.add_variable_from_reference(model_var, "momemtum")
    assert momentum.name == "momemtum/dense_1"
    assert momentum.shape == (2, 3) and momentum.dtype == np.float64
    np.testing.assert_array_equal(momentum.numpy(), np.zeros((2, 3)))
    other = opt.add_variable_from_reference(model_var, "x", shape=(4,), initial_value=None)
    assert other.shape == (4,)
    seeded = opt.add_variable_from_reference(model_var, "y", initial_value=np.full((2, 3), 7.0))
    assert seeded.numpy()[0, 0] == 7.0
    plain = opt.add_variable((3,), name="counter")
    assert plain.dtype == np.float32 and plain.shape == (3,) and not plain.trainable
    scalar = opt.add_variable(None, dtype="float64", initializer="ones", name="s")
    assert scalar.shape == () and scalar.numpy() == 1.0


def test_minimize_with_a_tape_and_a_recorded_loss():
    opt = SGD(learning_rate=0.1)
    var = Variable(np.array([1.0, -2.0], np.float32))
    with GradientTape() as tape:
        loss = (var * var).sum()
    opt.minimize(loss, [var], tape=tape)
    np.testing.assert_array_equal(var.numpy(), np.float32([1.0, -2.0]) * np.float32(0.8))


# -- the seed-page cases carry the page's own code ------------------------------------------
#: The optimizer arguments of each example, transcribed from the page with their Python
#: types (``learning_rate=1`` is an int there): what every adapter must receive.
PAGE_CONFIGS = {
    # SGD(learning_rate=0.1)
    "usage": {"learning_rate": 0.1},
    "processing_gradients": {"learning_rate": 0.1},
    # ExponentialDecay(initial_learning_rate=.01, decay_steps=20, decay_rate=.1)
    "dynamic_learning_rate": {"learning_rate": {"class_name": "ExponentialDecay", "config": {
        "initial_learning_rate": .01, "decay_steps": 20, "decay_rate": .1}}},
    # SGD(learning_rate=1, clipvalue=1)
    "gradient_clipping": {"learning_rate": 1, "clipvalue": 1},
    # SGD(learning_rate=1, use_ema=True, ema_momentum=0.5, ema_overwrite_frequency=3)
    "exponential_moving_average": {"learning_rate": 1, "use_ema": True, "ema_momentum": 0.5,
                                   "ema_overwrite_frequency": 3},
    # The same optimizer without the periodic overwrite, for finalize_variable_values().
    "finalize_variable_values": {"learning_rate": 1, "use_ema": True, "ema_momentum": 0.5},
    # SGD() under the strategy.
    "strategy_aggregation": {},
    "strategy_skip_aggregation": {},
}  # fmt: skip


def _difference(expected, actual, path="config"):
    """Where ``actual`` differs from ``expected`` in value or Python type (None: nowhere)."""
    if type(actual) is not type(expected):
        return f"{path}: {actual!r} ({type(actual).__name__}), page {expected!r} " \
               f"({type(expected).__name__})"  # fmt: skip
    if isinstance(expected, dict):
        if set(actual) != set(expected):
            return f"{path}: keys {sorted(actual)}, page {sorted(expected)}"
        for key in expected:
            found = _difference(expected[key], actual[key], f"{path}[{key!r}]")
            if found:
                return found
        return None
    return None if actual == expected else f"{path}: {actual!r}, page {expected!r}"


def test_the_comparison_tells_an_int_from_a_float():
    assert _difference({"learning_rate": 1}, {"learning_rate": 1.0})
    assert _difference({"a": {"b": 20}}, {"a": {"b": 20.0}})
    assert _difference({"use_ema": True}, {"use_ema": 1})
    assert _difference({}, {"momentum": 0.0})  # a default filled in
    assert _difference({"learning_rate": 0.1}, {"learning_rate": 0.1}) is None


@pytest.mark.parametrize("profile", ["keras2", "keras3"])
def test_seed_scenarios_carry_the_pages_arguments_and_types(profile):
    scenarios = suite.seed_page_scenarios(profile)
    assert set(scenarios) == set(PAGE_CONFIGS)
    for sid, (scenario, _) in scenarios.items():
        assert scenario.optimizer == "SGD"
        found = _difference(PAGE_CONFIGS[sid], scenario.config)
        assert found is None, f"seed:{sid}: {found}"
        found = _difference(PAGE_CONFIGS[sid], scenario.spec()["config"])
        assert found is None, f"seed:{sid} spec(): {found}"


def _page_gradients(variables, loss):
    with GradientTape() as tape:
        value = loss()
    return tape.gradient(value, variables)


def _page_usage():
    var1, var2 = Variable(1.0), Variable(2.0)
    grads = _page_gradients([var1, var2], lambda: 3 * var1 * var1 + 2 * var2 * var2)
    return [var1, var2], [grads]


def _page_processing_gradients():
    var1, var2 = Variable(1.0), Variable(2.0)
    grads = _page_gradients([var1, var2], lambda: 3 * var1 * var1 + 2 * var2 * var2)
    grads[0] = grads[0] + 1
    return [var1, var2], [grads]


def _page_dynamic_learning_rate():
    # np.random.random(size=(1,)) as the suite seeds it.
    var = Variable(np.random.RandomState(0).random(size=(1,)))
    return [var], [_page_gradients([var], lambda: 3 * var)]


def _page_gradient_clipping():
    var1, var2 = Variable(2.0), Variable(2.0)
    return [var1, var2], [_page_gradients([var1, var2], lambda: 2 * var1 + 2 * var2)]


def _page_exponential_moving_average():
    var1, var2 = Variable(2.0), Variable(2.0)
    grads = _page_gradients([var1, var2], lambda: var1 + var2)
    return [var1, var2], [grads] * 3  # three apply_gradients of the same gradients


PAGE_CODE = {
    "usage": _page_usage,
    "processing_gradients": _page_processing_gradients,
    "dynamic_learning_rate": _page_dynamic_learning_rate,
    "gradient_clipping": _page_gradient_clipping,
    "exponential_moving_average": _page_exponential_moving_average,
    "finalize_variable_values": _page_exponential_moving_average,
}


@pytest.mark.parametrize("sid", sorted(PAGE_CODE))
def test_seed_scenarios_hold_the_variables_and_gradients_of_the_pages_code(sid):
    scenario, _ = suite.seed_page_scenarios("keras2")[sid]
    variables, steps = PAGE_CODE[sid]()
    assert scenario.dtype == np.asarray(variables[0].numpy()).dtype.name
    assert len(scenario.initial_values) == len(variables)
    for value, var in zip(scenario.initial_values, variables, strict=True):
        page = np.asarray(var.numpy())
        assert value.dtype == page.dtype and value.shape == page.shape
        np.testing.assert_array_equal(value, page)
    assert len(scenario.steps) == len(steps), "one scenario step per call on the page"
    for grads, page_grads in zip(scenario.steps, steps, strict=True):
        for g, page in zip(grads, page_grads, strict=True):
            page = np.asarray(page)
            assert np.asarray(g).dtype == page.dtype and np.shape(g) == page.shape
            np.testing.assert_array_equal(g, page)


class _Recording(ReferenceAdapter):
    """The golden, remembering the spec each session was opened with."""

    def __init__(self):
        super().__init__(name="recording")
        self.specs = []

    def open(self, scenario):
        self.specs.append(scenario.spec())
        return super().open(scenario)


def test_seed_cases_reach_the_adapter_as_the_page_writes_them():
    ctx = suite.Context(adapter="numpy", optimizers=["SGD"], features=["seed:*"],
                        diagnose=False)  # fmt: skip
    cases = suite.plan(ctx).cases
    assert {c.feature.removeprefix("seed:") for c in cases} == set(PAGE_CONFIGS)
    for case in cases:
        adapter = _Recording()
        result = suite.run_case(case, ctx, adapter)
        assert result["status"] == "pass", result
        assert adapter.specs, case.id
        for spec in adapter.specs:
            found = _difference(PAGE_CONFIGS[case.feature.removeprefix("seed:")],
                                spec["config"])  # fmt: skip
            assert found is None, f"{case.id}: {found}"


def test_scenario_json_keeps_ints_floats_and_their_kinds():
    config = {"learning_rate": 1, "clipvalue": 1.0, "use_ema": True, "name": "SGD",
              "ema_overwrite_frequency": None, "pair": (0.9, 1), "values": [1, 0.5],
              "schedule": {"decay_steps": 20, "decay_rate": 0.1},
              "f64": np.float64(0.1), "f32": np.float32(0.5), "i64": np.int64(3)}  # fmt: skip
    scenario = Scenario("SGD", config, "keras2", "float32", [np.float32(1.0)],
                        [[np.float32(2.0)]])  # fmt: skip
    back = Scenario.from_json(scenario.to_json())
    assert _difference(config, back.config) is None, _difference(config, back.config)
    assert type(back.config["learning_rate"]) is int
    assert type(back.config["clipvalue"]) is float
    assert type(back.config["f32"]) is np.float32 and back.config["f32"] == np.float32(0.5)
    assert back.to_json() == scenario.to_json()


@pytest.mark.parametrize("sid", sorted(PAGE_CONFIGS))
def test_seed_scenarios_survive_the_json_round_trip(sid):
    scenario, _ = suite.seed_page_scenarios("keras2")[sid]
    back = Scenario.from_json(scenario.to_json())
    found = _difference(PAGE_CONFIGS[sid], back.config)
    assert found is None, found
    for a, b in zip(scenario.initial_values, back.initial_values, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def test_an_adapter_editing_its_spec_leaves_the_scenario_alone():
    scenario, _ = suite.seed_page_scenarios("keras2")["dynamic_learning_rate"]
    spec = scenario.spec()
    spec["config"]["learning_rate"]["config"]["decay_steps"] = 20.0
    found = _difference(PAGE_CONFIGS["dynamic_learning_rate"], scenario.config)
    assert found is None, found


def test_the_keras_port_hands_a_library_the_pages_ints():
    assert type(kp.f32(1)) is int and kp.f32(1) == 1
    assert type(kp.f32(1.0)) is float
    assert kp.f32(0.1) == float(np.float32(0.1)) != 0.1  # Keras's float32 rate
    assert type(kp.f32(2**24 + 1)) is float  # an int float32 cannot hold is rounded
    assert type(kp.f32(True)) is float
    kind, value = kp.clipping({"learning_rate": 1, "clipvalue": 1})
    assert kind == "clipvalue" and type(value) is int and value == 1


def test_torch_receives_the_pages_ints():
    pytest.importorskip("torch")
    from optcheck.adapters.torch_optim import TorchSession

    scenario, _ = suite.seed_page_scenarios("keras2")["gradient_clipping"]
    session = TorchSession(scenario, "for-loop")
    assert type(session._opt.param_groups[0]["lr"]) is int
    assert session._opt.param_groups[0]["lr"] == 1


class _TakesInts(ReferenceAdapter):
    """A library that runs the page's code under Keras 3 too (keras2's validation)."""

    def open(self, scenario):
        from dataclasses import replace

        return super().open(replace(scenario, profile="keras2"))


@pytest.mark.parametrize("sid", ["gradient_clipping", "exponential_moving_average",
                                 "finalize_variable_values"])  # fmt: skip
def test_code_keras3_refuses_is_reported_with_what_the_adapter_does(sid):
    """Keras 3 takes no int learning_rate: the page's learning_rate=1 examples cannot
    run there. An adapter that refuses them as the golden does conforms; one that runs
    them deviates, and the case says so instead of running a normalized 1.0."""
    ctx = suite.Context(adapter="numpy", profile="keras3", optimizers=["SGD"],
                        features=[f"seed:{sid}"], diagnose=False)  # fmt: skip
    (case,) = suite.plan(ctx).cases
    result = suite.run_case(case, ctx)
    assert result["status"] == "pass"
    assert "raises ValueError in profile keras3" in result["outcome"]
    other = suite.run_case(case, ctx, _TakesInts())
    assert other["status"] == "deviation"
    quantity = other["first_divergence"]["quantity"]
    assert "learning_rate=1," in quantity and "profile keras3" in quantity
    assert quantity.endswith("the adapter runs it")


def test_the_page_examples_keras3_runs_still_pass_there():
    ctx = suite.Context(adapter="numpy", profile="keras3", optimizers=["SGD"],
                        features=["seed:usage", "seed:dynamic_learning_rate"],
                        diagnose=False)  # fmt: skip
    results = [suite.run_case(c, ctx) for c in suite.plan(ctx).cases]
    assert len(results) == 2 and {r["status"] for r in results} == {"pass"}, results
