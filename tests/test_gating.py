"""The project's own gate: every bundled adapter installed here is verified against its
baseline (baselines/<adapter>.toml) in both profiles, with the selection of
baselines/options.toml; a new deviation fails.

The default run (CI) takes the ``[ci]`` selection where options.toml has one (a feature
subset for the adapters that compile per scenario, no 16-bit cases for torch-fused) and
leaves out the TensorFlow-based third-party adapters (OUTSIDE_CI: minutes each, and CI
does not install TensorFlow); OPTCHECK_GATE_ALL=1 (``nox -s gate``) gates all 17 with the
full selection. The drawn examples do not depend on the environment
(settings.isolated_generation), so a baseline made in a development install holds in
CI's."""

from __future__ import annotations

import fnmatch
import json
import os
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from optcheck.adapters.registry import BUNDLED

ROOT = Path(__file__).resolve().parents[1]
BASELINES = ROOT / "baselines"
SELECTION = tomllib.loads((BASELINES / "options.toml").read_text())


def options(name: str, full: bool = True) -> list[str]:
    """The verify options of ``name``: the first matching pattern's (of ``[ci]`` first
    unless ``full``), else the default."""
    tables = [SELECTION["adapters"]] if full else [SELECTION["ci"], SELECTION["adapters"]]
    found = next((v for table in tables for k, v in table.items()
                  if fnmatch.fnmatchcase(name, k)), SELECTION["options"])  # fmt: skip
    return shlex.split(found)


#: Gated only with OPTCHECK_GATE_ALL=1: the TensorFlow-based third-party adapters take
#: minutes each.
OUTSIDE_CI = ("tf-keras*", "keras3-tensorflow*")


@pytest.mark.parametrize("profile", ["keras2", "keras3"])
@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_bundled_adapter_has_no_new_deviation(name, profile, tmp_path):
    full = bool(os.environ.get("OPTCHECK_GATE_ALL"))
    outside = any(fnmatch.fnmatchcase(name, pattern) for pattern in OUTSIDE_CI)
    if outside and not full:
        pytest.skip(f"{name}: gated with OPTCHECK_GATE_ALL=1 (nox -s gate), see module doc")
    path = BASELINES / f"{name}.toml"
    assert path.exists(), f"every bundled adapter needs a baseline: {path} is missing"
    # A fresh process: whether an adapter is available must not depend on what this one
    # imported (Keras 3 fixes its backend at the first import of keras).
    run = subprocess.run(
        [sys.executable, "-m", "optcheck.cli", "verify", "--adapter", name, "--profile", profile,
         *options(name, full), "--baseline", str(path), "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    report = tmp_path / "conformance.json"
    assert report.exists(), f"{name} ({profile}): no report\n{run.stdout}\n{run.stderr[-3000:]}"
    (adapter,) = json.loads(report.read_text())["adapters"]
    if not adapter["available"]:
        pytest.skip(f"{name} is not available here: {adapter['reason']}")
    summary = adapter["summary"]
    assert summary["cases"] > summary["unsupported"], f"{name} ({profile}) ran no case"
    assert run.returncode == 0, (
        f"{name} ({profile}) has new deviations:\n{run.stdout}\n{run.stderr[-3000:]}"
    )
