"""The kill matrix: which ``ci`` case of the conformance suite kills each mutant first.

Usage (what ``nox -s mutants`` runs)::

    python -m tests.mutants.kill_matrix --out reports/out/mutants [--mutant ID ...]

writes ``kill_matrix.json`` and ``kill_matrix.md``: for every mutant of
:mod:`tests.mutants.catalogue`, the first case that kills it (case id
``optimizer/feature/dtype/profile``, the example number within the case, the
divergence or the exception) or ``survived``, and the kill rate.

The cases are the ones ``optcheck verify --level ci`` runs
(:func:`optcheck.conformance.suite.all_cases`: the property cases of
``strategies.case_grid``, the golden tables and the seed-page examples), restricted to
the mutant's optimizers and profiles, and for a mutant that declares ``features`` to
the property cases of the features that can execute the mutated code, plus every
fixed case (see :func:`mutant_cases`; ``--all-features`` lifts that narrowing). A
property case draws its scenarios exactly as the suite does (same strategy, same
hypothesis settings of the level, same per-case seed, same time budget) and compares
them with :func:`optcheck.conformance.engine.check` under the
same policy. Two differences, both about *when to stop*, never about what is
compared:

* no shrinking: a failing example is reported as drawn (the suite shrinks it for its
  report; whether a case fails does not depend on shrinking);
* a mutant stops at its first killing case.

What counts as a kill (honest accounting):

* ``deviation`` — the engine reports a divergence for the mutant **and** the golden
  itself (the ``numpy`` adapter) conforms on the same scenario (otherwise the
  divergence says nothing about the mutant, and the example is skipped);
* ``error`` — the mutant raises **and** the golden, run through the engine on the same
  scenario, neither raises nor deviates.

Tolerances are the suite's; nothing here loosens or tightens them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

from optcheck.adapters.numpy_reference import ReferenceAdapter
from optcheck.conformance import engine, settings, suite
from optcheck.conformance.suite import Case, Context

from .adapter import mutant_adapter
from .catalogue import MUTANTS, Mutant

SCHEMA = "optcheck.kill_matrix/1"
LEVEL = "ci"
FIXED_KINDS = ("golden", "seed")


@dataclass
class Outcome:
    """How one mutant fared against the suite's ci cases."""

    mutant: str
    description: str
    path: str
    killed: bool
    #: What a scenario needs for the slip to show (catalogue), if narrower than usual.
    trigger: str = ""
    #: First killing case: "optimizer/feature/dtype/profile" (None if it survived).
    case: str | None = None
    kind: str | None = None
    #: 1-based number of the example within the case (1 for fixed cases).
    example: int | None = None
    #: "deviation" or "error".
    how: str | None = None
    detail: str | None = None
    scenario: str | None = None
    #: Cases run (to the first kill, or all of the mutant's cases for a survivor).
    cases_run: int = 0
    cases_total: int = 0
    #: Property examples compared (and fixed cases run) before the kill or the end.
    examples: int = 0
    #: Examples where the golden itself failed the comparison (not counted as kills),
    #: and the first few of them (case, what the engine said about the golden).
    golden_failures: int = 0
    golden_failure_examples: list[str] = field(default_factory=list)
    #: Cases that failed for a reason of their own (strategy, hypothesis), not a kill.
    case_errors: list[str] = field(default_factory=list)
    seconds: float = 0.0


class _Kill(Exception):
    def __init__(self, how: str, detail: str, scenario, example: int):
        super().__init__(detail)
        self.how, self.detail, self.scenario, self.example = how, detail, scenario, example


def case_label(case: Case) -> str:
    return f"{case.optimizer}/{case.feature}/{case.dtype}/{case.profile}"


def mutant_cases(mutant: Mutant, all_features: bool = False) -> list[tuple[Context, Case]]:
    """The ci cases the mutant is run through, in the order they are tried.

    Every case of ``all_cases`` for the mutant's optimizers and profiles; with
    ``mutant.features`` (unless ``all_features``) only the property cases of those
    features (and every feature of ``mutant.all_features_for``): the other features'
    scenarios cannot execute the mutated code (see the catalogue). Every fixed case
    runs. Fixed cases are tried first (one run each), then the property cases in
    suite order.
    """
    chosen = []
    for profile in mutant.profiles:
        ctx = Context(adapter=f"mutant:{mutant.id}", profile=profile, level=LEVEL,
                      optimizers=list(mutant.optimizers))
        for case in suite.all_cases(ctx):
            if (
                case.kind == "property"
                and mutant.features
                and not all_features
                and case.feature not in mutant.features
                and case.optimizer not in mutant.all_features_for
            ):
                continue
            chosen.append((ctx, case))
    return sorted(chosen, key=lambda pair: pair[1].kind not in FIXED_KINDS)


# -- one case ------------------------------------------------------------------------------
_GOLDEN = ReferenceAdapter()
_fixed_golden_status: dict[tuple[str, str], str] = {}


def _golden_verdict(scenario, policy) -> str | None:
    """None if the golden itself passes the engine on ``scenario``; else what failed."""
    try:
        found = engine.check(scenario, _GOLDEN, policy)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None if found is None else str(found)


def _note_golden_failure(outcome: Outcome, case: Case, verdict: str) -> None:
    outcome.golden_failures += 1
    if len(outcome.golden_failure_examples) < 5:
        outcome.golden_failure_examples.append(f"{case_label(case)}: {verdict}")


def _run_property(case: Case, ctx: Context, adapter, outcome: Outcome) -> _Kill | None:
    """The suite's property case (suite._run_property) without shrinking."""
    from hypothesis import Phase, given
    from hypothesis import seed as hypothesis_seed
    from hypothesis import settings as hsettings

    module = suite.strategies_module(ctx)
    strategy = module.scenarios(case.optimizer, case.feature, case.dtype, case.profile)
    policy = suite.effective_policy(ctx, adapter)
    caps = adapter.capabilities()
    level = settings.LEVELS[ctx.level]
    base = settings.hypothesis_settings(ctx.level, ctx.max_examples)
    hyp = hsettings(base, phases=[p for p in base.phases if p is not Phase.shrink])
    state = {"checked": 0}
    started = time.perf_counter()

    def test(scenario):
        if (level.budget is not None and state["checked"]
                and time.perf_counter() - started > level.budget):
            return
        if caps.missing(scenario.optimizer, scenario.needs, scenario.dtype, scenario.profile):
            return
        state["checked"] += 1
        outcome.examples += 1
        try:
            found = engine.check(scenario, adapter, policy)
        except Exception as exc:
            verdict = _golden_verdict(scenario, policy)
            if verdict is None:
                raise _Kill("error", f"{type(exc).__name__}: {exc}", scenario,
                            state["checked"]) from exc
            _note_golden_failure(outcome, case, verdict)
            return
        if found is not None:
            verdict = _golden_verdict(scenario, policy)
            if verdict is None:
                raise _Kill("deviation", str(found), scenario, state["checked"])
            _note_golden_failure(outcome, case, verdict)

    test.__name__ = f"kill_{case.id}".replace("-", "_").replace(":", "_")
    runner = hypothesis_seed(settings.case_seed(ctx.seed, case.id))(hyp(given(strategy)(test)))
    try:
        # The suite's examples (suite._run_drawn): no local constants.
        with settings.isolated_generation():
            runner()
    except _Kill as kill:
        return kill
    except Exception:  # the strategy or hypothesis failed: the suite's error, not a kill
        outcome.case_errors.append(f"{case_label(case)}: {traceback.format_exc(limit=3)}")
    return None


def _run_fixed(case: Case, ctx: Context, adapter) -> _Kill | None:
    """A golden-table or seed-page case, through the suite's own runner."""
    result = suite.run_case(case, ctx, adapter)
    if result["status"] not in ("deviation", "error"):
        return None
    key = (case.id, case.profile)
    if key not in _fixed_golden_status:
        _fixed_golden_status[key] = suite.run_case(case, ctx, _GOLDEN)["status"]
    if _fixed_golden_status[key] != "pass":
        return None
    if result["status"] == "deviation":
        fd = result.get("first_divergence", {})
        detail = (f"step {fd.get('step')}, {fd.get('quantity')}{fd.get('index', [])}: expected "
                  f"{fd.get('expected')!r}, got {fd.get('actual')!r} (error "
                  f"{fd.get('error')}, tolerance {fd.get('tolerance')})")
        return _Kill("deviation", detail, result.get("scenario"), 1)
    return _Kill("error", result.get("message", ""), result.get("scenario"), 1)


def first_kill(mutant: Mutant, all_features: bool = False) -> Outcome:
    """Run the mutant's cases until one kills it."""
    with warnings.catch_warnings():
        # The reference warns about None gradients as Keras does, NumPy about inf/NaN
        # arithmetic in the tolerance estimates: noise here.
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        return _first_kill(mutant, all_features)


def _first_kill(mutant: Mutant, all_features: bool) -> Outcome:
    started = time.perf_counter()
    adapter = mutant_adapter(mutant)
    pairs = mutant_cases(mutant, all_features)
    outcome = Outcome(mutant.id, mutant.description, mutant.path, killed=False,
                      trigger=mutant.trigger, cases_total=len(pairs))
    for ctx, case in pairs:
        outcome.cases_run += 1
        if case.kind in FIXED_KINDS:
            outcome.examples += 1
            kill = _run_fixed(case, ctx, adapter)
        else:
            kill = _run_property(case, ctx, adapter, outcome)
        if kill is not None:
            scenario = kill.scenario
            if scenario is not None and not isinstance(scenario, str):
                scenario = scenario.describe()
            outcome.killed = True
            outcome.case = case_label(case)
            outcome.kind = case.kind
            outcome.example = kill.example
            outcome.how = kill.how
            outcome.detail = kill.detail
            outcome.scenario = scenario
            break
    outcome.seconds = round(time.perf_counter() - started, 3)
    return outcome


def run_all(mutants=MUTANTS, all_features: bool = False, progress=None) -> list[Outcome]:
    outcomes = []
    for i, mutant in enumerate(mutants, 1):
        outcome = first_kill(mutant, all_features)
        outcomes.append(outcome)
        if progress:
            progress(i, len(mutants), outcome)
    return outcomes


def survival_reason(o: Outcome | dict) -> str:
    """Why a survivor survived, from what the run saw."""
    o = asdict(o) if isinstance(o, Outcome) else o
    reason = []
    if o["trigger"]:
        reason.append(f"the slip shows only with {o['trigger']}")
    if o["golden_failures"]:
        share = f"{o['golden_failures']} of the {o['examples']} examples compared"
        note = (f"the golden itself failed the engine on {share} (false positives of the "
                f"suite, which cannot count), e.g. {o['golden_failure_examples'][0]}")
        # Most examples lost to false positives: that is the main reason.
        reason.insert(0 if 2 * o["golden_failures"] > o["examples"] else len(reason), note)
    if not reason:
        reason.append("no ci scenario made the mutant differ beyond the tolerance")
    return "; ".join(reason)


def kill_rate(outcomes: list[Outcome]) -> float:
    return sum(o.killed for o in outcomes) / len(outcomes) if outcomes else 0.0


# -- reports -------------------------------------------------------------------------------
def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def report(outcomes: list[Outcome], seconds: float, all_features: bool) -> dict:
    from optcheck import __version__

    killed = sum(o.killed for o in outcomes)
    return {
        "schema": SCHEMA,
        "optcheck_version": __version__,
        "level": LEVEL,
        "all_features": all_features,
        "mutants": len(outcomes),
        "killed": killed,
        "survived": len(outcomes) - killed,
        "kill_rate": round(kill_rate(outcomes), 4),
        "seconds": round(seconds, 2),
        "outcomes": [asdict(o) for o in outcomes],
    }


def render_markdown(data: dict) -> str:
    def cell(text) -> str:
        text = "" if text is None else str(text)
        text = text.replace("|", "\\|").replace("\n", " ")
        return text if len(text) <= 160 else text[:157] + "..."

    lines = [
        "# Mutant kill matrix",
        "",
        f"optcheck {data['optcheck_version']}, level `{data['level']}`: "
        f"**{data['killed']}/{data['mutants']} mutants killed "
        f"({100 * data['kill_rate']:.1f} %)** in {data['seconds']:.0f} s.",
        "",
        "Each mutant is a copy of the golden reference with one semantic slip "
        "(tests/mutants/catalogue.py). *First killing case*: "
        "optimizer/feature/dtype/profile of the first ci case (fixed cases first, then "
        "property cases in suite order) in which the engine found a divergence (the "
        "golden conforming on the same scenario), and the number of the example within "
        "the case.",
        "",
        "| mutant | slip | first killing case | example | how | divergence |",
        "|---|---|---|---|---|---|",
    ]
    for o in data["outcomes"]:
        if o["killed"]:
            lines.append(f"| `{o['mutant']}` | {cell(o['description'])} | {cell(o['case'])} | "
                         f"{o['example']} | {o['how']} | {cell(o['detail'])} |")
        else:
            lines.append(f"| `{o['mutant']}` | {cell(o['description'])} | **survived** "
                         f"({o['cases_run']} cases) | — | — | — |")
    survivors = [o for o in data["outcomes"] if not o["killed"]]
    if survivors:
        lines += ["", "## Survivors", ""]
        lines += [f"- `{o['mutant']}` ({o['description']}; {o['cases_run']} cases, "
                  f"{o['examples']} examples): {survival_reason(o)}."
                  for o in survivors]
    return "\n".join(lines) + "\n"


def write_reports(outcomes: list[Outcome], out: Path, seconds: float,
                  all_features: bool = False) -> dict:
    data = report(outcomes, seconds, all_features)
    _write_atomic(out / "kill_matrix.json", json.dumps(data, indent=2) + "\n")
    _write_atomic(out / "kill_matrix.md", render_markdown(data))
    return data


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutants.kill_matrix",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("reports/out/mutants"))
    parser.add_argument("--mutant", action="append", dest="mutants", metavar="ID",
                        help="run only these mutants (repeatable)")
    parser.add_argument("--all-features", action="store_true",
                        help="run every feature's property cases, not only the mutant's")
    args = parser.parse_args(argv)
    mutants = MUTANTS
    if args.mutants:
        known = {m.id: m for m in MUTANTS}
        unknown = [m for m in args.mutants if m not in known]
        if unknown:
            parser.error(f"unknown mutant(s) {unknown}; known: {sorted(known)}")
        mutants = tuple(known[m] for m in args.mutants)

    def progress(done, total, outcome):
        status = f"killed by {outcome.case}" if outcome.killed else "SURVIVED"
        print(f"[{done}/{total}] {outcome.mutant}: {status} ({outcome.seconds:.1f} s)",
              file=sys.stderr, flush=True)

    started = time.perf_counter()
    try:
        outcomes = run_all(mutants, args.all_features, progress)
    except Exception:
        traceback.print_exc()
        return 2
    data = write_reports(outcomes, args.out, time.perf_counter() - started, args.all_features)
    print(f"{data['killed']}/{data['mutants']} mutants killed ({100 * data['kill_rate']:.1f} %); "
          f"report in {args.out}/kill_matrix.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
