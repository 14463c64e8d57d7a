"""Detection power: the suite's ``ci`` level must kill ≥ 95 % of the mutants.

Each mutant (tests/mutants/catalogue.py) is a copy of the golden reference with one
semantic slip a real implementation could make. Here:

* every mutant's patch applies (each snippet occurs exactly once) and the patched
  package imports;
* every mutant really changes the semantics: on its hand-written witness scenario the
  golden conforms to itself and the mutant diverges (or raises) — the witnesses play
  no part in the kill rate;
* the suite's own ``ci`` cases kill at least 95 % of the mutants
  (tests/mutants/kill_matrix.py: same strategies, settings, seeds, tolerances).
"""

from __future__ import annotations

import time
import warnings

import pytest

from optcheck.adapters.base import FEATURES
from optcheck.adapters.numpy_reference import ReferenceAdapter
from optcheck.conformance import engine
from optcheck.conformance.tolerance import Policy
from tests.mutants import adapter as mutant_adapters
from tests.mutants import kill_matrix
from tests.mutants.catalogue import ALL, BY_ID, MUTANTS, PROFILES, Mutant, PatchError

REQUIRED_KILL_RATE = 0.95

#: The slips issue 3 lists by name, and the mutant standing for each.
ISSUE_SLIPS = {
    "ε inside instead of outside the sqrt": "adam_epsilon_inside_sqrt",
    "bias correction one step off": "adam_bias_correction_one_step_ahead",
    "the schedule read after the increment": "schedule_read_after_increment",
    "EMA overwrite one step late": "ema_overwrite_before_average_update",
    "EMA average initialised at zero": "ema_average_starts_at_zero",
    "clipping after weight decay": "weight_decay_coupled_before_clip",
    "per-tensor instead of global norm": "global_clipnorm_applied_per_tensor",
    "Nadam schedule 0.96^(0.004·t)": "nadam_legacy_momentum_schedule",
    "Nadam's product advanced once per variable": "nadam_product_advanced_per_variable",
    "AMSGrad on the corrected v": "adam_amsgrad_on_corrected_v",
    "SGD momentum stored without lr": "sgd_momentum_stored_without_lr",
    "Adagrad accumulator starting at 0": "adagrad_accumulator_starts_at_zero",
    "Ftrl shrinkage added to the accumulator": "ftrl_shrinkage_in_accumulator",
    "the learning rate not rounded to float32": "learning_rate_not_rounded_to_float32",
}


def _ids(mutants):
    return [m.id for m in mutants]


# -- the catalogue ---------------------------------------------------------------------------
def test_catalogue_size_and_coverage():
    assert len(MUTANTS) >= 30
    assert len({m.id for m in MUTANTS}) == len(MUTANTS)
    specific = {o for m in MUTANTS if m.optimizers != ALL for o in m.optimizers}
    assert specific == set(ALL), "every optimizer has slips of its own"
    for m in MUTANTS:
        assert m.description and m.old and m.path
        assert set(m.optimizers) <= set(ALL), m.id
        assert set(m.profiles) <= set(PROFILES), m.id
        assert set(m.features) <= set(FEATURES), m.id
        assert set(m.all_features_for) <= set(m.optimizers), m.id
        assert m.witness is not None, m.id


def test_issue_slips_are_in_the_catalogue():
    missing = {slip: mid for slip, mid in ISSUE_SLIPS.items() if mid not in BY_ID}
    assert not missing


def test_apply_requires_exactly_one_occurrence():
    m = Mutant("t", "x.py", "a = 1", "a = 2", "test")
    assert m.apply("a = 1\nb = 1\n") == "a = 2\nb = 1\n"
    with pytest.raises(PatchError, match="0 times"):
        m.apply("b = 1\n")
    with pytest.raises(PatchError, match="2 times"):
        m.apply("a = 1\na = 1\n")
    with pytest.raises(PatchError, match="itself"):
        Mutant("t", "x.py", "a", "a", "test").apply("a")


# -- every patch applies and imports ---------------------------------------------------------
@pytest.mark.parametrize("mutant", MUTANTS, ids=_ids(MUTANTS))
def test_patch_applies_and_imports(mutant):
    original = (mutant_adapters.SOURCE / mutant.path).read_text(encoding="utf-8")
    text = mutant_adapters.patched_source(mutant)
    assert text != original
    package = mutant_adapters.build_package(mutant)
    assert package.__name__ == mutant_adapters.package_name(mutant)
    assert package.__file__.startswith(str(mutant_adapters._tmp_root()))
    assert (mutant_adapters.SOURCE / mutant.path).read_text(encoding="utf-8") == original
    assert sorted(package.optimizers.MODULES) == sorted(ALL)
    adapter = mutant_adapters.mutant_adapter(mutant)
    assert adapter.name == f"mutant:{mutant.id}"
    assert mutant_adapters.mutant_adapter(mutant) is adapter  # cached


# -- every mutant changes the semantics -------------------------------------------------------
@pytest.mark.parametrize("mutant", MUTANTS, ids=_ids(MUTANTS))
def test_mutant_differs_from_the_golden(mutant):
    """On its witness scenario the golden conforms to itself and the mutant does not.

    Free-trajectory mode: each side runs its own trajectory, so the question is simply
    whether the two compute the same thing (within the suite's tolerance).
    """
    scenario = mutant.witness()
    assert scenario.profile in mutant.profiles and scenario.optimizer in mutant.optimizers
    policy = Policy(mode="free")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert engine.check(scenario, ReferenceAdapter(), policy) is None
        try:
            found = engine.check(scenario, mutant_adapters.mutant_adapter(mutant), policy)
        except Exception as exc:  # a raise where the golden does not is a difference too
            found = f"{type(exc).__name__}: {exc}"
    assert found is not None, f"{mutant.id} computes what the golden computes on its witness"


# -- detection power --------------------------------------------------------------------------
def _survivor_line(o) -> str:
    return f"  {o.mutant} ({o.description}): {kill_matrix.survival_reason(o)}"


@pytest.fixture(scope="module")
def kill_outcomes():
    started = time.perf_counter()
    outcomes = kill_matrix.run_all(MUTANTS)
    return outcomes, time.perf_counter() - started


def test_ci_level_kills_at_least_95_percent(kill_outcomes):
    outcomes, seconds = kill_outcomes
    rate = kill_matrix.kill_rate(outcomes)
    survivors = [o for o in outcomes if not o.killed]
    detail = "\n".join(_survivor_line(o) for o in survivors)
    print(
        f"\nkill rate {rate:.1%} ({len(outcomes) - len(survivors)}/{len(outcomes)}) "
        f"in {seconds:.0f} s; survivors:\n{detail}"
    )
    assert len(outcomes) == len(MUTANTS)
    assert rate >= REQUIRED_KILL_RATE, (
        f"the ci level kills {rate:.1%} of the mutants (< {REQUIRED_KILL_RATE:.0%}); "
        f"survivors:\n{detail}"
    )


def test_kills_are_honest(kill_outcomes):
    """A kill names its case and example, and an ``error`` kill only where the golden ran."""
    outcomes, _ = kill_outcomes
    for o in outcomes:
        if o.killed:
            assert o.case and o.example and o.how in ("deviation", "error"), o
            assert o.detail, o


class _Spy(ReferenceAdapter):
    """The golden as a candidate, recording every scenario it is given."""

    def __init__(self):
        super().__init__(name="spy")
        self.seen: list[str] = []

    def open(self, scenario):
        self.seen.append(scenario.to_json())
        return super().open(scenario)


@pytest.mark.parametrize("optimizer, feature, dtype, profile", [
    ("SGD", "plain", "float32", "keras2"),
    ("Adam", "ema", "bfloat16", "keras3"),
])  # fmt: skip
def test_kill_runner_draws_the_suites_examples(optimizer, feature, dtype, profile):
    """The kill run's property case sees exactly the scenarios the suite's does."""
    from optcheck.conformance import suite

    ctx = suite.Context(adapter="spy", profile=profile, level=kill_matrix.LEVEL)
    case = suite.Case("spy", optimizer, feature, dtype, profile)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        by_suite = _Spy()
        assert suite.run_case(case, ctx, by_suite)["status"] == "pass"
        by_kill_run = _Spy()
        outcome = kill_matrix.Outcome("spy", "", "", killed=False)
        assert kill_matrix._run_property(case, ctx, by_kill_run, outcome) is None
    assert by_suite.seen and by_kill_run.seen == by_suite.seen
