"""``optcheck verify``: run the suite on adapters and write the reports.

For each adapter: plan its cases (:func:`optcheck.conformance.suite.plan`), run them,
and write ``conformance.json``, ``conformance.md`` and ``junit.xml``
(:mod:`optcheck.conformance.report`). While the run goes on, every result is
appended to ``results.jsonl`` in the output folder as soon as it is known, so a run
killed half-way keeps what it found.

By default adapters run in worker processes (:mod:`optcheck.conformance.worker`):
a per-case timeout, and a crashing interpreter loses only its current case.
``isolate=False`` runs everything in this process (faster to start, no protection).
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from . import report as rep
from . import settings, suite
from .suite import Case, Context, Plan

#: progress(adapter, done, total, counts) — counts by status so far.
Progress = Callable[[str, int, int, dict], None]


def _version() -> str:
    from optcheck import __version__

    return __version__


def _plan(ctx: Context, isolate: bool) -> Plan:
    if isolate:
        from .worker import run_plan_isolated

        return run_plan_isolated(ctx)
    return suite.plan(ctx)


def _failed_plan(ctx: Context, message: str, tb: str) -> tuple[Plan, list[dict]]:
    from optcheck.adapters import registry

    name, target = registry.resolve(ctx.adapter)
    plan = Plan(name, target, "", False, message, [])
    case = Case(name, "-", "load", "-", ctx.profile, "load")
    return plan, [suite.error_result(case, ctx, f"cannot load adapter: {message}", tb)]


def verify(
    ctx: Context,
    adapters: list[str],
    out_dir: Path,
    *,
    isolate: bool = True,
    jobs: int | None = None,
    timeout: float | None = None,
    progress: Progress | None = None,
) -> dict:
    """Run ``ctx`` (its ``adapter`` replaced by each of ``adapters``); the report.

    The report is written to ``out_dir`` before it is returned.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = jobs or ((os.cpu_count() or 1) if isolate else 1)
    timeout = timeout or settings.LEVELS[ctx.level].timeout
    started = time.perf_counter()
    entries = []
    with open(out_dir / "results.jsonl", "w", encoding="utf-8") as log:
        for adapter in adapters:
            actx = replace(ctx, adapter=adapter)
            t0 = time.perf_counter()
            try:
                plan = _plan(actx, isolate)
                results = _run(plan, actx, log, isolate, jobs, timeout, progress)
            except Exception as exc:  # loading failed: one error for the adapter
                remote = getattr(exc, "remote_traceback", "")
                message = str(exc) if remote else f"{type(exc).__name__}: {exc}"
                plan, results = _failed_plan(actx, message,
                                             remote or traceback.format_exc())  # fmt: skip
                _log(log, results[0])
            entries.append(rep.adapter_entry(plan, results, time.perf_counter() - t0))
    report = rep.build(ctx=ctx, adapters=entries, seconds=time.perf_counter() - started,
                       version=_version())  # fmt: skip
    rep.write_all(report, out_dir)
    return report


def _log(log, result: dict) -> None:
    log.write(json.dumps(rep.json_safe(result), allow_nan=False) + "\n")
    log.flush()


def _run(plan: Plan, ctx: Context, log, isolate, jobs, timeout, progress) -> list[dict]:
    """Results of every case of ``plan``, in the plan's order."""
    results: dict[str, dict] = {}
    counts = dict.fromkeys(suite.STATUSES, 0)
    total = len(plan.cases)

    def record(result: dict) -> None:
        results[result["id"]] = result
        counts[result["status"]] = counts.get(result["status"], 0) + 1
        _log(log, result)
        if progress:
            progress(plan.name, len(results), total, counts)

    if progress:
        progress(plan.name, 0, total, counts)
    runnable = []
    for case in plan.cases:
        if case.unsupported:
            record(suite.unsupported_result(case, ctx))
        else:
            runnable.append(case)
    if isolate:
        from .worker import WorkerPool

        WorkerPool(jobs=jobs, timeout=timeout).run(runnable, ctx, record)
    else:
        for case in runnable:
            record(suite.run_case(case, ctx))
    return [results[c.id] for c in plan.cases]


class TerminalProgress:
    """``numpy: 123/812 cases, 0 deviation, 0 error, 12 s`` on stderr, when it is a tty."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self.started = time.perf_counter()

    def __call__(self, name: str, done: int, total: int, counts: dict) -> None:
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.started
        self.stream.write(f"\r{name}: {done}/{total} cases, {counts.get('deviation', 0)} "
                          f"deviation, {counts.get('error', 0)} error, {elapsed:.0f} s\x1b[K")
        if done == total:
            self.stream.write("\n")
        self.stream.flush()
