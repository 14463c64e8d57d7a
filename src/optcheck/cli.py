"""The ``optcheck`` command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="optcheck", description="Golden reference and conformance suite for Keras optimizers."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    verify = sub.add_parser("verify", help="run the conformance cases and write reports")
    verify.add_argument(
        "--adapter",
        action="append",
        dest="adapters",
        metavar="NAME",
        help="adapter to verify (repeatable; default: every bundled adapter)",
    )
    verify.add_argument("--profile", choices=["keras2", "keras3"], default="keras2")
    verify.add_argument(
        "--out",
        type=Path,
        default=Path("optcheck-report"),
        help="directory for conformance.json and conformance.md",
    )
    sub.add_parser("adapters", help="list the known adapters")
    return parser


def main(argv=None) -> int:
    from optcheck.conformance.verify import known_adapters, terminal_progress, verify

    parser = _parser()
    args = parser.parse_args(argv)
    adapters = known_adapters()
    if args.command == "adapters":
        for name, adapter in adapters.items():
            print(f"{name}\tavailable\t{adapter.version()}")
        return 0
    names = args.adapters or list(adapters)
    unknown = [n for n in names if n not in adapters]
    if unknown:
        parser.print_usage(sys.stderr)
        print(f"optcheck: error: unknown adapter(s) {unknown}; known adapters: "
              f"{sorted(adapters)}", file=sys.stderr)  # fmt: skip
        return 2
    report = verify(names, args.profile, args.out, progress=terminal_progress)
    statuses = [c["status"] for a in report["adapters"] for c in a["cases"]]
    failed = [s for s in statuses if s != "pass"]
    print(f"{len(statuses) - len(failed)}/{len(statuses)} cases conform "
          f"({args.profile}); report written to {args.out}/conformance.md")  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
