"""``optcheck report``: the conformance and performance report, HTML and Markdown.

    optcheck report --conformance DIR/conformance.json ... [--bench bench.json ...]
                    [--before old.json ...] [--threshold 1.10] --out DIR

writes ``DIR/report.html`` (one self-contained page: charts inlined as SVG, styles
inline, a Content-Security-Policy that forbids every load) and ``DIR/report.md`` with
its charts in ``DIR/charts/*.svg`` and each non-conforming case's repro script in
``DIR/repro/``. Sections:

* conformance — per adapter and profile the share of cases conforming, a chart of the
  outcomes, the matrix optimizer × feature (each cell: the case's dtypes that conform),
  and every non-conforming case with its diagnosis, first divergence and repro;
* performance (with ``--bench``: pytest-benchmark JSON of ``benchmarks/``, or its
  ``--bench-records`` JSON lines) — per device: log–log step time against N with the
  roofline (bytes per step / session roof), GB/s and fraction of the roof, the ratio
  to the fastest implementation at each size, the many-tensor layout penalty, compile
  time, the cost of each feature (EMA, clipping), and the environment of each run;
* before / after (with ``--before``): each case's step time after / before, those
  slower than ``--threshold`` flagged as regressions.

Exit status 0, or 2 on a usage error (a file that is missing or not what it should be,
named in the message).
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

from optcheck.conformance import report as rep

from . import bench as B
from .document import Cell, Chart, Details, Document, Heading, Para, Table, to_html, to_markdown

CONFORMANCE_SCHEMA = "optcheck.conformance/1"
STATUSES = ("pass", "deviation", "error", "unsupported")
#: Default: a case more than 10 % slower after than before is a regression.
THRESHOLD = 1.10


class ReportError(ValueError):
    """An input the report cannot use; the message names the file and what is wrong."""


def configure_parser(parser) -> None:
    from optcheck.cli import number  # the numeric options' one validator

    parser.add_argument("--conformance", nargs="+", type=Path, default=[], metavar="FILE",
                        help="conformance.json file(s) written by optcheck verify")  # fmt: skip
    parser.add_argument("--bench", nargs="+", type=Path, default=[], metavar="FILE",
                        help="benchmark results: pytest-benchmark JSON of benchmarks/ "
                        "(--benchmark-json) or --bench-records JSON lines")  # fmt: skip
    parser.add_argument("--before", nargs="+", type=Path, default=[], metavar="FILE",
                        help="benchmark results of an earlier run to compare --bench with")
    parser.add_argument("--threshold", type=number(float), default=THRESHOLD,
                        help="after/before step-time ratio above which a case is a "
                        f"regression (default {THRESHOLD})")  # fmt: skip
    parser.add_argument("--title", default="optcheck report")
    parser.add_argument("--out", type=Path, required=True, help="directory for the report")
    parser.set_defaults(handler=_command)


def _command(args, parser) -> int:
    if not args.conformance and not args.bench:
        return _usage(parser, "give --conformance and/or --bench files")
    if args.before and not args.bench:
        return _usage(parser, "--before needs --bench (the run to compare with it)")
    if not args.threshold > 1:
        return _usage(parser, f"--threshold must be greater than 1; got {args.threshold}")
    if importlib.util.find_spec("matplotlib") is None:
        return _usage(parser, "the report's charts need matplotlib: pip install 'optcheck[report]'")
    try:
        _check_out(args.out)
        paths = write(args.out, conformance=args.conformance, bench=args.bench,
                      before=args.before, threshold=args.threshold, title=args.title)  # fmt: skip
    except (ReportError, B.BenchFileError) as exc:
        return _usage(parser, str(exc))
    except OSError as exc:  # the folder went away or filled up while writing
        return _usage(parser, f"cannot write the report to {args.out}: {exc.strerror or exc}")
    print(f"report: {paths['html']} and {paths['md']}")
    return 0


def _check_out(out: Path) -> None:
    """Raise ReportError when ``out`` cannot be the report's folder (before any work)."""
    if out.exists() and not out.is_dir():
        raise ReportError(f"--out {out} is a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"cannot create --out {out}: {exc.strerror or exc}") from None
    for name in ("report.html", "report.md"):
        if (out / name).is_dir():
            raise ReportError(f"cannot write {out / name}: it is a folder")


def _usage(parser, message: str) -> int:
    parser.print_usage(sys.stderr)
    print(f"optcheck report: error: {message}", file=sys.stderr)
    return 2


# -- inputs ------------------------------------------------------------------------------


def load_conformance(paths) -> list[dict]:
    """Every adapter entry of the reports, with its report's run settings; one entry
    per (profile, adapter): the same pair in two files is an error."""
    entries, seen = [], {}
    for path in paths:
        try:
            report = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ReportError(f"cannot read conformance report {path}: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise ReportError(f"{path} is not JSON ({exc})") from None
        if not isinstance(report, dict) or report.get("schema") != CONFORMANCE_SCHEMA:
            raise ReportError(f"{path} is not a conformance report (schema "
                              f"{CONFORMANCE_SCHEMA!r} expected)")  # fmt: skip
        check_conformance(report, path)
        for adapter in report["adapters"]:
            pair = (report["profile"], adapter["name"])
            if pair in seen:
                raise ReportError(f"adapter {pair[1]!r} in profile {pair[0]!r} is in both "
                                  f"{seen[pair]} and {path}")  # fmt: skip
            seen[pair] = path
            entries.append({
                **adapter, "profile": report["profile"], "level": report.get("level"),
                "seed": report.get("seed"), "mode": report.get("mode"),
                "max_examples": report.get("max_examples"), "created": report.get("created"),
                "path": str(path), "run_incomplete": report.get("incomplete"),
            })  # fmt: skip
    return entries


#: The fields the page reads: name -> type; a trailing "?" marks an optional one (absent
#: or null). A report missing one, or holding the wrong type, is named with the field.
_REPORT_FIELDS = {"profile": str, "adapters": list, "incomplete?": dict}
_ADAPTER_FIELDS = {"name": str, "available": bool, "summary": dict, "cases": list,
                   "version?": str, "reason?": str, "incomplete?": dict}  # fmt: skip
_SUMMARY_FIELDS = {"cases": int, **{f"{s}?": int for s in STATUSES}}
_CASE_FIELDS = {"id": str, "kind": str, "status": str, "optimizer": str, "feature": str,
                "dtype": str, "diagnosis?": dict, "baseline?": dict, "first_divergence?": dict,
                "message?": str, "reason?": str, "traceback?": str, "repro?": str}  # fmt: skip


def _fields(obj, spec: dict, where: str, path) -> None:
    for name, kind in spec.items():
        key, optional = name.rstrip("?"), name.endswith("?")
        value = obj.get(key)
        field = f"{where}.{key}" if where else key
        if value is None:
            if optional:
                continue
            raise ReportError(f"{path}: field {field} is "
                              f"{'null' if key in obj else 'missing'}")  # fmt: skip
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ReportError(f"{path}: field {field} is {type(value).__name__}, not "
                              f"{kind.__name__}")  # fmt: skip


def check_conformance(report: dict, path) -> None:
    """Raise :class:`ReportError` naming the first field of ``report`` (read from
    ``path``) that the page needs and cannot use: missing, null or of the wrong type."""
    _fields(report, _REPORT_FIELDS, "", path)
    for i, adapter in enumerate(report["adapters"]):
        where = f"adapters[{i}]"
        if not isinstance(adapter, dict):
            raise ReportError(f"{path}: field {where} is not an object")
        _fields(adapter, _ADAPTER_FIELDS, where, path)
        _fields(adapter["summary"], _SUMMARY_FIELDS, f"{where}.summary", path)
        for j, case in enumerate(adapter["cases"]):
            at = f"{where}.cases[{j}]"
            if not isinstance(case, dict):
                raise ReportError(f"{path}: field {at} is not an object")
            _fields(case, _CASE_FIELDS, at, path)
            if case["status"] not in STATUSES:
                raise ReportError(f"{path}: field {at}.status is {case['status']!r}, not one "
                                  f"of {', '.join(STATUSES)}")  # fmt: skip
            if case["status"] == "deviation":
                _fields(case, {"first_divergence": dict}, at, path)
            for key, inner in (("diagnosis", "verdict"), ("baseline", "reason")):
                if case.get(key) is not None:
                    _fields(case[key], {inner: str}, f"{at}.{key}", path)


# -- the report --------------------------------------------------------------------------


def build(conformance: list[dict], runs: list[B.Run], before: list[B.Run], threshold: float,
          title: str = "optcheck report") -> Document:  # fmt: skip
    doc = Document(title)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    doc.add(Heading(1, title), Para(f"Written {stamp} by `optcheck report`."))
    if conformance:
        _conformance(doc, conformance)
    if runs:
        _performance(doc, runs)
    if before:
        _comparison(doc, before, runs, threshold)
    return doc


def write(out: Path, *, conformance=(), bench=(), before=(), threshold=THRESHOLD,
          title="optcheck report") -> dict[str, Path]:  # fmt: skip
    entries = load_conformance(conformance)
    runs = [B.load(p) for p in bench]
    before_runs = [B.load(p) for p in before]
    doc = build(entries, runs, before_runs, threshold, title)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.html").write_text(to_html(doc), encoding="utf-8")
    text, files = to_markdown(doc)
    for rel, content in files.items():
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")
    (out / "report.md").write_text(text, encoding="utf-8")
    return {"html": out / "report.html", "md": out / "report.md"}


# -- conformance -------------------------------------------------------------------------


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f} %"


def conforming_share(summary: dict) -> float | None:
    """Share of the cases the adapter supports that conform (None: supports none)."""
    supported = summary["cases"] - summary.get("unsupported", 0)
    return summary.get("pass", 0) / supported if supported else None


def file_part(text: str) -> str:
    """``text`` as one portable file-name component."""
    return re.sub(r"[^\w.-]", "_", text)


def _slug(*parts: str) -> str:
    return "-".join("".join(ch if ch.isalnum() else "_" for ch in p) for p in parts)


def install_command(entries: list[dict]) -> str:
    """One ``pip install`` for every unavailable adapter whose reason names one."""
    extras, others = set(), set()
    for e in entries:
        for found in re.finditer(r"pip install ([^)]*)", e.get("reason") or ""):
            for token in (t.strip("'\"") for t in found.group(1).split()):
                extra = re.fullmatch(r"optcheck\[([\w,-]+)\]", token)
                if extra:
                    extras.update(extra.group(1).split(","))
                else:
                    others.add(token)
    parts = ([f"'optcheck[{','.join(sorted(extras))}]'"] if extras else []) + sorted(others)
    return "pip install " + " ".join(parts) if parts else ""


def _diagnoses(cases: list[dict]) -> str:
    """``variant ×n`` for a list of deviating and erring cases, most frequent first."""
    counts: dict[str, int] = {}
    for c in cases:
        key = ("error" if c["status"] == "error"
               else (c.get("diagnosis") or {}).get("variant") or "unexplained")  # fmt: skip
        counts[key] = counts.get(key, 0) + 1
    return "; ".join(f"{k} ×{n}" for k, n in sorted(counts.items(), key=lambda kv: -kv[1]))


def _found(doc: Document, available: list[dict], missing: list[dict]) -> None:
    """The first screen: which adapters deviate and why, which conform, what is missing."""
    doc.add(Heading(2, "What was found", "found"))
    bad = [e for e in available if e["summary"].get("deviation") or e["summary"].get("error")]
    if bad:
        doc.add(Table(["adapter", "profile", "deviations", "errors", "diagnoses"],
                      [[Cell(e["name"], href=f"#{_slug('conf', e['profile'], e['name'])}"),
                        e["profile"], str(e["summary"].get("deviation", 0)),
                        str(e["summary"].get("error", 0)),
                        _diagnoses([c for c in e["cases"]
                                    if c["status"] in ("deviation", "error")])]
                       for e in bad],
                      anchor="found-deviations",
                      caption="Adapters with cases that do not conform, and the known "
                      "variant each deviation matches (conformance/diagnosis.py)."))  # fmt: skip
    good = [e for e in available if e not in bad and conforming_share(e["summary"])]
    if good:
        doc.add(Para("Every supported case conforms: " + ", ".join(
            f"{e['name']} ({e['profile']})" for e in good) + "."))  # fmt: skip
    if not bad and not good:
        doc.add(Para("No adapter ran a supported case."))
    if missing:
        names = list(dict.fromkeys(e["name"] for e in missing))  # one per adapter, not profile
        command = install_command(missing)
        doc.add(Para(f"Not installed here ({len(names)} adapters): {', '.join(names)}."
                     + (f" Install: `{command}`." if command else "")))


def _conformance(doc: Document, entries: list[dict]) -> None:
    # Not installed: one line with the install command; unavailable for another reason
    # (a broken adapter, a Keras backend clash): a row and a section, as any adapter.
    missing = [e for e in entries
               if not e["available"] and "not installed" in (e.get("reason") or "")]
    entries = [e for e in entries if e not in missing]
    _found(doc, [e for e in entries if e["available"]], missing)
    doc.add(Heading(2, "Conformance", "conformance"))
    doc.add(Para("Each case runs one optimizer with one feature in one dtype (or one "
                 "metamorphic property, golden table or seed-page example) through the "
                 "adapter and the golden reference, step by step, state included. "
                 "Conforming share = pass / (cases − unsupported)."))  # fmt: skip
    rows = []
    for e in entries:
        s = e["summary"]
        rows.append([
            e["profile"], Cell(e["name"], href=f"#{_slug('conf', e['profile'], e['name'])}"),
            e.get("version") or ("not available: " + (e.get("reason") or "")
                                 if not e["available"] else ""),
            str(s["cases"]), str(s.get("pass", 0)), str(s.get("deviation", 0)),
            str(s.get("error", 0)), str(s.get("unsupported", 0)),
            Cell(_pct(conforming_share(s)), _share_class(s)),
            f"{e.get('level')} · seed {e.get('seed')} · {e.get('mode')}"
            + (f" · {e['max_examples']} example{'s' if e['max_examples'] != 1 else ''}"
               if e.get("max_examples") else "")
            + (f" · interrupted ({e['run_incomplete'].get('signal')})"
               if e.get("run_incomplete") else ""),
        ])  # fmt: skip
    doc.add(Table(["profile", "adapter", "version", "cases", "pass", "deviation", "error",
                   "unsupported", "conforming", "run"], rows, anchor="conformance-summary"))
    stopped = {e["path"]: e["run_incomplete"] for e in entries if e.get("run_incomplete")}
    for path, incomplete in stopped.items():
        doc.add(Para(f"`{path}`: {rep.incomplete_text(incomplete)}"))
    from . import charts

    bars = [{"label": f"{e['name']} ({e['profile']})", "summary": e["summary"]} for e in entries]
    doc.add(Chart("conformance", charts.conformance_bars(bars),
                  "Cases by outcome, per adapter and profile."))  # fmt: skip
    for e in entries:
        _adapter_section(doc, e)


def _share_class(summary: dict) -> str:
    share = conforming_share(summary)
    if share is None:
        return "unsupported"
    if summary.get("error"):
        return "error"
    return "pass" if share == 1 else "deviation"


def _feature_order(cases: list[dict]) -> list[str]:
    """Property features in the catalogue's order, then metamorphic properties, then the
    golden tables; anything unknown in order of appearance."""
    try:
        from optcheck.conformance.features import CATALOGUE

        known = list(CATALOGUE)
    except ImportError:  # pragma: no cover - the report ships with the suite
        known = []
    seen = list(dict.fromkeys(_column(c) for c in cases if c["kind"] != "seed"))
    ranked = [f for f in known if f in seen]
    metamorphic = [f for f in seen if f.startswith("metamorphic:")]
    last = [f for f in seen if f == "golden tables"]
    others = [f for f in seen if f not in ranked + metamorphic + last]
    return ranked + others + metamorphic + last


def _column(case: dict) -> str:
    return "golden tables" if case["kind"] == "golden" else case["feature"]


def _worst(cases: list[dict]) -> str:
    statuses = {c["status"] for c in cases}
    for status in ("error", "deviation", "pass"):
        if status in statuses:
            return status
    return "unsupported"


def _case_anchor(e: dict, case: dict) -> str:
    return _slug("case", e["profile"], e["name"], case["id"])


def _adapter_section(doc: Document, e: dict) -> None:
    profile, name = e["profile"], e["name"]
    doc.add(Heading(3, f"{name} — {profile}", _slug("conf", profile, name)))
    if not e["available"]:
        doc.add(Para(f"Not available on this machine: {e.get('reason') or 'no reason given'}. "
                     "Every case is unsupported."))  # fmt: skip
        return
    cases = e["cases"]
    s = e["summary"]
    doc.add(Para(f"{e.get('version') or ''} — {s.get('pass', 0)} of {s['cases']} cases conform "
                 f"({_pct(conforming_share(s))} of those supported); report `{e['path']}`."))
    if e.get("incomplete"):
        doc.add(Para(f"Interrupted: {e['incomplete'].get('cases_done')} of "
                     f"{e['incomplete'].get('cases_planned')} cases finished."))
    matrix = [c for c in cases if c["kind"] != "seed"]
    columns = _feature_order(matrix)
    optimizers = list(dict.fromkeys(c["optimizer"] for c in matrix))
    grid: dict[tuple[str, str], list[dict]] = {}
    for c in matrix:
        grid.setdefault((c["optimizer"], _column(c)), []).append(c)
    rows = []
    for opt in optimizers:
        row = [Cell(opt)]
        for col in columns:
            row.append(_matrix_cell(e, grid.get((opt, col), [])))
        rows.append(row)
    short = [c.removeprefix("metamorphic:") + (" (m)" if c.startswith("metamorphic:") else "")
             for c in columns]  # fmt: skip
    doc.add(Table(["optimizer", *short], rows, anchor=_slug("matrix", profile, name),
                  caption="Conforming dtypes / cases with the feature; ✓ all conform, ✗ a "
                  "deviation, ! an error, – unsupported; (m) a metamorphic property."))
    seed = [c for c in cases if c["kind"] == "seed"]
    if seed:
        doc.add(Table(["seed-page example", "outcome"],
                      [[c["feature"].removeprefix("seed:"), _matrix_cell(e, [c])] for c in seed],
                      caption="The runnable examples of the documentation page."))  # fmt: skip
    bad = [c for c in cases if c["status"] in ("deviation", "error")]
    if not bad:
        return
    doc.add(Table(["case", "status", "diagnosis", "first divergence / error"],
                  [[Cell(c["id"], href=f"#{_case_anchor(e, c)}"), Cell(c["status"], c["status"]),
                    rep.diagnosis_text(c), rep.case_outcome(c)] for c in bad],
                  caption=f"Cases of {name} ({profile}) that do not conform."))  # fmt: skip
    for c in bad:
        text = c.get("repro") or c.get("traceback") or c.get("message") or ""
        kind, ext = ("repro", "py") if c.get("repro") else ("traceback", "txt")
        doc.add(Details(f"{c['id']} — {kind}", text, anchor=_case_anchor(e, c),
                        file=f"repro/{profile}/{file_part(name)}/{file_part(c['id'])}.{ext}"))


def _matrix_cell(e: dict, cases: list[dict]) -> Cell:
    if not cases:
        return Cell("")
    worst = _worst(cases)
    supported = [c for c in cases if c["status"] != "unsupported"]
    ok = sum(c["status"] == "pass" for c in supported)
    mark = {"pass": "✓", "deviation": "✗", "error": "!", "unsupported": "–"}[worst]
    text = mark if worst in ("pass", "unsupported") else f"{mark} {ok}/{len(supported)}"
    title = "; ".join(f"{c['dtype']}: {c['status']}" + (
        f" ({c['diagnosis']['verdict']})" if isinstance(c.get("diagnosis"), dict) else "")
        for c in cases)  # fmt: skip
    first = next((c for c in cases if c["status"] in ("error", "deviation")), None)
    return Cell(text, worst, f"#{_case_anchor(e, first)}" if first else "", title)


# -- performance -------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    if seconds != seconds:  # NaN is shown, never hidden
        return "NaN"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def _performance(doc: Document, runs: list[B.Run]) -> None:
    from . import charts

    records = B.merge(runs)
    doc.add(Heading(2, "Performance", "performance"))
    doc.add(Para("Step time is the fastest round of a case's steady state (pytest-benchmark's "
                 "min). GB/s = the byte model's bytes per step / step time; the roof is the "
                 "in-place streaming bandwidth measured in the same session "
                 "(benchmarks/README.md)."))  # fmt: skip
    _environment(doc, runs)
    if not records:
        doc.add(Para("The benchmark files hold no step record."))
        return
    impls = B.implementations(records)
    for device in B.devices(records):
        dev = [r for r in records if r["device"] == device]
        roof = B.roof_gbps(dev, device)
        doc.add(Heading(3, f"Step time against N — {device}", _slug("scaling", device)))
        panels = []
        for opt in B.optimizers(dev):
            series = B.scaling(dev, device, opt)
            if not series:
                continue
            per_param = B.bytes_per_param(dev, opt)
            ns = sorted({n for pts in series.values() for n, _ in pts})
            line = [(n, per_param * n / (roof * 1e9)) for n in ns] if roof and per_param else []
            panels.append({"title": f"{opt} (plain, 1 tensor)", "series": series, "roof": line})
        if panels:
            doc.add(Chart(f"scaling-{device}", charts.scaling_grid(panels),
                          f"Step time against N on {device}, log–log; dashed: the roofline, "
                          "bytes per step / the session roof"
                          + (f" ({roof:.1f} GB/s)." if roof else ".")))  # fmt: skip
        _bandwidth(doc, dev, device, impls, roof)
        _fastest(doc, dev, device, impls)
        _layouts(doc, dev, device)
        _compile(doc, dev, device, impls)
        _features(doc, dev, device)


def _environment(doc: Document, runs: list[B.Run]) -> None:
    rows = []
    for env in B.environment(runs):
        devices = "; ".join(f"{d}: {n}" for d, n in env["devices"].items())
        roofs = "; ".join(f"{r['device']}: {r['roof_gbps']:.1f} GB/s ({r['roof_method']})"
                          for r in env["roofs"] if r.get("roof_gbps"))  # fmt: skip
        versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items())
        rows.append([env["path"], env["datetime"] or "", devices or env["cpu"],
                     env["python"], versions, roofs, str(env["cases"])])  # fmt: skip
    doc.add(Table(["run", "when", "devices", "python", "versions", "roof", "cases"], rows,
                  anchor="environment", caption="Where each benchmark run ran."))  # fmt: skip


def _bandwidth(doc, dev, device, impls, roof) -> None:
    from . import charts

    plain = [r for r in dev if r["feature"] == "plain" and r["layout"] == 1]
    if not plain:
        return
    doc.add(Heading(3, f"Bandwidth — {device}", _slug("bandwidth", device)))
    rows = []
    by = {(r["optimizer"], r["N"], r["implementation"]): r for r in plain}
    present = [i for i in impls if any(r["implementation"] == i for r in plain)]
    for opt in B.optimizers(plain):
        for n in sorted({r["N"] for r in plain if r["optimizer"] == opt}):
            row = [opt, B.n_label(n)]
            for impl in present:
                r = by.get((opt, n, impl))
                row.append("" if r is None else
                           f"{r['gbps']:.2f} GB/s · {_pct(r.get('roof_fraction'))}")  # fmt: skip
            rows.append(row)
    doc.add(Table(["optimizer", "N", *present], rows, anchor=_slug("gbps", device),
                  caption="Effective bandwidth and fraction of the roof, plain, one "
                  "tensor."))  # fmt: skip
    adam = {impl: sorted((r["N"], r["gbps"]) for r in plain
                         if r["optimizer"] == "Adam" and r["implementation"] == impl)
            for impl in present}  # fmt: skip
    adam = {k: v for k, v in adam.items() if v}
    if adam:
        doc.add(Chart(f"gbps-{device}", charts.lines(
            adam, xlabel="N (parameters)", ylabel="GB/s", title=f"Adam, one tensor, {device}",
            hline=(roof, f"roof {roof:.1f} GB/s") if roof else None),
            "Adam's effective bandwidth against N; dashed: the session roof."))  # fmt: skip


def _fastest(doc, dev, device, impls) -> None:
    from . import charts

    rows_data = [r for r in B.fastest_ratios(dev, device) if len(r["ratios"]) > 1]
    if not rows_data:
        return
    doc.add(Heading(3, f"Ratio to the fastest — {device}", _slug("fastest", device)))
    present = [i for i in impls if any(i in r["ratios"] for r in rows_data)]
    rows = []
    for r in rows_data:
        row = [r["optimizer"], r["feature"], B.n_label(r["N"]), str(r["layout"])]
        for impl in present:
            x = r["ratios"].get(impl)
            row.append("" if x is None else
                       Cell(f"{x:.2f}×", "best" if impl == r["fastest"] else ""))  # fmt: skip
        rows.append(row)
    doc.add(Table(["optimizer", "feature", "N", "tensors", *present], rows,
                  anchor=_slug("ratios", device),
                  caption="Step time over the fastest implementation's for the same problem "
                  "(bold: the fastest)."))  # fmt: skip
    adam = {}
    for r in rows_data:
        if (r["optimizer"], r["feature"], r["layout"]) == ("Adam", "plain", 1):
            for impl, x in r["ratios"].items():
                adam.setdefault(impl, []).append((r["N"], x))
    if adam:
        doc.add(Chart(f"fastest-{device}", charts.lines(
            {k: sorted(v) for k, v in adam.items()}, xlabel="N (parameters)",
            ylabel="step / fastest step", logy=True, title=f"Adam, one tensor, {device}",
            hline=(1.0, "fastest")),
            "Adam: each implementation's step over the fastest one's at each N."))  # fmt: skip


def _ratio_rows(rows_data: list[dict], field: str, columns: list, layout: bool) -> list:
    """Table rows: implementation, optimizer, N (and tensors), then ``row[field][c]`` as
    a ratio for each column ``c``."""
    return [[r["implementation"], r["optimizer"], B.n_label(r["N"]),
             *([str(r["layout"])] if layout else []),
             *(f"{r[field][c]:.2f}×" if c in r[field] else "" for c in columns)]
            for r in rows_data]  # fmt: skip


def _layouts(doc, dev, device) -> None:
    from . import charts

    rows_data = B.layout_penalty(dev, device)
    if not rows_data:
        return
    doc.add(Heading(3, f"Many-tensor layout penalty — {device}", _slug("layout", device)))
    layouts = sorted({t for r in rows_data for t in r["penalty"]})
    rows = _ratio_rows(rows_data, "penalty", layouts, layout=False)
    doc.add(Table(["implementation", "optimizer", "N", *(f"{t} tensors" for t in layouts)],
                  rows, anchor=_slug("layouts", device),
                  caption="Step time with N split into T tensors over the step with one "
                  "tensor (plain)."))  # fmt: skip
    series = {f"{r['implementation']} {r['optimizer']} N={B.n_label(r['N'])}":
              sorted(r["penalty"].items()) for r in rows_data}  # fmt: skip
    doc.add(Chart(f"layout-{device}", charts.lines(
        series, xlabel="tensors", ylabel="step / one-tensor step", logy=True,
        hline=(1.0, "one tensor")),
        "The cost of splitting the same N parameters into many tensors."))  # fmt: skip


def _compile(doc, dev, device, impls) -> None:
    from . import charts

    timed = [r for r in dev if r.get("compile_s") is not None]
    if not timed:
        return
    doc.add(Heading(3, f"Compile time — {device}", _slug("compile", device)))
    doc.add(Para("The first step, timed apart: tracing, compilation and that step (the "
                 "golden and eager peers have no compilation, their first step is shown)."))
    groups: dict[tuple, dict[str, float]] = {}
    for r in timed:
        groups.setdefault((r["optimizer"], r["feature"], r["N"], r["layout"]), {})[
            r["implementation"]] = r["compile_s"]  # fmt: skip
    present = [i for i in impls if any(i in g for g in groups.values())]
    keys = sorted(groups, key=lambda k: (B._opt_rank(k[0]), k[1], k[2], k[3]))
    rows = [[k[0], k[1], B.n_label(k[2]), str(k[3]),
             *(_ms(groups[k][i]) if i in groups[k] else "" for i in present)] for k in keys]
    doc.add(Table(["optimizer", "feature", "N", "tensors", *present], rows,
                  anchor=_slug("compile-table", device)))  # fmt: skip
    adam = [k for k in keys if k[0] == "Adam" and k[1] == "plain"]
    if adam:
        labels = [f"N={B.n_label(k[2])} T={k[3]}" for k in adam]
        series = {i: [groups[k].get(i) for k in adam] for i in present}
        doc.add(Chart(f"compile-{device}", charts.grouped_bars(
            labels, series, ylabel="first step (s)", logy=True),
            "Adam: the first step (compilation included) per problem."))  # fmt: skip


def _features(doc, dev, device) -> None:
    from . import charts

    rows_data = B.feature_cost(dev, device)
    if not rows_data:
        return
    doc.add(Heading(3, f"Cost of features — {device}", _slug("features", device)))
    features = sorted({f for r in rows_data for f in r["cost"]})
    rows = _ratio_rows(rows_data, "cost", features, layout=True)
    doc.add(Table(["implementation", "optimizer", "N", "tensors", *features], rows,
                  anchor=_slug("feature-table", device),
                  caption="Step time with the feature over the plain step (ema: use_ema; "
                  "clipnorm: global_clipnorm)."))  # fmt: skip
    adam = [r for r in rows_data if r["optimizer"] == "Adam"]
    if adam:
        n = max(r["N"] for r in adam)
        adam = [r for r in adam if r["N"] == n and r["layout"] == 1] or [
            r for r in adam if r["N"] == n]
        order = B.implementations(adam)
        adam.sort(key=lambda r: order.index(r["implementation"]))
        series = {r["implementation"]: [r["cost"].get(f) for f in features] for r in adam}
        doc.add(Chart(f"features-{device}", charts.grouped_bars(
            features, series, ylabel="step / plain step", hline=(1.0, "plain")),
            f"Adam at N={B.n_label(n)}: the cost of each feature."))  # fmt: skip


# -- before / after ----------------------------------------------------------------------


def _comparison(doc: Document, before: list[B.Run], after: list[B.Run], threshold: float):
    from . import charts

    changes, only_before, only_after = B.compare(B.merge(before), B.merge(after))
    verdicts = [c.verdict(threshold) for c in changes]
    doc.add(Heading(2, "Before / after", "comparison"))
    doc.add(Para(
        f"Before: {', '.join(r.path for r in before)}; after: "
        f"{', '.join(r.path for r in after)}. {len(changes)} cases in both: "
        f"{verdicts.count('regression')} regressions (after / before > {threshold:g}), "
        f"{verdicts.count('improvement')} improvements (< {1 / threshold:.3g}), "
        f"{verdicts.count('same')} within the threshold; {len(only_before)} only before, "
        f"{len(only_after)} only after. Ratios of the min step; the medians' ratio is shown "
        "beside it to judge the noise."))  # fmt: skip
    rows = []
    for c, v in zip(changes, verdicts, strict=True):
        med = c.ratio_median
        rows.append([B.case_label(c.key), _ms(c.before["step_s"]), _ms(c.after["step_s"]),
                     Cell(f"{c.ratio:.3f}×", v if v != "same" else ""),
                     "" if med is None else f"{med:.3f}×", Cell(v, v if v != "same" else "")])
    doc.add(Table(["case", "before", "after", "after / before", "median ratio", "verdict"],
                  rows, anchor="comparison-table"))  # fmt: skip
    if changes:
        shown = changes[:40] if len(changes) > 40 else changes
        doc.add(Chart("comparison", charts.change_bars(
            [B.case_label(c.key) for c in shown], [c.ratio for c in shown], threshold),
            "After / before step time per case (log); red: regression, green: improvement"
            + (f"; the 40 slowest of {len(changes)}." if len(changes) > 40 else ".")))
    if only_before or only_after:
        doc.add(Table(["case", "in"],
                      [[B.case_label(k), "before only"] for k in only_before]
                      + [[B.case_label(k), "after only"] for k in only_after],
                      caption="Cases measured in one run only."))  # fmt: skip
