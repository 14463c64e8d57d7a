"""The ``optcheck`` command line.

``optcheck verify`` runs the conformance suite and writes DIR/conformance.json,
DIR/conformance.md and DIR/junit.xml. Exit status: 0 when every case conforms
(``unsupported`` does not fail), 1 when any case deviates or errs, 2 on a usage error,
4 when the run checked nothing (:data:`EXIT_CHECKED_NOTHING`): no adapter brought any
case to a verdict (pass or deviation), or an adapter named by ``--adapter`` or by a
baseline did not (unavailable, every case unsupported, every case an error). Without
``--adapter`` every known adapter runs and an unavailable one is only listed. With
``--baseline FILE`` (one per adapter; conformance/baseline.py) the exit status is 0
when every deviation is accepted by a baseline and 1 on any new one; stale entries are
warned about. 1 wins over 4 (both are reported).

``optcheck baseline REPORT... --adapter NAME`` prints a starting baseline accepting the
adapter's deviations in ``conformance.json`` files (one per profile), one entry per
optimizer and diagnosis (``--per-case``: per case), with the diagnoses as reasons.

``optcheck adapters`` lists every known adapter, one per line: name, availability
(and why not), versions.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import random
import sys
from pathlib import Path

DTYPES = ["float16", "bfloat16", "float32", "float64"]
#: optcheck verify's exit status when the run (or a gate's adapter) checked no case.
EXIT_CHECKED_NOTHING = 4


# -- numeric options: one validator for every subcommand and the pytest plugin -----------
def number(kind: type = float, *, low=None, above=None, high=None):
    """An argparse ``type=``: ``kind`` (int or float), finite, ``>= low`` / ``> above`` /
    ``<= high``. Anything else is a usage error that argparse prefixes with the option
    (``argument --timeout: must be ...``): a NaN timeout would never expire, a negative
    ulps bound would make the golden deviate from itself."""
    rules = []
    if low is not None:
        rules.append(f"at least {low}")
    if above is not None:
        rules.append(f"greater than {above}")
    if high is not None:
        rules.append(f"at most {high}")
    noun = "an integer" if kind is int else "a finite number"
    rule = f"must be {noun}" + (" " + " and ".join(rules) if rules else "")

    def parse(text):
        try:
            value = kind(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"{rule}, got {text!r}") from None
        if (not math.isfinite(value) or (low is not None and value < low)
                or (above is not None and value <= above)
                or (high is not None and value > high)):  # fmt: skip
            raise argparse.ArgumentTypeError(f"{rule}, got {text!r}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in some messages
    return parse


#: A run seed: 32 bits, as the random ones (``thorough``) that reports show.
SEED = number(int, low=0, high=2**32 - 1)
#: Worker processes, hypothesis examples: at least one.
COUNT = number(int, low=1)
#: Seconds per case: positive and within what a timer accepts (an infinite or huge one
#: overflows the wait of the worker pool and fails the adapter as if it could not load).
SECONDS = number(float, above=0, high=10**6)
#: Ulps of the dtype-faithful golden: 0 is bit-exact.
ULPS = number(float, low=0)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="optcheck", description="Golden reference and conformance suite for Keras optimizers."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser(
        "verify",
        help="run the conformance suite and write reports",
        description="Run the conformance suite on adapters; write conformance.json, "
        "conformance.md and junit.xml. Exit 0: every case conforms; 1: a deviation or error; "
        "2: usage error; 4: the run checked nothing (no case of an adapter it had to "
        "check reached pass or deviation).",
    )
    v.add_argument("--adapter", action="extend", nargs="+", dest="adapters",
                   metavar="NAME|module:attr",
                   help="adapter(s) to verify: a name from `optcheck adapters` or an import "
                   "string (repeatable; default: every known adapter)")  # fmt: skip
    v.add_argument("--profile", choices=["keras2", "keras3"], default="keras2")
    v.add_argument("--optimizer", action="extend", nargs="+", dest="optimizers",
                   metavar="NAME", help="only these optimizers (default: all)")  # fmt: skip
    v.add_argument("--feature", action="extend", nargs="+", dest="features", metavar="PATTERN",
                   help="only cases whose feature matches (fnmatch; e.g. clipnorm, 'golden:*', "
                   "'seed:*')")  # fmt: skip
    v.add_argument("--dtype", action="extend", nargs="+", dest="dtypes", choices=DTYPES,
                   help="only these dtypes")  # fmt: skip
    v.add_argument("--level", choices=["ci", "thorough"], default="ci",
                   help="ci: derandomized, few examples, bounded time; thorough: many examples")
    v.add_argument("--seed", type=SEED, default=None,
                   help="run seed (default: 0 for ci, random for thorough; always reported)")
    v.add_argument("--mode", choices=["resync", "free"], default="resync",
                   help="resync: golden state loaded before each step; free: own trajectory")
    v.add_argument("--ulps", type=ULPS, default=None,
                   help="compare within N ulps of the dtype-faithful golden instead")
    v.add_argument("--out", type=Path, default=Path("optcheck-report"),
                   help="directory for the reports (default: optcheck-report)")
    v.add_argument("--jobs", type=COUNT, default=None,
                   help="worker processes (default: number of CPUs)")
    v.add_argument("--timeout", type=SECONDS, default=None,
                   help="seconds per case before its worker is killed (default: by level)")
    v.add_argument("--max-examples", type=COUNT, default=None,
                   help="exactly this many hypothesis examples per case, without the "
                   "level's time budget (default: by level)")
    v.add_argument("--in-process", action="store_true",
                   help="run adapters in this process: faster start, no timeout or crash "
                   "isolation")
    # For the project's tests and mutation runs: another module of case_grid/scenarios.
    v.add_argument("--baseline", action="append", type=Path, default=[], metavar="FILE",
                   help="TOML file of accepted deviations for one adapter (repeatable): exit "
                   "0 when only accepted deviations occur, 1 on a new one; stale entries "
                   "are warned about")  # fmt: skip
    v.add_argument("--no-diagnose", action="store_true",
                   help="do not re-run deviations against the known variants")
    v.add_argument("--no-shrink", action="store_true",
                   help="report the first failing example without shrinking it (faster "
                   "gating runs)")  # fmt: skip
    v.add_argument("--strategies", default=None, help=argparse.SUPPRESS)
    b = sub.add_parser(
        "baseline",
        help="print a starting baseline from a conformance.json",
        description="Print (or write with --out) a baseline TOML accepting one adapter's "
        "deviations in a conformance.json, with their diagnoses as reasons, for review.",
    )
    b.add_argument("reports", nargs="+", type=Path, metavar="REPORT",
                   help="conformance.json file(s) written by optcheck verify (e.g. one per "
                   "profile)")  # fmt: skip
    b.add_argument("--adapter", required=True, help="the adapter whose deviations to accept")
    b.add_argument("--per-case", action="store_true",
                   help="one entry per case instead of one per optimizer and diagnosis")
    b.add_argument("--out", type=Path, default=None,
                   help="write here instead of stdout; an existing file is only replaced "
                   "with --keep naming it (its reviewed reasons are kept) or --force")
    b.add_argument("--force", action="store_true",
                   help="replace an existing --out file without keeping its reasons and links")
    b.add_argument("--keep", type=Path, default=None, metavar="BASELINE",
                   help="an existing baseline whose reviewed reasons and links are kept for "
                   "the entries generated again (same case, profile, variant, status)")  # fmt: skip
    sub.add_parser("adapters", help="list the known adapters with availability and versions")
    from optcheck.conformance import vectors
    from optcheck.reports import page

    page.configure_parser(sub.add_parser(
        "report", help="write the conformance and performance report (HTML + Markdown)",
        description="Write DIR/report.html (self-contained) and DIR/report.md from "
        "conformance.json files of optcheck verify and pytest-benchmark JSON files of "
        "benchmarks/.",
    ))  # fmt: skip
    vectors.configure_parser(sub.add_parser(
        "vectors", help="export golden test vectors, or check an adapter against them",
        description="Golden test vectors (JSON + NPZ, checksummed) for implementations in "
        "any language: export them, or check an adapter against a vectors folder.",
    ))  # fmt: skip
    return parser


def _usage_error(parser, message: str) -> int:
    parser.print_usage(sys.stderr)
    print(f"optcheck: error: {message}", file=sys.stderr)
    return 2


def _adapters_command() -> int:
    from optcheck.adapters.registry import list_adapters

    for info in list_adapters():
        state = "available" if info.available else f"unavailable ({info.reason})"
        print("\t".join([info.name, state, info.version or "-", info.target]))
    return 0


def _module_exists(module: str) -> bool:
    """Whether an import string's module can be found (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _canonical_optimizers(names, parser):
    from optcheck.conformance.registry import OPTIMIZERS

    by_lower = {n.lower(): n for n in OPTIMIZERS}
    unknown = [n for n in names if n.lower() not in by_lower]
    if unknown:
        return None, _usage_error(parser, f"unknown optimizer(s) {', '.join(unknown)}; known "
                                  f"optimizers: {', '.join(OPTIMIZERS)}")  # fmt: skip
    return list(dict.fromkeys(by_lower[n.lower()] for n in names)), 0


def main(argv=None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    try:
        if args.command == "adapters":
            return _adapters_command()
        if args.command == "baseline":
            return _baseline_command(args, parser)
        if args.command in ("report", "vectors"):
            return args.handler(args, parser)
        return _verify_command(args, parser)
    except KeyboardInterrupt:
        # verify reports its finished cases itself (an Interrupted is handled there); any
        # other command stopped by Ctrl-C ends with one line, its workers already killed.
        print(f"optcheck {args.command}: interrupted", file=sys.stderr)
        return 3


def _baseline_command(args, parser) -> int:
    import json

    from optcheck.conformance import baseline

    reports = []
    for path in args.reports:
        try:
            reports.append(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return _usage_error(parser, f"no such report: {path}")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return _usage_error(parser, f"{path} is not a conformance.json ({exc})")
        except OSError as exc:  # a folder, no permission
            return _usage_error(parser, f"cannot read report {path}: {exc.strerror or exc}")
    if args.out is not None and args.out.exists() and not args.force and not (
            args.keep is not None and args.keep.exists() and args.keep.samefile(args.out)):
        # A reviewed baseline's reasons and links would be lost without a word.
        return _usage_error(parser, f"--out {args.out} exists; pass --keep {args.out} to keep "
                            "its reviewed reasons and links, or --force to overwrite it")
    try:
        keep = baseline.load(args.keep) if args.keep else None
        text = baseline.from_report(reports, args.adapter, group=not args.per_case, keep=keep)
    except (KeyError, TypeError) as exc:
        return _usage_error(parser, f"not a conformance.json ({type(exc).__name__}: {exc})")
    except baseline.BaselineError as exc:
        return _usage_error(parser, str(exc))
    if args.out:
        try:
            args.out.write_text(text, encoding="utf-8")
        except OSError as exc:
            return _usage_error(parser, f"cannot write --out {args.out}: {exc.strerror or exc}")
    else:
        sys.stdout.write(text)
    return 0


def _verify_command(args, parser) -> int:
    from optcheck.adapters.registry import UnknownAdapterError, known_adapters, resolve
    from optcheck.conformance import report as rep
    from optcheck.conformance.suite import DEFAULT_STRATEGIES, Context
    from optcheck.conformance.verify import OutputError, TerminalProgress, verify
    from optcheck.conformance.worker import Interrupted

    names = list(dict.fromkeys(args.adapters or known_adapters()))
    for name in names:
        try:
            _, target = resolve(name)
        except UnknownAdapterError as exc:
            return _usage_error(parser, str(exc))
        if name == target and not _module_exists(target.partition(":")[0]):
            return _usage_error(parser, f"no module {target.partition(':')[0]!r} for adapter "
                                f"{name!r}; known adapters: "
                                f"{', '.join(sorted(known_adapters()))}")  # fmt: skip
    optimizers = None
    if args.optimizers:
        optimizers, status = _canonical_optimizers(args.optimizers, parser)
        if optimizers is None:
            return status
    from optcheck.conformance import baseline

    try:
        baselines = [baseline.load(path) for path in args.baseline]
    except baseline.BaselineError as exc:
        return _usage_error(parser, str(exc))
    from optcheck.reference import dtypes

    if dtypes.binary128 is None and args.ulps is None and "float64" in (args.dtypes or ["float64"]):
        return _usage_error(parser, dtypes.BINARY128_MISSING)
    seed = args.seed
    if seed is None:
        seed = 0 if args.level == "ci" else random.randrange(2**32)
    ctx = Context(
        adapter=names[0], profile=args.profile, level=args.level, mode=args.mode,
        ulps=args.ulps, seed=seed, optimizers=optimizers, features=args.features,
        dtypes=args.dtypes, strategies=args.strategies or DEFAULT_STRATEGIES,
        max_examples=args.max_examples, metamorphic=True, diagnose=not args.no_diagnose,
        shrink=not args.no_shrink,
    )  # fmt: skip
    try:
        report = verify(ctx, names, args.out, isolate=not args.in_process, jobs=args.jobs,
                        timeout=args.timeout, progress=TerminalProgress())  # fmt: skip
    except OutputError as exc:
        return _usage_error(parser, str(exc))
    except Interrupted as exc:  # the partial report is written, marked incomplete
        done = exc.report["incomplete"]
        print(f"{chr(10) if sys.stderr.isatty() else ''}optcheck: {exc}; {done['cases_done']} "
              f"of {done['cases_planned']} planned cases finished; reports marked incomplete "
              f"in {args.out}/", file=sys.stderr)  # fmt: skip
        return 3
    if report["summary"]["cases"] == 0:
        return _usage_error(parser, "no case matches the selection (--optimizer, --feature, "
                            "--dtype)")  # fmt: skip
    for a in report["adapters"]:
        t = a["summary"]
        line = (f"{a['name']}: {t['pass']}/{t['cases']} cases conform, {t['deviation']} "
                f"deviation, {t['error']} error, {t['unsupported']} unsupported "
                f"({a['seconds']:.1f} s)")  # fmt: skip
        if not a["available"] and a["reason"]:
            # A load error (import, invalid capabilities()) is the adapter's error.
            broken = any(c["feature"] == "load" for c in a["cases"])
            line += f" - {'cannot load' if broken else 'not available'}: {a['reason']}"
        print(line)
    print(f"profile {args.profile}, level {args.level}, run seed {seed}; reports in "
          f"{args.out}/ (conformance.json, conformance.md, junit.xml)")  # fmt: skip
    failed = rep.failed(report)
    if baselines:
        gate = baseline.apply(report, baselines)
        rep.write_all(report, args.out)
        for entry in gate["stale"]:
            print(f"warning: stale baseline entry (the cases it selects all conform now): "
                  f"{entry}", file=sys.stderr)  # fmt: skip
        for entry in gate["mismatched"]:
            print(f"warning: baseline entry does not accept what its cases do now: {entry}",
                  file=sys.stderr)  # fmt: skip
        for label in gate["new"]:
            kind = gate["statuses"].get(label, "deviation")
            why = gate["why"].get(label)
            print(f"new {kind} (not in any baseline): {label}" + (f" ({why})" if why else ""))
        print(f"baseline: {len(gate['accepted'])} accepted, {len(gate['new'])} new, "
              f"{len(gate['stale'])} stale entries"
              + (f", {len(gate['mismatched'])} mismatched" if gate["mismatched"] else ""))
        failed = bool(gate["new"])
    # A gate never passes on nothing: the adapters asked for by name (--adapter, a
    # baseline) must each bring a case to a verdict; the default list only one of them.
    from optcheck.conformance.verify import unchecked_adapters

    required = list(dict.fromkeys([*(args.adapters or ()), *(b.adapter for b in baselines)]))
    unchecked = unchecked_adapters(report, required)
    for name, why in unchecked.items():
        print(f"optcheck: adapter {name!r} checked no case: {why}", file=sys.stderr)
    if failed:
        return 1
    return EXIT_CHECKED_NOTHING if unchecked else 0


if __name__ == "__main__":
    sys.exit(main())
