"""The README's "What optcheck found" table, generated from conformance reports.

Two steps, both deterministic:

* ``extract``: from each ``conformance.json``, the deviations (and errors) of every
  adapter with its library version, profile, level and seed, the first divergence and
  the diagnosis — one small JSON per (profile, adapter),
  committed (``reports/data/findings/``), so that the table can be checked against its sources;
* ``readme``: the table built from those files replaces the block between
  ``<!-- findings:start -->`` and ``<!-- findings:end -->`` in README.md
  (``--check`` exits 1 instead when the README differs: the table is never edited by
  hand).

Rows group the deviations of one adapter, profile and diagnosis (the variant that
explains them, or "unexplained"); the cases column lists them.

``nox -s findings`` runs the suite on the bundled adapters and then both steps;
``python -m optcheck.reports.findings --help`` shows the commands.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

START, END = "<!-- findings:start -->", "<!-- findings:end -->"
SCHEMA = "optcheck.findings/1"
#: Cases listed in one cell before the rest are counted.
MAX_LISTED = 3


def extract(report: dict) -> list[dict]:
    """One findings record per adapter of ``report`` (a conformance.json)."""
    from optcheck.conformance.report import divergence_text

    records = []
    for a in report["adapters"]:
        found, summaries = [], {}
        for c in a["cases"]:
            if c["status"] not in ("deviation", "error"):
                continue
            d = c.get("diagnosis") or {}
            what = (divergence_text(c["first_divergence"]) if c["status"] == "deviation"
                    else c.get("message", ""))  # fmt: skip
            found.append({
                "case": c["id"], "status": c["status"], "optimizer": c["optimizer"],
                "feature": c["feature"], "dtype": c["dtype"], "deviation": _cell(what, 200),
                "diagnosis": d.get("verdict") or ("error" if c["status"] == "error" else "—"),
                "variant": d.get("variant"),
            })  # fmt: skip
            if d.get("variant"):
                summaries[d["variant"]] = d.get("summary", "")
        records.append({
            "schema": SCHEMA, "adapter": a["name"], "version": a.get("version", ""),
            "available": a.get("available", True), "profile": report["profile"],
            "level": report["level"], "max_examples": report.get("max_examples"),
            "shrink": report.get("shrink", True),
            "dtypes": (report.get("selection") or {}).get("dtypes"),
            "seed": report["seed"], "summary": a["summary"],
            "created": report.get("created", ""), "findings": found, "summaries": summaries,
        })  # fmt: skip
    return records


def _cases(ids: list[str]) -> str:
    shown = ", ".join(ids[:MAX_LISTED])
    return shown + (f" (+{len(ids) - MAX_LISTED} more)" if len(ids) > MAX_LISTED else "")


def _cell(text: str, limit: int = 160) -> str:
    text = str(text).replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def table(records: list[dict]) -> str:
    """The Markdown table for ``records``: a line on the runs, one row per adapter,
    profile and diagnosis, then what each diagnosed variant means."""
    records = sorted(records, key=lambda r: (r["adapter"], r["profile"]))
    runs = [r for r in records if r["available"]]
    lines = [
        "| adapter | library version | cases per profile | e.g. (optimizer-feature-dtype) | "
        "first deviation | diagnosis |",
        "|---|---|---|---|---|---|",
    ]
    legend: dict[str, str] = {}
    adapters: dict[str, list[dict]] = {}
    for r in runs:
        legend.update(r.get("summaries") or {})
        adapters.setdefault(r["adapter"], []).append(r)
    for name, recs in adapters.items():
        version = _cell(recs[0]["version"], 60)
        groups: dict[str, dict[str, list[dict]]] = {}
        for r in recs:
            for f in r["findings"]:
                groups.setdefault(f["diagnosis"], {}).setdefault(r["profile"], []).append(f)
        if not groups:
            counts = ", ".join(f"{r['profile']} {r['summary']['pass']}" for r in recs)
            lines.append(f"| {name} | {version} | {', '.join(r['profile'] for r in recs)} | "
                         f"every supported case conforms ({counts}) | — | — |")  # fmt: skip
            continue
        order = sorted(groups.items(), key=lambda kv: (-sum(map(len, kv[1].values())), kv[0]))
        for verdict, by_profile in order:
            found = [f for fs in by_profile.values() for f in fs]
            ids = list(dict.fromkeys(f["case"] for f in found))
            shown = ", ".join(ids[:MAX_LISTED]) + (", …" if len(ids) > MAX_LISTED else "")
            counts = ", ".join(f"{p} {len(fs)}" for p, fs in sorted(by_profile.items()))
            lines.append(
                f"| {name} | {version} | {counts} | {_cell(shown, 200)} | "
                f"{_cell(found[0]['deviation'], 110)} | {_cell(verdict, 120)} |"
            )
    described: dict[str, list[str]] = {}
    for r in runs:
        text = (f"level {r['level']}"
                + (f", {r['max_examples']} example(s) per case" if r.get("max_examples") else "")
                + (f", {' '.join(r['dtypes'])} only" if r.get("dtypes") else "")
                + ("" if r.get("shrink", True) else ", not shrunk")
                + f", seed {r['seed']}")  # fmt: skip
        names = described.setdefault(text, [])
        if r["adapter"] not in names:
            names.append(r["adapter"])
    runs_text = "; ".join(f"{', '.join(n)}: {t}" for t, n in described.items()) or "none"
    header = (f"Generated by `nox -s findings` from {len(runs)} runs ({runs_text}). One row "
              "per adapter and diagnosis; every case is in `reports/data/findings/` "
              "and, with its repro script, in the run's `conformance.md`.")  # fmt: skip
    out = [header, "", *lines]
    if legend:
        out += ["", "Variants named above (`conformance/diagnosis.py`):", ""]
        parts = {p for v in legend for p in v.split(" + ")}
        summaries = {k: v for k, v in legend.items() if " + " not in k}
        # A variant met only inside a combination: its summary from the catalogue.
        from optcheck.conformance.diagnosis import VARIANTS

        catalogue = {v.name: v.summary for v in VARIANTS}
        out += [f"- `{p}`: {_cell(summaries.get(p) or catalogue.get(p, ''), 300)}"
                for p in sorted(parts)]  # fmt: skip
    return "\n".join(out) + "\n"


def splice(readme: str, block: str) -> str:
    if readme.count(START) != 1 or readme.count(END) != 1:
        raise ValueError(f"README must contain {START} and {END} exactly once each")
    head, rest = readme.split(START)
    _, tail = rest.split(END)
    return f"{head}{START}\n{block}{END}{tail}"


def load_records(folder: Path) -> list[dict]:
    records = []
    for path in sorted(Path(folder).glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("schema") != SCHEMA:
            raise ValueError(f"{path}: not a findings file (schema {data.get('schema')!r})")
        records.append(data)
    return records


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m optcheck.reports.findings",
                                     description=__doc__.split("\n\n")[0])  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True)
    e = sub.add_parser("extract", help="conformance.json files -> findings JSON files")
    e.add_argument("reports", nargs="+", type=Path)
    e.add_argument("--out", type=Path, required=True)
    r = sub.add_parser("readme", help="findings JSON files -> the README table")
    r.add_argument("folder", type=Path)
    r.add_argument("--readme", type=Path, default=Path("README.md"))
    r.add_argument("--check", action="store_true", help="exit 1 if the README is not current")
    args = parser.parse_args(argv)
    if args.command == "extract":
        args.out.mkdir(parents=True, exist_ok=True)
        for path in args.reports:
            for record in extract(json.loads(path.read_text(encoding="utf-8"))):
                name = f"{record['profile']}-{record['adapter']}.json"
                (args.out / name).write_text(json.dumps(record, indent=1, sort_keys=True)
                                             + "\n", encoding="utf-8")  # fmt: skip
                print(f"{args.out / name}: {len(record['findings'])} finding(s)")
        return 0
    current = args.readme.read_text(encoding="utf-8")
    wanted = splice(current, table(load_records(args.folder)))
    if args.check:
        if wanted != current:
            print(f"{args.readme}: the findings table is not current; run `nox -s findings` "
                  "(or `python -m optcheck.reports.findings readme`)", file=sys.stderr)  # fmt: skip
            return 1
        return 0
    args.readme.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
