"""A sample of the golden's output, as one digest per part, for tests/test_elementary.py.

``python -m tests.portability`` prints a JSON object part -> SHA-256. The test runs it
under NumPy with its optional CPU kernels disabled (``NPY_DISABLE_CPU_FEATURES``) and
requires the same digests as a run with every kernel: the golden gives the same bits
whatever kernels NumPy dispatches to.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from optcheck.adapters.numpy_reference import ReferenceAdapter
from optcheck.conformance import engine, goldens, suite
from optcheck.conformance.scenario import Scenario
from optcheck.conformance.tolerance import Policy
from optcheck.reference import dtypes, elementary, schedules

SCHEDULES = [
    {"class_name": "ExponentialDecay",
     "config": {"initial_learning_rate": 0.1, "decay_steps": 7, "decay_rate": 0.37}},
    {"class_name": "PolynomialDecay",
     "config": {"initial_learning_rate": 0.3, "decay_steps": 9, "end_learning_rate": 1e-4,
                "power": 1.7, "cycle": True}},
    {"class_name": "InverseTimeDecay",
     "config": {"initial_learning_rate": 0.2, "decay_steps": 3, "decay_rate": 0.61}},
    {"class_name": "CosineDecay",
     "config": {"initial_learning_rate": 0.05, "decay_steps": 11, "alpha": 0.13,
                "warmup_target": 0.2, "warmup_steps": 4}},
    {"class_name": "CosineDecayRestarts",
     "config": {"initial_learning_rate": 0.07, "first_decay_steps": 5, "t_mul": 1.9,
                "m_mul": 0.83, "alpha": 0.05}},
]  # fmt: skip


def _digest(chunks) -> str:
    h = hashlib.sha256()
    for chunk in chunks:
        h.update(np.ascontiguousarray(chunk).tobytes())
    return h.hexdigest()


def elementary_sample():
    """power, log and cos of every dtype on operands spread over their ranges."""
    rng = np.random.default_rng(17)
    for name in dtypes.FLOAT_DTYPES:
        dtype = dtypes.as_dtype(name)
        x = rng.uniform(1e-3, 4.0, 200).astype(dtype)
        y = rng.uniform(-6.0, 6.0, 200).astype(dtype)
        yield elementary.power(x, y)
        yield elementary.power(x, np.round(y).astype(dtype))
        yield elementary.log(x)
        yield elementary.cos((y * dtype.type(3)).astype(dtype))


def schedule_sample():
    """Every schedule with an exponent, a log or a cosine, 60 steps, each dtype."""
    for spec in SCHEDULES:
        for name in dtypes.FLOAT_DTYPES:
            dtype = dtypes.as_dtype(name)
            config = dict(spec["config"])
            config["initial_learning_rate"] = dtype.type(config["initial_learning_rate"])
            schedule = schedules.deserialize({"class_name": spec["class_name"],
                                              "config": config})  # fmt: skip
            yield np.asarray([schedule(step) for step in range(60)])


def golden_table_sample():
    """The golden tables of the Keras test suites, run by the reference."""
    from optcheck.adapters.numpy_reference import runner

    for case in goldens.GOLDEN_CASES:
        if case.procedure == "weight_decay":  # no fixed inputs of its own
            continue
        values, steps = goldens.golden_inputs(case)
        for step in runner(case.spec, values, steps, "keras2", {}):
            yield from (np.asarray(v) for v in step)


def tolerance_sample():
    """Float64 scenarios with schedules: golden, oracle, Monte Carlo and the learning-rate
    run, through the engine's recorded tolerances."""
    recorded = []
    for optimizer in ("Adam", "Nadam", "Ftrl", "Adafactor"):
        for spec in SCHEDULES:
            scenario = Scenario(
                optimizer=optimizer, config={"learning_rate": spec}, profile="keras2",
                dtype="float64", initial_values=[np.linspace(-1.0, 1.0, 6).reshape(2, 3)],
                steps=[[np.linspace(0.5, -0.3, 6).reshape(2, 3) * k] for k in (1, 2, 3)],
                needs=("schedule",),
            )  # fmt: skip
            found = engine.check(
                scenario, ReferenceAdapter(), Policy(mode="free"),
                record=lambda _step, _key, value, limit, _p: recorded.extend([value, limit]),
            )  # fmt: skip
            assert found is None, found
    yield from (np.asarray(v, dtype=np.float64) for v in recorded)


def digests() -> dict[str, str]:
    """Without binary128 (NumPy < 2.4 on x86-64) float64 tolerances are refused: no
    ``tolerances`` part then."""
    return {
        "elementary": _digest(elementary_sample()),
        "schedules": _digest(schedule_sample()),
        "golden_tables": _digest(golden_table_sample()),
        **({"tolerances": _digest(tolerance_sample())} if dtypes.binary128 is not None else {}),
        "seed_page": _digest(
            np.asarray(v)
            for scenario, _ in suite.seed_page_scenarios("keras2").values()
            for v in ReferenceAdapter().open(scenario).step(scenario.steps[0]).variables
        ),
    }


if __name__ == "__main__":
    print(json.dumps(digests(), sort_keys=True))
