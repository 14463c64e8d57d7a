"""The reports of a run: ``conformance.json``, ``conformance.md`` and ``junit.xml``.

``conformance.json`` (schema ``optcheck.conformance/1``)::

    {"schema": "optcheck.conformance/1", "profile": "keras2", "level": "ci",
     "max_examples": null, "optcheck_version": "0.1.0", "mode": "resync", "ulps": null,
     "seed": 0,
     "created": "2025-…Z", "seconds": 95.2, "python": "3.12.3", "platform": "…",
     "summary": {"cases": 812, "pass": 790, "deviation": 0, "error": 0, "unsupported": 22},
     "adapters": [{"name": "numpy", "target": "optcheck.adapters.numpy_reference:factory",
                   "version": "…", "available": true, "reason": "",
                   "summary": {…}, "seconds": 95.0,
                   "cases": [{"id", "adapter", "optimizer", "feature", "dtype", "profile",
                              "kind", "status", "tolerance", "examples", "seconds", "seed",
                              # where the seconds went (conformance/timing.py): "timing"
                              #   ({stage: {"adapter", "golden", "suite"}}, stages
                              #   "examples", "shrink", "diagnosis" that took time)
                              # deviation: "first_divergence" ({step, quantity,
                              #   index, expected, actual, error, tolerance}; for a
                              #   metamorphic case {property, message}), "scenario",
                              #   "repro", "shrink_steps", "shrink_truncated",
                              #   "diagnosis" ({verdict, variant, summary, source,
                              #   tried, errors, seconds}: conformance/diagnosis.py)
                              # with --baseline, an accepted deviation or error:
                              #   "baseline" ({reason, link, entry})
                              # error: "message", "traceback" (and "repro" when a
                              #        scenario was running)
                              # unsupported: "reason"
                              }]}],
     # with --baseline: "baseline": {files, new, accepted, stale, unused,
     #                               unknown_adapters} (conformance/baseline.py)
     # a run stopped by SIGINT or SIGTERM (exit status 3): "incomplete": {"signal",
     #   "cases_done", "cases_planned" (of the adapters planned before the signal),
     #   "adapters_not_run"}; the adapter it stopped in has "incomplete": {"cases_done",
     #   "cases_planned"} and only its finished cases
    }

Non-finite floats are written as the strings "nan", "inf", "-inf" (strict JSON).
Every file is written atomically (a temporary file in the same folder, then
``os.replace``), so a reader never sees half a report.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import tempfile
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

from .suite import STATUSES

SCHEMA = "optcheck.conformance/1"


def write_atomic(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would make reports private
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def json_safe(value):
    """Strict JSON: non-finite floats become the strings "nan", "inf", "-inf"."""
    if isinstance(value, float) and value != value:
        return "nan"
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def summarize(cases: list[dict]) -> dict:
    counts = {"cases": len(cases), **dict.fromkeys(STATUSES, 0)}
    for case in cases:
        counts[case["status"]] = counts.get(case["status"], 0) + 1
    return counts


def adapter_entry(plan, cases: list[dict], seconds: float) -> dict:
    return {
        "name": plan.name,
        "target": plan.target,
        "version": plan.version,
        "available": plan.available,
        "reason": plan.reason,
        "summary": summarize(cases),
        "seconds": round(seconds, 3),
        "cases": cases,
    }


def build(*, ctx, adapters: list[dict], seconds: float, version: str) -> dict:
    every = [c for a in adapters for c in a["cases"]]
    return {
        "schema": SCHEMA,
        "profile": ctx.profile,
        "level": ctx.level,
        "max_examples": ctx.max_examples,
        "shrink": ctx.shrink,
        "selection": {"optimizers": ctx.optimizers, "features": ctx.features,
                      "dtypes": ctx.dtypes},
        "optcheck_version": version,
        "mode": ctx.mode,
        "ulps": ctx.ulps,
        "seed": ctx.seed,
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "seconds": round(seconds, 3),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "summary": summarize(every),
        "adapters": adapters,
    }


def failed(report: dict) -> bool:
    """Whether any case deviates or errs (unsupported does not fail a run)."""
    return any(report["summary"][s] for s in ("deviation", "error"))


def write_all(report: dict, out_dir: Path) -> dict[str, Path]:
    out_dir = Path(out_dir)
    paths = {
        "json": out_dir / "conformance.json",
        "md": out_dir / "conformance.md",
        "junit": out_dir / "junit.xml",
    }
    write_atomic(paths["json"], to_json(report))
    write_atomic(paths["md"], to_markdown(report))
    write_atomic(paths["junit"], to_junit(report))
    return paths


# -- JSON ------------------------------------------------------------------------------
def to_json(report: dict) -> str:
    return json.dumps(json_safe(report), indent=1, allow_nan=False) + "\n"


# -- Markdown --------------------------------------------------------------------------
def divergence_text(d: dict) -> str:
    """One line for a first divergence (a metamorphic one carries its own message)."""
    if "message" in d:
        return str(d["message"])
    index = d.get("index") or []
    quantity = d.get("quantity", "?")
    where = f"{quantity}{list(index)}" if index else quantity
    return (f"step {d.get('step')}, {where}: expected {_num(d.get('expected'))}, got "
            f"{_num(d.get('actual'))} (error {_num(d.get('error'))} > tolerance "
            f"{_num(d.get('tolerance'))})")  # fmt: skip


def tolerance_text(t: dict | None) -> str:
    """One line for a case's tolerance description (whatever keys the policy reports)."""
    if not t:
        return "—"
    if t.get("mode") == "golden-table":
        return f"golden table rtol {t.get('rtol')}, atol {t.get('atol')}"
    if t.get("mode") == "ulp":
        return f"{_num(t.get('ulps'))} ulp ({t.get('dtype')})"
    labels = {"unit_roundoff": "u = ", "measured_factor": "measured ×"}
    parts = [f"{labels.get(k, k + ' ')}{_num(v)}"
             for k, v in t.items() if k not in ("mode", "dtype", "formula")]  # fmt: skip
    return f"{t.get('mode')}, {t.get('dtype')}: " + ", ".join(parts)


def _num(x) -> str:
    if isinstance(x, str):
        return x
    if isinstance(x, float):
        return f"{x:.9g}"
    return str(x)


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def diagnosis_text(case: dict) -> str:
    """The diagnosis of a deviation, and the baseline entry accepting it, in one cell."""
    parts = []
    d = case.get("diagnosis")
    if d:
        parts.append(d["verdict"] + (f": {d['summary']}" if d.get("summary") else ""))
    b = case.get("baseline")
    if b:
        parts.append(f"accepted by baseline: {b['reason']}" + (f" ({b['link']})" if b.get(
            "link") else ""))
    return " · ".join(parts) or "—"


def incomplete_text(incomplete: dict) -> str:
    """One line for the ``incomplete`` marker of an interrupted run."""
    text = (f"Incomplete: the run was interrupted by {incomplete.get('signal')} after "
            f"{incomplete.get('cases_done')} of {incomplete.get('cases_planned')} planned cases")
    if incomplete.get("adapters_not_run"):
        text += f"; not run: {', '.join(map(str, incomplete['adapters_not_run']))}"
    return text + "."


def case_outcome(case: dict) -> str:
    if case["status"] == "deviation":
        return divergence_text(case["first_divergence"])
    if case["status"] == "error":
        return case.get("message") or ""
    if case["status"] == "unsupported":
        return case.get("reason") or ""
    return ""


def to_markdown(report: dict) -> str:
    s = report["summary"]
    lines = [
        f"# optcheck conformance report — profile `{report['profile']}`, level "
        f"`{report['level']}`",
        "",
        f"optcheck {report['optcheck_version']} · schema `{report['schema']}` · comparison "
        f"`{report['mode']}`" + (f" ({report['ulps']:g} ulp)" if report.get("ulps") else "")
        + f" · run seed {report['seed']} · {report['seconds']:.1f} s · {report['created']}",
        "",
        f"**{s['pass']} of {s['cases']} cases conform**; {s['deviation']} deviation(s), "
        f"{s['error']} error(s), {s['unsupported']} unsupported.",
        "",
        *([f"**{incomplete_text(report['incomplete'])}**", ""] if report.get("incomplete")
          else []),
        "| adapter | version | cases | pass | deviation | error | unsupported | seconds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for a in report["adapters"]:
        t = a["summary"]
        lines.append(f"| {_cell(a['name'])} | {_cell(a['version'] or '—')} | {t['cases']} | "
                     f"{t['pass']} | {t['deviation']} | {t['error']} | {t['unsupported']} | "
                     f"{a['seconds']:.1f} |")  # fmt: skip
    for a in report["adapters"]:
        t = a["summary"]
        lines += ["", f"## {a['name']} — {t['pass']}/{t['cases']} cases conform", ""]
        if a.get("incomplete"):
            lines += [f"Interrupted: {a['incomplete']['cases_done']} of "
                      f"{a['incomplete']['cases_planned']} cases finished.", ""]
        if not a["available"]:
            lines += [f"Not available here: {a['reason']}", ""]
        bad = [c for c in a["cases"] if c["status"] in ("deviation", "error")]
        if bad:
            lines += [
                "| case | status | first divergence / error | diagnosis | tolerance | examples "
                "| seed |",
                "|---|---|---|---|---|---|---|",
            ]
            for c in bad:
                lines.append(f"| {_cell(c['id'])} | {c['status']} | {_cell(case_outcome(c))} | "
                             f"{_cell(diagnosis_text(c))} | "
                             f"{_cell(tolerance_text(c.get('tolerance')))} | "
                             f"{c.get('examples', 0)} | {c.get('seed', '')} |")  # fmt: skip
            for c in bad:
                lines += ["", f"### {c['id']} ({c['status']})", ""]
                if c.get("scenario"):
                    lines += [f"Scenario: `{c['scenario']}`", ""]
                d = c.get("diagnosis")
                if d:
                    lines += [f"Diagnosis: **{d['verdict']}**"
                              + (f" — {d['summary']} ({d['source']})" if d.get("summary") else "")
                              + f". Variants tried: {', '.join(d.get('tried') or []) or 'none'}.",
                              ""]  # fmt: skip
                if c["status"] == "error" and c.get("traceback"):
                    lines += ["<details><summary>traceback</summary>", "", "```",
                              c["traceback"].rstrip(), "```", "", "</details>", ""]  # fmt: skip
                if c.get("repro"):
                    lines += ["<details><summary>repro script</summary>", "", "```python",
                              c["repro"].rstrip(), "```", "", "</details>", ""]  # fmt: skip
        elif t["cases"]:
            lines += [f"Every {'finished' if a.get('incomplete') else 'supported'} case "
                      "conforms.", ""]
        unsupported: dict[str, int] = {}
        for c in a["cases"]:
            if c["status"] == "unsupported":
                unsupported[c.get("reason") or "?"] = unsupported.get(c.get("reason") or "?", 0) + 1
        if unsupported:
            lines += ["", "Unsupported (not failures):", "", "| reason | cases |", "|---|---|"]
            lines += [f"| {_cell(r)} | {n} |" for r, n in sorted(unsupported.items())]
    b = report.get("baseline")
    if b:
        lines += ["", "## Baseline", "",
                  f"Files: {', '.join(b['files'])}. {len(b['accepted'])} accepted, "
                  f"**{len(b['new'])} new**, {len(b['stale'])} stale entries.", ""]  # fmt: skip
        lines += [f"- new: {_cell(x)}" for x in b["new"]]
        lines += [f"- stale (selected cases all conform): {_cell(x)}" for x in b["stale"]]
    return "\n".join(lines).rstrip() + "\n"


# -- JUnit XML -------------------------------------------------------------------------
_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml(text) -> str:
    return _XML_BAD.sub("?", str(text))


def to_junit(report: dict) -> str:
    s = report["summary"]
    root = ET.Element("testsuites", {
        "name": f"optcheck conformance ({report['profile']}, {report['level']})",
        "tests": str(s["cases"]), "failures": str(s["deviation"]), "errors": str(s["error"]),
        "skipped": str(s["unsupported"]), "time": f"{report['seconds']:.3f}",
    })  # fmt: skip
    for a in report["adapters"]:
        t = a["summary"]
        suite = ET.SubElement(root, "testsuite", {
            "name": _xml(a["name"]), "tests": str(t["cases"]), "failures": str(t["deviation"]),
            "errors": str(t["error"]), "skipped": str(t["unsupported"]),
            "time": f"{a['seconds']:.3f}", "timestamp": report["created"],
        })  # fmt: skip
        props = ET.SubElement(suite, "properties")
        for key, value in (("version", a["version"]), ("profile", report["profile"]),
                           ("level", report["level"]), ("mode", report["mode"]),
                           ("seed", report["seed"]), ("target", a["target"])):  # fmt: skip
            ET.SubElement(props, "property", {"name": key, "value": _xml(value)})
        if report.get("incomplete"):
            ET.SubElement(props, "property", {"name": "incomplete",
                                              "value": _xml(incomplete_text(
                                                  report["incomplete"]))})  # fmt: skip
        for c in a["cases"]:
            case = ET.SubElement(suite, "testcase", {
                "classname": _xml(f"optcheck.{a['name']}.{c['optimizer']}"),
                "name": _xml(c["id"]), "time": f"{float(c.get('seconds') or 0):.3f}",
            })  # fmt: skip
            if c["status"] == "deviation":
                body = [f"Scenario: {c.get('scenario', '')}",
                        f"Diagnosis: {diagnosis_text(c)}",
                        f"Tolerance: {tolerance_text(c.get('tolerance'))}",
                        f"Run seed: {c.get('seed')}", "", c.get("repro", "")]  # fmt: skip
                el = ET.SubElement(case, "failure", {"type": "deviation",
                                                     "message": _xml(case_outcome(c))})
                el.text = _xml("\n".join(body))
            elif c["status"] == "error":
                el = ET.SubElement(case, "error", {"type": "error",
                                                   "message": _xml(c.get("message", ""))})
                el.text = _xml(c.get("traceback", ""))
            elif c["status"] == "unsupported":
                ET.SubElement(case, "skipped", {"message": _xml(c.get("reason", ""))})
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
