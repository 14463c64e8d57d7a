"""Where a case's seconds go.

A case runs in stages: ``examples`` (drawing and checking hypothesis examples, the
seed-page or golden-table run, a metamorphic relation's runs), ``shrink`` (replaying
smaller scenarios once one failed) and ``diagnosis`` (re-checking the failure under each
known variant). Inside each stage the time is the adapter's (its sessions' ``open``,
``step``, ``load``, ``finalize``, ``round_trip`` and ``close``), the golden side's (the
golden, its oracle, the Monte Carlo and learning-rate runs) or the suite's own (drawing,
copying, comparing, bookkeeping). :func:`recording` collects them for one case and every
result carries them (``timing``); outside it nothing is timed.
"""

from __future__ import annotations

import contextlib
import contextvars
import time

STAGES = ("examples", "shrink", "diagnosis")
#: Where time inside a stage goes; ``suite`` is the rest.
PLACES = ("adapter", "golden", "suite")


class _Timing:
    def __init__(self):
        self.stage = "examples"
        self.seconds = {s: {"total": 0.0, "adapter": 0.0, "golden": 0.0} for s in STAGES}
        self._mark = time.perf_counter()

    def switch(self, stage: str) -> str:
        now = time.perf_counter()
        self.seconds[self.stage]["total"] += now - self._mark
        self._mark = now
        previous, self.stage = self.stage, stage
        return previous

    def add(self, place: str, seconds: float) -> None:
        self.seconds[self.stage][place] += seconds

    def result(self) -> dict:
        self.switch(self.stage)
        out = {}
        for stage, s in self.seconds.items():
            if s["total"] > 0:
                suite = max(s["total"] - s["adapter"] - s["golden"], 0.0)
                out[stage] = {"adapter": round(s["adapter"], 4), "golden": round(s["golden"], 4),
                              "suite": round(suite, 4)}  # fmt: skip
        return out


_current: contextvars.ContextVar[_Timing | None] = contextvars.ContextVar("timing", default=None)


@contextlib.contextmanager
def recording():
    """Time one case; yields a function returning ``{stage: {place: seconds}}``."""
    timing = _Timing()
    token = _current.set(timing)
    try:
        yield timing.result
    finally:
        _current.reset(token)


@contextlib.contextmanager
def stage(name: str):
    """Attribute the time inside to stage ``name`` (then back to the previous one)."""
    timing = _current.get()
    if timing is None:
        yield
        return
    previous = timing.switch(name)
    try:
        yield
    finally:
        timing.switch(previous)


def enter_stage(name: str) -> None:
    """Attribute the time from now on to stage ``name`` (shrinking starts mid-run)."""
    timing = _current.get()
    if timing is not None and timing.stage != name:
        timing.switch(name)


class _Timed:
    """A session whose method calls count as ``place``'s time."""

    def __init__(self, inner, place: str):
        self._inner, self._place = inner, place

    def __getattr__(self, name):
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            timing = _current.get()
            if timing is None:
                return attr(*args, **kwargs)
            started = time.perf_counter()
            try:
                return attr(*args, **kwargs)
            finally:
                timing.add(self._place, time.perf_counter() - started)

        return call


def open_session(adapter, scenario, place: str):
    """``adapter.open(scenario)``, that call and every later call on the session timed as
    ``place`` ("adapter" or "golden")."""
    return _Timed(_Timed(adapter, place).open(scenario), place)


def breakdown(report: dict) -> list[dict]:
    """Per adapter of a ``conformance.json``: its wall-clock seconds, the cases' seconds
    summed, and that sum split by stage and place (``{"examples/adapter": s, …}``). The
    wall-clock time beyond the cases' (with one worker) is start-up, planning and IPC."""
    rows = []
    for a in report.get("adapters", []):
        split = {f"{s}/{p}": 0.0 for s in STAGES for p in PLACES}
        for case in a.get("cases", []):
            for stage_name, places in (case.get("timing") or {}).items():
                for place, seconds in places.items():
                    split[f"{stage_name}/{place}"] += seconds
        rows.append({"adapter": a["name"], "cases": len(a.get("cases", [])),
                     "wall": a.get("seconds", 0.0),
                     "cases_seconds": sum(float(c.get("seconds") or 0) for c in a["cases"]),
                     **{k: round(v, 1) for k, v in split.items()}})  # fmt: skip
    return rows


def markdown(rows: list[dict]) -> str:
    """:func:`breakdown` as a table: seconds per stage and place, and the share of each."""
    head = ["adapter", "cases", "wall s", "cases s"] + [f"{s} {p}" for s in STAGES
                                                        for p in PLACES]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        total = r["cases_seconds"] or 1.0
        cells = [r["adapter"], str(r["cases"]), f"{r['wall']:.0f}", f"{r['cases_seconds']:.0f}"]
        cells += [f"{r[f'{s}/{p}']:.0f} ({100 * r[f'{s}/{p}'] / total:.0f} %)"
                  for s in STAGES for p in PLACES]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # python -m optcheck.conformance.timing conformance.json ...
    import json
    import sys
    from pathlib import Path

    print(markdown([row for path in sys.argv[1:]
                    for row in breakdown(json.loads(Path(path).read_text(encoding="utf-8")))]))
