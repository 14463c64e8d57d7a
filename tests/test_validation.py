"""Every bad input gets the documented exception type and a message naming the culprit.

Constructor arguments (notes §1.2–§1.6, §2.1), malformed ``grads_and_vars``, misuse
of the API. Optimizer-specific argument checks live in tests/optimizers/.
"""

from __future__ import annotations

import numpy as np
import pytest

from optcheck.reference import SGD, Adam, IndexedSlices, Optimizer, PerReplica, Variable
from optcheck.reference.schedules import ExponentialDecay

# (id, profile, factory, exception, message regex)
CONSTRUCTOR_CASES = [
    ("ema_momentum>1", "keras2", lambda p: SGD(use_ema=True, ema_momentum=1.5, profile=p),
     ValueError, r"`ema_momentum` must be in the range \[0, 1\]\. Received: ema_momentum=1\.5"),
    ("ema_momentum<0", "keras3", lambda p: SGD(use_ema=True, ema_momentum=-0.1, profile=p),
     ValueError, r"`ema_momentum` must be in the range \[0, 1\]\. Received: ema_momentum=-0\.1"),
    ("ema_momentum_unchecked_without_ema", "keras2", None, None, None),
    ("ema_frequency_float", "keras2",
     lambda p: SGD(use_ema=True, ema_overwrite_frequency=2.5, profile=p),
     ValueError, r"`ema_overwrite_frequency` must be an integer > 1 or None\. Received: "
                 r"ema_overwrite_frequency=2\.5"),
    ("ema_frequency_negative", "keras3",
     lambda p: SGD(use_ema=True, ema_overwrite_frequency=-3, profile=p),
     ValueError, r"`ema_overwrite_frequency` must be an integer >= 1 or None"),
    ("clipnorm+global_clipnorm", "keras2",
     lambda p: SGD(clipnorm=1.0, global_clipnorm=1.0, profile=p),
     ValueError, r"At most one of `clipnorm` and `global_clipnorm` can be set\. Received: "
                 r"clipnorm=1\.0, global_clipnorm=1\.0\."),
    ("clipnorm+clipvalue_keras3", "keras3", lambda p: SGD(clipnorm=1.0, clipvalue=1.0, profile=p),
     ValueError, r"Only one of `clipnorm`, `clipvalue` and `global_clipnorm` can be set\. "
                 r"Received: clipnorm=1\.0, clipvalue=1\.0, global_clipnorm=None"),
    ("clipnorm_not_a_number", "keras2", lambda p: SGD(clipnorm="1", profile=p),
     TypeError, r"`clipnorm` must be a float or None\. Received: clipnorm='1'"),
    ("weight_decay_not_a_number", "keras2", lambda p: SGD(weight_decay=[0.1], profile=p),
     TypeError, r"`weight_decay` must be a float or None"),
    ("decay_deprecated", "keras2", lambda p: SGD(decay=0.1, profile=p),
     ValueError, r"decay is deprecated in the new Keras optimizer"),
    ("gradient_aggregator_deprecated", "keras2", lambda p: SGD(gradient_aggregator=1, profile=p),
     ValueError, r"gradient_aggregator is deprecated"),
    ("gradient_transformers_deprecated", "keras2",
     lambda p: SGD(gradient_transformers=[], profile=p),
     ValueError, r"gradient_transformers is deprecated"),
    ("unknown_kwarg_keras2", "keras2", lambda p: SGD(momentun=0.9, profile=p),
     TypeError, r"momentun is not a valid argument, kwargs should be empty"),
    ("unknown_kwarg_keras3", "keras3", lambda p: SGD(momentun=0.9, profile=p),
     ValueError, r"Argument\(s\) not recognized: \{'momentun': 0\.9\}"),
    ("jit_compile_keras3", "keras3", lambda p: Adam(jit_compile=True, profile=p),
     ValueError, r"Argument\(s\) not recognized: \{'jit_compile': True\}"),
    ("int_learning_rate_keras3", "keras3", lambda p: Adam(learning_rate=1, profile=p),
     ValueError, r"Argument `learning_rate` should be float, or an instance of "
                 r"LearningRateSchedule, or a callable .* Received instead: learning_rate=1"),
    ("string_learning_rate_keras2", "keras2", lambda p: Adam(learning_rate="0.1", profile=p),
     TypeError, r"`learning_rate` must be a float, a LearningRateSchedule or a callable\. "
                r"Received: learning_rate='0\.1'"),
    ("gradient_accumulation_steps<2", "keras3",
     lambda p: SGD(gradient_accumulation_steps=1, profile=p),
     ValueError, r"`gradient_accumulation_steps` must be an integer >= 2\. Received: "
                 r"gradient_accumulation_steps=1"),
    ("unknown_profile", "keras4", lambda p: SGD(profile=p),
     ValueError, r"Unknown profile 'keras4'\. Known profiles: \['keras2', 'keras3'\]"),
    ("name_not_a_string", "keras2", lambda p: SGD(name=3, profile=p),
     TypeError, r"`name` must be a string\. Received: name=3"),
]  # fmt: skip


@pytest.mark.parametrize(
    "profile, factory, exc, match",
    [pytest.param(*case[1:], id=case[0]) for case in CONSTRUCTOR_CASES if case[2] is not None],
)
def test_constructor_rejects(profile, factory, exc, match):
    with pytest.raises(exc, match=match):
        factory(profile)


def test_ema_arguments_are_checked_only_with_use_ema():
    opt = SGD(use_ema=False, ema_momentum=1.5, ema_overwrite_frequency=-2)
    assert opt.ema_momentum == 1.5


def test_int_learning_rate_is_accepted_in_keras2():
    assert Adam(learning_rate=1).learning_rate.numpy() == np.float32(1.0)


def f32(x):
    return np.asarray(x, np.float32)


V = Variable(f32([1.0, 2.0]), name="kernel")

# (id, grads_and_vars, exception, message regex)
APPLY_CASES = [
    ("not_iterable", 3, TypeError, r"grads_and_vars must be an iterable of \(gradient, variable\)"),
    ("dict", {"a": 1}, TypeError, r"grads_and_vars must be an iterable"),
    ("not_a_pair", [(f32([1, 1]),)], TypeError, r"grads_and_vars\[0\] must be a \(gradient, "
                                                r"variable\) pair"),
    ("triple", [(f32([1, 1]), V, V)], TypeError, r"grads_and_vars\[0\] must be a"),
    ("not_a_variable", [(f32([1, 1]), np.ones(2))], TypeError,
     r"grads_and_vars\[0\]: the second element must be a Variable\. Received: ndarray"),
    ("int_variable", [(np.ones(2, np.int32), Variable([1, 2], name="ids"))], TypeError,
     r"Variable 'ids' has dtype int32"),
    ("gradient_dtype", [(np.ones(2, np.float64), V)], TypeError,
     r"The gradient of variable 'kernel' has dtype float64 but the variable is float32"),
    ("gradient_shape", [(f32([1, 1, 1]), V)], ValueError,
     r"The gradient of variable 'kernel' has shape \(3,\) but the variable has shape \(2,\)"),
    ("gradient_type", [("1", V)], TypeError,
     r"The gradient of variable 'kernel' must be an array, an IndexedSlices, a PerReplica or "
     r"None\. Received: str"),
    ("sparse_shape", [(IndexedSlices(f32([[1.0]]), np.array([0]), (1, 1)), V)], ValueError,
     r"The gradient of variable 'kernel' has shape \(1, 1\)"),
    ("replica_counts", [(PerReplica([f32([1, 1])]), V),
                        (PerReplica([f32([1, 1]), f32([1, 1])]), Variable(f32([0, 0])))],
     ValueError, r"same number of replicas"),
    ("replica_dtype", [(PerReplica([f32([1, 1]), np.ones(2)]), V)], TypeError,
     r"The gradient of variable 'kernel' has dtype float64"),
]  # fmt: skip


@pytest.mark.parametrize("profile", ["keras2", "keras3"])
@pytest.mark.parametrize(
    "grads_and_vars, exc, match", [pytest.param(*c[1:], id=c[0]) for c in APPLY_CASES]
)
def test_malformed_grads_and_vars(profile, grads_and_vars, exc, match):
    opt = SGD(profile=profile)
    before = V.numpy()
    with pytest.raises(exc, match=match):
        opt.apply_gradients(grads_and_vars)
    np.testing.assert_array_equal(V.numpy(), before)  # nothing changed
    assert int(opt.iterations.numpy()) == 0


@pytest.mark.parametrize(
    "make, exc, match",
    [
        (lambda: IndexedSlices(f32([1.0]), np.array([0.5]), (2,)), TypeError,
         r"IndexedSlices\.indices must be a 1-d integer array"),
        (lambda: IndexedSlices(f32([[1.0]]), np.array([0]), (2,)), ValueError,
         r"IndexedSlices\.values has shape \(1, 1\)"),
        (lambda: IndexedSlices(f32([1.0]), np.array([2]), (2,)), ValueError,
         r"IndexedSlices\.indices \[2\] out of range for dense_shape \(2,\)"),
        (lambda: PerReplica([]), ValueError, r"PerReplica needs at least one replica value"),
        (lambda: Variable([1.0], dtype="float8"), TypeError, r"Unsupported dtype 'float8'"),
        (lambda: Variable(1.0, name=5), TypeError, r"Variable name must be a str"),
        (lambda: Variable(1.0).assign(np.float64(2.0)), TypeError,
         r"assign to variable 'Variable' \(float32\) got a value of dtype float64"),
        (lambda: Variable([1.0, 2.0]).assign([1.0]), ValueError,
         r"assign to variable 'Variable' of shape \(2,\) got a value of shape \(1,\)"),
    ],
)  # fmt: skip
def test_bad_values(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_api_misuse():
    opt = SGD()
    with pytest.raises(ValueError, match=r"`tape` is required when a `Tensor` loss is passed"):
        opt.minimize(np.float32(1.0), [V])
    with pytest.raises(TypeError, match=r"var_list\[0\] must be a Variable"):
        opt.compute_gradients(lambda: V * 2, [np.ones(2)])
    with pytest.raises(ValueError, match="Unknown initializer 'glorot'"):
        opt.add_variable((2,), initializer="glorot")
    with pytest.raises(KeyError, match="No slot 'm'"):
        opt.get_slot(V, "m")
    with pytest.raises(TypeError, match="config must be a dict"):
        SGD.from_config([("learning_rate", 0.1)])
    ema = SGD(use_ema=True)
    with pytest.raises(ValueError, match="finalize_variable_values\\(\\) needs the optimizer"):
        ema.finalize_variable_values([V])


def test_finalize_with_wrong_variables():
    k2 = SGD(use_ema=True)
    a, b = Variable(1.0), Variable(2.0, name="stranger")
    k2.apply_gradients([(f32(1.0), a)])
    with pytest.raises(KeyError, match="cannot recognize variable stranger"):
        k2.finalize_variable_values([b])
    k3 = SGD(use_ema=True, profile="keras3")
    k3.apply_gradients([(f32(1.0), a)])
    with pytest.raises(
        ValueError,
        match=r"The length of model variables \(2\) to override "
        r"does not match .* \(1\)",
    ):
        k3.finalize_variable_values([a, b])


def test_exclude_from_weight_decay_after_build():
    opt = SGD(weight_decay=0.1)
    opt.apply_gradients([(f32([1.0, 1.0]), V)])
    with pytest.raises(ValueError, match=r"can only be configued before the optimizer is built"):
        opt.exclude_from_weight_decay(var_names=["kernel"])


def test_schedule_learning_rate_is_not_settable_with_a_float():
    opt = SGD(learning_rate=ExponentialDecay(0.1, 10, 0.5))
    with pytest.raises(TypeError, match="created with a `LearningRateSchedule`"):
        opt.learning_rate = 0.5


def test_base_update_step_is_abstract():
    class NoUpdate(Optimizer):
        def __init__(self):
            super().__init__(name="NoUpdate")
            self._learning_rate = self._build_learning_rate(0.1)

    with pytest.raises(NotImplementedError, match=r"NoUpdate must implement update_step"):
        NoUpdate().apply_gradients([(f32([1.0, 1.0]), Variable(f32([0.0, 0.0])))])


def test_apply_gradients_keywords():
    v = Variable(f32([1.0]))
    with pytest.raises(TypeError, match=r"'skip_aggregate_gradients'\. The argument is "
                                        r"`skip_gradients_aggregation`"):  # fmt: skip
        SGD().apply_gradients([(f32([1.0]), v)], skip_aggregate_gradients=True)
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'colocate'"):
        SGD().apply_gradients([(f32([1.0]), v)], colocate=True)
    # tf-keras's legacy spelling: experimental_aggregate_gradients=False skips aggregation.
    with pytest.raises(TypeError, match="skip_gradients_aggregation=True"):
        SGD().apply_gradients([(PerReplica([f32([1.0])]), v)],
                              experimental_aggregate_gradients=False)  # fmt: skip
    SGD().apply_gradients([(f32([1.0]), v)], name="train")
    assert v.numpy()[0] == np.float32(1.0) - np.float32(0.01)
