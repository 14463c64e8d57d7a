"""Developer sessions: ``nox -s tests``, ``nox -s lint``, ``nox -s verify``, ``nox -s report``."""

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True


@nox.session
def tests(session):
    """The test suite (what CI runs: with TensorFlow, tf-keras, Keras 3, JAX, optax and
    torch, so every bundled adapter is tested and gated)."""
    session.install(".[test,tf,keras,jax,torch]")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session
def lint(session):
    """ruff over the whole tree."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")


@nox.session
def verify(session):
    """The main job: ``optcheck verify`` on the bundled adapters, the ``report`` benchmark
    grid, and the report (reports/out/report/report.html and report.md)."""
    session.install(".[report,bench]")
    for profile in ("keras2", "keras3"):
        session.run("optcheck", "verify", "--profile", profile, "--out", f"reports/out/{profile}",
                    success_codes=[0, 1])  # fmt: skip
    session.run("python", "-m", "pytest", "benchmarks", "-q", "--bench-grid", "report",
                "--benchmark-only", "--benchmark-json", "reports/out/bench.json")  # fmt: skip
    _report(session)


@nox.session
def report(session):
    """The report from the files the main job left in reports/out (arguments after ``--``
    replace them: ``nox -s report -- --conformance a.json --bench b.json --before
    old.json --out DIR``)."""
    session.install(".[report]")
    _report(session)


def _report(session):
    args = session.posargs or [
        "--conformance", "reports/out/keras2/conformance.json",
        "reports/out/keras3/conformance.json", "--bench", "reports/out/bench.json",
        "--out", "reports/out/report",
    ]  # fmt: skip
    session.run("optcheck", "report", *args)


@nox.session
def findings(session):
    """README's "What optcheck found" table: ``optcheck verify`` on the bundled adapters in
    both profiles (reports in reports/out/findings), the deviations extracted to
    reports/data/findings/*.json (committed), the table regenerated from them. Arguments:
    adapter names (default: every bundled adapter) and, after ``--``, verify options
    (default: the gate's, baselines/options.toml; ``nox -s findings -- torch optax --
    --level ci``)."""
    session.install(".[test,tf,keras,jax,torch]")  # test: the pinned hypothesis
    names, _, options = " ".join(session.posargs).partition(" -- ")
    import tomllib

    with open("baselines/options.toml", "rb") as f:
        selection = tomllib.load(f)
    adapters = names.split() or session.run(
        "python", "-c", "from optcheck.adapters.registry import BUNDLED; print(*BUNDLED)",
        silent=True,
    ).split()  # fmt: skip
    for profile in ("keras2", "keras3"):
        for adapter in adapters:
            out = f"reports/out/findings/{profile}-{adapter}"
            session.run("optcheck", "verify", "--adapter", adapter, "--profile", profile,
                        "--out", out, *(options or _selection(selection, adapter)).split(),
                        success_codes=[0, 1])  # fmt: skip
            session.run("python", "-m", "optcheck.reports.findings", "extract",
                        f"{out}/conformance.json", "--out", "reports/data/findings")  # fmt: skip
    session.run("python", "-m", "optcheck.reports.findings", "readme", "reports/data/findings")


def _selection(selection: dict, adapter: str) -> str:
    """baselines/options.toml: the first pattern matching ``adapter``, else the default."""
    import fnmatch

    for pattern, options in selection["adapters"].items():
        if fnmatch.fnmatchcase(adapter, pattern):
            return options
    return selection["options"]


@nox.session
def gate(session):
    """Every bundled adapter against its baseline (baselines/), both profiles, the full
    selection (tests/test_gating.py; CI gates each with its ``[ci]`` selection and
    profiles)."""
    session.install(".[test,tf,keras,jax,torch]")
    session.run("python", "-m", "pytest", "-q", "tests/test_gating.py", *session.posargs,
                env={"OPTCHECK_GATE_ALL": "1"})  # fmt: skip


@nox.session
def mutants(session):
    """Detection power: the kill matrix of the mutants of tests/mutants (mutant × first ci
    case that kills it, and the kill rate) in reports/out/mutants."""
    session.install(".[test]")
    session.run(
        "python", "-m", "tests.mutants.kill_matrix", "--out", "reports/out/mutants",
        *session.posargs,
    )  # fmt: skip


@nox.session
def bench(session):
    """Step-time benchmarks (benchmarks/README.md): pytest-benchmark JSON in
    reports/out/bench/bench.json, then the issue's targets on it (fails if one fails).
    Arguments after ``--`` go to pytest: ``nox -s bench -- -k Adam --bench-grid full``."""
    session.install(".[bench,jax,tf,torch]")
    out = "reports/out/bench"
    session.run("python", "-c", f"import os; os.makedirs({out!r}, exist_ok=True)")
    session.run(
        "python", "-m", "pytest", "benchmarks", "--benchmark-only",
        f"--benchmark-json={out}/bench.json", "--benchmark-columns=min,median,rounds,iterations",
        *session.posargs,
    )  # fmt: skip
    session.run("python", "-m", "benchmarks.targets", f"{out}/bench.json")
