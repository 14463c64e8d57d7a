"""Golden tables from the Keras test suites, as data (semantics notes §5).

Each case names its source, the profile whose defaults it assumes, the optimizer
spec (a Keras serialization dict), a procedure and the expected values with the
tolerance the source test uses. :func:`run_case` runs a case through any
callable that maps (spec, initial values, gradient steps, profile) to the final
values of each step, so the same table serves the reference and, later, every
adapter.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# A runner: (spec, initial_values, steps, profile, options) -> per-step variable lists.
# options may hold "names" (variable names), "exclude_names" and "exclude_indices"
# (arguments of exclude_from_weight_decay, the latter as positions in the variable list).
Runner = Callable[[dict, list, list, str, dict], list]


@dataclass(frozen=True)
class GoldenCase:
    id: str
    optimizer: str
    profiles: tuple[str, ...]
    spec: dict
    procedure: str  # "correctness", "single_step", "single_step_2d", "weight_decay"
    dtype: str
    expected: tuple
    rtol: float
    atol: float
    source: str


def _spec(name, **config):
    return {"class_name": name, "config": config}


def _rows(*rows):
    """Rows given as one value (all ten elements equal) or ten values."""
    return tuple(tuple([r] * 10) if isinstance(r, float) else tuple(r) for r in rows)


_K3 = "keras-team/keras keras/src/optimizers/{}_test.py"
_CORRECTNESS = [
    ("Adam", ("keras2", "keras3"), _spec("Adam", amsgrad=True), "float32",
     _rows(0.999, 0.9982, 0.9974, 0.9965, 0.9955)),
    ("SGD", ("keras2", "keras3"), _spec("SGD", nesterov=True), "float64", _rows(
        0.9999,
        [0.9989, 0.9979, 0.9969, 0.9959, 0.9949, 0.9939, 0.9929, 0.9919, 0.9909, 0.9899],
        [0.9979, 0.9959, 0.9939, 0.9919, 0.9899, 0.9879, 0.9859, 0.9839, 0.9819, 0.9799],
        [0.9969, 0.9939, 0.9909, 0.9879, 0.9849, 0.9819, 0.9789, 0.9759, 0.9729, 0.9699],
        [0.9959, 0.9919, 0.9879, 0.9839, 0.9799, 0.9759, 0.9719, 0.9679, 0.9639, 0.9599])),
    ("AdamW", ("keras2", "keras3"),
     _spec("AdamW", learning_rate=1.0, weight_decay=0.5, epsilon=2.0), "float32", _rows(
        0.4998,
        [0.2486, 0.2475, 0.2463, 0.2451, 0.244, 0.2428, 0.2417, 0.2405, 0.2394, 0.2382],
        [0.1223, 0.1198, 0.1174, 0.1149, 0.1124, 0.11, 0.1075, 0.1051, 0.1027, 0.1003],
        [0.0586, 0.0549, 0.0512, 0.0475, 0.0439, 0.0402, 0.0366, 0.033, 0.0294, 0.0258],
        [0.0263, 0.0215, 0.0167, 0.012, 0.0073, 0.0026, -0.0021, -0.0067, -0.0113, -0.0159])),
    ("Adagrad", ("keras2", "keras3"),
     _spec("Adagrad", learning_rate=0.2, initial_accumulator_value=0.3, epsilon=1e-6),
     "float64", _rows(
        0.9963,
        [0.9604, 0.9278, 0.9003, 0.8784, 0.8615, 0.8487, 0.8388, 0.8313, 0.8255, 0.8209],
        [0.9251, 0.8629, 0.8137, 0.7768, 0.7497, 0.7298, 0.7151, 0.704, 0.6956, 0.6891],
        [0.8903, 0.8012, 0.7342, 0.6862, 0.6521, 0.6277, 0.6099, 0.5967, 0.5867, 0.579],
        [0.856, 0.7422, 0.6604, 0.6037, 0.5644, 0.5367, 0.5168, 0.5021, 0.491, 0.4825])),
    ("Adadelta", ("keras2", "keras3"),
     _spec("Adadelta", learning_rate=1.0, rho=0.8, epsilon=1e-6), "float64",
     _rows(0.9978, 0.9947, 0.9915, 0.9882, 0.9849)),
    ("Adamax", ("keras2", "keras3"),
     _spec("Adamax", learning_rate=0.2, beta_1=0.85, beta_2=0.95, epsilon=1e-6), "float32",
     _rows(
        0.8,
        [0.6827, 0.6873, 0.6888, 0.6896, 0.6901, 0.6904, 0.6906, 0.6908, 0.6909, 0.691],
        [0.5333, 0.5407, 0.5431, 0.5444, 0.5451, 0.5456, 0.546, 0.5462, 0.5464, 0.5466],
        [0.368, 0.3773, 0.3804, 0.382, 0.3829, 0.3835, 0.384, 0.3843, 0.3846, 0.3848],
        [0.1933, 0.204, 0.2076, 0.2094, 0.2105, 0.2112, 0.2117, 0.2121, 0.2124, 0.2126])),
    ("Ftrl", ("keras2", "keras3"),
     _spec("Ftrl", learning_rate=0.05, learning_rate_power=-0.2, initial_accumulator_value=0.4,
           l1_regularization_strength=0.05, l2_regularization_strength=0.15,
           l2_shrinkage_regularization_strength=0.01, beta=0.3), "float64", _rows(
        0.0,
        [-0.0034, -0.0077, -0.0118, -0.0157, -0.0194, -0.023, -0.0263, -0.0294, -0.0325,
         -0.0354],
        [-0.0078, -0.0162, -0.0242, -0.0317, -0.0387, -0.0454, -0.0516, -0.0575, -0.0631,
         -0.0685],
        [-0.0121, -0.0246, -0.0363, -0.0472, -0.0573, -0.0668, -0.0757, -0.0842, -0.0922,
         -0.0999],
        [-0.0164, -0.0328, -0.0481, -0.0623, -0.0753, -0.0875, -0.099, -0.1098, -0.1201,
         -0.1299])),
    ("Nadam", ("keras2", "keras3"),
     _spec("Nadam", learning_rate=0.5, beta_1=0.5, beta_2=0.67, epsilon=1e-5), "float32", _rows(
        0.4281,
        [-0.1738, -0.1731, -0.1726, -0.1723, -0.1721, -0.172, -0.1719, -0.1718, -0.1718,
         -0.1717],
        [-0.7115, -0.7103, -0.7096, -0.7092, -0.709, -0.7088, -0.7086, -0.7085, -0.7085,
         -0.7084],
        [-1.2335, -1.2322, -1.2313, -1.2309, -1.2306, -1.2304, -1.2302, -1.2301, -1.23,
         -1.2299],
        [-1.7492, -1.7478, -1.7469, -1.7464, -1.7461, -1.7459, -1.7457, -1.7456, -1.7455,
         -1.7454])),
    ("RMSprop", ("keras2", "keras3"), _spec("RMSprop", centered=True), "float64",
     _rows(0.9967, 0.9933, 0.9908, 0.9885, 0.9864)),
    ("Adafactor", ("keras2", "keras3"),
     _spec("Adafactor", learning_rate=0.5, beta_2_decay=-0.65, epsilon_1=1e-15, epsilon_2=1e-4,
           clip_threshold=0.9, relative_step=False), "float64", _rows(
        0.55,
        [0.3031, 0.3026, 0.3025, 0.3024, 0.3024, 0.3024, 0.3024, 0.3024, 0.3024, 0.3024],
        [0.1671, 0.1665, 0.1663, 0.1663, 0.1663, 0.1663, 0.1663, 0.1663, 0.1663, 0.1663],
        [0.0923, 0.0916, 0.0915, 0.0914, 0.0914, 0.0914, 0.0914, 0.0914, 0.0914, 0.0914],
        [0.0554, 0.0548, 0.0546, 0.0546, 0.0546, 0.0546, 0.0546, 0.0545, 0.0545, 0.0545])),
    # Lion() defaults: learning rate 1e-3 in Keras 3 (1e-4 in tf-keras).
    ("Lion", ("keras3",), _spec("Lion"), "float64",
     _rows(0.999, 0.998, 0.997, 0.996, 0.995)),
]  # fmt: skip

_SINGLE_STEP = {
    "SGD": [0.5, -1.0, -0.5, 3.0],
    "Adam": [0.5, 1.5, 2.5, 3.5],
    "AdamW": [0.4980, 1.4960, 2.494, 3.492],
    "Adagrad": [0.5233, 1.5007, 2.5005, 3.5061],
    "Adadelta": [0.9993, 1.9993, 2.9993, 3.9993],
    "Adamax": [0.5, 1.5, 2.5, 3.5],
    "Ftrl": [0.2218, 1.3954, 2.3651, 2.8814],
    "Nadam": [0.4686, 1.4686, 2.4686, 3.4686],
    "RMSprop": [-0.5811, 0.4189, 1.4189, 2.4189],
    "Adafactor": [-0.3693, 0.6307, 1.6307, 2.6307],
    "Lion": [0.5, 1.5, 2.5, 3.5],
}

GOLDEN_CASES: list[GoldenCase] = [
    GoldenCase(f"{name}-correctness", name, profiles, spec, "correctness", dtype, rows,
               5e-4, 5e-4, _K3.format(name.lower()) + " test_correctness_with_golden")
    for name, profiles, spec, dtype, rows in _CORRECTNESS
] + [
    GoldenCase(f"{name}-single-step", name, ("keras2", "keras3"),
               _spec(name, learning_rate=0.5), "single_step", "float32", (tuple(values),),
               1e-4, 1e-4, _K3.format(name.lower()) + " test_single_step")
    for name, values in _SINGLE_STEP.items()
] + [
    GoldenCase("Adafactor-single-step-2d", "Adafactor", ("keras2", "keras3"),
               _spec("Adafactor", learning_rate=0.5), "single_step_2d", "float32",
               (((0.7007, -0.0081), (1.2492, 3.4407)),), 1e-4, 1e-4,
               _K3.format("adafactor") + " test_single_step (2-D)"),
] + [
    GoldenCase(f"{name}-weight-decay", name, ("keras2", "keras3"),
               _spec(name, learning_rate=1.0, weight_decay=0.004), "weight_decay", "float32",
               ((1.9760959, 2.0, 2.0),), 0.0, 1.5e-6,
               _K3.format(name.lower()) + " test_weight_decay (decimal=6)")
    for name in ("SGD", "Adam", "AdamW", "Adagrad", "Adadelta", "Adamax", "Nadam", "RMSprop",
                 "Adafactor", "Lion")
]  # fmt: skip


def golden_inputs(case: GoldenCase):
    """Initial values and gradient steps of a case's procedure."""
    dtype = np.dtype(case.dtype) if case.dtype != "bfloat16" else None
    if case.procedure == "correctness":
        first = np.full((10,), 0.01).astype(dtype)
        grads = np.arange(0.1, 1.1, 0.1).astype(dtype)
        return [np.ones([10], dtype)], [[first]] + [[grads]] * 4
    if case.procedure == "single_step":
        return [np.array([1.0, 2.0, 3.0, 4.0], dtype)], [[np.array([1, 6, 7, 2], dtype)]]
    if case.procedure == "single_step_2d":
        return [np.array([[1.0, 2.0], [3.0, 4.0]], dtype)], [[np.array([[1, 6], [7, 2]], dtype)]]
    raise ValueError(f"No fixed inputs for procedure {case.procedure!r}.")


def case_actual(case: GoldenCase, runner: Runner, profile: str) -> np.ndarray:
    """Values the runner produces for the quantities ``case.expected`` lists."""
    if case.procedure == "weight_decay":
        return np.asarray(_weight_decay(case, runner, profile), dtype=np.float64)[None]
    values, steps = golden_inputs(case)
    finals = runner(case.spec, values, steps, profile, {})
    return np.stack([np.asarray(step[0], dtype=np.float64) for step in finals])


def _weight_decay(case, runner, profile):
    """K3 test_weight_decay: zero gradients; three optimizers each decay ``var1`` once
    (so var1 = 2·0.996³), the second also holds ``var2`` excluded by name, the third
    ``var3`` excluded by identity."""
    zero = np.zeros((), np.float32)
    two = np.array(2.0, np.float32)
    (var1,) = runner(case.spec, [two], [[zero]], profile, {})[-1]
    by_name = {"names": ["var1", "exclude"], "exclude_names": ["exclude"]}
    var1, var2 = runner(case.spec, [var1, two], [[zero, zero]], profile, by_name)[-1]
    by_identity = {"exclude_indices": [1]}
    var1, var3 = runner(case.spec, [var1, two], [[zero, zero]], profile, by_identity)[-1]
    return [var1, var2, var3]


def run_case(case: GoldenCase, runner: Runner, profile: str) -> dict:
    """Compare a runner's values with the golden table; a JSON-ready result."""
    expected = np.asarray(case.expected, dtype=np.float64)
    actual = case_actual(case, runner, profile)
    if case.procedure != "correctness":  # the correctness table lists every step
        actual = actual[-1:]
    actual = actual.reshape(expected.shape)
    bound = case.atol + case.rtol * np.abs(expected)
    # NaN counts as the largest error: it never passes and is always the one reported.
    error = np.where(np.isnan(actual), np.inf, np.abs(actual - expected))
    ok = bool(np.all(error <= bound))
    worst = int(np.argmax(error - bound))
    return {
        "case": case.id,
        "optimizer": case.optimizer,
        "profile": profile,
        "dtype": case.dtype,
        "status": "pass" if ok else "deviation",
        "max_error": float(np.max(error)),
        "tolerance": {"rtol": case.rtol, "atol": case.atol},
        "worst": {
            "index": [int(i) for i in np.unravel_index(worst, expected.shape)],
            "expected": float(expected.flat[worst]),
            "actual": float(actual.flat[worst]),
        },
        "source": case.source,
    }
