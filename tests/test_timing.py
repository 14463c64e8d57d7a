"""Where a case's seconds go (conformance/timing.py): every result splits its time by
stage (examples, shrink, diagnosis) and place (adapter, golden side, suite). The
assertions are accounting, not speed: a sleeping adapter's sleeps must all be counted
as the adapter's, the parts never exceed the case's seconds."""

from __future__ import annotations

import time

from optcheck.adapters.numpy_reference import ReferenceAdapter, ReferenceSession
from optcheck.conformance import suite, timing
from tests.test_suite import HERE as SUITE
from tests.test_suite import _Doubling, ctx_for

HERE = "tests.test_timing"
NAP = 0.01


class _Naps:
    """Sleeps NAP seconds in each step, then steps as its other base does."""

    def step(self, gradients, skip_gradients_aggregation=False):
        time.sleep(NAP)
        _Naps.naps += 1
        return super().step(gradients, skip_gradients_aggregation)


_Naps.naps = 0


def _adapter(session_class, doc: str):
    class Toy(ReferenceAdapter):
        __doc__ = doc

        def open(self, scenario):
            return session_class(self._package, scenario, self.numerics)

    return Toy


Napping = _adapter(type("_Napping", (_Naps, ReferenceSession), {}),
                   "The golden, sleeping NAP seconds in each step.")
NappingWrong = _adapter(type("_NappingWrong", (_Naps, _Doubling), {}),
                        "Twice the gradient (a deviation at step 1), sleeping in each step.")


def _run(adapter: str) -> dict:
    ctx = ctx_for(f"{HERE}:{adapter}", optimizers=["SGD"], features=["plain"], strategies=SUITE)
    (case,) = suite.plan(ctx).cases
    _Naps.naps = 0
    return suite.run_case(case, ctx)


def _total(spent: dict) -> float:
    return sum(sum(places.values()) for places in spent.values())


def test_a_passing_case_counts_every_step_of_the_adapter_as_the_adapters():
    result = _run("Napping")
    assert result["status"] == "pass"
    spent = result["timing"]
    assert set(spent) == {"examples"} and set(spent["examples"]) == set(timing.PLACES)
    assert spent["examples"]["adapter"] >= _Naps.naps * NAP > 0
    assert spent["examples"]["golden"] > 0
    assert _total(spent) <= result["seconds"] + 1e-3


def test_a_deviation_splits_examples_shrinking_and_diagnosis():
    result = _run("NappingWrong")
    assert result["status"] == "deviation" and result["diagnosis"]["tried"]
    spent = result["timing"]
    assert set(spent) == {"examples", "shrink", "diagnosis"}, spent
    # Each variant the diagnosis tried re-ran the adapter: its sleeps are in "diagnosis".
    assert spent["diagnosis"]["adapter"] >= len(result["diagnosis"]["tried"]) * NAP
    assert sum(s["adapter"] for s in spent.values()) >= _Naps.naps * NAP
    assert _total(spent) <= result["seconds"] + 1e-3


def test_breakdown_sums_a_reports_cases_per_stage_and_place():
    cases = [_run("Napping"), _run("NappingWrong")]
    report = {"adapters": [{"name": "toy", "seconds": 9.0, "cases": cases}]}
    (row,) = timing.breakdown(report)
    assert row["cases"] == 2 and row["wall"] == 9.0
    assert row["examples/adapter"] == round(sum(c["timing"]["examples"]["adapter"]
                                                for c in cases), 1)  # fmt: skip
    table = timing.markdown([row])
    assert table.startswith("| adapter | cases | wall s |") and "| toy | 2 | 9 |" in table
