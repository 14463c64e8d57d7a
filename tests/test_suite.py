"""The suite's machinery: adapter registry, case outcomes, isolation, reports, plugin.

The adapters and the small strategy module used here live in this file; worker
processes and repro scripts import them as ``tests.test_suite:...`` (the project root
on PYTHONPATH).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import replace
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from hypothesis import strategies as st

from optcheck.adapters import registry
from optcheck.adapters.base import DTYPES, FEATURES, PROFILES, Capabilities
from optcheck.adapters.numpy_reference import ReferenceAdapter, ReferenceSession
from optcheck.conformance import engine, report, suite
from optcheck.conformance.scenario import Scenario
from optcheck.conformance.suite import Case, Context
from optcheck.conformance.tolerance import Policy
from optcheck.conformance.verify import verify
from optcheck.conformance.worker import WorkerPool

ROOT = Path(__file__).resolve().parents[1]
HERE = "tests.test_suite"


# -- a small strategy module (case_grid / scenarios), fast and deterministic -----------
def case_grid(optimizers, profile):
    return [(o, f, "float32") for o in optimizers for f in ("plain", "clipnorm")]


def scenarios(optimizer, feature, dtype, profile):
    @st.composite
    def draw_scenario(draw):
        n = draw(st.integers(1, 2))
        values = [np.asarray(draw(st.floats(-2, 2, width=32)), dtype) for _ in range(n)]
        steps = [[np.asarray(draw(st.floats(-1, 1, width=32)), dtype) for _ in range(n)]
                 for _ in range(draw(st.integers(1, 3)))]  # fmt: skip
        config = {"learning_rate": draw(st.sampled_from([0.01, 0.5]))}
        if feature == "clipnorm":
            config["clipnorm"] = 0.5
        needs = ("clipnorm",) if feature == "clipnorm" else ()
        return Scenario(optimizer, config, profile, dtype, values, steps, feature=feature,
                        needs=needs)  # fmt: skip

    return draw_scenario()


# -- adapters that misbehave -----------------------------------------------------------
class _Doubling(ReferenceSession):
    def step(self, gradients, skip_gradients_aggregation=False):
        doubled = [None if g is None else np.asarray(g) * 2 for g in gradients]
        return super().step(doubled, skip_gradients_aggregation)


class WrongUpdate(ReferenceAdapter):
    """Applies twice the gradient: a wrong update, found at step 1."""

    def open(self, scenario):
        return _Doubling(self._package, scenario, self.numerics)


class _Misbehaving(ReferenceSession):
    action = "raise"

    def step(self, gradients, skip_gradients_aggregation=False):
        if self._scenario.optimizer == "Adam":  # SGD stays correct
            if self.action == "raise":
                raise RuntimeError("adapter exploded")
            if self.action == "hang":
                time.sleep(3600)
            if self.action == "exit":
                os._exit(3)
        return super().step(gradients, skip_gradients_aggregation)


def _misbehaving(action):
    session = type(f"_{action}", (_Misbehaving,), {"action": action})

    class Adapter_(ReferenceAdapter):
        def open(self, scenario):
            return session(self._package, scenario, self.numerics)

    return Adapter_


Raising = _misbehaving("raise")
Hanging = _misbehaving("hang")
Exiting = _misbehaving("exit")


class _LossySession(ReferenceSession):
    def round_trip(self):  # loses the hyper-parameters: a fresh default optimizer
        spec = {"class_name": self._scenario.optimizer, "config": {}}
        self._optimizer = self._package.optimizers.deserialize(spec,
                                                               profile=self._scenario.profile)


class LossyRoundTrip(ReferenceAdapter):
    """get_config/from_config loses the configuration: a metamorphic round-trip slip."""

    def open(self, scenario):
        return _LossySession(self._package, scenario, self.numerics)


class NoClipnorm(ReferenceAdapter):
    """Declares no clipnorm and no float64."""

    def capabilities(self):
        return Capabilities(
            optimizers=frozenset({"SGD", "Adam"}),
            features=frozenset(FEATURES) - {"clipnorm"},
            dtypes=frozenset(DTYPES) - {"float64"},
            profiles=frozenset(PROFILES),
            notes={"clipnorm": "no clipnorm argument"},
        )


class Unavailable(ReferenceAdapter):
    def availability(self):
        return False, "mylib is not installed"


class NotAnAdapter:
    pass


def factory_of_nothing():
    return 42


@pytest.fixture
def on_path(monkeypatch):
    """The project root on PYTHONPATH, so workers and repro scripts import this module."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH",
                                                                               "")]))  # fmt: skip


def ctx_for(adapter, **kw) -> Context:
    base = dict(adapter=adapter, strategies=HERE, optimizers=["SGD", "Adam"], fixed_cases=False)
    return Context(**{**base, **kw})


def results_by_id(results):
    return {r["id"]: r for r in results}


# -- registry ----------------------------------------------------------------------------
def test_bundled_name_loads_the_reference():
    adapter = registry.load_adapter("numpy")
    assert isinstance(adapter, ReferenceAdapter) and adapter.name == "numpy"
    assert "numpy" in registry.BUNDLED


def test_import_string_to_factory_class_or_instance():
    assert isinstance(registry.load_adapter("optcheck.adapters.numpy_reference:factory"),
                      ReferenceAdapter)  # fmt: skip
    assert isinstance(registry.load_adapter(f"{HERE}:WrongUpdate"), WrongUpdate)
    assert registry.resolve(f"{HERE}:WrongUpdate") == (f"{HERE}:WrongUpdate",) * 2


def test_entry_point_group_is_read(monkeypatch):
    eps = metadata.EntryPoints([metadata.EntryPoint("third", f"{HERE}:NoClipnorm",
                                                    registry.ENTRY_POINT_GROUP)])  # fmt: skip
    monkeypatch.setattr(registry.metadata, "entry_points", lambda group: eps)
    assert registry.known_adapters()["third"] == f"{HERE}:NoClipnorm"
    assert isinstance(registry.load_adapter("third"), NoClipnorm)
    assert "third" in [info.name for info in registry.list_adapters()]


def test_the_installed_entry_point_names_the_numpy_adapter():
    found = {ep.name: ep.value for ep in metadata.entry_points(group=registry.ENTRY_POINT_GROUP)}
    assert found.get("numpy") == "optcheck.adapters.numpy_reference:factory"


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(registry.UnknownAdapterError, match=r"known adapters: .*numpy"):
        registry.load_adapter("nope")


@pytest.mark.parametrize("target, match", [
    (f"{HERE}:NotAnAdapter", "not an adapter"),
    (f"{HERE}:factory_of_nothing", "gave int"),
    (f"{HERE}:missing", "no attribute"),
    ("no_such_module_xyz:factory", "cannot import"),
])  # fmt: skip
def test_bad_targets_raise_load_errors(target, match):
    with pytest.raises(registry.AdapterLoadError, match=match):
        registry.load_adapter(target)


def test_list_adapters_reports_unavailable_and_broken_adapters():
    info = registry.describe(f"{HERE}:Unavailable")
    assert (info.available, info.reason, info.version) == (False, "mylib is not installed", "")
    broken = registry.describe("no_such_module_xyz:factory")
    assert not broken.available and "cannot import" in broken.reason
    (numpy_info,) = [i for i in registry.list_adapters() if i.name == "numpy"]
    assert numpy_info.available and "numpy" in numpy_info.version


# -- case outcomes (in process) ------------------------------------------------------------
def test_plan_marks_what_the_adapter_lacks_unsupported():
    ctx = ctx_for(f"{HERE}:NoClipnorm", optimizers=["SGD", "Adam", "Ftrl"], fixed_cases=True)
    cases = {c.id: c for c in suite.plan(ctx).cases}
    assert cases["SGD-plain-float32"].unsupported is None
    assert "feature clipnorm" in cases["SGD-clipnorm-float32"].unsupported
    assert "no clipnorm argument" in cases["SGD-clipnorm-float32"].unsupported
    assert "optimizer Ftrl" in cases["Ftrl-plain-float32"].unsupported
    assert "dtype float64" in cases["golden:SGD-correctness"].unsupported
    result = suite.run_case(cases["SGD-clipnorm-float32"], ctx)
    assert result["status"] == "unsupported" and "clipnorm" in result["reason"]


def test_fixed_cases_of_the_golden_tables_and_the_seed_page_pass_on_numpy():
    ctx = Context(adapter="numpy", strategies=HERE, optimizers=["SGD"], features=["golden:*",
                                                                                  "seed:*"])
    cases = suite.plan(ctx).cases
    kinds = {c.kind for c in cases}
    assert kinds == {"golden", "seed"}
    assert {"seed:gradient_clipping", "seed:exponential_moving_average",
            "golden:SGD-correctness"} <= {c.id for c in cases}  # fmt: skip
    results = [suite.run_case(c, ctx) for c in cases]
    assert {r["status"] for r in results} == {"pass"}, [r for r in results if r["status"] != "pass"]


def test_golden_case_deviation_names_the_value_and_reproduces(tmp_path, on_path):
    ctx = Context(adapter=f"{HERE}:WrongUpdate", strategies=HERE, optimizers=["SGD"],
                  features=["golden:SGD-single-step"])  # fmt: skip
    (case,) = suite.plan(ctx).cases
    result = suite.run_case(case, ctx)
    assert result["status"] == "deviation"
    d = result["first_divergence"]
    assert d["step"] == 1 and d["error"] > d["tolerance"]
    script = tmp_path / "repro.py"
    script.write_text(result["repro"])
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         cwd=tmp_path, timeout=120)  # fmt: skip
    assert run.returncode == 1 and '"deviation"' in run.stdout, run.stderr


def test_wrong_update_is_a_deviation_with_a_repro_that_reproduces(tmp_path, on_path):
    ctx = ctx_for(f"{HERE}:WrongUpdate", optimizers=["SGD"], features=["plain"])
    (case,) = suite.plan(ctx).cases
    result = suite.run_case(case, ctx)
    assert result["status"] == "deviation", result
    d = result["first_divergence"]
    assert set(d) == {"step", "quantity", "index", "expected", "actual", "error", "tolerance"}
    assert d["step"] == 1 and d["error"] > d["tolerance"]
    assert result["examples"] >= 1 and result["tolerance"]["mode"] == "resync"
    # The scenario was shrunk: one variable, one step.
    embedded = Scenario.from_json(result["repro"].split("SCENARIO = ", 1)[1].split("\n", 1)[0]
                                  .strip()[1:-1])  # fmt: skip
    assert len(embedded.steps) == 1 and len(embedded.initial_values) == 1
    script = tmp_path / "repro.py"
    script.write_text(result["repro"])
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         cwd=tmp_path, timeout=120)  # fmt: skip
    assert run.returncode == 1, run.stderr
    assert "first divergence: step 1" in run.stdout
    assert f"expected {d['expected']!r}" in run.stdout


def test_a_cut_short_shrink_still_reports_a_failing_scenario(monkeypatch):
    from optcheck.conformance import settings

    monkeypatch.setitem(settings.LEVELS, "ci", replace(settings.LEVELS["ci"], shrink_budget=0.0))
    ctx = ctx_for(f"{HERE}:WrongUpdate", optimizers=["SGD"], features=["plain"])
    (case,) = suite.plan(ctx).cases
    result = suite.run_case(case, ctx)
    assert result["status"] == "deviation" and result["shrink_truncated"]
    embedded = result["repro"].split("SCENARIO = ", 1)[1].split("\n", 1)[0].strip()[1:-1]
    found = engine.check(Scenario.from_json(embedded), WrongUpdate(), Policy())
    assert engine.divergence_dict(found) == result["first_divergence"]


@pytest.mark.parametrize("limit", [1, 5])
def test_shrinking_stops_after_its_step_limit_and_reports_the_smallest_failure(monkeypatch,
                                                                                limit):
    """ci's ``shrink_steps``: after that many replays hypothesis stops drawing at once (it
    would otherwise draw hundreds more candidates), and the reported scenario is the last
    failing one, which still fails with the reported divergence."""
    from optcheck.conformance import settings

    monkeypatch.setitem(settings.LEVELS, "ci", replace(settings.LEVELS["ci"], shrink_steps=limit,
                                                       shrink_budget=None))  # fmt: skip
    calls = []
    real = suite._DrawnRun.__call__
    monkeypatch.setattr(suite._DrawnRun, "__call__",
                        lambda self, scenario: calls.append(1) or real(self, scenario))
    ctx = ctx_for(f"{HERE}:WrongUpdate", optimizers=["SGD"], features=["plain"])
    (case,) = suite.plan(ctx).cases
    result = suite.run_case(case, ctx)
    assert result["status"] == "deviation" and result["shrink_truncated"]
    assert result["shrink_steps"] == limit
    # The examples up to the failure, the replays, and the one call that stopped it.
    assert len(calls) == result["examples"] + limit + 1
    embedded = result["repro"].split("SCENARIO = ", 1)[1].split("\n", 1)[0].strip()[1:-1]
    found = engine.check(Scenario.from_json(embedded), WrongUpdate(), Policy())
    assert engine.divergence_dict(found) == result["first_divergence"]


def test_metamorphic_cases_run_properties_and_reproduce(tmp_path, on_path):
    ctx = ctx_for(f"{HERE}:LossyRoundTrip", optimizers=["SGD"], features=["metamorphic:*"],
                  metamorphic=True)  # fmt: skip
    cases = {c.id: c for c in suite.plan(ctx).cases}
    assert {c.kind for c in cases.values()} == {"metamorphic"}
    assert "SGD-metamorphic:huge_clipnorm-float32" in cases
    results = {key: suite.run_case(case, ctx) for key, case in cases.items()}
    assert results["SGD-metamorphic:huge_clipnorm-float32"]["status"] == "pass"
    bad = results["SGD-metamorphic:round_trip-float32"]
    assert bad["status"] == "deviation", bad
    assert bad["first_divergence"]["property"] == "round_trip"
    assert bad["tolerance"]["mode"] == "metamorphic"
    script = tmp_path / "repro.py"
    script.write_text(bad["repro"])
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         cwd=tmp_path, timeout=120)  # fmt: skip
    assert run.returncode == 1 and "violated: round_trip" in run.stdout, run.stdout + run.stderr
    numpy_ctx = replace(ctx, adapter="numpy")
    assert suite.run_case(cases["SGD-metamorphic:round_trip-float32"], numpy_ctx)["status"] \
        == "pass"  # fmt: skip


def test_a_property_that_never_applies_is_not_a_case():
    ctx = ctx_for("numpy", optimizers=["Ftrl", "SGD"], features=["metamorphic:zero*"],
                  metamorphic=True)  # fmt: skip
    assert [c.id for c in suite.all_cases(ctx)] == ["SGD-metamorphic:zero_learning_rate-float32"]


def test_the_numpy_adapter_conforms_and_the_run_is_seeded():
    ctx = ctx_for("numpy", optimizers=["Adam"], features=["plain"], seed=7)
    (case,) = suite.plan(ctx).cases
    first, second = suite.run_case(case, ctx), suite.run_case(case, ctx)
    assert first["status"] == "pass" and first["examples"] >= 1 and first["seed"] == 7
    assert first["examples"] == second["examples"]


def test_an_adapter_that_raises_is_an_error_with_its_traceback():
    ctx = ctx_for(f"{HERE}:Raising", features=["plain"])
    results = results_by_id(suite.run_case(c, ctx) for c in suite.plan(ctx).cases)
    bad = results["Adam-plain-float32"]
    assert bad["status"] == "error" and "adapter exploded" in bad["message"]
    assert "Traceback" in bad["traceback"] and "adapter exploded" in bad["traceback"]
    assert "repro" in bad
    assert results["SGD-plain-float32"]["status"] == "pass"


def test_an_adapter_that_fails_to_open_is_an_error_not_a_crash():
    class Broken(ReferenceAdapter):
        def open(self, scenario):
            raise SystemExit("adapter called sys.exit")

    ctx = ctx_for("numpy", optimizers=["SGD"], features=["plain"])
    (case,) = suite.plan(ctx).cases
    result = suite.run_case(case, ctx, adapter=Broken())
    assert result["status"] == "error" and "sys.exit" in result["message"]


# -- isolation -------------------------------------------------------------------------
def _pool_run(ctx, timeout=60.0, jobs=2, **kwargs):
    plan = suite.plan(ctx)
    results = []
    pool = WorkerPool(jobs=jobs, timeout=timeout, **kwargs)
    pool.run(plan.cases, ctx, results.append)
    return results_by_id(results), pool


def test_worker_results_match_in_process_results(on_path):
    ctx = ctx_for("numpy")
    isolated, _ = _pool_run(ctx)
    local = results_by_id(suite.run_case(c, ctx) for c in suite.plan(ctx).cases)
    assert set(isolated) == set(local)
    for key, result in isolated.items():
        assert result["status"] == local[key]["status"] == "pass"
        assert result["examples"] == local[key]["examples"]


def test_workers_are_replaced_after_max_cases(on_path):
    ctx = ctx_for("numpy", optimizers=["SGD", "Adam"], features=["plain", "clipnorm"])
    results, pool = _pool_run(ctx, jobs=1, max_cases=2)
    assert len(results) == 4 and all(r["status"] == "pass" for r in results.values())
    assert pool.started == 2 and pool.restarts == 0
    _, pool = _pool_run(ctx, jobs=1)
    assert pool.started == 1


def test_workers_holding_too_many_memory_maps_are_replaced(on_path):
    # XLA's compiled programs are never unmapped; at vm.max_map_count a worker dies.
    from optcheck.conformance.worker import memory_maps

    if memory_maps() is None:
        pytest.skip("no /proc/self/maps on this system")
    ctx = ctx_for("numpy", optimizers=["SGD", "Adam"], features=["plain", "clipnorm"])
    results, pool = _pool_run(ctx, jobs=1, max_maps=1)
    assert len(results) == 4 and all(r["status"] == "pass" for r in results.values())
    assert pool.started == 4 and pool.restarts == 0


def test_a_hanging_adapter_is_cut_by_the_timeout(on_path):
    started = time.monotonic()
    results, pool = _pool_run(ctx_for(f"{HERE}:Hanging"), timeout=3.0)
    assert time.monotonic() - started < 60
    for key in ("Adam-plain-float32", "Adam-clipnorm-float32"):
        assert results[key]["status"] == "error"
        assert results[key]["message"].startswith("timeout after 3s")
    assert results["SGD-plain-float32"]["status"] == "pass"
    assert results["SGD-clipnorm-float32"]["status"] == "pass"
    assert pool.restarts == 2


def test_a_crashing_interpreter_loses_only_its_own_cases(on_path):
    results, pool = _pool_run(ctx_for(f"{HERE}:Exiting"), jobs=1)
    assert len(results) == 4
    for key in ("Adam-plain-float32", "Adam-clipnorm-float32"):
        assert results[key]["status"] == "error"
        assert "worker process died (exit status 3)" in results[key]["message"]
    assert results["SGD-plain-float32"]["status"] == "pass"
    assert results["SGD-clipnorm-float32"]["status"] == "pass"
    assert pool.restarts == 2


def test_stray_prints_of_an_adapter_do_not_break_the_protocol(on_path):
    results, _ = _pool_run(ctx_for(f"{HERE}:Chatty", optimizers=["SGD"], features=["plain"]))
    assert results["SGD-plain-float32"]["status"] == "pass"


class _ChattySession(ReferenceSession):
    def step(self, gradients, skip_gradients_aggregation=False):
        print("hello from the adapter {not json")
        return super().step(gradients, skip_gradients_aggregation)


class Chatty(ReferenceAdapter):
    def open(self, scenario):
        return _ChattySession(self._package, scenario, self.numerics)


# -- verify + reports --------------------------------------------------------------------
def test_verify_writes_three_reports_and_streams_results(tmp_path, on_path):
    ctx = ctx_for("numpy", optimizers=["SGD"])
    out = tmp_path / "out"
    rep = verify(ctx, ["numpy", f"{HERE}:WrongUpdate", f"{HERE}:NoClipnorm"], out, jobs=2)
    assert sorted(p.name for p in out.iterdir()) == [
        "conformance.json", "conformance.md", "junit.xml", "results.jsonl"]  # fmt: skip
    data = json.loads((out / "conformance.json").read_text())
    assert data == json.loads(report.to_json(rep))
    assert data["schema"] == "optcheck.conformance/1"
    assert (data["profile"], data["level"], data["seed"]) == ("keras2", "ci", 0)
    assert data["optcheck_version"]
    assert [a["name"] for a in data["adapters"]] == ["numpy", f"{HERE}:WrongUpdate",
                                                     f"{HERE}:NoClipnorm"]  # fmt: skip
    for adapter in data["adapters"]:
        assert {"name", "version", "cases"} <= set(adapter)
        for case in adapter["cases"]:
            assert {"adapter", "optimizer", "feature", "dtype", "status", "seed"} <= set(case)
            assert case["status"] in suite.STATUSES
            if case["status"] == "deviation":
                assert "first_divergence" in case and "repro" in case
    by_name = {a["name"]: a for a in data["adapters"]}
    assert by_name["numpy"]["summary"]["pass"] == 2
    assert by_name[f"{HERE}:WrongUpdate"]["summary"]["deviation"] == 2
    assert by_name[f"{HERE}:NoClipnorm"]["summary"]["unsupported"] == 1
    assert len((out / "results.jsonl").read_text().splitlines()) == 6
    md = (out / "conformance.md").read_text()
    assert "## numpy — 2/2 cases conform" in md
    assert "| SGD-plain-float32 | deviation | step 1," in md and "repro script" in md
    assert "lacks feature clipnorm" in md
    root = ET.parse(out / "junit.xml").getroot()
    assert root.tag == "testsuites" and root.get("failures") == "2"
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    wrong = suites[f"{HERE}:WrongUpdate"]
    assert len(wrong.findall("testcase")) == 2 and len(wrong.findall("testcase/failure")) == 2
    assert len(suites[f"{HERE}:NoClipnorm"].findall("testcase/skipped")) == 1
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_reports_of_errors_and_unavailable_adapters(tmp_path, on_path):
    rep = verify(ctx_for(f"{HERE}:Raising", features=["plain"]), [f"{HERE}:Raising",
                 f"{HERE}:Unavailable", "no_such_module_xyz:factory"], tmp_path,
                 isolate=False)  # fmt: skip
    assert report.failed(rep)
    raising, unavailable, broken = rep["adapters"]
    assert raising["summary"]["error"] == 1
    assert not unavailable["available"] and unavailable["reason"] == "mylib is not installed"
    assert {c["status"] for c in unavailable["cases"]} == {"unsupported"}
    assert broken["cases"][0]["status"] == "error" and "cannot import" in broken["reason"]
    root = ET.parse(tmp_path / "junit.xml").getroot()
    assert len(list(root.iter("error"))) == 2
    assert "adapter exploded" in (tmp_path / "conformance.md").read_text()


def test_report_writers_escape_and_stay_strict():
    ctx = ctx_for("numpy")
    plan = suite.Plan("a|b", "t", "v\x01", True, "", [])
    case = {**suite.base_result(Case("a|b", "SGD", "plain", "float32", "keras2"), ctx),
            "status": "deviation", "tolerance": None, "scenario": "s",
            "first_divergence": {"step": 1, "quantity": "variable v0", "index": [0],
                                 "expected": float("nan"), "actual": 1.0,
                                 "error": float("inf"), "tolerance": 0.0},
            "repro": "print('\x00')"}  # fmt: skip
    rep = report.build(ctx=ctx, adapters=[report.adapter_entry(plan, [case], 1.0)], seconds=1.0,
                       version="x")  # fmt: skip
    data = json.loads(report.to_json(rep))
    assert data["adapters"][0]["cases"][0]["first_divergence"]["expected"] == "nan"
    ET.fromstring(report.to_junit(rep).encode())
    assert "a\\|b" in report.to_markdown(rep)


def test_write_atomic_replaces_whole_files(tmp_path):
    target = tmp_path / "sub" / "f.txt"
    report.write_atomic(target, "one")
    report.write_atomic(target, "two")
    assert target.read_text() == "two" and [p.name for p in target.parent.iterdir()] == ["f.txt"]
    assert target.stat().st_mode & 0o044  # readable by others, like any report


# -- plugin ----------------------------------------------------------------------------
def _pytest(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                           "--pyargs", "optcheck.conformance", *args],
                          capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=300)  # fmt: skip


def test_plugin_without_adapter_skips_cleanly(tmp_path):
    run = _pytest(cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 skipped" in run.stdout


def test_plugin_runs_cases_as_tests_with_divergence_and_repro(tmp_path):
    run = _pytest("--optcheck-adapter=numpy", f"--optcheck-adapter={HERE}:WrongUpdate",
                  f"--optcheck-strategies={HERE}", "--optcheck-optimizer=SGD",
                  "--optcheck-feature=plain", "--optcheck-feature=seed:usage", "-rA",
                  cwd=tmp_path)  # fmt: skip
    out = run.stdout
    assert run.returncode == 1, out + run.stderr
    assert "PASSED" in out and "numpy::SGD-plain-float32" in out
    assert "FAILED" in out and f"{HERE}:WrongUpdate::SGD-plain-float32" in out
    assert "first divergence: step 1" in out and "repro script:" in out
    assert "run seed 0" in out
    assert "2 failed, 2 passed" in out


def test_plugin_reports_unsupported_as_skipped(tmp_path):
    # With a case it can check (plain): an adapter that checks none fails the run
    # (tests/test_bad_inputs.py).
    run = _pytest(f"--optcheck-adapter={HERE}:NoClipnorm", f"--optcheck-strategies={HERE}",
                  "--optcheck-optimizer=SGD", "--optcheck-feature=clipnorm",
                  "--optcheck-feature=plain", "-rs", cwd=tmp_path)  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed, 1 skipped" in run.stdout and "lacks feature clipnorm" in run.stdout


def test_plugin_unknown_adapter_is_a_usage_error(tmp_path):
    run = _pytest("--optcheck-adapter=nope", cwd=tmp_path)
    assert run.returncode != 0 and "known adapters" in run.stdout + run.stderr


def test_context_round_trips_through_dicts():
    ctx = ctx_for("numpy", seed=3, ulps=2.0)
    assert Context.from_dict(ctx.to_dict()) == ctx
    case = Case("numpy", "SGD", "plain", "float32", "keras2", needs=["x"])
    assert Case.from_dict(case.to_dict()) == case
    assert replace(ctx, adapter="x").adapter == "x"


class NoSparse(ReferenceAdapter):
    """Declares everything but sparse gradients."""

    def capabilities(self):
        caps = super().capabilities()
        return Capabilities(optimizers=caps.optimizers, features=caps.features - {"sparse"},
                            dtypes=caps.dtypes, profiles=caps.profiles)  # fmt: skip


def test_examples_an_adapter_cannot_run_are_replaced_not_counted():
    """clipnorm scenarios sometimes also need sparse gradients: those draws are rejected
    and replaced, so every counted example ran; a feature that always needs sparse is
    unsupported."""
    from optcheck.conformance.suite import DEFAULT_STRATEGIES

    adapter = NoSparse()
    ctx = Context(adapter=f"{HERE}:NoSparse", strategies=DEFAULT_STRATEGIES, optimizers=["SGD"],
                  features=["clipnorm", "sparse"], dtypes=["float32"], fixed_cases=False,
                  max_examples=6)  # fmt: skip
    results = results_by_id(suite.run_case(c, ctx, adapter) for c in suite.plan(ctx).cases)
    assert results["SGD-clipnorm-float32"]["status"] == "pass"
    assert results["SGD-clipnorm-float32"]["examples"] == 6
    assert results["SGD-sparse-float32"]["status"] == "unsupported"
    assert "sparse" in results["SGD-sparse-float32"]["reason"]
