"""pytest setup of the benchmarks: options, markers, the grid, the session roof.

Only ``pytest benchmarks`` loads this file: the repository's default run
(``testpaths = ["tests"]``) never collects benchmarks/.
"""

from __future__ import annotations

import importlib.util
import json
import os

import pytest

# Keep TensorFlow's start-up chatter out of the benchmark tables.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# JAX, torch and TensorFlow share one GPU in this process: JAX must not take 75 % of
# its memory up front.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

from benchmarks import harness

MARKERS = {
    "large": "N = 3e7 cases; skipped unless -m selects 'large' or --run-large is given",
    "gpu": "cases on a GPU; skip where the library sees none",
    "golden": "the NumPy golden reference (optcheck.reference)",
    "ours": "optcheck's XLA implementations (optcheck.adapters.xla: jax, jax-flat, tf)",
    "peer": "peer implementations: optax Adam, torch.optim.Adam fused / foreach",
}

_RECORDS = pytest.StashKey[list]()


def pytest_addoption(parser):
    group = parser.getgroup("optcheck-bench", "optcheck benchmarks (benchmarks/README.md)")
    group.addoption(
        "--bench-grid", choices=("smoke", "default", "report", "full"), default="default",
        help="which grid of cases to collect (default: default)",
    )  # fmt: skip
    group.addoption(
        "--bench-budget", type=float, default=0.5,
        help="seconds of steady-state timing per case (default 0.5)",
    )  # fmt: skip
    group.addoption(
        "--bench-pause", type=float, default=0.0,
        help="seconds to sleep before each case's timed rounds (shared machines; default 0)",
    )  # fmt: skip
    group.addoption("--run-large", action="store_true", help="run the N = 3e7 cases")
    group.addoption(
        "--bench-records", metavar="PATH",
        help="also append each record to PATH as a JSON line when its case ends "
        "(survives an interrupted run; benchmarks/targets.py reads it too)",
    )  # fmt: skip
    group.addoption(
        "--bench-roof-n", type=int, default=1 << 25,
        help="float32 elements of the roof's arrays (default 2**25)",
    )  # fmt: skip
    group.addoption(
        "--bench-jax-sync", action="store_true",
        help="JAX runs CPU computations inline, not on a worker thread "
        "(jax_cpu_enable_async_dispatch=False; jax, jax-flat and optax alike)",
    )  # fmt: skip


def pytest_configure(config):
    # optcheck's XLA options, with XLA:CPU's multi-output fusion (opt-in: it aborts on
    # scatters, which no benchmark has), must be in XLA_FLAGS before any library creates
    # its XLA backend: the roof probes JAX first. The peers that use XLA (optax) run in
    # this process, so with the same options (recorded: ``xla_flags``).
    from optcheck.adapters.xla import CPU_FUSION, set_xla_flags

    set_xla_flags(CPU_FUSION)
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    config.stash[_RECORDS] = _Records(config.getoption("--bench-records", None))
    if config.getoption("--bench-jax-sync", False):
        import jax  # before the CPU backend exists: the client reads it once

        jax.config.update("jax_cpu_enable_async_dispatch", False)


def pytest_generate_tests(metafunc):
    if "case" in metafunc.fixturenames:
        cases = harness.grid(metafunc.config.getoption("--bench-grid"))
        metafunc.parametrize(
            "case",
            [
                pytest.param(case, id=case.id, marks=[getattr(pytest.mark, m) for m in case.marks])
                for case in cases
            ],
        )
    if "paired_group" in metafunc.fixturenames:
        groups = harness.paired_groups(metafunc.config.getoption("--bench-grid"))
        metafunc.parametrize("paired_group", [pytest.param(item, id=item[0])
                                              for item in groups.items()])  # fmt: skip
    if "roof_device" in metafunc.fixturenames:
        metafunc.parametrize(
            "roof_device",
            [pytest.param("cpu", id="cpu"), pytest.param("gpu", id="gpu", marks=pytest.mark.gpu)],
        )


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-large") or "large" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="N = 3e7: select with -m large or pass --run-large")
    for item in items:
        if "large" in item.keywords:
            item.add_marker(skip)


if importlib.util.find_spec("pytest_benchmark") is None:

    @pytest.fixture
    def benchmark():
        pytest.skip("pytest-benchmark is not installed: pip install '.[bench]'")


@pytest.fixture(scope="session")
def roofs(request):
    """The session's roof per device, measured once, on first use."""
    return harness.RoofCache(n=request.config.getoption("--bench-roof-n"))


@pytest.fixture
def bench_budget(request):
    return request.config.getoption("--bench-budget")


@pytest.fixture
def bench_pause(request):
    return request.config.getoption("--bench-pause")


class _Records(list):
    """The session's records; with ``--bench-records`` each is also appended to a file."""

    def __init__(self, path):
        super().__init__()
        self.path = path

    def append(self, entry):
        super().append(entry)
        if self.path:
            with open(self.path, "a") as f:
                f.write(json.dumps(entry) + "\n")


@pytest.fixture
def bench_records(request):
    """Records of this session (the terminal summary evaluates the targets on them)."""
    return request.config.stash[_RECORDS]


def pytest_terminal_summary(terminalreporter, config):
    records = config.stash.get(_RECORDS, [])
    if not records:
        return
    from benchmarks import targets

    terminalreporter.section("optcheck benchmark targets (benchmarks/targets.py)")
    for line in targets.report(records).splitlines():
        terminalreporter.write_line(line)
