"""The pytest plugin (entry point ``pytest11: optcheck``): the suite in your own pytest.

    pytest --pyargs optcheck.conformance --optcheck-adapter=mypkg.module:factory

collects one test per conformance case (id ``<adapter>::<case id>``) from
``optcheck/conformance/test_conformance.py``. A deviation fails with the first
divergence, its diagnosis, the tolerance, the run seed and a repro script; an adapter
exception fails with its traceback; an unsupported case is skipped with the reason.
Without ``--optcheck-adapter`` the conformance tests skip, and no other test is touched.

``--optcheck-baseline=FILE`` (repeatable; conformance/baseline.py): a deviation an
entry accepts is an expected failure (xfail, with the entry's reason and link);
anything else still fails; entries whose cases all conform are listed as stale in
the terminal summary.

Cases run in the pytest process (no timeout or crash isolation: use
``optcheck verify`` for that, or pytest-timeout).

This module is imported by every pytest run where optcheck is installed, so it
imports nothing heavy until the conformance tests are collected.
"""

from __future__ import annotations

import argparse
import random

import pytest

FIXTURE = "optcheck_case"


def pytest_addoption(parser):
    group = parser.getgroup("optcheck", "optcheck conformance suite")
    group.addoption("--optcheck-adapter", action="append", default=[],
                    metavar="NAME|module:attr",
                    help="adapter to run the conformance tests on (repeatable); without it "
                    "they skip")  # fmt: skip
    group.addoption("--optcheck-profile", choices=("keras2", "keras3"), default="keras2",
                    help="semantic profile (default keras2)")
    group.addoption("--optcheck-level", choices=("ci", "thorough"), default="ci",
                    help="ci: derandomized, few examples; thorough: many examples")
    group.addoption("--optcheck-seed", type=int, default=None,
                    help="run seed (default 0 for ci, random for thorough)")
    group.addoption("--optcheck-mode", choices=("resync", "free"), default="resync",
                    help="comparison mode (default resync)")
    group.addoption("--optcheck-optimizer", action="append", default=None, metavar="NAME",
                    help="only these optimizers (repeatable)")
    group.addoption("--optcheck-feature", action="append", default=None, metavar="PATTERN",
                    help="only features matching these fnmatch patterns (repeatable)")
    group.addoption("--optcheck-dtype", action="append", default=None, metavar="DTYPE",
                    help="only these dtypes (repeatable)")
    group.addoption("--optcheck-baseline", action="append", default=[], metavar="FILE",
                    help="baseline TOML of accepted deviations (repeatable): accepted ones "
                    "xfail")  # fmt: skip
    group.addoption("--optcheck-strategies", default=None, help=argparse.SUPPRESS)


def pytest_configure(config):
    paths = config.getoption("optcheck_baseline", None) or []
    if paths:
        from optcheck.conformance import baseline

        try:
            loaded = [baseline.load(p) for p in paths]
        except baseline.BaselineError as exc:
            raise pytest.UsageError(f"--optcheck-baseline: {exc}") from None
        config._optcheck_baselines = {"entries": [(b, e) for b in loaded for e in b.entries],
                                      "selected": set(), "used": set()}  # fmt: skip
    if config.getoption("optcheck_seed", None) is None and config.getoption(
        "optcheck_adapter", None
    ):
        level = config.getoption("optcheck_level")
        config.option.optcheck_seed = 0 if level == "ci" else random.randrange(2**32)


def pytest_terminal_summary(terminalreporter, config):
    state = getattr(config, "_optcheck_baselines", None)
    if not state:
        return
    stale = [f"{b.path}: {e.describe()}" for b, e in state["entries"]
             if id(e) in state["selected"] and id(e) not in state["used"]]  # fmt: skip
    for line in stale:
        terminalreporter.write_line(
            f"optcheck: stale baseline entry (the cases it selects all conform now): {line}",
            yellow=True,
        )


def pytest_report_header(config):
    adapters = config.getoption("optcheck_adapter", None)
    if adapters:
        return (f"optcheck: adapters {', '.join(adapters)}, profile "
                f"{config.getoption('optcheck_profile')}, level "
                f"{config.getoption('optcheck_level')}, run seed "
                f"{config.getoption('optcheck_seed')}")  # fmt: skip
    return None


def context(config, adapter: str):
    from optcheck.conformance.suite import DEFAULT_STRATEGIES, Context

    return Context(
        adapter=adapter,
        profile=config.getoption("optcheck_profile"),
        level=config.getoption("optcheck_level"),
        mode=config.getoption("optcheck_mode"),
        seed=config.getoption("optcheck_seed"),
        optimizers=config.getoption("optcheck_optimizer"),
        features=config.getoption("optcheck_feature"),
        dtypes=config.getoption("optcheck_dtype"),
        strategies=config.getoption("optcheck_strategies") or DEFAULT_STRATEGIES,
        metamorphic=True,
    )


def pytest_generate_tests(metafunc):
    if FIXTURE not in metafunc.fixturenames:
        return
    config = metafunc.config
    adapters = config.getoption("optcheck_adapter")
    if not adapters:
        skip = pytest.mark.skip(reason="no adapter: pass --optcheck-adapter=NAME or module:attr")
        metafunc.parametrize(FIXTURE, [pytest.param(None, marks=skip)], ids=["no-adapter"])
        return
    from optcheck.adapters.registry import UnknownAdapterError

    params = []
    for adapter in adapters:
        ctx = context(config, adapter)
        try:
            plan = _plan(ctx)
        except UnknownAdapterError as exc:
            raise pytest.UsageError(f"--optcheck-adapter: {exc}") from None
        for case in plan.cases:
            params.append(pytest.param((ctx, case), id=f"{plan.name}::{case.id}"))
    if not params:
        raise pytest.UsageError("optcheck: no conformance case matches the selection")
    metafunc.parametrize(FIXTURE, params)


def _plan(ctx):
    from optcheck.conformance import suite

    return suite.plan(ctx)


def failure_message(result: dict) -> str:
    """The assertion message of a deviating or erring case."""
    from optcheck.conformance.report import divergence_text, tolerance_text

    lines = [f"{result['adapter']}::{result['id']}: {result['status']}"]
    if result.get("scenario"):
        lines.append(f"  scenario: {result['scenario']}")
    if result["status"] == "deviation":
        lines.append(f"  first divergence: {divergence_text(result['first_divergence'])}")
        if result.get("diagnosis"):
            d = result["diagnosis"]
            lines.append(f"  diagnosis: {d['verdict']}"
                         + (f" ({d['summary']})" if d.get("summary") else ""))  # fmt: skip
    else:
        lines.append(f"  error: {result.get('message', '')}")
    lines.append(f"  tolerance: {tolerance_text(result.get('tolerance'))}")
    lines.append(f"  run seed {result['seed']} (rerun: --optcheck-seed={result['seed']}), "
                 f"{result.get('examples', 0)} example(s)")  # fmt: skip
    if result["status"] == "error" and result.get("traceback"):
        lines += ["", result["traceback"].rstrip()]
    if result.get("repro"):
        lines += ["", "repro script:", result["repro"].rstrip()]
    return "\n".join(lines)


def run(case_param, config=None) -> None:
    """Run one parametrized case and turn its result into pytest's outcome."""
    from optcheck.conformance import suite

    ctx, case = case_param
    result = suite.run_case(case, ctx)
    if result["status"] == "unsupported":
        pytest.skip(f"unsupported: {result.get('reason', '')}")
    state = getattr(config, "_optcheck_baselines", None)
    entries = [e for b, e in (state or {}).get("entries", []) if b.adapter == ctx.adapter]
    for e in entries:
        if e.selects(result, ctx.profile):
            state["selected"].add(id(e))
    if result["status"] in ("deviation", "error"):
        match = next((e for e in entries if e.accepts(result, ctx.profile)), None)
        if match is not None:
            state["used"].add(id(match))
            pytest.xfail(f"accepted by baseline: {match.reason}"
                         + (f" ({match.link})" if match.link else ""))  # fmt: skip
        pytest.fail(failure_message(result), pytrace=False)
