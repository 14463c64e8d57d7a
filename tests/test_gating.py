"""The project's own gate: every bundled adapter installed here is verified against its
baseline (baselines/<adapter>.toml) in both profiles, with the selection of
baselines/options.toml; a new deviation fails.

The TensorFlow- and Keras-based third-party adapters (tf-keras*, keras3-*) take minutes
each, and torch-fused has flaky cases (OUTSIDE_CI): they are gated with
OPTCHECK_GATE_ALL=1 (``nox -s gate``). The drawn examples do
not depend on the environment (settings.isolated_generation), so a baseline made in a
development install holds in CI's."""

from __future__ import annotations

import fnmatch
import os
import shlex
import tomllib
from pathlib import Path

import pytest

from optcheck.adapters.registry import BUNDLED, load_adapter
from optcheck.cli import main

ROOT = Path(__file__).resolve().parents[1]
BASELINES = ROOT / "baselines"
SELECTION = tomllib.loads((BASELINES / "options.toml").read_text())


def options(name: str) -> list[str]:
    """The verify options of ``name``: the first matching pattern's, else the default."""
    found = next((v for k, v in SELECTION["adapters"].items() if fnmatch.fnmatchcase(name, k)),
                 SELECTION["options"])  # fmt: skip
    return shlex.split(found)

#: Gated only with OPTCHECK_GATE_ALL=1: the TensorFlow- and Keras-based ones take minutes
#: each; torch-fused's SGD metamorphic cases in float16/bfloat16 are flaky (hypothesis
#: reports FlakyFailure: an example that fails once passes when re-run in the same
#: process), so its outcome is not reproducible enough to gate every commit.
OUTSIDE_CI = ("tf-keras*", "keras3-*", "torch-fused")


def _available(name: str) -> tuple[bool, str]:
    try:
        return load_adapter(name).availability()
    except Exception as exc:  # a factory that cannot even load: not installed here
        return False, f"{type(exc).__name__}: {exc}"


@pytest.mark.parametrize("profile", ["keras2", "keras3"])
@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_bundled_adapter_has_no_new_deviation(name, profile, tmp_path, capsys):
    outside = any(fnmatch.fnmatchcase(name, pattern) for pattern in OUTSIDE_CI)
    if outside and not os.environ.get("OPTCHECK_GATE_ALL"):
        pytest.skip(f"{name}: gated with OPTCHECK_GATE_ALL=1 (nox -s gate), see module doc")
    ok, why = _available(name)
    if not ok:
        pytest.skip(f"{name} is not available here: {why}")
    path = BASELINES / f"{name}.toml"
    assert path.exists(), f"every bundled adapter needs a baseline: {path} is missing"
    status = main(["verify", "--adapter", name, "--profile", profile, *options(name),
                   "--baseline", str(path), "--out", str(tmp_path)])  # fmt: skip
    out = capsys.readouterr()
    assert status == 0, f"{name} ({profile}) has new deviations:\n{out.out}\n{out.err[-3000:]}"
