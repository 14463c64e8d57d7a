"""Bad inputs: an adapter cannot fool or break the suite, and a gate never passes on
nothing (issue 18). Table-driven, in the style of PyTorch's error inputs: each row is an
invocation (command line, pytest plugin run, baseline text, toy adapter), the exit
status or outcome it must give, and a regex its message must match. No row may show a
raw traceback.

The toy adapters live here; worker processes and pytest runs import them as
``tests.test_bad_inputs:...`` (the project root on PYTHONPATH).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from optcheck.adapters.base import DTYPES, FEATURES, PROFILES, Capabilities
from optcheck.adapters.numpy_reference import ReferenceAdapter
from optcheck.cli import main

ROOT = Path(__file__).resolve().parents[1]
HERE = "tests.test_bad_inputs"
SUITE = "tests.test_suite"  # its small strategies and misbehaving adapters
ALL_OPTIMIZERS = frozenset({"SGD", "Adam", "AdamW", "Adagrad", "Adadelta", "Adamax", "Ftrl",
                            "Nadam", "RMSprop", "Adafactor", "Lion"})  # fmt: skip
#: One fast case: SGD, plain, float32, one example, in this process.
ONE = ["--optimizer", "SGD", "--feature", "plain", "--dtype", "float32", "--max-examples", "1",
       "--in-process"]  # fmt: skip


# -- toy adapters: the golden with broken capabilities -----------------------------------
def _caps(**changes):
    fields = dict(optimizers=ALL_OPTIMIZERS, features=frozenset(FEATURES),
                  dtypes=frozenset(DTYPES), profiles=frozenset(PROFILES))  # fmt: skip
    return Capabilities(**{**fields, **changes})


def _with_capabilities(make):
    class Toy(ReferenceAdapter):
        def capabilities(self):
            return make()

    return Toy


def _raise():
    raise RuntimeError("capabilities exploded")


UnknownFeature = _with_capabilities(lambda: _caps(features=frozenset({"plain", "clip_norm"})))
UnknownOptimizer = _with_capabilities(lambda: _caps(optimizers=frozenset({"SGD", "sgd"})))
UnknownDtype = _with_capabilities(lambda: _caps(dtypes=frozenset({"float32", "float8"})))
UnknownProfile = _with_capabilities(lambda: _caps(profiles=frozenset({"keras4"})))
StringOptimizers = _with_capabilities(lambda: _caps(optimizers="SGD"))
NoneCapabilities = _with_capabilities(lambda: None)
DictCapabilities = _with_capabilities(lambda: {"optimizers": ["SGD"]})
RaisingCapabilities = _with_capabilities(_raise)
EmptyCapabilities = _with_capabilities(lambda: Capabilities(frozenset(), frozenset(),
                                                            frozenset(), frozenset()))


class ShrinkingCapabilities(ReferenceAdapter):
    """Plans with every dtype, then (the instance that runs the cases) declares none: every
    drawn scenario is rejected at run time, so every case ends unsupported."""

    made = 0

    def __init__(self):
        super().__init__()
        type(self).made += 1
        self.first = type(self).made == 1

    def capabilities(self):
        return _caps() if self.first else _caps(dtypes=frozenset())


@pytest.fixture
def on_path(monkeypatch):
    """The project root on PYTHONPATH, so workers and pytest runs import this module."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH",
                                                                               "")]))  # fmt: skip


def _no_traceback(text: str, adapter_error: bool = False) -> None:
    """No traceback; where the row's adapter raises, the failure shows the adapter's own
    traceback (its evidence) but nothing may break the run itself."""
    if adapter_error:
        assert "INTERNALERROR" not in text and "ERROR collecting" not in text, text
        return
    assert "Traceback" not in text, text


def _cli(argv, capsys):
    status = main(argv)
    captured = capsys.readouterr()
    return status, captured.out + captured.err


# -- 1. numeric options: a usage error (exit 2) naming the option ----------------------------
NUMERIC = [
    # (row id, command line, regex of the message)
    ("verify-timeout-nan", ["verify", "--adapter", "numpy", *ONE, "--timeout", "nan"],
     r"argument --timeout: must be a finite number greater than 0.*got 'nan'"),
    ("verify-timeout-inf", ["verify", "--adapter", "numpy", *ONE, "--timeout", "inf"],
     r"argument --timeout: must be .*got 'inf'"),
    ("verify-timeout-huge", ["verify", "--adapter", "numpy", *ONE, "--timeout", "1e300"],
     r"argument --timeout: .*at most 1000000"),
    ("verify-timeout-zero", ["verify", "--adapter", "numpy", *ONE, "--timeout", "0"],
     r"argument --timeout: must be .*greater than 0"),
    ("verify-timeout-negative", ["verify", "--adapter", "numpy", *ONE, "--timeout", "-1"],
     r"argument --timeout: must be .*greater than 0"),
    ("verify-ulps-negative", ["verify", "--adapter", "numpy", *ONE, "--ulps", "-3"],
     r"argument --ulps: must be a finite number at least 0, got '-3'"),
    ("verify-ulps-nan", ["verify", "--adapter", "numpy", *ONE, "--ulps", "nan"],
     r"argument --ulps: must be a finite number"),
    ("verify-ulps-inf", ["verify", "--adapter", "numpy", *ONE, "--ulps", "inf"],
     r"argument --ulps: must be a finite number"),
    ("verify-jobs-zero", ["verify", "--adapter", "numpy", *ONE, "--jobs", "0"],
     r"argument --jobs: must be an integer at least 1, got '0'"),
    ("verify-jobs-negative", ["verify", "--adapter", "numpy", *ONE, "--jobs", "-2"],
     r"argument --jobs: must be an integer at least 1"),
    ("verify-max-examples-zero", ["verify", "--adapter", "numpy", *ONE[:-3], "--in-process",
                                  "--max-examples", "0"],
     r"argument --max-examples: must be an integer at least 1"),
    ("verify-max-examples-nan", ["verify", "--adapter", "numpy", *ONE[:-3], "--in-process",
                                 "--max-examples", "nan"],
     r"argument --max-examples: must be an integer"),
    ("verify-seed-negative", ["verify", "--adapter", "numpy", *ONE, "--seed", "-1"],
     r"argument --seed: must be an integer at least 0 and at most 4294967295, got '-1'"),
    ("verify-seed-too-big", ["verify", "--adapter", "numpy", *ONE, "--seed", "4294967296"],
     r"argument --seed: .*at most 4294967295"),
    ("verify-seed-float", ["verify", "--adapter", "numpy", *ONE, "--seed", "1.5"],
     r"argument --seed: must be an integer"),
    ("vectors-check-timeout-nan", ["vectors", "check", str(ROOT / "vectors"), "--adapter",
                                   "numpy", "--optimizer", "SGD", "--profile", "keras2",
                                   "--dtype", "float32", "--in-process", "--timeout", "nan"],
     r"argument --timeout: must be a finite number"),
    ("vectors-check-timeout-inf", ["vectors", "check", str(ROOT / "vectors"), "--adapter",
                                   "numpy", "--optimizer", "SGD", "--profile", "keras2",
                                   "--dtype", "float32", "--in-process", "--timeout", "inf"],
     r"argument --timeout: must be a finite number"),
    ("vectors-check-jobs-zero", ["vectors", "check", str(ROOT / "vectors"), "--adapter",
                                 "numpy", "--optimizer", "SGD", "--profile", "keras2",
                                 "--dtype", "float32", "--in-process", "--jobs", "0"],
     r"argument --jobs: must be an integer at least 1"),
    ("report-threshold-inf", ["report", "--conformance", "missing.json", "--threshold", "inf",
                              "--out", "{tmp}/report"],
     r"argument --threshold: must be a finite number, got 'inf'"),
    ("report-threshold-nan", ["report", "--conformance", "missing.json", "--threshold", "nan",
                              "--out", "{tmp}/report"],
     r"argument --threshold: must be a finite number, got 'nan'"),
]  # fmt: skip


@pytest.mark.parametrize("argv, message", [r[1:] for r in NUMERIC], ids=[r[0] for r in NUMERIC])
def test_numeric_options_are_usage_errors(argv, message, tmp_path, capsys):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if argv[0] == "verify":
        argv += ["--out", str(tmp_path / "out")]
    status, text = _cli(argv, capsys)
    assert status == 2, text
    assert re.search(message, text), text
    _no_traceback(text)


# -- 2. capabilities(): unknown names, None, not a Capabilities, raising ---------------------
CAPABILITIES = [
    # (toy adapter, expected exit, regex of the message, in-process)
    ("UnknownFeature", 1, r"capabilities\(\) names unknown features: 'clip_norm' "
     r"\(known: plain, clipnorm, ", True),
    ("UnknownFeature", 1, r"capabilities\(\) names unknown features: 'clip_norm'", False),
    ("UnknownOptimizer", 1, r"capabilities\(\) names unknown optimizers: 'sgd' \(known: SGD, "
     r"Adam", True),
    ("UnknownDtype", 1, r"capabilities\(\) names unknown dtypes: 'float8'", True),
    ("UnknownProfile", 1, r"capabilities\(\) names unknown profiles: 'keras4'", True),
    ("StringOptimizers", 1, r"capabilities\(\) `optimizers` must be a set of names, got 'SGD'",
     True),
    ("NoneCapabilities", 1, r"capabilities\(\) returned None, not an "
     r"optcheck\.adapters\.base\.Capabilities", True),
    ("DictCapabilities", 1, r"capabilities\(\) returned a dict, not an", True),
    ("RaisingCapabilities", 1, r"capabilities\(\) raised RuntimeError: capabilities exploded",
     True),
    ("EmptyCapabilities", 4, r"checked no case: every case unsupported: lacks optimizer SGD, "
     r"dtype float32, profile keras2; capabilities\(\) declares no optimizers, no dtypes, no "
     r"profiles", True),
]  # fmt: skip


@pytest.mark.parametrize("toy, code, message, in_process", CAPABILITIES,
                         ids=[f"{r[0]}-{'in-process' if r[3] else 'isolated'}"
                              for r in CAPABILITIES])  # fmt: skip
def test_bad_capabilities_are_the_adapters_error(toy, code, message, in_process, tmp_path,
                                                 capsys, on_path):  # fmt: skip
    argv = ["verify", "--adapter", f"{HERE}:{toy}", *ONE[:-1], "--out", str(tmp_path)]
    status, text = _cli(argv + (["--in-process"] if in_process else []), capsys)
    assert status == code, text
    assert re.search(message, text), text
    _no_traceback(text)
    (adapter,) = json.loads((tmp_path / "conformance.json").read_text())["adapters"]
    statuses = {c["status"] for c in adapter["cases"]}
    assert statuses == ({"error"} if code == 1 else {"unsupported"}), adapter["cases"]


# -- 3. a run that checks nothing: exit 4, saying why --------------------------------------
def _baseline(tmp_path, adapter, body="", name="b.toml"):
    path = tmp_path / name
    path.write_text(f'adapter = "{adapter}"\n{body}', encoding="utf-8")
    return str(path)


NO_CASE = [
    # (row id, verify arguments ({tmp}: the test's folder), exit, regex of the message)
    ("unavailable-adapter",
     ["--adapter", f"{SUITE}:Unavailable", *ONE],
     4, r"adapter 'tests\.test_suite:Unavailable' checked no case: not available: mylib is not "
     r"installed"),
    ("only-unsupported-cases",
     ["--adapter", f"{SUITE}:NoClipnorm", "--strategies", SUITE, "--optimizer", "SGD",
      "--feature", "clipnorm", "--in-process"],
     4, r"adapter 'tests\.test_suite:NoClipnorm' checked no case: every case unsupported: "
     r"lacks feature clipnorm; no clipnorm argument"),
    ("named-adapter-unavailable-beside-a-checked-one",
     ["--adapter", "numpy", f"{SUITE}:Unavailable", *ONE],
     4, r"adapter 'tests\.test_suite:Unavailable' checked no case: not available"),
    ("baseline-adapter-not-in-the-run",
     ["--adapter", "numpy", *ONE, "--baseline", "{baseline:other}"],
     4, r"adapter 'other' checked no case: this run did not verify it \(add --adapter other\)"),
    ("baseline-adapter-unavailable",
     ["--adapter", f"{SUITE}:Unavailable", *ONE, "--baseline",
      "{baseline:tests.test_suite:Unavailable}"],
     4, r"checked no case: not available: mylib is not installed"),
    ("baseline-accepting-every-error",
     ["--adapter", f"{SUITE}:Raising", "--strategies", SUITE, "--optimizer", "Adam",
      "--feature", "plain", "--in-process", "--baseline",
      "{baseline:tests.test_suite:Raising:errors}"],
     4, r"adapter 'tests\.test_suite:Raising' checked no case: 1 error\(s\), first "
     r"Adam-plain-float32: RuntimeError: adapter exploded"),
    ("checked-adapter-with-baseline-passes",
     ["--adapter", "numpy", *ONE, "--baseline", "{baseline:numpy}"],
     0, r"baseline: 0 accepted, 0 new, 0 stale entries"),
]  # fmt: skip


def _fill(argv, tmp_path):
    out = []
    for arg in argv:
        if arg.startswith("{baseline:"):
            adapter = arg[len("{baseline:"):-1]
            body = ""
            if adapter.endswith(":errors"):
                adapter = adapter.removesuffix(":errors")
                body = '[[accepted]]\ncase = "*"\nstatus = "error"\nreason = "all errors"\n'
            arg = _baseline(tmp_path, adapter, body, name=f"b{len(out)}.toml")
        out.append(arg)
    return out


@pytest.mark.parametrize("argv, code, message", [r[1:] for r in NO_CASE],
                         ids=[r[0] for r in NO_CASE])  # fmt: skip
def test_a_run_that_checks_nothing_exits_4(argv, code, message, tmp_path, capsys, on_path):
    argv = ["verify", *_fill(argv, tmp_path), "--out", str(tmp_path / "out")]
    status, text = _cli(argv, capsys)
    assert status == code, text
    assert re.search(message, text), text
    _no_traceback(text)


VECTORS = [
    # (vectors check arguments, exit, regex): the vectors check is a gate too.
    ([f"{SUITE}:Unavailable"], 4,
     r"adapter 'tests\.test_suite:Unavailable' checked no case: not available: mylib is not "
     r"installed"),
    ([f"{SUITE}:NoClipnorm", "--feature", "clipnorm"], 4,
     r"checked no case: every case unsupported: lacks feature clipnorm"),
    (["numpy"], 0, r"numpy: 8/8 cases pass"),
]  # fmt: skip


@pytest.mark.parametrize("adapter, code, message", VECTORS,
                         ids=["unavailable", "only-unsupported", "numpy-checks"])  # fmt: skip
def test_a_vectors_check_of_nothing_exits_4(adapter, code, message, capsys, on_path):
    argv = ["vectors", "check", str(ROOT / "vectors"), "--adapter", *adapter, "--optimizer",
            "SGD", "--profile", "keras2", "--dtype", "float32", "--in-process"]  # fmt: skip
    status, text = _cli(argv, capsys)
    assert status == code, text
    assert re.search(message, text), text
    _no_traceback(text)


DEFAULT_LIST = [
    # (adapters known by name, exit, regex): without --adapter every known one runs; an
    # unavailable one is listed, and fails the run only when no adapter checked a case.
    ({"numpy": "optcheck.adapters.numpy_reference:factory", "gone": f"{SUITE}:Unavailable"},
     0, r"gone: 0/1 cases conform.* - not available: mylib is not installed"),
    ({"gone": f"{SUITE}:Unavailable"},
     4, r"adapter 'gone' checked no case: not available: mylib is not installed"),
]  # fmt: skip


@pytest.mark.parametrize("known, code, message", DEFAULT_LIST, ids=["one-checked", "none"])
def test_the_main_job_lists_unavailable_adapters(known, code, message, tmp_path, capsys,
                                                 monkeypatch):  # fmt: skip
    from optcheck.adapters import registry

    monkeypatch.setattr(registry, "known_adapters", lambda: dict(known))
    status, text = _cli(["verify", *ONE, "--out", str(tmp_path)], capsys)
    assert status == code, text
    assert re.search(message, text), text
    _no_traceback(text)


# -- 4. baselines: unknown variants, status mismatches, overwriting a reviewed file ----------
BAD_BASELINES = [
    # (row id, entry text, regex of the message)
    ("misspelt-variant", 'variant = "adam_epsilon=corected"\n',
     r"entry 1: `variant` 'adam_epsilon=corected' matches no known variant; known: "
     r"adam_epsilon=corrected, amsgrad_max=corrected, "),
    ("pair-out-of-catalogue-order",
     'variant = "beta_power_cast=direct + adam_epsilon=corrected"\n',
     r"entry 1: `variant` 'beta_power_cast=direct \+ adam_epsilon=corrected' matches no known"),
    ("variant-on-an-error-entry", 'status = "error"\nvariant = "adam_epsilon=corrected"\n',
     r"entry 1: `variant` 'adam_epsilon=corrected' can never match an error"),
]  # fmt: skip


@pytest.mark.parametrize("entry, message", [r[1:] for r in BAD_BASELINES],
                         ids=[r[0] for r in BAD_BASELINES])  # fmt: skip
def test_a_baseline_naming_an_unknown_variant_is_a_usage_error(entry, message, tmp_path,
                                                               capsys):  # fmt: skip
    path = _baseline(tmp_path, "numpy", f'[[accepted]]\ncase = "SGD-*"\nreason = "r"\n{entry}')
    status, text = _cli(["verify", "--adapter", "numpy", *ONE, "--baseline", path, "--out",
                         str(tmp_path / "out")], capsys)  # fmt: skip
    assert status == 2, text
    assert re.search(message, text) and path in text, text
    _no_traceback(text)


def test_known_variant_patterns_still_load(tmp_path):
    """Regression guard: patterns, pairs in catalogue order and "unexplained" load."""
    from optcheck.conformance import baseline

    body = "".join(f'[[accepted]]\ncase = "Adam-*"\nreason = "r"\nvariant = "{v}"\n' for v in (
        "adam_epsilon=*", "unexplained", "adam_epsilon=corrected + beta_power_cast=direct",
        "*ema*"))  # fmt: skip
    body += ('[[accepted]]\ncase = "SGD-*"\nstatus = "error"\nvariant = "unexplained"\n'
             'reason = "r"\n')
    assert len(baseline.load(_baseline(tmp_path, "lib", body)).entries) == 5


MISMATCH = [
    # (row id, adapter, selection, entry, regex of the new case's line)
    ("entry-deviation-case-error", f"{SUITE}:Raising", ["--optimizer", "Adam"],
     'case = "Adam-*"\nreason = "r"\n',
     r"new error \(not in any baseline\): tests\.test_suite:Raising: Adam-plain-float32 \(.*"
     r"entry case='Adam-\*' accepts deviation but the case is now error: Adam-plain-float32: "
     r"RuntimeError: adapter exploded\)"),
    ("entry-error-case-deviation", f"{SUITE}:WrongUpdate", ["--optimizer", "SGD"],
     'case = "SGD-*"\nstatus = "error"\nreason = "r"\n',
     r"new deviation \(not in any baseline\): .*SGD-plain-float32 \(.*entry case='SGD-\*' "
     r"accepts error but the case is now deviation: SGD-plain-float32: "),
    ("entry-variant-case-other-variant", f"{SUITE}:WrongUpdate", ["--optimizer", "SGD"],
     'case = "SGD-*"\nvariant = "sgd_momentum=gradient"\nreason = "r"\n',
     r"new deviation \(not in any baseline\): .*SGD-plain-float32 \(.*accepts variant "
     r"'sgd_momentum=gradient' but the case is now diagnosed "),
]  # fmt: skip


@pytest.mark.parametrize("adapter, select, entry, message", [r[1:] for r in MISMATCH],
                         ids=[r[0] for r in MISMATCH])  # fmt: skip
def test_a_status_mismatch_is_new_and_never_conforms(adapter, select, entry, message, tmp_path,
                                                      capsys, on_path):  # fmt: skip
    path = _baseline(tmp_path, adapter, f"[[accepted]]\n{entry}")
    argv = ["verify", "--adapter", adapter, "--strategies", SUITE, *select, "--feature",
            "plain", "--in-process", "--max-examples", "2", "--baseline", path,
            "--out", str(tmp_path / "out")]  # fmt: skip
    status, text = _cli(argv, capsys)
    assert status == 1, text
    assert re.search(message, text), text
    assert "conform now" not in text and "stale" not in text.replace("0 stale", ""), text
    assert re.search(r"baseline entry does not accept what its cases do now: .*b\.toml: entry",
                     text), text  # fmt: skip
    _no_traceback(text)


def test_a_status_mismatch_is_not_stale_in_the_gate_outcome():
    from optcheck.conformance import baseline

    entry = baseline.Entry(case="Adam-*", reason="r")
    report = {"profile": "keras2", "adapters": [{"name": "lib", "cases": [
        {"id": "Adam-plain-float32", "status": "error", "message": "RuntimeError: boom"}]}]}
    gate = baseline.apply(report, [baseline.Baseline("lib", Path("b.toml"), [entry])])
    assert gate["new"] == ["lib: Adam-plain-float32"] and gate["stale"] == []
    assert gate["mismatched"] == ["b.toml: entry case='Adam-*' accepts deviation but the case "
                                  "is now error: Adam-plain-float32: RuntimeError: boom"]


REPORT = {"profile": "keras2", "level": "ci", "seed": 0, "adapters": [{"name": "lib", "cases": [
    {"id": "Adam-plain-float32", "status": "deviation", "optimizer": "Adam",
     "diagnosis": {"verdict": "matches variant adam_epsilon=corrected",
                   "variant": "adam_epsilon=corrected", "summary": "generated"}}]}]}
REVIEWED = ('adapter = "lib"\n[[accepted]]\ncase = "Adam-*"\nprofile = "keras2"\n'
            'variant = "adam_epsilon=corrected"\nreason = "reviewed: we follow the paper"\n'
            'link = "https://example.org/adam"\n')  # fmt: skip

BASELINE_COMMAND = [
    # (row id, extra arguments ({out}: the existing reviewed file), exit, regex, whether the
    # reviewed reason survives in the file)
    ("existing-out-refused", [], 2,
     r"--out .*b\.toml exists; pass --keep .*b\.toml to keep its reviewed reasons and links, "
     r"or --force to overwrite it", True),
    ("existing-out-with-keep", ["--keep", "{out}"], 0, r"^$", True),
    ("existing-out-with-force", ["--force"], 0, r"^$", False),
    ("report-is-a-folder", ["--report-dir"], 2, r"cannot read report .*: Is a directory", True),
]  # fmt: skip


@pytest.mark.parametrize("extra, code, message, kept", [r[1:] for r in BASELINE_COMMAND],
                         ids=[r[0] for r in BASELINE_COMMAND])  # fmt: skip
def test_baseline_out_never_drops_reviewed_reasons_silently(extra, code, message, kept,
                                                            tmp_path, capsys):  # fmt: skip
    report, out = tmp_path / "conformance.json", tmp_path / "b.toml"
    report.write_text(json.dumps(REPORT))
    out.write_text(REVIEWED)
    if extra == ["--report-dir"]:
        report, extra = tmp_path, []
    extra = [str(out) if a == "{out}" else a for a in extra]
    status, text = _cli(["baseline", str(report), "--adapter", "lib", "--out", str(out),
                         *extra], capsys)  # fmt: skip
    assert status == code, text
    assert re.search(message, text.strip()), text
    assert ("reviewed: we follow the paper" in out.read_text()) == kept
    _no_traceback(text)


# -- 5. the pytest plugin: the same rules in your own test run --------------------------------
def _pytest(*args, cwd):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT),
                                                        os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                           "-rfEs", "--pyargs", "optcheck.conformance", *args],
                          capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=600)  # fmt: skip


SMALL = ["--optcheck-optimizer=SGD", "--optcheck-feature=plain", "--optcheck-dtype=float32"]
PLUGIN = [
    # (row id, pytest arguments ({baseline}: a file written from the row's text), baseline
    # text, expected exit status, regex of the output)
    ("seed-negative", ["--optcheck-adapter=numpy", *SMALL, "--optcheck-seed=-1"], None, 4,
     r"argument --optcheck-seed: must be an integer at least 0 and at most 4294967295, "
     r"got '-1'"),
    ("unavailable-adapter", [f"--optcheck-adapter={SUITE}:Unavailable", *SMALL], None, 1,
     r"tests\.test_suite:Unavailable::checked-no-case\] _+\nadapter "
     r"'tests\.test_suite:Unavailable' checked no case: not "
     r"available: mylib is not installed"),
    ("only-unsupported-cases", [f"--optcheck-adapter={SUITE}:NoClipnorm",
                                f"--optcheck-strategies={SUITE}", "--optcheck-optimizer=SGD",
                                "--optcheck-feature=clipnorm"], None, 1,
     r"NoClipnorm::checked-no-case\] _+\n.*checked no case: every case unsupported: lacks "
     r"feature clipnorm"),
    ("capabilities-raise", [f"--optcheck-adapter={HERE}:RaisingCapabilities", *SMALL], None, 1,
     r"RaisingCapabilities::load\] _+\n.*capabilities\(\) raised RuntimeError: "
     r"capabilities exploded"),
    ("unknown-feature", [f"--optcheck-adapter={HERE}:UnknownFeature", *SMALL], None, 1,
     r"UnknownFeature::load\] _+\n.*capabilities\(\) names unknown features: 'clip_norm'"),
    ("unsupported-at-run-time", [f"--optcheck-adapter={HERE}:ShrinkingCapabilities", *SMALL,
                                 "--optcheck-seed=0"], None, 1,
     r"optcheck: adapter 'tests\.test_bad_inputs:ShrinkingCapabilities' checked no case"),
    ("baseline-misspelt-variant", ["--optcheck-adapter=numpy", *SMALL,
                                   "--optcheck-baseline={baseline}"],
     'adapter = "numpy"\n[[accepted]]\ncase = "SGD-*"\nreason = "r"\n'
     'variant = "adam_epsilon=corected"\n', 4,
     r"--optcheck-baseline: baseline .*b\.toml, entry 1: `variant` 'adam_epsilon=corected' "
     r"matches no known variant"),
    ("baseline-adapter-not-in-the-run", ["--optcheck-adapter=numpy", *SMALL,
                                         "--optcheck-baseline={baseline}"],
     'adapter = "other"\n', 1,
     r"other::checked-no-case\] _+\nadapter 'other' checked no case: the baseline .*b\.toml "
     r"is for it, but this run does not verify it \(add --optcheck-adapter=other\)"),
    ("baseline-status-mismatch", [f"--optcheck-adapter={SUITE}:Raising",
                                  f"--optcheck-strategies={SUITE}", "--optcheck-optimizer=Adam",
                                  "--optcheck-feature=plain", "--optcheck-baseline={baseline}"],
     f'adapter = "{SUITE}:Raising"\n[[accepted]]\ncase = "Adam-*"\nreason = "r"\n', 1,
     r"not accepted: .*b\.toml: entry case='Adam-\*' accepts deviation but the case is now "
     r"error: Adam-plain-float32: RuntimeError: adapter exploded"),
]  # fmt: skip


@pytest.mark.parametrize("args, text, code, message", [r[1:] for r in PLUGIN],
                         ids=[r[0] for r in PLUGIN])  # fmt: skip
def test_the_pytest_plugin_never_passes_on_nothing(args, text, code, message, tmp_path):
    if text is not None:
        (tmp_path / "b.toml").write_text(text, encoding="utf-8")
    args = [a.replace("{baseline}", str(tmp_path / "b.toml")) for a in args]
    run = _pytest(*args, cwd=tmp_path)
    out = run.stdout + run.stderr
    assert run.returncode == code, out
    assert re.search(message, out, re.S), out
    assert "stale baseline entry" not in out, out
    _no_traceback(out, adapter_error="Raising" in " ".join(args))


# -- a machine without binary128 ---------------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["verify", "--adapter", "numpy", "--optimizer", "SGD", "--in-process"], 2),
        (["verify", "--adapter", "numpy", *ONE[:4], "--dtype", "float64", "--in-process"], 2),
        (["vectors", "export", "--optimizer", "SGD"], 2),
        # float64 left out, or tolerances in ulps (no oracle): nothing is refused.
        (["verify", "--adapter", "numpy", *ONE], 0),
        (["verify", "--adapter", "numpy", *ONE[:4], "--dtype", "float64", "--ulps", "4",
          "--max-examples", "1", "--in-process"], 0),
        (["vectors", "export", "--optimizer", "SGD", "--dtype", "float32"], 0),
    ],
)
def test_float64_without_binary128_is_refused_not_estimated(argv, code, tmp_path, capsys,
                                                            monkeypatch):
    """Where NumPy has no IEEE binary128 (NumPy < 2.4 on x86-64, macOS on Intel) float64
    error estimates would come from a narrower, machine-dependent type: optcheck refuses
    them before anything runs, and says what to install."""
    from optcheck.conformance import engine
    from optcheck.reference import dtypes

    monkeypatch.setattr(dtypes, "binary128", None)
    assert main([*argv, "--out", str(tmp_path / "out")]) == code
    if code == 2:
        assert re.search(r"binary128.*pip install 'numpy>=2\.4' numpy-quaddtype.*--dtype float16 "
                         r"bfloat16 float32", capsys.readouterr().err, re.S)
    # The engine refuses too, before any session: the candidate is not blamed.
    scenario = engine.Scenario("SGD", {}, "keras2", "float64", [np.zeros(2)], [[np.ones(2)]])
    with pytest.raises(RuntimeError, match="numpy-quaddtype"):
        engine.check(scenario, ReferenceAdapter())
