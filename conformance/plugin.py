"""The pytest plugin (entry point ``pytest11: optcheck``): the suite in your own pytest.

    pytest --pyargs optcheck.conformance --optcheck-adapter=mypkg.module:factory

collects one test per conformance case (id ``<adapter>::<case id>``) from
``optcheck/conformance/test_conformance.py``. A deviation fails with the first
divergence, its diagnosis, the tolerance, the run seed and a repro script; an adapter
exception fails with its traceback; an unsupported case is skipped with the reason.
Without ``--optcheck-adapter`` the conformance tests skip, and no other test is touched.

``--optcheck-baseline=FILE`` (repeatable; conformance/baseline.py): a deviation an
entry accepts is an expected failure (xfail, with the entry's reason and link);
anything else still fails (with the entry that selects it and what differs, when one
does); entries whose cases all conform are listed as stale in the terminal summary.

A run never passes on nothing: an adapter that can check no case (unavailable, its
capabilities leave every case unsupported, or it cannot be loaded) gets one failing
test ``<adapter>::checked-no-case`` (or ``<adapter>::load``) saying why; and a session
where an adapter's cases all ran but none reached pass or deviation (every drawn
scenario unsupported) fails in the summary.

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
#: Statuses of a case that reached a verdict (the comparison ran to its end).
CHECKED = ("pass", "deviation")


def _seed():
    from optcheck.cli import SEED  # optcheck verify's validator: one rule for both

    return SEED


class _NoCase:
    """A parameter that fails with ``message``: an adapter that can check nothing."""

    def __init__(self, message: str):
        self.message = message


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
    group.addoption("--optcheck-seed", type=_seed(), default=None,
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
                                      "selected": set(), "used": set(),
                                      "mismatched": {}, "baselines": loaded}  # fmt: skip
    if config.getoption("optcheck_seed", None) is None and config.getoption(
        "optcheck_adapter", None
    ):
        level = config.getoption("optcheck_level")
        config.option.optcheck_seed = 0 if level == "ci" else random.randrange(2**32)


def pytest_runtest_logreport(report):
    """Count, per adapter, the cases that reached a verdict (from the reports, so that
    it works where tests run in other processes)."""
    if report.when != "call":
        return
    props = dict(getattr(report, "user_properties", ()) or ())
    adapter = props.get("optcheck_adapter")
    if adapter is not None:
        counts = _STATUSES.setdefault(adapter, {})
        status = props.get("optcheck_status")
        counts[status] = counts.get(status, 0) + 1


#: adapter -> {status: cases} of the cases run in this session.
_STATUSES: dict[str, dict[str, int]] = {}
#: Adapters that already have a failing ``checked-no-case`` or ``load`` test.
_FLAGGED: set[str] = set()


def pytest_sessionstart(session):
    _STATUSES.clear()
    _FLAGGED.clear()  # collection, which fills it, comes after


def _unchecked() -> dict[str, str]:
    """adapter -> its statuses, for each adapter none of whose cases reached a verdict."""
    return {a: ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
            for a, counts in sorted(_STATUSES.items())
            if a not in _FLAGGED and not any(counts.get(s) for s in CHECKED)}  # fmt: skip


def pytest_sessionfinish(session, exitstatus):
    if _unchecked() and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, config):
    for adapter, statuses in _unchecked().items():
        terminalreporter.write_line(
            f"optcheck: adapter {adapter!r} checked no case: none of the cases that ran "
            f"reached pass or deviation ({statuses}); the run fails", red=True,
        )  # fmt: skip
    state = getattr(config, "_optcheck_baselines", None)
    if not state:
        return
    stale = [f"{b.path}: {e.describe()}" for b, e in state["entries"]
             if id(e) in state["selected"] and id(e) not in state["used"]
             and id(e) not in state["mismatched"]]  # fmt: skip
    for line in stale:
        terminalreporter.write_line(
            f"optcheck: stale baseline entry (the cases it selects all conform now): {line}",
            yellow=True,
        )
    for b, e in state["entries"]:
        if id(e) in state["mismatched"] and id(e) not in state["used"]:
            terminalreporter.write_line(
                f"optcheck: baseline entry does not accept what its cases do now: {b.path}: "
                f"{state['mismatched'][id(e)]}", yellow=True,
            )  # fmt: skip


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
    from optcheck.adapters.registry import UnknownAdapterError, resolve
    from optcheck.conformance.verify import no_case_reason

    params = []
    for adapter in adapters:
        ctx = context(config, adapter)
        try:
            plan = _plan(ctx)
        except UnknownAdapterError as exc:
            raise pytest.UsageError(f"--optcheck-adapter: {exc}") from None
        except Exception as exc:  # the adapter's error, as a failing test, not a traceback
            message = f"cannot load adapter {adapter!r}: {type(exc).__name__}: {exc}"
            params.append(pytest.param((ctx, _NoCase(message)), id=f"{adapter}::load"))
            _FLAGGED.add(adapter)
            continue
        for case in plan.cases:
            params.append(pytest.param((ctx, case), id=f"{plan.name}::{case.id}"))
        if plan.cases and all(case.unsupported for case in plan.cases):
            why = no_case_reason(plan.available, plan.reason, [
                {"status": "unsupported", "reason": c.unsupported} for c in plan.cases])
            params.append(pytest.param(
                (ctx, _NoCase(f"adapter {plan.name!r} checked no case: {why}")),
                id=f"{plan.name}::checked-no-case"))  # fmt: skip
            _FLAGGED.add(plan.name)
    state = getattr(config, "_optcheck_baselines", None)
    named = dict.fromkeys(resolve(a)[0] for a in adapters)
    for b in (state or {}).get("baselines", []):
        if b.adapter not in named:  # its gate would pass without running anything
            message = (f"adapter {b.adapter!r} checked no case: the baseline {b.path} is for "
                       f"it, but this run does not verify it (add "
                       f"--optcheck-adapter={b.adapter})")  # fmt: skip
            params.append(pytest.param((context(config, b.adapter), _NoCase(message)),
                                       id=f"{b.adapter}::checked-no-case"))  # fmt: skip
            named[b.adapter] = None
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


def run(case_param, config=None, properties=None) -> None:
    """Run one parametrized case and turn its result into pytest's outcome.

    ``properties``: the test item's ``user_properties``, where the adapter and status go
    for the run's "checked no case" rule."""
    from optcheck.conformance import suite

    ctx, case = case_param
    if isinstance(case, _NoCase):
        pytest.fail(case.message, pytrace=False)
    result = suite.run_case(case, ctx)
    if properties is not None:
        properties += [("optcheck_adapter", case.adapter), ("optcheck_status", result["status"])]
    if result["status"] == "unsupported":
        pytest.skip(f"unsupported: {result.get('reason', '')}")
    state = getattr(config, "_optcheck_baselines", None)
    entries = [(b, e) for b, e in (state or {}).get("entries", []) if b.adapter == ctx.adapter]
    for _, e in entries:
        if e.selects(result, ctx.profile):
            state["selected"].add(id(e))
    if result["status"] in ("deviation", "error"):
        match = next((e for _, e in entries if e.accepts(result, ctx.profile)), None)
        if match is not None:
            state["used"].add(id(match))
            pytest.xfail(f"accepted by baseline: {match.reason}"
                         + (f" ({match.link})" if match.link else ""))  # fmt: skip
        message = failure_message(result)
        for b, e in entries:
            text = e.mismatch(result, ctx.profile)
            if text is not None:  # an entry is about this case, but not this outcome
                state["mismatched"].setdefault(id(e), text)
                message += f"\n  not accepted: {b.path}: {text}"
                break
        pytest.fail(message, pytrace=False)
