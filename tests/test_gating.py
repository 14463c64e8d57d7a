"""The project's own gate: every bundled adapter installed here is verified against its
baseline (baselines/<adapter>.toml) in both profiles, with the selection of
baselines/options.toml; a new deviation fails.

The default run (CI) gates every bundled adapter whose library is installed, with the
``[ci]`` selection where options.toml has one (a feature subset for the adapters that
compile or trace per scenario, no 16-bit cases for torch-fused) and in the profiles of
``[ci_profiles]`` (a third-party library in the line it implements); OPTCHECK_GATE_ALL=1
(``nox -s gate``) gates all 17 in both profiles with the full selection. The drawn
examples do not depend on the environment (settings.isolated_generation), so a baseline
made in a development install holds in CI's."""

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


def _first(tables: list[dict], name: str, default):
    """The value of the first pattern matching ``name`` in ``tables``, else ``default``."""
    return next((v for table in tables for k, v in table.items()
                 if fnmatch.fnmatchcase(name, k)), default)  # fmt: skip


def options(name: str, full: bool = True) -> list[str]:
    """The verify options of ``name``: the first matching pattern's (of ``[ci]`` first
    unless ``full``), else the default."""
    tables = [SELECTION["adapters"]] if full else [SELECTION["ci"], SELECTION["adapters"]]
    return shlex.split(_first(tables, name, SELECTION["options"]))


def profiles(name: str, full: bool = True) -> list[str]:
    """The profiles ``name`` is gated in: both, or ``[ci_profiles]``'s unless ``full``."""
    both = ["keras2", "keras3"]
    return both if full else _first([SELECTION["ci_profiles"]], name, both)


@pytest.mark.parametrize("profile", ["keras2", "keras3"])
@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_bundled_adapter_has_no_new_deviation(name, profile, tmp_path):
    full = bool(os.environ.get("OPTCHECK_GATE_ALL"))
    if profile not in profiles(name, full):
        pytest.skip(f"{name}: {profile} gated with OPTCHECK_GATE_ALL=1 (nox -s gate)")
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
    loaded = not any(c["feature"] == "load" for c in adapter["cases"])
    if not adapter["available"] and loaded:
        # A gate never passes on nothing: CI installs every library (.ci/run), so there an
        # unavailable adapter fails; a developer's run without the library skips it.
        message = f"{name} is not available here: {adapter['reason']}"
        if os.environ.get("OPTCHECK_REQUIRE_ADAPTERS"):
            pytest.fail(f"{message} (OPTCHECK_REQUIRE_ADAPTERS is set: the gate checked no "
                        "case)")  # fmt: skip
        pytest.skip(message)
    # Exit 4: no case reached pass or deviation (all unsupported, all errors accepted, or
    # the adapter failed to load): the gate checked nothing.
    assert run.returncode != 4, f"{name} ({profile}) checked no case:\n{run.stderr[-3000:]}"
    assert run.returncode == 0, (
        f"{name} ({profile}) has new deviations:\n{run.stdout}\n{run.stderr[-3000:]}"
    )


def test_ci_selection_names_known_adapters_and_profiles():
    """A pattern of options.toml that matches no bundled adapter (a typo, a renamed
    adapter) would silently fall back to the default selection."""
    for table in ("adapters", "ci", "ci_profiles"):
        for pattern in SELECTION[table]:
            assert fnmatch.filter(BUNDLED, pattern), (
                f"options.toml [{table}]: {pattern!r} matches no adapter"
            )
    for name in BUNDLED:
        assert set(profiles(name, full=False)) <= {"keras2", "keras3"} and profiles(name, False)
        if name in ("numpy", "jax", "tf"):  # optcheck's own: both lines, always
            assert profiles(name, full=False) == ["keras2", "keras3"]
