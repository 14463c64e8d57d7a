"""Issue 18: an interrupted run loses nothing, and no user error is a raw traceback.

* ``optcheck verify`` stopped by SIGINT or SIGTERM (a hung worker that ignores SIGTERM,
  or a slow run, or ``--in-process``): exit 3, one line on stderr, the report of the
  finished cases marked incomplete, and no process of the run left alive; a parent
  killed outright (SIGKILL) takes its workers with it;
* a re-run never leaves the previous report beside the new results;
* an ``--out`` that cannot hold the reports is a usage error before the run (exit 2),
  and ``vectors check --out DIR`` writes its JSON;
* a schema-valid ``conformance.json`` missing a field is named, file and field, by
  ``optcheck report`` (exit 2).

The toy adapters live here; the verify subprocesses and their workers import them as
``tests.test_interrupts_and_outputs:NAME`` (the project root on PYTHONPATH). Every
process of a run carries a unique marker in its environment, so that the test finds
(and, should the code under test leave any, kills) all of them.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from optcheck.adapters.numpy_reference import ReferenceAdapter, ReferenceSession
from optcheck.cli import main

ROOT = Path(__file__).resolve().parents[1]
HERE = "tests.test_interrupts_and_outputs"
MARKER = "OPTCHECK_TEST_RUN"
#: One property case of each optimizer: SGD first (fast in every toy), then slow ones.
CASES = ["--feature", "plain", "--dtype", "float32", "--max-examples", "2", "--no-shrink",
         "--no-diagnose"]  # fmt: skip
#: Generous bounds for a slow shared machine (nothing asserts speed).
START_S, STOP_S = 300, 120


# -- toy adapters ---------------------------------------------------------------------------
class _HangingSession(ReferenceSession):
    def step(self, gradients, skip_gradients_aggregation=False):
        if self._scenario.optimizer != "SGD":
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a stubborn worker
            time.sleep(3600)
        return super().step(gradients, skip_gradients_aggregation)


class Hanging(ReferenceAdapter):
    """SGD conforms; any other optimizer hangs in ``step``, deaf to SIGTERM."""

    def open(self, scenario):
        return _HangingSession(self._package, scenario, self.numerics)


class _SlowSession(ReferenceSession):
    def step(self, gradients, skip_gradients_aggregation=False):
        if self._scenario.optimizer != "SGD":
            time.sleep(5)
        return super().step(gradients, skip_gradients_aggregation)


class Slow(ReferenceAdapter):
    """SGD conforms at once; any other optimizer takes 5 s a step (slow, not hung)."""

    def open(self, scenario):
        return _SlowSession(self._package, scenario, self.numerics)


# -- processes --------------------------------------------------------------------------------
def _marked(marker: str) -> list[int]:
    """Live processes whose environment holds ``MARKER=marker`` (zombies have none)."""
    tag = f"{MARKER}={marker}".encode()
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    if tag in f.read().split(b"\0"):
                        pids.append(int(entry))
            except OSError:
                continue
    return pids


def _wait(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def _lines(path: Path) -> int:
    try:
        return len(path.read_text().splitlines())
    except OSError:
        return 0


@pytest.fixture
def run(tmp_path):
    """Start ``optcheck verify`` (this interpreter's optcheck) in its own session; after
    the test, SIGKILL whatever process of it is left (the test has judged that)."""
    if not Path("/proc/self/environ").exists():
        pytest.skip("finds the run's processes through /proc")
    marker = uuid.uuid4().hex
    started = []

    def start(*argv) -> subprocess.Popen:
        env = {**os.environ, MARKER: marker,
               "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        proc = subprocess.Popen([sys.executable, "-m", "optcheck.cli", "verify", *argv],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True, cwd=tmp_path)  # fmt: skip
        started.append(proc)
        return proc

    start.marker = marker
    yield start
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    for pid in _marked(marker):
        os.kill(pid, signal.SIGKILL)


def _started(proc, results: Path) -> None:
    """Wait until the run has streamed a first result."""
    if not _wait(lambda: _lines(results) >= 1 or proc.poll() is not None, START_S):
        pytest.fail("no result within the time allowed")
    assert proc.poll() is None, proc.communicate()


# -- signals ----------------------------------------------------------------------------------
@pytest.mark.parametrize("sig, adapter, mode", [
    ("SIGINT", "Hanging", ["--jobs", "1"]),
    ("SIGTERM", "Hanging", ["--jobs", "1"]),
    ("SIGINT", "Slow", ["--jobs", "2"]),
    ("SIGTERM", "Slow", ["--in-process"]),
], ids=["SIGINT-hung-worker", "SIGTERM-hung-worker-deaf-to-SIGTERM", "SIGINT-slow-workers",
        "SIGTERM-in-process"])  # fmt: skip
def test_a_signal_stops_the_run_with_a_partial_report_and_no_process_left(
        run, tmp_path, sig, adapter, mode):  # fmt: skip
    out = tmp_path / "out"
    proc = run("--adapter", f"{HERE}:{adapter}", "--optimizer", "SGD", "Adam", "RMSprop",
               "Adagrad", *CASES, *mode, "--out", str(out))  # fmt: skip
    _started(proc, out / "results.jsonl")
    os.killpg(proc.pid, getattr(signal, sig))  # as a terminal signals its foreground group
    try:
        _, err = proc.communicate(timeout=STOP_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the run did not stop within {STOP_S} s of {sig}")
    assert proc.returncode == 3, err
    assert "Traceback" not in err
    assert re.fullmatch(rf"optcheck: interrupted by {sig}; \d+ of 4 planned cases finished; "
                        r"reports marked incomplete in \S+/", err.strip()), err
    data = json.loads((out / "conformance.json").read_text())
    done = [c for a in data["adapters"] for c in a["cases"]]
    assert data["incomplete"] == {"signal": sig, "cases_done": len(done), "cases_planned": 4,
                                  "adapters_not_run": []}  # fmt: skip
    assert 1 <= len(done) < 4 and {"SGD-plain-float32": "pass"}.items() <= {
        c["id"]: c["status"] for c in done}.items()  # fmt: skip
    streamed = [json.loads(line)["id"] for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(streamed) == sorted(c["id"] for c in done)
    (entry,) = data["adapters"]
    assert entry["incomplete"] == {"cases_done": len(done), "cases_planned": 4}
    assert f"interrupted by {sig} after {len(done)} of 4 planned cases" in \
        (out / "conformance.md").read_text()  # fmt: skip
    assert "incomplete" in (out / "junit.xml").read_text()
    assert _wait(lambda: not _marked(run.marker), 30), "a process of the run is still alive"


def test_workers_die_with_a_parent_killed_outright(run, tmp_path):
    out = tmp_path / "out"
    proc = run("--adapter", f"{HERE}:Hanging", "--optimizer", "SGD", "Adam", *CASES,
               "--jobs", "1", "--out", str(out))  # fmt: skip
    _started(proc, out / "results.jsonl")
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=STOP_S)
    assert _wait(lambda: not _marked(run.marker), 60), "a worker outlived its parent"


def _interruptible() -> None:
    # A job started in the background by a shell inherits SIGINT ignored, and Python then
    # leaves it ignored: give the command the terminal's default, as a user's Ctrl-C has.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_on_vectors_check_ends_with_one_line_and_no_process_left(tmp_path):
    """Any other command than verify stopped by Ctrl-C: exit 3, one line, no traceback,
    its workers gone (a hung one too)."""
    if not Path("/proc/self/environ").exists():
        pytest.skip("finds the command's processes through /proc")
    marker = uuid.uuid4().hex
    env = {**os.environ, MARKER: marker,
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "optcheck.cli", "vectors", "check", str(ROOT / "vectors"),
         "--adapter", f"{HERE}:Hanging", "--optimizer", "Adam", "--profile", "keras2",
         "--jobs", "1"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True, preexec_fn=_interruptible)  # fmt: skip
    try:
        # The command and its worker, which hangs in Adam's first step.
        assert _wait(lambda: len(_marked(marker)) >= 2, START_S), proc.communicate()
        time.sleep(2)  # past the worker's start, into the hung case
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=STOP_S)
        assert proc.returncode == 3, err
        assert "Traceback" not in err and err.strip().endswith("optcheck vectors: interrupted")
        assert _wait(lambda: not _marked(marker), 30), "a process of the command is alive"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
        for pid in _marked(marker):
            os.kill(pid, signal.SIGKILL)


# -- the output folder ------------------------------------------------------------------------
SMALL = ["verify", "--adapter", "numpy", "--optimizer", "SGD", *CASES, "--in-process"]


def test_a_rerun_never_leaves_the_previous_report_beside_new_results(tmp_path):
    from optcheck.conformance.suite import Context
    from optcheck.conformance.verify import verify

    out = tmp_path / "out"
    out.mkdir()
    old = {name: f"the previous run's {name}\n" for name in ("conformance.json",
                                                              "conformance.md", "junit.xml")}
    for name, text in old.items():
        (out / name).write_text(text)
    seen = []

    def progress(name, done, total, counts):  # while the new run streams its results
        if done:
            seen.append(sorted(p.name for p in out.iterdir() if not p.name.startswith(".")))

    ctx = Context(adapter="numpy", optimizers=["SGD", "Adam"], features=["plain"],
                  dtypes=["float32"], max_examples=2, shrink=False, diagnose=False)  # fmt: skip
    verify(ctx, ["numpy"], out, isolate=False, progress=progress)
    assert seen and all(names == ["results.jsonl"] for names in seen), seen
    assert json.loads((out / "conformance.json").read_text())["summary"]["pass"] == 2


def test_a_report_that_cannot_be_written_after_the_run_is_saved_elsewhere(tmp_path,
                                                                          monkeypatch):
    from optcheck.conformance.suite import Context
    from optcheck.conformance.verify import OutputError, verify

    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))  # where the spare folder goes
    out = tmp_path / "out"

    def progress(name, done, total, counts):  # the folder becomes a file during the run
        if done == total and out.is_dir():
            shutil.rmtree(out)
            out.write_text("in the way\n")

    ctx = Context(adapter="numpy", optimizers=["SGD"], features=["plain"], dtypes=["float32"],
                  max_examples=2, shrink=False, diagnose=False)  # fmt: skip
    with pytest.raises(OutputError, match=r"cannot write the report to \S*out .*; it was "
                       r"written to (\S+)/ instead") as caught:  # fmt: skip
        verify(ctx, ["numpy"], out, isolate=False, progress=progress)
    spare = Path(re.search(r"written to (\S+)/ instead", str(caught.value)).group(1))
    report = json.loads((spare / "conformance.json").read_text())
    assert report["summary"]["pass"] == 1 and spare.parent == tmp_path


def _file(tmp):
    (tmp / "taken").write_text("not a folder\n")
    return tmp / "taken"


def _under_a_file(tmp):
    return _file(tmp) / "out"


def _named_folder(name):
    def make(tmp):
        (tmp / "out" / name).mkdir(parents=True)
        return tmp / "out"

    return make


@pytest.mark.parametrize("make, message", [
    (_file, r"--out \S*taken is a file, not a folder"),
    (_under_a_file, r"cannot write to --out \S*taken/out: Not a directory"),
    (_named_folder("conformance.json"), r"cannot write \S*out/conformance.json: it is a folder"),
    (_named_folder("junit.xml"), r"cannot write \S*out/junit.xml: it is a folder"),
    (_named_folder("results.jsonl"), r"cannot write \S*out/results.jsonl: it is a folder"),
], ids=["file", "under-a-file", "conformance.json", "junit.xml", "results.jsonl"])  # fmt: skip
def test_an_out_that_cannot_hold_the_reports_is_a_usage_error_before_the_run(
        tmp_path, capsys, make, message):  # fmt: skip
    out = make(tmp_path)
    assert main([*SMALL, "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert re.search(r"optcheck: error: " + message, captured.err), captured.err
    assert captured.out == ""  # nothing ran
    assert not (out / "results.jsonl").is_file()


VECTORS = ["vectors", "check", str(ROOT / "vectors"), "--adapter", "numpy", "--optimizer", "SGD",
           "--profile", "keras2", "--dtype", "float32", "--in-process"]  # fmt: skip


def test_vectors_check_out_a_folder_writes_the_json_there(tmp_path, capsys):
    assert main([*VECTORS, "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "vectors-check.json").read_text())
    assert report["schema"] == "optcheck.vectors-check/1" and report["summary"]["cases"] > 0
    assert f"results in {tmp_path / 'vectors-check.json'}" in capsys.readouterr().out


def test_vectors_check_out_that_cannot_be_written_is_found_before_the_work(tmp_path, capsys):
    assert main([*VECTORS, "--out", str(_file(tmp_path) / "result.json")]) == 2
    captured = capsys.readouterr()
    assert re.search(r"vectors check: error: cannot write --out \S*taken/result.json: "
                     r"\S*taken is a file, not a folder", captured.err), captured.err
    assert captured.out == ""


# -- optcheck report on malformed reports ------------------------------------------------
def _case(id_, status, optimizer, **extra) -> dict:
    return {"id": id_, "adapter": "toy", "optimizer": optimizer, "feature": "plain",
            "dtype": "float32", "profile": "keras2", "kind": "property", "status": status,
            "seed": 0, "examples": 2, "seconds": 0.1, **extra}  # fmt: skip


def _report() -> dict:
    cases = [
        _case("SGD-plain-float32", "pass", "SGD"),
        _case("Adam-plain-float32", "deviation", "Adam", repro="print('repro')\n",
              first_divergence={"step": 1, "quantity": "variable", "index": [0],
                                "expected": 1.0, "actual": 2.0, "error": 1.0,
                                "tolerance": 1e-6},
              diagnosis={"verdict": "unknown", "summary": "", "tried": []}),
        _case("RMSprop-plain-float32", "error", "RMSprop", message="boom"),
    ]  # fmt: skip
    summary = {"cases": 3, "pass": 1, "deviation": 1, "error": 1, "unsupported": 0}
    return {"schema": "optcheck.conformance/1", "profile": "keras2", "level": "ci",
            "max_examples": 2, "seed": 0, "mode": "resync", "ulps": None, "seconds": 1.0,
            "created": "2026-01-01T00:00:00Z", "optcheck_version": "0.1.0", "summary": summary,
            "adapters": [{"name": "toy", "target": "toy:factory", "version": "toy 1.0",
                          "available": True, "reason": "", "seconds": 1.0,
                          "summary": dict(summary), "cases": cases}]}  # fmt: skip


def _edit(report: dict, field: str, value) -> dict:
    """``report`` with ``field`` (dotted, list indices as numbers) deleted (value
    ``...``) or set to ``value``."""
    report = copy.deepcopy(report)
    *parents, last = field.split(".")
    obj = report
    for key in parents:
        obj = obj[int(key)] if isinstance(obj, list) else obj[key]
    key = int(last) if isinstance(obj, list) else last
    if value is ...:
        del obj[key]
    else:
        obj[key] = value
    return report


MALFORMED = [
    ("profile", ..., "profile is missing"),
    ("adapters", None, "adapters is null"),
    ("adapters", {}, "adapters is dict, not list"),
    ("adapters.0.name", ..., r"adapters\[0\]\.name is missing"),
    ("adapters.0.available", None, r"adapters\[0\]\.available is null"),
    ("adapters.0.summary", None, r"adapters\[0\]\.summary is null"),
    ("adapters.0.summary.cases", ..., r"adapters\[0\]\.summary\.cases is missing"),
    ("adapters.0.cases", None, r"adapters\[0\]\.cases is null"),
    ("adapters.0.cases.0", None, r"adapters\[0\]\.cases\[0\] is not an object"),
    ("adapters.0.cases.0.status", None, r"adapters\[0\]\.cases\[0\]\.status is null"),
    ("adapters.0.cases.0.status", "fine", r"adapters\[0\]\.cases\[0\]\.status is 'fine'"),
    ("adapters.0.cases.2.kind", ..., r"adapters\[0\]\.cases\[2\]\.kind is missing"),
    ("adapters.0.cases.1.first_divergence", None,
     r"adapters\[0\]\.cases\[1\]\.first_divergence is null"),
    ("adapters.0.cases.1.diagnosis.verdict", ...,
     r"adapters\[0\]\.cases\[1\]\.diagnosis\.verdict is missing"),
]  # fmt: skip


@pytest.mark.parametrize("field, value, named", MALFORMED, ids=[
    f"{f}={'missing' if v is ... else json.dumps(v)}" for f, v, _ in MALFORMED])  # fmt: skip
def test_a_malformed_conformance_report_names_its_file_and_field(
        tmp_path, capsys, field, value, named):  # fmt: skip
    pytest.importorskip("matplotlib")
    path = tmp_path / "conformance.json"
    path.write_text(json.dumps(_edit(_report(), field, value)))
    assert main(["report", "--conformance", str(path), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert re.search(rf"optcheck report: error: {re.escape(str(path))}: field {named}", err), err


@pytest.mark.parametrize("make, message", [
    (_file, r"--out \S*taken is a file, not a folder"),
    (_under_a_file, r"cannot create --out \S*taken/out: Not a directory"),
    (_named_folder("report.html"), r"cannot write \S*out/report.html: it is a folder"),
], ids=["file", "under-a-file", "report.html"])  # fmt: skip
def test_report_out_that_cannot_hold_the_report_is_a_usage_error(tmp_path, capsys, make,
                                                                 message):  # fmt: skip
    pytest.importorskip("matplotlib")
    path = tmp_path / "conformance.json"
    path.write_text(json.dumps(_report()))
    out = make(tmp_path)
    assert main(["report", "--conformance", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert re.search(r"optcheck report: error: " + message, err), err


def _bench(**changes) -> dict:
    info = {"implementation": "numpy", "optimizer": "Adam", "feature": "plain", "N": 1000,
            "layout": 1, "device": "cpu", "dtype": "float32", "step_s": 1e-5,
            "bytes_per_step": 16000, "gbps": 1.6, "roof_gbps": 10.0, "roof_method": "numpy"}
    for name, value in changes.items():
        if value is ...:
            del info[name]
        else:
            info[name] = value
    return {"benchmarks": [{"name": "test_step[numpy-Adam]", "extra_info": info,
                            "stats": {"min": 1e-5}}]}  # fmt: skip


@pytest.mark.parametrize("changes, named", [
    ({"device": ...}, "extra_info.device is missing"),
    ({"step_s": None}, "extra_info.step_s is null"),
    ({"N": "1000"}, "extra_info.N is str"),
    ({"optimizer": None}, "extra_info.optimizer is null"),
], ids=["device-missing", "step_s-null", "N-str", "optimizer-null"])  # fmt: skip
def test_a_malformed_benchmark_file_names_its_file_and_field(tmp_path, capsys, changes, named):
    pytest.importorskip("matplotlib")
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(_bench(**changes)))
    assert main(["report", "--bench", str(path), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert re.search(rf"error: {re.escape(str(path))}: entry 0: field {re.escape(named)}",
                     err), err  # fmt: skip


def test_the_report_page_shows_an_interrupted_run(tmp_path):
    pytest.importorskip("matplotlib")
    report = _report()
    report["incomplete"] = {"signal": "SIGTERM", "cases_done": 3, "cases_planned": 5,
                            "adapters_not_run": []}  # fmt: skip
    report["adapters"][0]["incomplete"] = {"cases_done": 3, "cases_planned": 5}
    report["adapters"][0]["cases"][2]["message"] = None  # optional: null is as absent
    path = tmp_path / "conformance.json"
    path.write_text(json.dumps(report))
    assert main(["report", "--conformance", str(path), "--out", str(tmp_path / "r")]) == 0
    md = (tmp_path / "r" / "report.md").read_text()
    assert "interrupted by SIGTERM after 3 of 5 planned cases" in md
    assert "Interrupted: 3 of 5 cases finished." in md
