"""The conformance suite: the cases of a run and how one case runs.

A run is fixed by a :class:`Context` (adapter, profile, level, comparison mode, seed,
filters). Its cases (:func:`plan`):

* **property cases**, one per (optimizer, feature, dtype) of
  ``strategies.case_grid``: hypothesis draws scenarios from
  ``strategies.scenarios(optimizer, feature, dtype, profile)`` and each one goes
  through :func:`optcheck.conformance.engine.check` (golden vs adapter, every step);
* **metamorphic cases** (feature ``metamorphic:<property>``, with ``Context.metamorphic``,
  which ``optcheck verify`` and the pytest plugin set): one per (optimizer, property of
  :mod:`optcheck.conformance.metamorphic`, dtype) where the property can apply; drawn
  plain scenarios, two runs of the adapter that must agree, no golden;
* **golden cases** (feature ``golden:<id>``): the golden tables of the Keras test
  suites (:mod:`optcheck.conformance.goldens`), run through the adapter's sessions;
* **seed-page cases** (feature ``seed:<id>``): the runnable examples of the seed page
  as fixed scenarios, compared with the golden like property cases.

A case whose needs the adapter lacks (``Capabilities.missing``) is ``unsupported``
with the reason and never reaches the adapter.

:func:`run_case` never raises for anything the adapter does: a divergence is
``deviation`` with the first divergence of the *shrunk* scenario and a repro script;
an exception is ``error`` with its traceback. Isolation from hangs and crashes is the
caller's (:mod:`optcheck.conformance.worker`).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import importlib
import math
import time
import traceback
import warnings
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from optcheck.adapters import registry
from optcheck.adapters.base import FEATURES, Capabilities, InvalidCapabilities, check_capabilities

from . import engine, goldens, settings, timing
from .scenario import Scenario
from .tolerance import Policy

STATUSES = ("pass", "deviation", "error", "unsupported")
DEFAULT_STRATEGIES = "optcheck.conformance.strategies"


@dataclass
class Context:
    """Everything a run needs, as JSON-able data (it crosses to worker processes)."""

    adapter: str
    profile: str = "keras2"
    level: str = "ci"
    mode: str = "resync"
    ulps: float | None = None
    seed: int = 0
    #: Filters; None keeps everything. Features are fnmatch patterns ("golden:*").
    optimizers: list[str] | None = None
    features: list[str] | None = None
    dtypes: list[str] | None = None
    #: Module providing case_grid() and scenarios() (tests substitute a small one).
    strategies: str = DEFAULT_STRATEGIES
    #: Overrides the level's number of examples per case.
    max_examples: int | None = None
    #: Include the golden-table and seed-page cases.
    fixed_cases: bool = True
    #: Include the metamorphic cases (one per property, optimizer and dtype). Off by
    #: default for API users; ``optcheck verify`` and the pytest plugin turn it on.
    metamorphic: bool = False
    #: Diagnose deviations (conformance/diagnosis.py): which known variant explains it.
    diagnose: bool = True
    #: Shrink failing scenarios (off: the first failing example is reported; faster).
    shrink: bool = True

    def policy(self) -> Policy:
        return Policy(mode=self.mode, ulps=self.ulps)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Context:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class Case:
    adapter: str
    optimizer: str
    feature: str
    dtype: str
    profile: str
    kind: str = "property"  # "property" | "metamorphic" | "golden" | "seed"
    needs: list[str] = field(default_factory=list)
    #: Why the adapter cannot run this case (None: it can).
    unsupported: str | None = None

    @property
    def id(self) -> str:
        if self.kind in ("property", "metamorphic"):
            return f"{self.optimizer}-{self.feature}-{self.dtype}"
        return self.feature

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Case:
        return cls(**data)


@dataclass
class Plan:
    """The cases of one adapter in one run."""

    name: str
    target: str
    version: str
    available: bool
    reason: str
    cases: list[Case]


# -- planning ------------------------------------------------------------------------
def strategies_module(ctx: Context):
    return importlib.import_module(ctx.strategies)


def feature_needs(feature: str) -> list[str]:
    """Adapter features a case's feature needs (for ``unsupported``)."""
    features = _features_module()
    if features is not None and feature in getattr(features, "CATALOGUE", {}):
        return list(features.needs_of(feature))
    return [feature] if feature in FEATURES and feature != "plain" else []


def _features_module():
    try:
        return importlib.import_module("optcheck.conformance.features")
    except ImportError:
        return None


def _selected(case: Case, ctx: Context) -> bool:
    if ctx.optimizers is not None and case.optimizer not in ctx.optimizers:
        return False
    if ctx.dtypes is not None and case.dtype not in ctx.dtypes:
        return False
    return ctx.features is None or any(
        fnmatch.fnmatchcase(case.feature, pattern) for pattern in ctx.features
    )


def all_cases(ctx: Context, name: str | None = None) -> list[Case]:
    """Every case of ``ctx`` (filters applied), in a stable order."""
    name = name or ctx.adapter
    module = strategies_module(ctx)
    optimizers = list(ctx.optimizers) if ctx.optimizers is not None else _all_optimizers()
    cases = [
        Case(name, opt, feature, dtype, ctx.profile, "property", feature_needs(feature))
        for opt, feature, dtype in module.case_grid(optimizers, ctx.profile)
    ]
    if ctx.metamorphic:
        from . import metamorphic

        dtypes = list(dict.fromkeys(d for _, _, d in module.case_grid(optimizers, ctx.profile)))
        cases += [
            Case(name, opt, f"metamorphic:{prop.name}", dtype, ctx.profile, "metamorphic")
            for opt in optimizers
            for prop in metamorphic.PROPERTIES
            for dtype in dtypes
            if _can_apply(prop, opt, dtype, ctx.profile)
        ]
    if ctx.fixed_cases:
        for gc in goldens.GOLDEN_CASES:
            if ctx.profile in gc.profiles:
                needs = ["weight_decay"] if gc.procedure == "weight_decay" else []
                cases.append(Case(name, gc.optimizer, f"golden:{gc.id}", gc.dtype, ctx.profile,
                                  "golden", needs))  # fmt: skip
        for sid, (scenario, needs) in seed_page_scenarios(ctx.profile).items():
            cases.append(Case(name, scenario.optimizer, f"seed:{sid}", scenario.dtype,
                              ctx.profile, "seed", list(needs)))  # fmt: skip
    return [c for c in cases if _selected(c, ctx)]


def _can_apply(prop, optimizer: str, dtype: str, profile: str) -> bool:
    """Whether a metamorphic property can apply to ``optimizer`` at all (probed on a small
    plain scenario with default hyper-parameters: e.g. not zero_learning_rate for Ftrl)."""
    from optcheck.reference import dtypes

    dt = dtypes.as_dtype(dtype)
    probe = Scenario(optimizer, {}, profile, dtype, [np.ones(2, dt), np.ones(2, dt)],
                     [[np.full(2, 0.5, dt), np.full(2, 0.25, dt)]] * 2)  # fmt: skip
    try:
        return bool(prop.applies(probe))
    except Exception:
        return True  # let the case itself say what is wrong


def _all_optimizers() -> list[str]:
    from .registry import OPTIMIZERS

    return list(OPTIMIZERS)


def plan(ctx: Context) -> Plan:
    """Load the adapter and list its cases, marking what it cannot run.

    Raises what loading the adapter raises, and :class:`InvalidCapabilities` for
    capabilities it cannot plan with (the caller reports either as the adapter's error).
    """
    name, target = registry.resolve(ctx.adapter)
    adapter = registry.load_adapter(ctx.adapter)
    available, reason = adapter.availability()
    version = adapter.version() if available else ""
    cases = all_cases(ctx, name)
    caps = _capabilities(adapter) if available else None
    # An empty field leaves every case unsupported: say so where the reason is read.
    empty = [f for f in ("optimizers", "dtypes", "profiles") if caps and not getattr(caps, f)]
    for case in cases:
        if caps is None:
            case.unsupported = f"adapter unavailable: {reason}"
            continue
        missing = caps.missing(case.optimizer, case.needs, case.dtype, case.profile)
        if missing:
            notes = [caps.notes[m] for m in (case.optimizer, *case.needs) if m in caps.notes]
            notes += [f"capabilities() declares no {', no '.join(empty)}"] if empty else []
            case.unsupported = "; ".join(["lacks " + ", ".join(missing), *notes])
    return Plan(name, target, version, bool(available), reason or "", cases)


def _capabilities(adapter) -> Capabilities:
    """The adapter's capabilities, checked (:func:`check_capabilities`)."""
    try:
        caps = adapter.capabilities()
    except Exception as exc:
        raise InvalidCapabilities(f"capabilities() raised {type(exc).__name__}: {exc}") from exc
    return check_capabilities(caps)


# -- running ---------------------------------------------------------------------------
_ADAPTERS: dict[str, object] = {}


def get_adapter(name_or_path: str):
    """The adapter, loaded once per process."""
    if name_or_path not in _ADAPTERS:
        _ADAPTERS[name_or_path] = registry.load_adapter(name_or_path)
    return _ADAPTERS[name_or_path]


def base_result(case: Case, ctx: Context) -> dict:
    return {
        "id": case.id,
        "adapter": case.adapter,
        "optimizer": case.optimizer,
        "feature": case.feature,
        "dtype": case.dtype,
        "profile": case.profile,
        "kind": case.kind,
        "status": None,
        "seed": ctx.seed,
    }


def unsupported_result(case: Case, ctx: Context) -> dict:
    return {**base_result(case, ctx), "status": "unsupported", "reason": case.unsupported,
            "examples": 0, "seconds": 0.0}  # fmt: skip


def error_result(case: Case, ctx: Context, message: str, tb: str = "", seconds=0.0) -> dict:
    return {**base_result(case, ctx), "status": "error", "message": message, "traceback": tb,
            "examples": 0, "seconds": round(seconds, 4)}  # fmt: skip


def run_case(case: Case, ctx: Context, adapter=None) -> dict:
    """Run one case; a result dict whatever the adapter does (see module doc)."""
    if case.unsupported:
        return unsupported_result(case, ctx)
    started = time.perf_counter()
    try:
        with warnings.catch_warnings(), timing.recording() as spent:
            # Warnings are the implementations' business (Keras warns about None
            # gradients); a user's -W error must not turn them into case errors.
            warnings.simplefilter("ignore")
            adapter = adapter or get_adapter(ctx.adapter)
            if case.kind == "golden":
                result = _run_golden(case, ctx, adapter)
            elif case.kind == "seed":
                result = _run_seed(case, ctx, adapter)
            elif case.kind == "metamorphic":
                result = _run_metamorphic(case, ctx, adapter)
            else:
                result = _run_property(case, ctx, adapter)
            result["timing"] = spent()
    except (KeyboardInterrupt, GeneratorExit):
        raise
    except BaseException as exc:  # SystemExit from an adapter is its error too
        return error_result(case, ctx, f"{type(exc).__name__}: {exc}", traceback.format_exc(),
                            time.perf_counter() - started)  # fmt: skip
    result["seconds"] = round(time.perf_counter() - started, 4)
    return result


def effective_policy(ctx: Context, adapter) -> Policy:
    policy = ctx.policy()
    if policy.mode == "resync" and not adapter.capabilities().load:
        policy = Policy(mode="free", ulps=policy.ulps)
    return policy


class _Deviation(AssertionError):
    pass


def _run_property(case: Case, ctx: Context, adapter) -> dict:
    module = strategies_module(ctx)
    strategy = module.scenarios(case.optimizer, case.feature, case.dtype, case.profile)
    policy = effective_policy(ctx, adapter)
    return _run_drawn(case, ctx, adapter, strategy,
                      lambda scenario: engine.check(scenario, adapter, policy),
                      engine.divergence_dict, policy.describe(case.dtype),
                      _diagnoser(ctx, adapter, policy))  # fmt: skip


def _diagnoser(ctx: Context, adapter, policy):
    """``scenario -> diagnosis dict`` for deviations against the golden, or None."""
    if not ctx.diagnose:
        return None
    from . import diagnosis

    return lambda scenario: diagnosis.diagnose(scenario, adapter, policy)


def _metamorphic_property(case: Case):
    from . import metamorphic

    name = case.feature.removeprefix("metamorphic:")
    return next(p for p in metamorphic.PROPERTIES if p.name == name)


def _run_metamorphic(case: Case, ctx: Context, adapter) -> dict:
    """A metamorphic property (:mod:`optcheck.conformance.metamorphic`) on drawn plain
    scenarios: two runs of the adapter related by the property, no golden."""
    from . import metamorphic

    prop = _metamorphic_property(case)
    strategy = strategies_module(ctx).scenarios(case.optimizer, "plain", case.dtype,
                                                case.profile)  # fmt: skip

    def check(scenario):
        if not prop.applies(scenario):
            raise _Skip(f"{prop.name} does not apply")
        try:
            return prop.function(adapter, scenario)
        except metamorphic.NotApplicable as exc:
            raise _Skip(str(exc)) from None

    tolerance = {"mode": "metamorphic", "dtype": case.dtype, "bound": prop.bound,
                 "property": prop.description}  # fmt: skip
    return _run_drawn(case, ctx, adapter, strategy, check,
                      lambda message: {"property": prop.name, "message": message},
                      tolerance)  # fmt: skip


def _run_drawn(case, ctx, adapter, strategy, check, describe_failure, tolerance,
               diagnose=None) -> dict:  # fmt: skip
    """Hypothesis around ``check(scenario) -> failure | None`` with the level's settings."""
    from hypothesis import given
    from hypothesis import seed as hypothesis_seed
    from hypothesis.errors import Unsatisfiable

    caps = adapter.capabilities()
    level = settings.LEVELS[ctx.level]
    if ctx.max_examples:
        # Exactly the examples asked for: a time budget would make the run depend on the
        # machine's load (gates compare runs across machines).
        level = dataclasses.replace(level, budget=None)
    hyp = settings.hypothesis_settings(ctx.level, ctx.max_examples, ctx.shrink)
    run = _DrawnRun(check, caps, level)

    def conformance_case(scenario):
        run(scenario)

    runner = hypothesis_seed(settings.case_seed(ctx.seed, case.id))(
        hyp(given(strategy)(conformance_case))
    )
    result = {**base_result(case, ctx), "tolerance": tolerance}
    try:
        # The examples must not depend on what else is installed or imported here.
        with settings.isolated_generation():
            try:
                runner()
            except _ShrinkCut:
                raise run.restore_best() from None
    except Unsatisfiable:  # only scenarios the adapter cannot run (or that do not apply)
        result.update(_unsupported_reason(run) if run.examples == 0 else {"status": "pass"})
    except _Deviation:
        scenario, found = run.failing, run.divergence
        result.update(status="deviation", first_divergence=describe_failure(found),
                      scenario=scenario.describe(),
                      repro=repro_script(case, ctx, scenario))  # fmt: skip
        if diagnose is not None:
            result["diagnosis"] = _safe_diagnosis(diagnose, scenario)
    except Exception as exc:
        result.update(status="error", message=f"{type(exc).__name__}: {exc}",
                      traceback=traceback.format_exc())  # fmt: skip
        if run.failing is not None:
            result.update(scenario=run.failing.describe(),
                          repro=repro_script(case, ctx, run.failing))  # fmt: skip
    else:
        if run.examples == 0 and (run.missing or run.skipped):
            result.update(_unsupported_reason(run))
        else:
            result["status"] = "pass"
    result["examples"] = run.examples
    if run.failed_at is not None:
        result["shrink_steps"] = run.shrink_steps
        result["shrink_truncated"] = run.truncated
    return result


def _unsupported_reason(run) -> dict:
    reasons = ["every scenario needs " + ", ".join(sorted(run.missing))] if run.missing else []
    reasons += sorted(run.skipped)[:3]
    return {"status": "unsupported", "reason": "; ".join(reasons) or "no runnable scenario"}


class _Skip(Exception):
    """A drawn scenario the check cannot use (a metamorphic property does not apply)."""


class _ShrinkCut(BaseException):
    """Ends hypothesis's shrinking at once (a BaseException: hypothesis lets it through);
    :func:`_run_drawn` then reports the smallest failure found so far."""


class _DrawnRun:
    """The function hypothesis calls with each scenario of a drawn case.

    Limits (the level's): once ``budget`` seconds have passed without a failure, no new
    example is checked; once ``shrink_budget`` seconds have passed since the first
    failure, or ``shrink_steps`` scenarios have been replayed while shrinking, shrinking
    stops (:class:`_ShrinkCut`) and the last failing scenario — the smallest hypothesis
    found, since it only tries smaller ones — is reported. Stopping, rather than letting
    the remaining candidates pass unchecked, matters: hypothesis still draws each of them,
    and drawing a scenario costs more than checking it on a fast adapter.
    """

    def __init__(self, check, caps, level):
        self.check, self.caps, self.level = check, caps, level
        self.started = time.perf_counter()
        self.examples = 0
        self.shrink_steps = 0
        self.missing: set[str] = set()
        self.skipped: set[str] = set()
        self.failing: Scenario | None = None  # the last scenario that failed (or running)
        self.divergence = None
        self.failed_at: float | None = None
        self.truncated = False
        self.best: tuple | None = None  # (scenario, failure, exception): smallest so far

    def __call__(self, scenario: Scenario) -> None:
        now = time.perf_counter()
        if self.failed_at is None:
            budget = self.level.budget
            if budget is not None and self.examples and now - self.started > budget:
                return  # over the time budget: no new example
        elif ((self.level.shrink_budget is not None
               and now - self.failed_at > self.level.shrink_budget)
              or (self.level.shrink_steps is not None
                  and self.shrink_steps >= self.level.shrink_steps)):  # fmt: skip
            self.truncated = True
            raise _ShrinkCut()
        missing = self.caps.missing(scenario.optimizer, scenario.needs, scenario.dtype,
                                    scenario.profile)  # fmt: skip
        if missing:
            # Rejected, not passed: hypothesis draws another scenario, so a case's
            # examples are all ones the adapter can run (Unsatisfiable if none is).
            self.missing.update(missing)
            from hypothesis import reject

            reject()
        if self.failed_at is not None:
            timing.enter_stage("shrink")
        counter = "examples" if self.failed_at is None else "shrink_steps"
        setattr(self, counter, getattr(self, counter) + 1)
        self.failing = scenario
        try:
            found = self.check(scenario)
        except _Skip as skip:
            setattr(self, counter, getattr(self, counter) - 1)
            self.skipped.add(str(skip))
            self.failing = None
            from hypothesis import reject

            reject()
        except Exception as exc:
            self._failed(scenario, None, exc)
            raise
        if found is not None:
            exc = _Deviation(str(found))
            self._failed(scenario, found, exc)
            self.divergence = found
            raise exc
        self.failing = None

    def _failed(self, scenario, found, exc) -> None:
        if self.failed_at is None:
            self.failed_at = time.perf_counter()
        # Hypothesis shrinks the first failure's kind; another kind met on the way is not it.
        if self.best is None or type(exc) is type(self.best[2]):
            self.best = (scenario, found, exc)

    def restore_best(self) -> BaseException:
        """After a cut: the smallest failure found becomes the case's; its exception."""
        self.failing, self.divergence, exc = self.best
        return exc


def _run_seed(case: Case, ctx: Context, adapter) -> dict:
    scenario, _ = seed_page_scenarios(case.profile)[case.feature.removeprefix("seed:")]
    policy = effective_policy(ctx, adapter)
    result = {**base_result(case, ctx), "tolerance": policy.describe(case.dtype), "examples": 1}
    refused = _page_code_refused(scenario, adapter)
    if refused is not None:
        result.update(refused)
        return result
    found = engine.check(scenario, adapter, policy)
    if found is None:
        result["status"] = "pass"
    else:
        result.update(status="deviation", first_divergence=engine.divergence_dict(found),
                      scenario=scenario.describe(),
                      repro=repro_script(case, ctx, scenario))  # fmt: skip
        diagnose = _diagnoser(ctx, adapter, policy)
        if diagnose is not None:
            result["diagnosis"] = _safe_diagnosis(diagnose, scenario)
    return result


def _page_code_refused(scenario: Scenario, adapter) -> dict | None:
    """When the profile's golden refuses the page's own code (Keras 3 takes no int
    ``learning_rate``), the case compares the refusals: ``pass`` when the adapter raises
    the same exception type, ``deviation`` when it runs the code or raises another; None
    when the golden runs it."""
    from optcheck.adapters.numpy_reference import ReferenceAdapter

    try:
        ReferenceAdapter().open(scenario).close()
    except Exception as exc:
        golden = exc
    else:
        return None
    call = f"{scenario.optimizer}({_call_arguments(scenario.config)})"
    try:
        adapter.open(scenario).close()
    except Exception as exc:
        if type(exc) is type(golden):
            return {"status": "pass", "outcome": f"{call} raises {type(exc).__name__} in "
                    f"profile {scenario.profile}, as the golden does"}  # fmt: skip
        theirs = f"raises {type(exc).__name__}: {exc}"
    else:
        theirs = "runs it"
    quantity = (f"the page's own code {call}: the golden (profile {scenario.profile}) raises "
                f"{type(golden).__name__}: {golden}; the adapter {theirs}")  # fmt: skip
    divergence = engine.Divergence(0, quantity, [], 0.0, 0.0, math.inf, 0.0)
    # No values to compare: the message is the whole divergence (report.divergence_text).
    first = {**engine.divergence_dict(divergence), "message": quantity}
    return {"status": "deviation", "first_divergence": first, "scenario": scenario.describe()}


def _call_arguments(config: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in config.items())


def _safe_diagnosis(diagnose, scenario) -> dict:
    """A diagnosis that fails is reported as such; it never changes the case's status."""
    try:
        with timing.stage("diagnosis"):
            return diagnose(scenario)
    except Exception as exc:
        return {"verdict": f"not diagnosed ({type(exc).__name__}: {exc})", "variant": None,
                "summary": "", "source": "", "tried": [], "seconds": 0.0}  # fmt: skip


# -- golden tables -----------------------------------------------------------------------
def golden_scenario(spec, initial_values, steps, profile, options=None) -> Scenario:
    """The scenario a golden-table procedure runs (one optimizer, fixed inputs)."""
    from optcheck.reference import dtypes

    options = options or {}
    values = [np.asarray(v) for v in initial_values]
    return Scenario(
        optimizer=spec["class_name"],
        config=dict(spec.get("config", {})),
        profile=profile,
        dtype=dtypes.dtype_name(values[0].dtype),
        initial_values=values,
        steps=[list(step) for step in steps],
        feature="golden",
        names=list(options.get("names") or []),
        exclude_names=list(options.get("exclude_names") or []),
        exclude_indices=list(options.get("exclude_indices") or []),
    )


def session_runner(adapter) -> goldens.Runner:
    """A golden-table runner (:data:`goldens.Runner`) built on the adapter's sessions."""

    def runner(spec, initial_values, steps, profile, options):
        scenario = golden_scenario(spec, initial_values, steps, profile, options)
        shapes = engine.template(scenario)
        session = timing.open_session(adapter, scenario, "adapter")
        try:
            rows = []
            for k, step in enumerate(scenario.steps, start=1):
                observation = engine.fitting(adapter, session.step(step), shapes,
                                             scenario.names, f"step {k}")  # fmt: skip
                rows.append(list(observation.variables))
            return rows
        finally:
            session.close()

    return runner


def golden_case(case_id: str) -> goldens.GoldenCase:
    return next(c for c in goldens.GOLDEN_CASES if c.id == case_id)


def _run_golden(case: Case, ctx: Context, adapter) -> dict:
    gc = golden_case(case.feature.removeprefix("golden:"))
    outcome = goldens.run_case(gc, session_runner(adapter), case.profile)
    result = {**base_result(case, ctx), "examples": 1,
              "tolerance": {"mode": "golden-table", "rtol": gc.rtol, "atol": gc.atol,
                            "source": gc.source}}  # fmt: skip
    if outcome["status"] == "pass":
        result["status"] = "pass"
        return result
    worst = outcome["worst"]
    index = list(worst["index"])
    if gc.procedure == "correctness":
        step, quantity, index = index[0] + 1, "variable", index[1:]
    elif gc.procedure == "weight_decay":
        step, quantity, index = 1, f"variable var{index[-1] + 1}", []
    else:
        step, quantity, index = 1, "variable", index[1:]
    expected, actual = worst["expected"], worst["actual"]
    result.update(
        status="deviation",
        first_divergence={
            "step": step,
            "quantity": f"{quantity} (golden table {gc.id})",
            "index": index,
            "expected": expected,
            "actual": actual,
            "error": abs(actual - expected) if actual == actual else float("inf"),
            "tolerance": gc.atol + gc.rtol * abs(expected),
        },
        scenario=f"{gc.id}: {gc.spec} procedure={gc.procedure} ({gc.source})",
        repro=golden_repro_script(case, ctx),
    )
    policy = effective_policy(ctx, adapter)
    diagnose = _diagnoser(ctx, adapter, policy)
    if diagnose is not None and gc.procedure != "weight_decay":
        # The table's own inputs as a scenario: which semantics the adapter follows there.
        values, steps = goldens.golden_inputs(gc)
        scenario = golden_scenario(gc.spec, values, steps, case.profile)
        result["diagnosis"] = _safe_diagnosis(diagnose, scenario)
    return result


# -- seed page ---------------------------------------------------------------------------
def seed_page_scenarios(profile: str) -> dict[str, tuple[Scenario, tuple[str, ...]]]:
    """The seed page's runnable examples as scenarios: id -> (scenario, needs).

    Each config is the page's own arguments with the page's Python types (``learning_rate=1``
    stays an int; an argument the page leaves out is absent), so an adapter receives what
    the page's user passes (tests/test_seed_page.py holds the table transcribed from the
    page). The page's "Creating a custom optimizer" example subclasses the optimizer, which
    no adapter can receive as a serialization dict; it stays a reference test
    (tests/test_seed_page.py).
    """
    from optcheck.reference.sparse import PerReplica

    f32 = np.float32

    def sgd(feature, config, values, steps, dtype="float32", **options):
        arrays = [np.asarray(v, dtype=np.dtype(dtype)) for v in values]
        grads = [[np.asarray(g, dtype=np.dtype(dtype)) if not isinstance(g, PerReplica) else g
                  for g in step] for step in steps]  # fmt: skip
        return Scenario("SGD", config, profile, dtype, arrays, grads, feature=f"seed:{feature}",
                        **options)  # fmt: skip

    # ExponentialDecay(initial_learning_rate=.01, decay_steps=20, decay_rate=.1).
    schedule = {
        "class_name": "ExponentialDecay",
        "config": {"initial_learning_rate": 0.01, "decay_steps": 20, "decay_rate": 0.1},
    }
    # tf.Variable(np.random.random(size=(1,))): a float64 variable; seeded for a fixed run.
    random_var = np.random.RandomState(0).random(size=(1,))
    # SGD(learning_rate=1, use_ema=True, ema_momentum=0.5[, ema_overwrite_frequency=3]).
    ema = {"learning_rate": 1, "use_ema": True, "ema_momentum": 0.5}
    replicas = PerReplica((f32(0.25), f32(0.5)))
    # strategy.reduce("SUM", gradients): the caller's own sum of the replicas.
    reduced = replicas.values[0] + replicas.values[1]
    return {
        # opt.minimize(3·v1² + 2·v2²): gradients 6·v1 = 6 and 4·v2 = 8.
        "usage": (sgd("usage", {"learning_rate": 0.1}, [1.0, 2.0], [[6.0, 8.0]]), ()),
        # grads[0] = grads[0] + 1.
        "processing_gradients": (sgd("processing_gradients", {"learning_rate": 0.1},
                                     [1.0, 2.0], [[7.0, 8.0]]), ()),
        # loss 3·var, one minimize call: gradient 3 in the variable's float64.
        "dynamic_learning_rate": (sgd("dynamic_learning_rate", {"learning_rate": schedule},
                                      [random_var], [[[3.0]]], dtype="float64"),
                                  ("schedule",)),
        # loss 2·v1 + 2·v2: gradients 2, clipped to 1.
        "gradient_clipping": (sgd("gradient_clipping", {"learning_rate": 1, "clipvalue": 1},
                                  [2.0, 2.0], [[2.0, 2.0]]), ("clipvalue",)),
        # loss v1 + v2, the same gradients applied three times.
        "exponential_moving_average": (sgd(
            "exponential_moving_average", {**ema, "ema_overwrite_frequency": 3},
            [2.0, 2.0], [[1.0, 1.0]] * 3), ("ema",)),
        # The EMA example's optimizer without periodic overwrite, then
        # finalize_variable_values() as the page's text says.
        "finalize_variable_values": (sgd("finalize_variable_values", ema, [2.0, 2.0],
                                         [[1.0, 1.0]] * 3, finalize=True), ("ema", "finalize")),
        # The distribution example, SGD(): replicas summed by the optimizer, or by the caller.
        "strategy_aggregation": (sgd("strategy_aggregation", {}, [1.0], [[replicas]]),
                                 ("replicas",)),
        "strategy_skip_aggregation": (sgd("strategy_skip_aggregation", {}, [1.0], [[reduced]],
                                          skip_gradients_aggregation=True),
                                      ("skip_aggregation",)),
    }  # fmt: skip


# -- repro scripts -----------------------------------------------------------------------
_REPRO = '''\
"""Reproduce optcheck case {case_id} of adapter {adapter!r}.

profile {profile}, level {level}, run seed {seed}; {reason}
Run with the Python that has optcheck and the adapter installed: python this_file.py
Exit status 1 while the case still fails, 0 once it conforms.
"""

import sys

from optcheck.adapters.registry import load_adapter
from optcheck.conformance import engine
from optcheck.conformance.scenario import Scenario
from optcheck.conformance.tolerance import Policy

ADAPTER = {adapter!r}
POLICY = Policy(mode={mode!r}, ulps={ulps!r})
SCENARIO = {scenario!r}

scenario = Scenario.from_json(SCENARIO)
print(scenario.describe())
divergence = engine.check(scenario, load_adapter(ADAPTER), POLICY)
if divergence is None:
    print("no divergence: the case conforms")
    sys.exit(0)
print("first divergence:", divergence)
sys.exit(1)
'''

_GOLDEN_REPRO = '''\
"""Reproduce optcheck golden-table case {case_id} of adapter {adapter!r} (profile {profile}).

Run with the Python that has optcheck and the adapter installed: python this_file.py
Exit status 1 while the case still fails, 0 once it conforms.
"""

import json
import sys

from optcheck.adapters.registry import load_adapter
from optcheck.conformance import goldens, suite

ADAPTER = {adapter!r}
CASE = {golden_id!r}

case = suite.golden_case(CASE)
result = goldens.run_case(case, suite.session_runner(load_adapter(ADAPTER)), {profile!r})
print(json.dumps(result, indent=2))
sys.exit(0 if result["status"] == "pass" else 1)
'''


_METAMORPHIC_REPRO = '''\
"""Reproduce optcheck case {case_id} of adapter {adapter!r}: metamorphic property {name}.

profile {profile}, level {level}, run seed {seed}; the shrunk failing scenario is embedded
below (exact bits). Run with the Python that has optcheck and the adapter installed:
python this_file.py — exit status 1 while the property still fails, 0 once it holds.
"""

import sys

from optcheck.adapters.registry import load_adapter
from optcheck.conformance import metamorphic
from optcheck.conformance.scenario import Scenario

ADAPTER = {adapter!r}
PROPERTY = {name!r}
SCENARIO = {scenario!r}

scenario = Scenario.from_json(SCENARIO)
print(scenario.describe())
prop = next(p for p in metamorphic.PROPERTIES if p.name == PROPERTY)
message = prop.function(load_adapter(ADAPTER), scenario)
if message is None:
    print("the property holds")
    sys.exit(0)
print("violated:", message)
sys.exit(1)
'''


def repro_script(case: Case, ctx: Context, scenario: Scenario) -> str:
    """A self-contained script replaying ``scenario`` against the golden and the adapter
    (or, for a metamorphic case, checking the property on the adapter)."""
    if case.kind == "metamorphic":
        return _METAMORPHIC_REPRO.format(
            case_id=case.id, adapter=ctx.adapter, profile=case.profile, level=ctx.level,
            seed=ctx.seed, name=_metamorphic_property(case).name, scenario=scenario.to_json(),
        )  # fmt: skip
    policy = ctx.policy()
    return _REPRO.format(
        case_id=case.id, adapter=ctx.adapter, profile=case.profile,
        level=ctx.level, seed=ctx.seed, mode=policy.mode, ulps=policy.ulps,
        reason="the shrunk failing scenario is embedded below (exact bits).",
        scenario=scenario.to_json(),
    )  # fmt: skip


def golden_repro_script(case: Case, ctx: Context) -> str:
    return _GOLDEN_REPRO.format(case_id=case.id, adapter=ctx.adapter,
                                profile=case.profile,
                                golden_id=case.feature.removeprefix("golden:"))  # fmt: skip
