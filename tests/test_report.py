"""``optcheck report``: the HTML and Markdown report from real inputs — a conformance
run of the golden and of a golden with one known variant switched on (so there are
deviations, diagnoses and repros), and benchmark records of the golden measured here
— and the page checked in headless Chromium."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from benchmarks import harness
from optcheck.adapters.numpy_reference import ReferenceAdapter
from optcheck.cli import main
from optcheck.conformance.diagnosis import VARIANTS
from optcheck.reports import bench as B
from optcheck.reports import page

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("OPTCHECK_CHROMIUM", "/usr/bin/chromium")
#: Where the browser test keeps its screenshot (CI artefact).
ARTIFACTS = Path(os.environ.get("OPTCHECK_ARTIFACTS", ROOT / "reports" / "out" / "artifacts"))


def adam_epsilon_variant():
    """An "implementation" that puts Adam's ε as Keras ≥ 2.11 does not: a deviation the
    diagnosis names."""
    variant = next(v for v in VARIANTS if v.name == "adam_epsilon=corrected")
    return ReferenceAdapter(variant=variant, name="adam-epsilon-variant")


VARIANT_ADAPTER = "tests.test_report:adam_epsilon_variant"


@pytest.fixture(scope="module")
def conformance_json(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("conformance")
    status = main(["verify", "--adapter", "numpy", VARIANT_ADAPTER, "--optimizer", "Adam",
                   "SGD", "--feature", "plain", "clipnorm", "metamorphic:*", "golden:*",
                   "seed:usage", "--dtype", "float32", "--max-examples", "2", "--no-shrink",
                   "--in-process", "--out", str(out)])  # fmt: skip
    assert status == 1  # the variant deviates
    return out / "conformance.json"


def _cases():
    """Golden cases: two optimizers over N, Adam in 10 tensors and with each feature."""
    cases = [harness.Case("numpy", opt, "plain", n, 1) for opt in ("Adam", "SGD")
             for n in (10**3, 10**4)]  # fmt: skip
    cases.append(harness.Case("numpy", "Adam", "plain", 10**4, 10))
    cases += [harness.Case("numpy", "Adam", f, 10**4, 1) for f in ("ema", "clipnorm")]
    return cases


@pytest.fixture(scope="module")
def bench_json(tmp_path_factory) -> Path:
    roofs = harness.RoofCache(n=1 << 20, repeats=3, methods=("numpy",))
    entries = [harness.run_case(case, roofs, budget_s=0.02) for case in _cases()]
    path = tmp_path_factory.mktemp("bench") / "bench.json"
    path.write_text(json.dumps({"benchmarks": entries, "datetime": "2026-01-01T00:00:00",
                                "machine_info": {"python_version": "3.11",
                                                 "cpu": {"brand_raw": "test CPU"}}}))
    return path


@pytest.fixture(scope="module")
def after_json(bench_json, tmp_path_factory) -> Path:
    """The same run with one case made 2× slower, one 2× faster and one NaN."""
    data = json.loads(bench_json.read_text())
    entries = data["benchmarks"]
    for entry, factor in zip(entries[:3], (2.0, 0.5, float("nan")), strict=True):
        entry["extra_info"]["step_s"] *= factor
    path = tmp_path_factory.mktemp("after") / "after.json"
    path.write_text(json.dumps(data))
    return path


@pytest.fixture(scope="module")
def report(conformance_json, bench_json, after_json, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report")
    status = main(["report", "--conformance", str(conformance_json), "--bench", str(after_json),
                   "--before", str(bench_json), "--out", str(out)])  # fmt: skip
    assert status == 0
    return out


def _entries(conformance_json):
    return {a["name"]: a for a in json.loads(conformance_json.read_text())["adapters"]}


def test_summary_rows_are_the_reports_counts(report, conformance_json):
    md = (report / "report.md").read_text()
    for name, adapter in _entries(conformance_json).items():
        s = adapter["summary"]
        share = s["pass"] / (s["cases"] - s["unsupported"])
        row = next(line for line in md.splitlines() if line.startswith(f"| keras2 | [{name}]"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[3:8] == [str(s[k]) for k in ("cases", "pass", "deviation", "error",
                                                  "unsupported")], row  # fmt: skip
        assert cells[8] == f"{100 * share:.1f} %", row
    assert _entries(conformance_json)["numpy"]["summary"]["deviation"] == 0


def test_each_deviation_has_its_diagnosis_divergence_and_repro(report, conformance_json):
    md = (report / "report.md").read_text()
    page_html = (report / "report.html").read_text()
    bad = [c for c in _entries(conformance_json)[VARIANT_ADAPTER]["cases"]
           if c["status"] == "deviation"]
    assert bad, "the variant must deviate somewhere"
    assert any(c["diagnosis"]["verdict"] == "matches variant adam_epsilon=corrected" for c in bad)
    for c in bad:
        repro = report / "repro" / "keras2" / re.sub(r"[^\w.-]", "_", VARIANT_ADAPTER) / (
            re.sub(r"[^\w.-]", "_", c["id"]) + ".py")
        assert repro.read_text() == c["repro"]
        assert f"({repro.relative_to(report)})" in md
        assert html.escape(c["repro"]) in page_html
        line = next(line for line in md.splitlines() if line.startswith(f"| [{c['id']}]"))
        assert c["diagnosis"]["verdict"] in line and f"step {c['first_divergence']['step']}" in line


def test_matrix_marks_the_deviating_cells(report, conformance_json):
    md = (report / "report.md").read_text()
    section = md.split(f'<a id="{page._slug("conf", "keras2", VARIANT_ADAPTER)}"></a>')[1]
    adam = next(line for line in section.splitlines() if line.startswith("| Adam |"))
    sgd = next(line for line in section.splitlines() if line.startswith("| SGD |"))
    assert "✗" in adam, adam
    assert "✗" not in sgd and "✓" in sgd, sgd  # the variant only touches Adam


def test_every_internal_link_has_its_target(report):
    text = (report / "report.html").read_text()
    ids = set(re.findall(r' id="([^"]+)"', text))
    links = set(re.findall(r'href="#([^"]+)"', text))
    assert links and links <= ids, sorted(links - ids)[:5]


def test_the_page_loads_nothing(report):
    text = (report / "report.html").read_text()
    assert not re.search(r"<(script|link|img|iframe)\b", text)
    assert not re.search(r"""(src|href)=["'](https?:)?//""", text)
    assert "default-src 'none'" in text


def test_performance_tables_follow_from_the_records(report, after_json):
    records = B.load(after_json).records
    md = (report / "report.md").read_text()
    for heading in ("Step time against N — cpu", "Bandwidth — cpu", "Many-tensor layout penalty",
                    "Compile time — cpu", "Cost of features — cpu", "Before / after"):
        assert heading in md, heading
    by = {(r["optimizer"], r["feature"], r["N"], r["layout"]): r for r in records}
    layout = by[("Adam", "plain", 10**4, 10)]["step_s"] / by[("Adam", "plain", 10**4, 1)]["step_s"]
    assert f"| numpy | Adam | 1e4 | 1.00× | {layout:.2f}× |" in md
    ema = by[("Adam", "ema", 10**4, 1)]["step_s"] / by[("Adam", "plain", 10**4, 1)]["step_s"]
    assert f"{ema:.2f}×" in md
    assert "test CPU" in md or "logical cores" in md


def test_regressions_are_flagged_and_nan_is_shown(report, bench_json):
    md = (report / "report.md").read_text()
    first = B.load(bench_json).records
    slower, faster, nan = (B.case_label(B.key(r)) for r in first[:3])
    row = {label: next(line for line in md.splitlines() if line.startswith(f"| {label} |"))
           for label in (slower, faster, nan)}  # fmt: skip
    assert "**2.000×**" in row[slower] and row[slower].endswith("**regression** |")
    assert "0.500×" in row[faster] and row[faster].endswith("improvement |")
    assert "NaN" in row[nan] and row[nan].endswith("**regression** |")
    assert "2 regressions" in md and "1 improvements" in md


def test_charts_are_written_for_markdown_and_inlined_in_html(report):
    text = (report / "report.html").read_text()
    names = re.findall(r'<figure class="chart" data-chart="([^"]+)"><svg', text)
    assert {"conformance", "scaling-cpu", "comparison"} <= set(names)
    for name in names:
        svg = (report / "charts" / f"{name}.svg").read_text()
        assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--conformance", "nope.json"], "nope.json"),
        (["--bench", "nope.json"], "nope.json"),
        ([], "give --conformance and/or --bench"),
        (["--before", "{bench}", "--conformance", "{conf}"], "--before needs --bench"),
        (["--bench", "{bench}", "--threshold", "0.9"], "--threshold must be greater than 1"),
        (["--conformance", "{bench}"], "is not a conformance report"),
        (["--bench", "{conf}"], "not a pytest-benchmark JSON"),
        (["--conformance", "{conf}", "{conf}"], "is in both"),
    ],
)
def test_usage_errors_name_the_culprit(args, message, tmp_path, capsys, conformance_json,
                                       bench_json):  # fmt: skip
    args = [a.format(bench=bench_json, conf=conformance_json) for a in args]
    assert main(["report", *args, "--out", str(tmp_path / "r")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r" / "report.html").exists()


def test_bench_records_jsonl_is_read_like_json(bench_json, tmp_path):
    lines = tmp_path / "b.jsonl"
    lines.write_text("".join(json.dumps(e) + "\n" for e in json.loads(bench_json.read_text())[
        "benchmarks"]))  # fmt: skip
    assert B.load(lines).records == B.load(bench_json).records


def test_page_in_headless_chromium(report):
    """The page in a real browser: no console error, no request, every chart drawn with a
    non-zero size, the tables there; the screenshot is kept."""
    required = os.environ.get("OPTCHECK_REQUIRE_BROWSER") == "1"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if required:
            raise
        pytest.skip("playwright is not installed (pip install '.[test]')")
    if not Path(CHROMIUM).exists():
        if required:
            pytest.fail(f"OPTCHECK_REQUIRE_BROWSER=1 but there is no {CHROMIUM}")
        pytest.skip(f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)")
    text = (report / "report.html").read_text()
    n_charts = text.count('<figure class="chart"')
    n_tables = text.count("<table")
    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])  # fmt: skip
        try:
            tab = browser.new_page(viewport={"width": 1280, "height": 900})
            tab.on("console", lambda m: m.type in ("error", "warning") and problems.append(
                f"console {m.type}: {m.text}"))  # fmt: skip
            tab.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            tab.on("request", lambda r: r.url.startswith("file:") or problems.append(
                f"request: {r.url}"))  # fmt: skip
            tab.goto((report / "report.html").as_uri(), wait_until="load")
            sizes = tab.eval_on_selector_all(
                "figure.chart > svg",
                "els => els.map(e => { const r = e.getBoundingClientRect();"
                " return [e.parentElement.dataset.chart, r.width, r.height]; })",
            )
            tables = tab.eval_on_selector_all("table", "els => els.map(e => e.rows.length)")
            ids = tab.eval_on_selector_all("table[id]", "els => els.map(e => e.id)")
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            shot = ARTIFACTS / "report-page.png"
            tab.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert not problems, problems
    assert len(sizes) == n_charts >= 6
    assert all(w > 50 and h > 50 for _, w, h in sizes), sizes
    assert len(tables) == n_tables and all(rows > 1 for rows in tables), tables
    assert {"conformance-summary", "environment", "comparison-table"} <= set(ids)
    assert shot.stat().st_size > 10_000
    shutil.copy(report / "report.html", ARTIFACTS / "report.html")


def test_the_first_screen_says_what_was_found(conformance_json, tmp_path):
    """Deviating adapters with their diagnoses first, then those that conform; adapters
    that are not installed collapse into one line with one install command (no rows)."""
    data = json.loads(conformance_json.read_text())
    numpy_entry = next(a for a in data["adapters"] if a["name"] == "numpy")
    for name, extra in (("torch", "torch"), ("optax", "jax"), ("tf-keras", "tf")):
        data["adapters"].append({**numpy_entry, "name": name, "available": False,
                                 "reason": f"{name} is not installed (pip install "
                                           f"'optcheck[{extra}]')",
                                 "cases": [], "version": ""})  # fmt: skip
    path = tmp_path / "conformance.json"
    path.write_text(json.dumps(data))
    out = tmp_path / "report"
    assert main(["report", "--conformance", str(path), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    headings = [line for line in md.splitlines() if line.startswith("## ")]
    assert headings[0].endswith("What was found"), headings
    first = md.split("What was found")[1].split("Conformance")[0]
    variant = _entries(conformance_json)[VARIANT_ADAPTER]
    row = next(line for line in first.splitlines() if f"[{VARIANT_ADAPTER}]" in line)
    count = sum(1 for c in variant["cases"] if (c.get("diagnosis") or {}).get("variant")
                == "adam_epsilon=corrected")  # fmt: skip
    assert f"adam_epsilon=corrected ×{count}" in row, row
    assert "Every supported case conforms: numpy (keras2)." in first
    assert ("Not installed here (3 adapters): torch, optax, tf-keras. Install: "
            "`pip install 'optcheck[jax,tf,torch]'`.") in first
    summary = md.split("</a>Conformance")[1]
    assert not any(line.startswith(("| keras2 | [torch]", "| keras2 | [optax]"))
                   for line in summary.splitlines())  # fmt: skip
