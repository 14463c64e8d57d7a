"""``optcheck verify``: run the suite on adapters and write the reports.

For each adapter: plan its cases (:func:`optcheck.conformance.suite.plan`), run them,
and write ``conformance.json``, ``conformance.md`` and ``junit.xml``
(:mod:`optcheck.conformance.report`). While the run goes on, every result is
appended to ``results.jsonl`` in the output folder as soon as it is known, so a run
killed half-way keeps what it found.

Before anything runs, the output folder is checked (:func:`prepare_out`: a usage
error, :class:`OutputError`, when it cannot hold the reports) and the previous run's
reports are removed, so that no report ever sits beside another run's results. SIGINT
or SIGTERM stops the run: the workers are killed, the report of the finished cases is
written with ``"incomplete"`` set, and :class:`~optcheck.conformance.worker.Interrupted`
is raised (``optcheck verify`` exits 3).

By default adapters run in worker processes (:mod:`optcheck.conformance.worker`):
a per-case timeout, and a crashing interpreter loses only its current case.
``isolate=False`` runs everything in this process (faster to start, no protection).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
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


class OutputError(ValueError):
    """``--out`` cannot hold the reports (a file, not writable, a report name taken by a
    folder); raised before any case runs, or, should writing fail after the run, with
    the path where the report was saved instead."""


#: The files a run writes into its output folder; a run removes the previous run's
#: before it starts, so that no report ever describes another run than results.jsonl.
OUTPUTS = ("conformance.json", "conformance.md", "junit.xml", "results.jsonl")


def prepare_out(out_dir: Path) -> Path:
    """Create ``out_dir`` if need be, check that the reports can be written there, and
    remove the previous run's reports; raises :class:`OutputError` naming the problem."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"--out {out_dir} is a file, not a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out_dir, prefix=".optcheck-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"cannot write to --out {out_dir}: {exc.strerror or exc}") from None
    for name in OUTPUTS:
        path = out_dir / name
        if path.is_dir() and not path.is_symlink():
            raise OutputError(f"cannot write {path}: it is a folder")
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot replace {path}: {exc.strerror or exc}") from None
    return out_dir


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

    The report is written to ``out_dir`` before it is returned. Raises
    :class:`OutputError` before running anything when ``out_dir`` cannot hold the
    reports. On SIGINT or SIGTERM the workers are killed, the report of the cases that
    finished is written with ``"incomplete"`` set, and
    :class:`~optcheck.conformance.worker.Interrupted` is raised, its ``report`` attached.
    """
    from .worker import SignalGuard

    out_dir = prepare_out(out_dir)
    jobs = jobs or ((os.cpu_count() or 1) if isolate else 1)
    timeout = timeout or settings.LEVELS[ctx.level].timeout
    started = time.perf_counter()
    with SignalGuard() as guard, open(out_dir / "results.jsonl", "w", encoding="utf-8") as log:
        entries, planned, stopped = _run_adapters(ctx, adapters, log, guard, isolate, jobs,
                                                  timeout, progress)  # fmt: skip
        report = rep.build(ctx=ctx, adapters=entries, seconds=time.perf_counter() - started,
                           version=_version())  # fmt: skip
        if stopped is not None:
            report["incomplete"] = {"signal": stopped.signal,
                                    "cases_done": report["summary"]["cases"],
                                    "cases_planned": planned,
                                    "adapters_not_run": adapters[len(entries):]}  # fmt: skip
        _write(report, out_dir)
    if stopped is not None:
        stopped.report = report
        raise stopped
    return report


def _run_adapters(ctx, adapters, log, guard, isolate, jobs, timeout, progress):
    """``(entries, planned, stopped)``: the report entry of each adapter that ran (the
    interrupted one with the cases it finished), the number of cases of the adapters
    planned, and the :class:`~optcheck.conformance.worker.Interrupted` that stopped the
    run (None: every case ran)."""
    from .worker import Interrupted, critical

    entries: list[dict] = []
    planned = 0
    plan, results, t0 = None, {}, time.perf_counter()
    try:
        for adapter in adapters:
            with critical():  # `plan` is None exactly when every entry is in `entries`
                plan, results, t0 = None, {}, time.perf_counter()
            actx = replace(ctx, adapter=adapter)
            try:
                plan = _plan(actx, isolate)
                planned += len(plan.cases)
                cases = _run(plan, actx, log, isolate, jobs, timeout, progress, results)
            except Exception as exc:  # loading failed: one error for the adapter
                remote = getattr(exc, "remote_traceback", "")
                message = str(exc) if remote else f"{type(exc).__name__}: {exc}"
                plan, cases = _failed_plan(actx, message,
                                           remote or traceback.format_exc())  # fmt: skip
                planned += 1
                _log(log, cases[0])
            with critical():
                entries.append(rep.adapter_entry(plan, cases, time.perf_counter() - t0))
                plan = None
        guard.settle()  # every case ran: a later signal does not cut the report
    except Interrupted as stopped:
        if plan is not None:  # the adapter that was running: the cases it finished
            done = [results[c.id] for c in plan.cases if c.id in results]
            entry = rep.adapter_entry(plan, done, time.perf_counter() - t0)
            entry["incomplete"] = {"cases_done": len(done), "cases_planned": len(plan.cases)}
            entries.append(entry)
        return entries, planned, stopped
    return entries, planned, None


def _write(report: dict, out_dir: Path) -> None:
    """Write the reports; should that fail (the folder removed or full during the run),
    write them to a new temporary folder and raise :class:`OutputError` naming it."""
    try:
        rep.write_all(report, out_dir)
    except OSError as exc:
        spare = Path(tempfile.mkdtemp(prefix="optcheck-report-"))
        rep.write_all(report, spare)
        raise OutputError(f"cannot write the report to {out_dir} ({exc.strerror or exc}); "
                          f"it was written to {spare}/ instead") from None


def _log(log, result: dict) -> None:
    log.write(json.dumps(rep.json_safe(result), allow_nan=False) + "\n")
    log.flush()


def _run(plan: Plan, ctx: Context, log, isolate, jobs, timeout, progress,
         results: dict[str, dict]) -> list[dict]:  # fmt: skip
    """Results of every case of ``plan``, in the plan's order; ``results`` (by id) holds
    those that finished, should the run be interrupted."""
    from .worker import critical

    counts = dict.fromkeys(suite.STATUSES, 0)
    total = len(plan.cases)

    def record(result: dict) -> None:
        with critical():  # results.jsonl and the report hold the same cases
            results[result["id"]] = result
            _log(log, result)
        counts[result["status"]] = counts.get(result["status"], 0) + 1
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


# -- the end of a run: did it check anything? (optcheck verify's exit status 4) --------------
#: Statuses of a case that reached a verdict: the comparison ran to its end.
CHECKED = ("pass", "deviation")


def no_case_reason(available: bool, reason: str, cases: list[dict]) -> str:
    """Why an adapter brought none of ``cases`` (result dicts: ``status`` and ``reason``
    or ``message``) to a verdict, in a few words."""
    from collections import Counter

    errors = [c for c in cases if c.get("status") == "error"]
    if errors and errors[0].get("feature") == "load":
        return errors[0].get("message") or "cannot load adapter"
    if not available:
        return f"not available: {reason or 'no reason given'}"
    if not cases:
        return "the selection leaves it no case"
    unsupported = Counter(c.get("reason") or "no reason given" for c in cases
                          if c.get("status") == "unsupported")  # fmt: skip
    parts = []
    if unsupported:
        common = "; ".join(f"{why} ({n})" if len(unsupported) > 1 else why
                           for why, n in unsupported.most_common(2))  # fmt: skip
        more = f"; {len(unsupported) - 2} more reasons" if len(unsupported) > 2 else ""
        every = "every case" if len(cases) == 1 else f"all {len(cases)} cases"
        parts.append((every if not errors else f"{sum(unsupported.values())} cases")
                     + f" unsupported: {common}{more}")  # fmt: skip
    if errors:
        first = (errors[0].get("message") or "").splitlines()
        parts.append(f"{len(errors)} error(s), first {errors[0].get('id', '?')}: "
                     f"{first[0] if first else '?'}")  # fmt: skip
    return "; ".join(parts) or "no case reached pass or deviation"


def unchecked_adapters(report: dict, required=()) -> dict[str, str]:
    """The adapters that make a run one that checked nothing: name -> why.

    An adapter *checked* a case when one reached a verdict (:data:`CHECKED`); an
    unsupported case, an error and an unavailable adapter check nothing. Listed: every
    adapter of ``required`` (those named by ``--adapter`` or a baseline) that checked no
    case, or is not in the report; and, when no adapter of the run checked any case,
    every adapter of the run (the main job may list unavailable adapters, but not
    pass on none)."""
    by_name = {a["name"]: a for a in report["adapters"]}
    why = {name: no_case_reason(a["available"], a["reason"], a["cases"])
           for name, a in by_name.items()
           if not any(c["status"] in CHECKED for c in a["cases"])}  # fmt: skip
    if why and len(why) == len(by_name):
        return why
    found = {n: why[n] for n in required if n in why}
    found.update({n: f"this run did not verify it (add --adapter {n})" for n in required
                  if n not in by_name})  # fmt: skip
    return found
