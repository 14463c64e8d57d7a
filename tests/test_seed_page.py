"""Every code example of the seed page (Keras 2.9 Optimizer API page) against the reference.

The examples are written as close to the page as the NumPy reference allows:
``tf.Variable`` → ``Variable``, ``tf.GradientTape`` → ``GradientTape``,
``tf.keras.optimizers.experimental.SGD`` → ``SGD``.
"""

from __future__ import annotations

import numpy as np
import pytest

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
