"""The command line: ``optcheck verify`` exit codes, reports and progress; ``optcheck adapters``."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from optcheck.adapters.registry import known_adapters
from optcheck.cli import main
from optcheck.conformance.verify import TerminalProgress

ROOT = Path(__file__).resolve().parents[1]
HELPERS = "tests.test_suite"
#: A fast selection: one property case and the float32 seed-page examples of SGD.
SMALL = ["--optimizer", "SGD", "--feature", "plain", "seed:*", "--dtype", "float32"]


@pytest.fixture
def on_path(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH",
                                                                               "")]))  # fmt: skip


def test_verify_conforming_adapter_exits_0_with_three_reports(tmp_path, capsys):
    assert main(["verify", "--adapter", "numpy", *SMALL, "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "conformance.json").read_text())
    assert data["schema"] == "optcheck.conformance/1"
    assert (data["profile"], data["level"], data["seed"], data["mode"]) == ("keras2", "ci", 0,
                                                                            "resync")
    (adapter,) = data["adapters"]
    assert adapter["name"] == "numpy" and adapter["version"]
    ids = {c["id"] for c in adapter["cases"]}
    assert "SGD-plain-float32" in ids and "seed:gradient_clipping" in ids
    assert {c["status"] for c in adapter["cases"]} == {"pass"}
    assert ET.parse(tmp_path / "junit.xml").getroot().get("failures") == "0"
    assert "cases conform" in (tmp_path / "conformance.md").read_text()
    out = capsys.readouterr().out
    assert "numpy: " in out and "cases conform" in out and "run seed 0" in out


def test_verify_deviation_exits_1(tmp_path, on_path, capsys):
    argv = ["verify", "--adapter", f"{HELPERS}:WrongUpdate", "--strategies", HELPERS,
            "--optimizer", "SGD", "--feature", "plain", "--out", str(tmp_path)]  # fmt: skip
    assert main(argv) == 1
    (adapter,) = json.loads((tmp_path / "conformance.json").read_text())["adapters"]
    (case,) = adapter["cases"]
    assert case["status"] == "deviation" and case["first_divergence"]["step"] == 1
    assert "import sys" in case["repro"]
    assert "1 deviation" in capsys.readouterr().out


def test_verify_error_exits_1(tmp_path, on_path):
    argv = ["verify", "--adapter", f"{HELPERS}:Raising", "--strategies", HELPERS,
            "--optimizer", "Adam", "--feature", "plain", "--in-process",
            "--out", str(tmp_path)]  # fmt: skip
    assert main(argv) == 1
    (adapter,) = json.loads((tmp_path / "conformance.json").read_text())["adapters"]
    assert adapter["cases"][0]["status"] == "error"


def test_verify_only_unsupported_exits_4(tmp_path, on_path, capsys):
    """A run that checked nothing is not a pass (tests/test_bad_inputs.py has the rules)."""
    argv = ["verify", "--adapter", f"{HELPERS}:NoClipnorm", "--strategies", HELPERS,
            "--optimizer", "SGD", "--feature", "clipnorm", "--in-process",
            "--out", str(tmp_path)]  # fmt: skip
    assert main(argv) == 4
    (adapter,) = json.loads((tmp_path / "conformance.json").read_text())["adapters"]
    assert [c["status"] for c in adapter["cases"]] == ["unsupported"]
    assert "checked no case: every case unsupported: lacks feature clipnorm" in \
        capsys.readouterr().err  # fmt: skip


@pytest.mark.parametrize("argv, message", [
    (["--adapter", "nope"], "known adapters: " + ", ".join(sorted(known_adapters()))),
    (["--adapter", "no_such_module_xyz:factory"], "no module 'no_such_module_xyz'"),
    (["--adapter", "numpy", "--optimizer", "Adamm"], "known optimizers: SGD, Adam"),
    (["--adapter", "numpy", "--optimizer", "SGD", "--feature", "no-such-feature"],
     "no case matches"),
    (["--adapter", "numpy", "--jobs", "0"], "argument --jobs: must be an integer at least 1"),
    (["--adapter", "numpy", "--level", "fast"], "invalid choice"),
    (["--profile", "keras4"], "invalid choice"),
])  # fmt: skip
def test_usage_errors_exit_2(tmp_path, capsys, argv, message):
    assert main(["verify", *argv, "--out", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err


def test_optimizer_names_are_case_insensitive(tmp_path):
    argv = ["verify", "--adapter", "numpy", "--optimizer", "sgd", "--feature", "plain",
            "--dtype", "float64", "--in-process", "--out", str(tmp_path)]  # fmt: skip
    assert main(argv) == 0
    (adapter,) = json.loads((tmp_path / "conformance.json").read_text())["adapters"]
    assert [c["id"] for c in adapter["cases"]] == ["SGD-plain-float64"]


def test_seed_and_level_are_reported(tmp_path):
    argv = ["verify", "--adapter", "numpy", "--optimizer", "Adam", "--feature", "plain",
            "--dtype", "float32", "--seed", "123", "--level", "thorough", "--max-examples", "3",
            "--in-process", "--out", str(tmp_path)]  # fmt: skip
    assert main(argv) == 0
    data = json.loads((tmp_path / "conformance.json").read_text())
    assert (data["seed"], data["level"]) == (123, "thorough")
    (case,) = data["adapters"][0]["cases"]
    assert case["seed"] == 123 and case["examples"] == 3


def test_adapters_lists_one_line_per_adapter(capsys):
    assert main(["adapters"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("numpy\tavailable\toptcheck.reference")


def test_progress_goes_to_a_terminal_only():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    tty, pipe = Tty(), io.StringIO()
    for stream in (tty, pipe):
        progress = TerminalProgress(stream)
        progress("numpy", 1, 2, {"deviation": 0, "error": 0})
        progress("numpy", 2, 2, {"deviation": 1, "error": 0})
    assert "numpy: 1/2 cases" in tty.getvalue() and "numpy: 2/2 cases, 1 deviation" in \
        tty.getvalue()  # fmt: skip
    assert tty.getvalue().endswith("\n") and pipe.getvalue() == ""


def test_console_script_exit_codes(tmp_path):
    script = Path(sys.executable).with_name("optcheck")
    if not script.exists():
        pytest.skip("the optcheck console script is not installed next to this Python")
    ok = subprocess.run([str(script), "verify", "--adapter", "numpy", *SMALL, "--out",
                         str(tmp_path)], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "junit.xml").exists()
    bad = subprocess.run([str(script), "verify", "--adapter", "nope"], capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert bad.returncode == 2 and "known adapters" in bad.stderr


def test_the_example_adapter_of_the_docs_conforms(tmp_path, monkeypatch):
    doc = (ROOT / "docs" / "adapters.md").read_text()
    block = doc.split("<!-- example-adapter -->", 1)[1].split("```python\n", 1)[1]
    (tmp_path / "mysgd.py").write_text(block.split("```", 1)[0])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), str(ROOT)]))
    monkeypatch.syspath_prepend(str(tmp_path))  # as if mysgd were installed
    out = tmp_path / "out"
    argv = ["verify", "--adapter", "mysgd:factory", "--optimizer", "SGD", "--feature", "plain",
            "clipnorm", "seed:*", "golden:*", "metamorphic:*", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    (adapter,) = json.loads((out / "conformance.json").read_text())["adapters"]
    by_id = {c["id"]: c for c in adapter["cases"]}
    for dtype in ("float32", "float64"):
        assert by_id[f"SGD-plain-{dtype}"]["status"] == "pass"
        assert by_id[f"SGD-clipnorm-{dtype}"]["status"] == "unsupported"
    assert by_id["SGD-plain-float16"]["status"] == "unsupported"
    assert by_id["golden:SGD-single-step"]["status"] == "pass"
    assert by_id["seed:usage"]["status"] == "pass"
    assert by_id["seed:gradient_clipping"]["status"] == "unsupported"
    assert by_id["SGD-metamorphic:zero_learning_rate-float32"]["status"] == "pass"
    assert by_id["SGD-metamorphic:disjoint_variables-float64"]["status"] == "pass"
    assert by_id["SGD-metamorphic:huge_clipnorm-float32"]["status"] == "unsupported"
    assert adapter["version"].startswith("mysgd 1.0")
