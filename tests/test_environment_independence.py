"""A conformance run draws the same examples wherever it runs (issue 5).

Hypothesis (≥ 6.131) sometimes draws a "local constant" instead of a random value: a
literal of any imported module outside site-packages and the standard library. The
examples of a derandomized run then depended on how optcheck was installed (an editable
install's own literals are local, a wheel's are not: ``Adam-finalize-float32`` drew
``beta_2 = 0.9963`` from ``goldens.py`` in the development environment and passed, and
another ``beta_2`` in CI's fresh venv and deviated), on a user's adapter module, and on
what a worker had imported before. ``settings.isolated_generation`` hides them; these
tests run the suite in fresh processes with and without a local module full of
literals that hypothesis would otherwise pick.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from optcheck.conformance import settings
from optcheck.conformance.scenario import Scenario

#: A local module (outside site-packages) whose literals fit the ranges an Adam scenario
#: draws from: learning-rate and ε exponents, β1, β2, the array seed.
EXPONENTS = (-4.5, -3.75, -2.5, -1.25, -6.5, -5.5)
BETAS = (0.125, 0.375, 0.625, 0.9125, 0.95, 0.975, 0.9991, 0.99935)
LITERALS = f"EXPONENTS = {EXPONENTS!r}\nBETAS = {BETAS!r}\nSEEDS = (123456789, 987654321)\n"

#: Runs Adam-plain-float32 (keras2) on the numpy adapter in this process and prints the
#: drawn scenarios; argv: [module dir or "", "isolate" | "no-isolate"].
SCRIPT = textwrap.dedent(
    """
    import contextlib, importlib, json, sys

    directory, isolate = sys.argv[1], sys.argv[2] == "isolate"
    if directory:
        sys.path.insert(0, directory)
        importlib.import_module("optcheck_probe_literals")
    from optcheck.conformance import engine, settings, suite

    if not isolate:
        settings.isolated_generation = contextlib.nullcontext
    seen = []
    real = engine.check

    def check(scenario, adapter, policy):
        seen.append(scenario.to_json())
        return real(scenario, adapter, policy)

    engine.check = check
    ctx = suite.Context(adapter="numpy", profile="keras2", optimizers=["Adam"],
                        features=["plain"], dtypes=["float32"], max_examples=12,
                        shrink=False, diagnose=False, fixed_cases=False)
    case = suite.Case("numpy", "Adam", "plain", "float32", "keras2")
    result = suite.run_case(case, ctx)
    print(json.dumps({"status": result["status"], "scenarios": seen}))
    """
)


def _draws(tmp_path, *, local_module: bool, isolate: bool = True) -> list[str]:
    directory = ""
    if local_module:
        directory = tmp_path / "local"
        directory.mkdir(exist_ok=True)
        (directory / "optcheck_probe_literals.py").write_text(LITERALS)
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(directory),
                           "isolate" if isolate else "no-isolate"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["status"] == "pass", out
    assert len(out["scenarios"]) == 12
    return out["scenarios"]


def test_examples_do_not_depend_on_local_modules(tmp_path):
    assert _draws(tmp_path, local_module=True) == _draws(tmp_path, local_module=False)


def test_local_literals_would_change_the_examples(tmp_path):
    """The test above can fail: without the isolation the local module's literals are
    drawn (so a hypothesis that collects them in a new way is noticed)."""
    with settings.isolated_generation() as active:
        pass
    if not active:
        pytest.skip("this hypothesis draws no local constants")
    plain = _draws(tmp_path, local_module=False)
    exposed = _draws(tmp_path, local_module=True, isolate=False)
    assert exposed != plain
    drawn = {v for s in exposed for v in Scenario.from_json(s).config.values()}
    literals = {*BETAS, *(10.0**e for e in EXPONENTS)}  # log-scale draws: 10^exponent
    assert drawn & literals


def test_isolation_restores_hypothesis(tmp_path):
    """Outside the suite's cases (a pytest run's own tests) hypothesis is unchanged."""
    providers = pytest.importorskip("hypothesis.internal.conjecture.providers")
    before = getattr(providers, "_get_local_constants", None)
    with settings.isolated_generation() as active:
        if active:
            assert len(providers._get_local_constants()) == 0
    assert getattr(providers, "_get_local_constants", None) is before
