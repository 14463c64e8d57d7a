"""The README's findings table (optcheck.reports.findings)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from optcheck.reports import findings

ROOT = Path(__file__).resolve().parents[1]


def test_readme_table_is_generated_from_the_committed_findings():
    """README.md's block equals the table built from reports/data/findings/: it is never
    edited by hand (regenerate with `nox -s findings` or the module's `readme`)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    records = findings.load_records(ROOT / "reports" / "data" / "findings")
    assert findings.splice(readme, findings.table(records)) == readme
    assert findings.main(["readme", str(ROOT / "reports" / "data" / "findings"), "--readme",
                          str(ROOT / "README.md"), "--check"]) == 0  # fmt: skip


def _report():
    dev = {"id": "Adam-plain-float64", "status": "deviation", "optimizer": "Adam",
           "feature": "plain", "dtype": "float64",
           "first_divergence": {"step": 1, "quantity": "variable v0", "index": [],
                                "expected": 1.0, "actual": 2.0, "error": 1.0,
                                "tolerance": 1e-12},
           "diagnosis": {"verdict": "matches variant adam_epsilon=corrected",
                         "variant": "adam_epsilon=corrected", "summary": "ε after v̂"}}  # fmt: skip
    err = {"id": "SGD-ema-float32", "status": "error", "optimizer": "SGD", "feature": "ema",
           "dtype": "float32", "message": "RuntimeError: boom"}  # fmt: skip
    ok = {"id": "SGD-plain-float32", "status": "pass", "optimizer": "SGD", "feature": "plain",
          "dtype": "float32"}  # fmt: skip
    summary = {"cases": 3, "pass": 1, "deviation": 1, "error": 1, "unsupported": 0}
    return {"profile": "keras2", "level": "ci", "seed": 0, "max_examples": None,
            "adapters": [{"name": "lib", "version": "lib 1.0", "available": True,
                          "summary": summary, "cases": [dev, err, ok]}]}  # fmt: skip


def test_extract_keeps_deviations_errors_and_diagnoses():
    (record,) = findings.extract(_report())
    assert [f["case"] for f in record["findings"]] == ["Adam-plain-float64", "SGD-ema-float32"]
    assert record["findings"][0]["variant"] == "adam_epsilon=corrected"
    assert "expected 1, got 2" in record["findings"][0]["deviation"]
    assert record["findings"][1]["diagnosis"] == "error"


def test_table_rows_group_by_diagnosis():
    text = findings.table(findings.extract(_report()))
    rows = [line for line in text.splitlines() if line.startswith("| lib ")]
    assert len(rows) == 2
    assert any(row.endswith("| matches variant adam_epsilon=corrected |") for row in rows)
    assert "- `adam_epsilon=corrected`: ε after v̂" in text  # the legend
    assert "lib 1.0" in rows[0] and "keras2 1" in rows[0]


def test_readme_command_rewrites_and_checks(tmp_path):
    folder = tmp_path / "f"
    report = tmp_path / "conformance.json"
    report.write_text(json.dumps(_report()))
    assert findings.main(["extract", str(report), "--out", str(folder)]) == 0
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{findings.START}\nold\n{findings.END}\n\nrest\n")
    assert findings.main(["readme", str(folder), "--readme", str(readme), "--check"]) == 1
    assert findings.main(["readme", str(folder), "--readme", str(readme)]) == 0
    assert findings.main(["readme", str(folder), "--readme", str(readme), "--check"]) == 0
    text = readme.read_text()
    assert "Adam-plain-float64" in text and text.endswith("\n\nrest\n") and "old" not in text


def test_markers_are_required():
    with pytest.raises(ValueError, match="exactly once"):
        findings.splice("no markers", "table")
