"""Every golden table of the semantics notes §5, reproduced by the reference in the
profiles whose defaults the table assumes, within the source test's tolerance."""

from __future__ import annotations

import json

import numpy as np
import pytest

from optcheck.adapters import numpy_reference
from optcheck.cli import main
from optcheck.conformance.goldens import GOLDEN_CASES, GoldenCase, run_case

CASES = [(case, profile) for case in GOLDEN_CASES for profile in case.profiles]


@pytest.mark.parametrize("case, profile", CASES, ids=[f"{c.id}-{p}" for c, p in CASES])
def test_golden_case(case, profile):
    result = run_case(case, numpy_reference.runner, profile)
    assert result["status"] == "pass", result


def test_every_optimizer_has_correctness_single_step_and_weight_decay_goldens():
    by_procedure = {}
    for case in GOLDEN_CASES:
        by_procedure.setdefault(case.procedure, set()).add(case.optimizer)
    eleven = {"SGD", "Adam", "AdamW", "Adagrad", "Adadelta", "Adamax", "Ftrl", "Nadam",
              "RMSprop", "Adafactor", "Lion"}  # fmt: skip
    assert by_procedure["correctness"] == eleven
    assert by_procedure["single_step"] == eleven
    assert by_procedure["weight_decay"] == eleven - {"Ftrl"}


def test_a_wrong_implementation_is_reported_as_deviation():
    """The comparison can fail: a runner that ignores its gradients deviates."""
    case = next(c for c in GOLDEN_CASES if c.id == "Adam-correctness")

    def frozen(spec, values, steps, profile, options):
        return [[np.asarray(v) for v in values] for _ in steps]

    result = run_case(case, frozen, "keras2")
    assert result["status"] == "deviation"
    assert result["worst"]["actual"] == 1.0


def test_nan_never_passes():
    case = GoldenCase("nan", "SGD", ("keras2",), {"class_name": "SGD", "config": {}},
                      "single_step", "float32", ((np.nan, 1.0, 1.0, 1.0),), 1.0, 1.0,
                      "test")  # fmt: skip

    def nan_runner(spec, values, steps, profile, options):
        return [[np.full(4, np.nan, np.float32)]]

    assert run_case(case, nan_runner, "keras2")["status"] == "deviation"


@pytest.mark.parametrize("profile", ["keras2", "keras3"])
def test_cli_verify_runs_every_golden_table_through_the_adapter(tmp_path, profile, capsys):
    assert main(["verify", "--adapter", "numpy", "--profile", profile, "--feature", "golden:*",
                 "--out", str(tmp_path)]) == 0  # fmt: skip
    report = json.loads((tmp_path / "conformance.json").read_text())
    assert report["schema"] == "optcheck.conformance/1" and report["profile"] == profile
    (adapter,) = report["adapters"]
    assert adapter["name"] == "numpy" and adapter["version"]
    assert {c["status"] for c in adapter["cases"]} == {"pass"}
    expected = {f"golden:{c.id}" for c in GOLDEN_CASES if profile in c.profiles}
    assert {c["feature"] for c in adapter["cases"]} == expected
    for key in ("adapter", "optimizer", "feature", "dtype", "status", "tolerance"):
        assert all(key in c for c in adapter["cases"])
    assert "cases conform" in (tmp_path / "conformance.md").read_text()
    assert "cases conform" in capsys.readouterr().out


def test_cli_unknown_adapter_is_a_usage_error(tmp_path, capsys):
    assert main(["verify", "--adapter", "nope", "--out", str(tmp_path)]) == 2
    from optcheck.adapters.registry import known_adapters

    known = "known adapters: " + ", ".join(sorted(known_adapters()))
    assert known in capsys.readouterr().err


def test_cli_lists_adapters(capsys):
    assert main(["adapters"]) == 0
    assert capsys.readouterr().out.startswith("numpy\tavailable")
