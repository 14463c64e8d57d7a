"""``optcheck verify``: run the fixed golden cases through adapters and write reports.

Reports: ``conformance.json`` (schema ``optcheck.conformance/1``) and
``conformance.md``, written atomically (temporary file, then rename).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

from .goldens import GOLDEN_CASES, run_case

SCHEMA = "optcheck.conformance/1"


def known_adapters() -> dict:
    from optcheck.adapters import numpy_reference

    return {numpy_reference.NAME: numpy_reference}


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def verify(adapter_names, profile: str, out_dir: Path, progress=None) -> dict:
    """Run every golden case of ``profile`` through each adapter; return the report."""
    adapters = known_adapters()
    cases = [c for c in GOLDEN_CASES if profile in c.profiles]
    report = {
        "schema": SCHEMA,
        "profile": profile,
        "level": "golden",
        "optcheck_version": _version(),
        "adapters": [],
    }
    for name in adapter_names:
        adapter = adapters[name]
        results = []
        for i, case in enumerate(cases, 1):
            started = time.perf_counter()
            try:
                result = run_case(case, adapter.runner, profile)
            except Exception:  # an adapter failure costs only its own case
                result = {"case": case.id, "optimizer": case.optimizer, "profile": profile,
                          "dtype": case.dtype, "status": "error",
                          "traceback": traceback.format_exc(), "source": case.source}  # fmt: skip
            result.update(adapter=name, feature=case.procedure,
                          seconds=round(time.perf_counter() - started, 4))  # fmt: skip
            results.append(result)
            if progress:
                progress(name, i, len(cases))
        report["adapters"].append({"name": name, "version": adapter.version(), "cases": results})
    out_dir = Path(out_dir)
    text = json.dumps(_json_safe(report), indent=2, allow_nan=False)
    _write_atomic(out_dir / "conformance.json", text + "\n")
    _write_atomic(out_dir / "conformance.md", render_markdown(report))
    return report


def _json_safe(value):
    """Strict JSON: non-finite floats become the strings "nan", "inf", "-inf"."""
    if isinstance(value, float) and value != value:
        return "nan"
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def render_markdown(report: dict) -> str:
    lines = [
        f"# optcheck conformance report ({report['profile']})",
        "",
        f"optcheck {report['optcheck_version']}; schema `{report['schema']}`; "
        f"level `{report['level']}` (the golden tables of the Keras test suites).",
        "",
    ]
    for adapter in report["adapters"]:
        cases = adapter["cases"]
        passed = sum(c["status"] == "pass" for c in cases)
        lines += [
            f"## {adapter['name']} — {passed}/{len(cases)} cases conform",
            "",
            f"Version: {adapter['version']}",
            "",
            "| case | dtype | status | max error | tolerance (rtol, atol) | source |",
            "|---|---|---|---|---|---|",
        ]
        for c in cases:
            tol = c.get("tolerance", {})
            error = f"{float(c['max_error']):.3g}" if "max_error" in c else "—"
            lines.append(
                f"| {c['case']} | {c['dtype']} | {c['status']} | {error} | "
                f"{tol.get('rtol', '—')}, {tol.get('atol', '—')} | {c['source']} |"
            )
        lines.append("")
    return "\n".join(lines)


def _version() -> str:
    from optcheck import __version__

    return __version__


def terminal_progress(name: str, done: int, total: int) -> None:
    if sys.stderr.isatty():
        sys.stderr.write(f"\r{name}: {done}/{total} cases")
        if done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()
