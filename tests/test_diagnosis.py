"""Deviation diagnosis and baselines (conformance/diagnosis.py, conformance/baseline.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from optcheck.adapters.numpy_reference import ReferenceAdapter
from optcheck.cli import main
from optcheck.conformance import baseline, diagnosis, engine
from optcheck.conformance import tolerance as tol
from optcheck.conformance.scenario import Scenario
from optcheck.reference.sparse import IndexedSlices, PerReplica

from .helpers import cancelling_clipped_replicas

VARIANTS = {v.name: v for v in diagnosis.VARIANTS}
EXP = {"class_name": "ExponentialDecay",
       "config": {"initial_learning_rate": 0.1, "decay_steps": 1, "decay_rate": 0.5}}  # fmt: skip
#: After 3000 steps float32's rounding of 3000/7 and of 0.99 moves 0.99^(step/7) by ~1e-5:
#: a schedule computed in float64 is visible beyond the float32 learning rate's tolerance.
EXP_LATE = {"class_name": "ExponentialDecay",
            "config": {"initial_learning_rate": 0.1, "decay_steps": 7, "decay_rate": 0.99}}


def _scenario(optimizer, config, steps, values=(1.0, -2.0), dtype="float64", profile="keras2",
              **kwargs):  # fmt: skip
    n = len(np.atleast_1d(values))
    return Scenario(
        optimizer=optimizer, config=config, profile=profile, dtype=dtype,
        initial_values=[np.asarray(values, dtype=dtype)],
        steps=[[np.asarray(g, dtype=dtype).reshape(n)] for g in steps], **kwargs,
    )  # fmt: skip


def _two(optimizer, config, steps, dtype="float64", profile="keras2", **kwargs):
    return Scenario(
        optimizer=optimizer, config=config, profile=profile, dtype=dtype,
        initial_values=[np.asarray([1.0, 2.0], dtype), np.asarray([-1.0], dtype)],
        steps=[[np.asarray(a, dtype), np.asarray(b, dtype)] for a, b in steps], **kwargs,
    )  # fmt: skip


GRADS = [[0.3, -0.2], [0.1, 0.4], [-0.5, 0.05]]
REPLICAS = [[PerReplica((np.array([3.0, 0.0]), np.array([0.0, 4.0])))],
            [PerReplica((np.array([0.5, 0.5]), np.array([2.0, -1.0])))]]  # fmt: skip

#: variant -> a scenario where it changes the result.
CASES = {
    "adam_epsilon=corrected": _scenario("Adam", {"epsilon": 1e-3}, [[1e-3, 2e-3], [1e-3, 1e-3]]),
    "amsgrad_max=corrected": _scenario("Adam", {"amsgrad": True, "learning_rate": 0.1},
                                       [[1.0, 1.0], [0.1, 0.1], [0.5, 0.01]]),
    "epsilon_in_sqrt=False": _scenario("Adagrad", {"epsilon": 0.1}, GRADS),
    "beta_power_cast=direct": _scenario("Adam", {"beta_2": 0.999}, GRADS),
    "nadam_schedule_rate=0.004": _scenario("Nadam", {"epsilon": 1e-7}, GRADS),
    "nadam_schedule_rate=inf": _scenario("Nadam", {"epsilon": 1e-7}, GRADS),
    "nadam_one_minus_beta=python": _scenario("Nadam", {"epsilon": 1e-7}, GRADS,
                                             dtype="float32", profile="keras3"),
    "lion_one_minus_beta=python": _scenario("Lion", {"beta_1": 0.9999999999999999}, GRADS,
                                            dtype="float32", profile="keras3"),
    "sgd_momentum=gradient": _scenario("SGD", {"learning_rate": EXP, "momentum": 0.9}, GRADS),
    "adamax_epsilon=inside_max": _scenario("Adamax", {"epsilon": 0.1}, GRADS),
    "weight_decay_coupling=l2": _scenario("Adam", {"weight_decay": 0.5, "epsilon": 1e-7}, GRADS),
    "clipnorm_scope=global": _two("SGD", {"clipnorm": 1.0},
                                  [([0.6, 0.8], [0.5]), ([0.3, 0.0], [2.0])]),
    "clip_norm_epsilon=1e-6": _scenario("SGD", {"clipnorm": 1e-5}, [[3e-5, 4e-5]]),
    "clip_division=reciprocal": cancelling_clipped_replicas(),
    "clip_order": Scenario(optimizer="SGD", config={"clipnorm": 1.0}, profile="keras2",
                           dtype="float64", initial_values=[np.zeros(2)], steps=REPLICAS,
                           needs=("replicas",)),
    "ema_init=first_step": _scenario("SGD", {"use_ema": True, "ema_momentum": 0.5}, GRADS,
                                     finalize=True),
    "ema_init=copy_at_build": _scenario("SGD", {"use_ema": True, "ema_momentum": 0.5}, GRADS,
                                        profile="keras3", finalize=True),
    "ema_scope=all": Scenario(optimizer="SGD", config={"use_ema": True, "ema_momentum": 0.5},
                              profile="keras2", dtype="float64",
                              initial_values=[np.ones(2), np.ones(1)],
                              steps=[[np.ones(2), np.ones(1)], [np.ones(2), None]],
                              needs=("none_gradients",), finalize=True),
    "ema_scope=updated": Scenario(optimizer="SGD", config={"use_ema": True, "ema_momentum": 0.5},
                                  profile="keras3", dtype="float64",
                                  initial_values=[np.ones(2), np.ones(1)],
                                  steps=[[np.ones(2), np.ones(1)], [np.ones(2), np.ones(1)],
                                         [np.ones(2), None]],
                                  needs=("none_gradients",), finalize=True),
    "schedule_offset=1": _scenario("SGD", {"learning_rate": EXP}, GRADS),
    "schedule_in_float64": _scenario("SGD", {"learning_rate": EXP_LATE}, GRADS, iterations=3000),
    "nadam_u_product_advance=python_counter": _two(
        "Nadam", {"epsilon": 1e-7}, [([0.3, -0.2], [0.5]), ([0.1, 0.4], [-0.2])], iterations=2
    ),
    "nan_in_max=ignore": _scenario("Adafactor", {"learning_rate": 0.1}, GRADS[:1],
                                   values=(np.nan, 2.0)),
    "python_scalar_cast=direct": _scenario("Adamax", {"beta_1": 0.7, "epsilon": 1e-7,
                                                     "weight_decay": 0.3}, GRADS),
    "default_epsilon=1e-8": _scenario("Adam", {}, [[1e-6, 2e-6], [1e-6, 1e-6]]),
    "ops_python_float=float32": _scenario("SGD", {"clipnorm": 0.3, "use_ema": True,
                                                  "ema_momentum": 0.9}, GRADS,
                                          profile="keras3", finalize=True),
    "weight_decay_form=scale_float32": _scenario("SGD", {"weight_decay": 0.3}, GRADS,
                                                 profile="keras3"),
    "backend=torch": _scenario("AdamW", {"weight_decay": 0.05, "clipnorm": 0.7,
                                         "use_ema": True, "ema_momentum": 0.9}, GRADS,
                               profile="keras3", finalize=True),
    "other_profile": _scenario("Lion", {}, GRADS),
    "sparse_gradients=keep_duplicates": Scenario(
        optimizer="Adam", config={}, profile="keras2", dtype="float32",
        initial_values=[np.asarray([[1.0], [2.0]], np.float32)],
        steps=[[IndexedSlices(np.asarray([[0.3], [0.5]], np.float32), np.asarray([0, 0]),
                              (2, 1))]],
        needs=("sparse",),
    ),
}


def test_every_catalogued_variant_has_a_case():
    assert set(CASES) == set(VARIANTS)


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_variant_implementation_is_diagnosed_as_that_variant(name):
    """The golden with one variant switched on deviates from the golden, and the
    diagnosis names that variant: every entry of the catalogue is identifiable."""
    scenario, variant = CASES[name], VARIANTS[name]
    candidate = ReferenceAdapter(variant=variant)
    policy = tol.Policy()
    assert engine.check(scenario, candidate, policy) is not None, "the variant changes nothing"
    found = diagnosis.diagnose(scenario, candidate, policy)
    assert found["verdict"] == f"matches variant {name}", found
    assert found["summary"] == variant.summary and found["tried"][-1] == name


def test_two_variants_at_once_are_diagnosed_as_the_pair():
    scenario = _scenario("Adagrad", {"epsilon": 0.1, "learning_rate": EXP_LATE}, GRADS,
                         iterations=3000)
    pair = diagnosis.Combined((VARIANTS["epsilon_in_sqrt=False"],
                               VARIANTS["schedule_in_float64"]))  # fmt: skip
    found = diagnosis.diagnose(scenario, ReferenceAdapter(variant=pair), tol.Policy())
    assert found["variant"] == "epsilon_in_sqrt=False + schedule_in_float64", found


def nadam_without_schedule():
    """A golden whose Nadam has no momentum schedule (optax.nadam)."""
    return ReferenceAdapter(variant=VARIANTS["nadam_schedule_rate=inf"], name="nadam-inf")


def test_golden_table_deviations_are_diagnosed(tmp_path):
    """A Keras golden table the candidate misses is re-run as a scenario from the table's
    own inputs against each variant: the diagnosis names the candidate's semantics."""
    status = main(["verify", "--adapter", "tests.test_diagnosis:nadam_without_schedule",
                   "--optimizer", "Nadam", "--feature", "golden:*", "--in-process",
                   "--out", str(tmp_path)])  # fmt: skip
    assert status == 1
    cases = json.loads((tmp_path / "conformance.json").read_text())["adapters"][0]["cases"]
    by_id = {c["id"]: c for c in cases}
    for case_id in ("golden:Nadam-correctness", "golden:Nadam-single-step"):
        case = by_id[case_id]
        assert case["status"] == "deviation", case
        assert case["diagnosis"]["verdict"] == "matches variant nadam_schedule_rate=inf", case
    assert by_id["golden:Nadam-weight-decay"]["status"] == "pass"  # zero gradients


def test_an_unknown_slip_is_unexplained():
    """A candidate whose Adam uses β1 = 0.8 whatever the config: no variant explains it."""
    slip = diagnosis.Variant("slip", "β1 forced", "test", config=lambda c: {**c, "beta_1": 0.8})
    scenario = CASES["adam_epsilon=corrected"]
    found = diagnosis.diagnose(scenario, ReferenceAdapter(variant=slip), tol.Policy())
    assert found["verdict"] == "unexplained" and found["variant"] is None
    assert "adam_epsilon=corrected" in found["tried"]


def test_the_diagnosis_budget_is_reported():
    scenario = CASES["adam_epsilon=corrected"]
    found = diagnosis.diagnose(scenario, ReferenceAdapter(variant=VARIANTS["other_profile"]),
                               tol.Policy(), budget=0.0)  # fmt: skip
    assert found["verdict"].startswith("unexplained (diagnosis stopped after")


# -- baselines --------------------------------------------------------------------------
def _write(tmp_path, text, name="b.toml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "text, message",
    [
        ("[[accepted]]\ncase='x'\nreason='r'\n", "missing `adapter"),
        ("adapter='a'\n[[accepted]]\nreason='r'\n", "entry 1: `case` is required"),
        ("adapter='a'\n[[accepted]]\ncase='x'\n", "entry 1: `reason` is required"),
        ("adapter='a'\n[[accepted]]\ncase='x'\nreason='r'\nstatus='pass'\n", "`status` must"),
        ("adapter='a'\n[[accepted]]\ncase='x'\nreason='r'\nprofile='k4'\n", "`profile` must"),
        ("adapter='a'\n[[accepted]]\ncase='x'\nreason='r'\nwhy='?'\n", "unknown key(s) ['why']"),
        ("adapter='a'\nextra=1\n", "unknown top-level key(s) ['extra']"),
        ("adapter = \n", "not valid TOML"),
    ],
)
def test_malformed_baselines_name_the_culprit(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(baseline.BaselineError, match=message.replace("[", r"\[").replace(
            "(", r"\(").replace(")", r"\)")) as info:  # fmt: skip
        baseline.load(path)
    assert str(path) in str(info.value)


def _report(cases, profile="keras2"):
    return {"profile": profile, "level": "ci", "seed": 0,
            "adapters": [{"name": "lib", "cases": cases}]}  # fmt: skip


def _case(case_id, status, variant=None):
    c = {"id": case_id, "status": status, "optimizer": case_id.split("-")[0]}
    if status == "deviation":
        c["diagnosis"] = {"verdict": "x", "variant": variant}
    return c


def test_baseline_accepts_known_flags_new_and_warns_stale(tmp_path):
    path = _write(tmp_path, """
adapter = "lib"
[[accepted]]
case = "Adam-*"
variant = "adam_epsilon=*"
reason = "ε placement"
link = "https://example.org/1"
[[accepted]]
case = "SGD-*"
reason = "fixed upstream since"
[[accepted]]
case = "Lion-*"
reason = "never run here"
""")
    report = _report([
        _case("Adam-plain-float32", "deviation", "adam_epsilon=corrected"),
        _case("Adam-ema-float32", "deviation", None),  # unexplained: not the accepted kind
        _case("SGD-plain-float32", "pass"),
        _case("Nadam-plain-float32", "error"),
    ])  # fmt: skip
    gate = baseline.apply(report, [baseline.load(path)])
    assert gate["accepted"] == ["lib: Adam-plain-float32"]
    assert gate["new"] == ["lib: Adam-ema-float32", "lib: Nadam-plain-float32"]
    assert [s.split(": ", 1)[1] for s in gate["stale"]] == ["case='SGD-*'"]
    assert [s.split(": ", 1)[1] for s in gate["unused"]] == ["case='Lion-*'"]
    assert report["adapters"][0]["cases"][0]["baseline"]["link"] == "https://example.org/1"


@pytest.mark.parametrize("group", [True, False])
def test_generated_baseline_accepts_its_own_report(tmp_path, group):
    report = _report([_case("Adam-plain-float32", "deviation", "adam_epsilon=corrected"),
                      _case("Adam-ema-float32", "deviation", "adam_epsilon=corrected"),
                      _case("Adam-plain-float64", "deviation", None),
                      _case("SGD-plain-float32", "error")])  # fmt: skip
    path = _write(tmp_path, baseline.from_report(report, "lib", group=group))
    loaded = baseline.load(path)
    assert len(loaded.entries) == (3 if group else 4)
    gate = baseline.apply(report, [loaded])
    assert gate["new"] == [] and len(gate["accepted"]) == 4
    # Grouped entries pin the diagnosis: another Adam deviation is still new.
    report["adapters"][0]["cases"].append(_case("Adam-clipnorm-float32", "deviation", "slip"))
    assert baseline.apply(report, [loaded])["new"] == ["lib: Adam-clipnorm-float32"]


# -- the command line, end to end ---------------------------------------------------------
def variant_factory():
    """An adapter that is the golden with Adagrad's ε outside the square root."""
    adapter = ReferenceAdapter(variant=VARIANTS["epsilon_in_sqrt=False"], name="eps-outside")
    return adapter


def test_verify_with_a_baseline_gates_on_new_deviations(tmp_path, capsys):
    select = ["verify", "--adapter", "tests.test_diagnosis:variant_factory", "--in-process",
              "--optimizer", "Adagrad", "SGD", "--feature", "plain", "--dtype", "float64",
              "--max-examples", "3"]  # fmt: skip
    out = tmp_path / "run"
    assert main([*select, "--out", str(out)]) == 1
    report = json.loads((out / "conformance.json").read_text())
    cases = report["adapters"][0]["cases"]
    deviating = [c for c in cases if c["status"] == "deviation"]
    assert [c["id"] for c in deviating] == ["Adagrad-plain-float64"]
    assert deviating[0]["diagnosis"]["verdict"] == "matches variant epsilon_in_sqrt=False"
    assert "matches variant epsilon_in_sqrt=False" in (out / "conformance.md").read_text()

    name = "tests.test_diagnosis:variant_factory"
    text = f'adapter = "{name}"\n' + """
[[accepted]]
case = "Adagrad-*"
variant = "epsilon_in_sqrt=False"
reason = "this adapter puts ε outside the root"
[[accepted]]
case = "SGD-plain-*"
reason = "stale on purpose"
"""
    path = _write(tmp_path, text)
    capsys.readouterr()
    assert main([*select, "--out", str(out), "--baseline", str(path)]) == 0
    captured = capsys.readouterr()
    assert "baseline: 1 accepted, 0 new, 1 stale entries" in captured.out
    assert "stale baseline entry" in captured.err and "SGD-plain-*" in captured.err
    assert "accepted by baseline: this adapter puts ε outside the root" in (
        out / "conformance.md").read_text()  # fmt: skip

    path = _write(tmp_path, f'adapter = "{name}"\n', "empty.toml")
    assert main([*select, "--out", str(out), "--baseline", str(path)]) == 1
    assert "new deviation (not in any baseline)" in capsys.readouterr().out
    assert main([*select, "--out", str(out), "--baseline", str(tmp_path / "nope.toml")]) == 2


def test_pytest_plugin_xfails_baselined_deviations_and_lists_stale_entries(tmp_path):
    """The recipe of docs/gating.md: `pytest --pyargs optcheck.conformance` with a
    baseline — accepted deviations xfail, stale entries are listed, new ones fail."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    name = "tests.test_diagnosis:variant_factory"
    path = _write(tmp_path, f'adapter = "{name}"\n' + """
[[accepted]]
case = "Adagrad-*"
variant = "epsilon_in_sqrt=False"
reason = "ε outside the root"
link = "https://example.org/eps"
[[accepted]]
case = "SGD-plain-*"
reason = "stale on purpose"
""")
    root = Path(__file__).resolve().parents[1]

    def pytest_run(*extra):
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rxX",
             "--pyargs", "optcheck.conformance", f"--optcheck-adapter={name}",
             "--optcheck-optimizer=Adagrad", "--optcheck-optimizer=SGD",
             "--optcheck-feature=plain", "--optcheck-dtype=float64", *extra],
            capture_output=True, text=True, cwd=tmp_path, timeout=300,
            env={**os.environ, "PYTHONPATH": str(root)},
        )  # fmt: skip

    run = pytest_run(f"--optcheck-baseline={path}")
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    assert "1 passed, 1 xfailed" in out
    assert "accepted by baseline: ε outside the root (https://example.org/eps)" in out
    assert "stale baseline entry" in out and "SGD-plain-*" in out
    run = pytest_run()
    assert run.returncode == 1 and "diagnosis: matches variant epsilon_in_sqrt=False" in \
        run.stdout  # fmt: skip


def test_regenerated_baseline_keeps_reviewed_reasons_and_links(tmp_path):
    old = baseline.load(_write(tmp_path, """
adapter = "lib"
[[accepted]]
case = "Adam-*"
profile = "keras2"
variant = "adam_epsilon=corrected"
reason = "we follow the paper"
link = "https://example.org/adam"
[[accepted]]
case = "Nadam-*"
profile = "keras2"
variant = "unexplained"
reason = "under investigation"
link = "https://example.org/nadam"
[[accepted]]
case = "SGD-*"
profile = "keras2"
status = "error"
reason = "SGD raises on purpose"
"""))
    # Nadam is now explained by a variant: its entry is new, with the diagnosis as reason.
    report = _report([_case("Adam-plain-float32", "deviation", "adam_epsilon=corrected"),
                      _case("Nadam-plain-float32", "deviation", "nadam_schedule_rate=inf"),
                      _case("SGD-plain-float32", "error")])  # fmt: skip
    new = baseline.load(_write(tmp_path, baseline.from_report(report, "lib", keep=old), "n.toml"))
    by_case = {e.case: e for e in new.entries}
    assert (by_case["Adam-*"].reason, by_case["Adam-*"].link) == (
        "we follow the paper", "https://example.org/adam")
    assert by_case["SGD-*"].reason == "SGD raises on purpose"
    assert by_case["Nadam-*"].variant == "nadam_schedule_rate=inf"
    assert by_case["Nadam-*"].reason == "x" and by_case["Nadam-*"].link == ""
