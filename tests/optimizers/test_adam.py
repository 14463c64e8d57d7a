"""Adam against the Keras goldens (notes §5.1, §5.2, §5.3, §5.4)."""

from __future__ import annotations

import numpy as np

from optcheck.reference import Adam, Variable


def test_clip_norm_golden():
    # tf-keras testClipNorm: Adam(clipnorm=1), g = [100, 100] -> clipped [√2/2, √2/2].
    opt = Adam(clipnorm=1)
    grad = np.array([100.0, 100.0], np.float32)
    (clipped,) = opt._clip_gradients([grad])
    np.testing.assert_allclose(clipped, [2**0.5 / 2] * 2, rtol=1e-6)


def test_first_step_moves_by_lr_times_sign():
    # Bias correction makes the first Adam step ≈ lr·g/(|g| + ε/sqrt(1-β2)).
    opt = Adam(learning_rate=0.1)
    v = Variable(np.array([1.0, -1.0], np.float64))
    opt.apply_gradients([(np.array([3.0, -0.5]), v)])
    np.testing.assert_allclose(v.numpy(), [0.9, -0.9], atol=1e-5)


def test_get_config_values_k29():
    # tf-keras testGetAndFromConfig: learning_rate np.float64(0.05) comes back as np.float32.
    opt = Adam(learning_rate=np.float64(0.05), beta_1=0.7, beta_2=0.77, amsgrad=True,
               epsilon=1e-3, clipnorm=0.5, use_ema=True, ema_momentum=0.5,
               ema_overwrite_frequency=50)  # fmt: skip
    config = opt.get_config()
    assert type(config["learning_rate"]) is np.float32
    assert config["learning_rate"] == np.float32(0.05)
    expected = {"beta_1": 0.7, "beta_2": 0.77, "amsgrad": True, "epsilon": 1e-3,
                "clipnorm": 0.5, "use_ema": True, "ema_momentum": 0.5,
                "ema_overwrite_frequency": 50, "name": "Adam",
                "is_legacy_optimizer": False}  # fmt: skip
    assert {k: config[k] for k in expected} == expected
    assert Adam.from_config(config).get_config() == config


def test_variables_listing():
    opt = Adam()
    v = Variable([1.0, 2.0])
    opt.apply_gradients([(np.ones(2, np.float32), v)])
    assert [x.name for x in opt.variables] == ["iteration", "m/Variable", "v/Variable"]
    k3 = Adam(profile="keras3")
    k3.apply_gradients([(np.ones(2, np.float32), v)])
    assert [x.name for x in k3.variables] == [
        "iteration",
        "learning_rate",
        "Variable_momentum",
        "Variable_velocity",
    ]
    assert k3.get_slot(v, "m").name == "Variable_momentum"
