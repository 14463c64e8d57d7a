"""What the suite knows about each optimizer, as data (PyTorch ``OptimizerInfo`` style).

Hyper-parameter ranges are the ranges scenarios draw from: valid for the
optimizer and wide enough to exercise every branch. Flags record which
metamorphic properties hold for an optimizer as Keras computes it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Param:
    """A hyper-parameter: ``kind`` is "float" (``low``..``high``, ``log`` scale) or "bool"."""

    name: str
    kind: str
    low: float = 0.0
    high: float = 1.0
    log: bool = False


@dataclass(frozen=True)
class OptimizerInfo:
    name: str
    params: tuple[Param, ...]
    #: One variable's update depends only on its own gradient and slots.
    per_variable: bool = True
    #: learning_rate = 0 leaves the variables unchanged. Not for Ftrl, whose
    #: update divides by the learning rate (l2 + beta / (2·lr)).
    lr_zero_is_identity: bool = True
    #: Further condition (config, dtype name) -> bool for the learning-rate-zero identity.
    lr_zero_requires: Callable[[dict, str], bool] | None = None
    why: str = ""


def _beta_2_below_one(config: dict, dtype: str) -> bool:
    from optcheck.reference import dtypes

    return bool(dtypes.const(config.get("beta_2", 0.999), dtypes.as_dtype(dtype)) < 1)


def _lr(low=1e-5, high=0.5):
    return Param("learning_rate", "float", low, high, log=True)


def _eps(low=1e-8, high=1e-3):
    return Param("epsilon", "float", low, high, log=True)


OPTIMIZERS: dict[str, OptimizerInfo] = {
    info.name: info
    for info in [
        OptimizerInfo("SGD", (_lr(1e-4, 1.0), Param("momentum", "float", 0.0, 0.99),
                              Param("nesterov", "bool"))),
        OptimizerInfo("Adam", (_lr(), Param("beta_1", "float", 0.0, 0.99),
                               Param("beta_2", "float", 0.9, 0.9999), _eps(),
                               Param("amsgrad", "bool"))),
        OptimizerInfo("AdamW", (_lr(), Param("weight_decay", "float", 0.0, 0.1),
                                Param("beta_1", "float", 0.0, 0.99),
                                Param("beta_2", "float", 0.9, 0.9999), _eps(),
                                Param("amsgrad", "bool"))),
        OptimizerInfo("Adagrad", (_lr(), Param("initial_accumulator_value", "float", 0.01, 1.0),
                                  _eps())),
        OptimizerInfo("Adadelta", (_lr(1e-3, 1.0), Param("rho", "float", 0.5, 0.99),
                                   _eps(1e-8, 1e-4))),
        OptimizerInfo("Adamax", (_lr(), Param("beta_1", "float", 0.0, 0.99),
                                 Param("beta_2", "float", 0.9, 0.9999), _eps())),
        OptimizerInfo(
            "Ftrl",
            (_lr(1e-3, 0.5), Param("learning_rate_power", "float", -1.0, 0.0),
             Param("initial_accumulator_value", "float", 0.01, 1.0),
             Param("l1_regularization_strength", "float", 0.0, 0.1),
             Param("l2_regularization_strength", "float", 0.0, 0.1),
             Param("l2_shrinkage_regularization_strength", "float", 0.0, 0.1),
             Param("beta", "float", 0.0, 1.0)),
            lr_zero_is_identity=False,
            why="Ftrl divides by the learning rate",
        ),
        OptimizerInfo("Nadam", (_lr(), Param("beta_1", "float", 0.0, 0.99),
                                Param("beta_2", "float", 0.9, 0.9999), _eps()),
                      lr_zero_requires=_beta_2_below_one,
                      why="v̂ = v / (1 − β2ᵗ) is 0/0 once β2 rounds to 1 (bfloat16 0.999)"),
        OptimizerInfo("RMSprop", (_lr(), Param("rho", "float", 0.5, 0.99),
                                  Param("momentum", "float", 0.0, 0.9), _eps(),
                                  Param("centered", "bool"))),
        OptimizerInfo("Adafactor", (_lr(1e-4, 0.1), Param("beta_2_decay", "float", -1.0, -0.3),
                                    Param("epsilon_1", "float", 1e-30, 1e-20, log=True),
                                    Param("epsilon_2", "float", 1e-4, 1e-2, log=True),
                                    Param("clip_threshold", "float", 0.5, 2.0),
                                    Param("relative_step", "bool"))),
        OptimizerInfo("Lion", (_lr(1e-5, 1e-2), Param("beta_1", "float", 0.01, 1.0),
                               Param("beta_2", "float", 0.9, 0.999))),
    ]
}  # fmt: skip
