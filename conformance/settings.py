"""Hypothesis settings of the suite's two levels, ``ci`` and ``thorough``.

* ``ci`` — derandomized (the same examples on every run of the same optcheck), 12
  examples per case, a time budget of 5 s per case after which no new example is
  started, and shrinking cut short after 10 s or 50 replayed scenarios, whichever comes
  first (the smallest failing scenario found so far is reported; docs/throughput.md:
  without the step limit torch's deviating cases spent 3.5 times their examples' time
  shrinking). Measured: ``optcheck verify
  --adapter numpy --level ci`` takes 52–66 s per profile (910 cases for keras2, 955 for
  keras3) on this project's 2-core machine while other jobs shared it; the requirement
  is under three minutes.
* ``thorough`` — 200 examples per case, no time budget, 120 s of shrinking, a random
  run seed (reported, and accepted back with ``--seed``).

Both: no example database (a conformance run must not depend on files left by
another), no deadline (an adapter's first step may compile), quiet output (the
suite reports through its own results), a single failure per case.

The drawn examples depend only on the strategies, the seed and the hypothesis version:
:func:`isolated_generation`, around every drawn case, keeps hypothesis from mixing in
the "local constants" it collects (hypothesis ≥ 6.131, ``HypothesisProvider``) from the
literals of every imported module outside site-packages and the standard library. With
them, an editable install (optcheck's own literals are local: ``0.9963`` of
``goldens.py`` became an Adam ``beta_2``), a copy on ``PYTHONPATH``, a user's adapter
module or project, and even which modules a worker happened to import before a case
changed the examples of a derandomized run; a wheel install in site-packages has none.

The seed. Every case runs under an explicit seed derived from the run seed and the
case id (:func:`case_seed`), so ``optcheck verify --seed N`` reproduces a run, and
one case can be rerun alone (``--optimizer``, ``--feature``, ``--dtype``) with the
same examples. The run seed is in every report and every failure message.

The profiles are also registered with hypothesis under ``optcheck-ci`` and
``optcheck-thorough``, and as ``ci`` / ``thorough`` unless those names are taken.
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from hypothesis import HealthCheck, Phase, Verbosity, settings
from hypothesis.errors import InvalidArgument


@dataclass(frozen=True)
class Level:
    name: str
    max_examples: int
    #: Seconds after which a case starts no new example (None: no budget).
    budget: float | None
    #: Seconds of shrinking after the first failure before it is cut short (None: no limit).
    shrink_budget: float | None
    #: Per-case timeout of a worker (the case is then an error), in seconds.
    timeout: float
    derandomize: bool
    #: Scenarios replayed while shrinking before it is cut short (None: no limit).
    shrink_steps: int | None = None


LEVELS = {
    "ci": Level("ci", max_examples=12, budget=5.0, shrink_budget=10.0, timeout=120.0,
                derandomize=True, shrink_steps=50),
    "thorough": Level("thorough", max_examples=200, budget=None, shrink_budget=120.0,
                      timeout=900.0, derandomize=False),
}  # fmt: skip

_SUPPRESSED = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example,
               HealthCheck.filter_too_much]  # fmt: skip


def hypothesis_settings(level: str, max_examples: int | None = None, shrink: bool = True
                        ) -> settings:  # fmt: skip
    lv = LEVELS[level]
    return settings(
        max_examples=max_examples or lv.max_examples,
        derandomize=lv.derandomize,
        database=None,
        deadline=None,
        print_blob=True,
        report_multiple_bugs=False,
        verbosity=Verbosity.quiet,
        suppress_health_check=_SUPPRESSED,
        # No explain phase: its extra runs would cost time and could come after the
        # minimal failing example, which the suite records as the last failing call.
        # Without shrinking (gating runs) the first failing example is reported.
        phases=[Phase.explicit, Phase.generate] + ([Phase.shrink] if shrink else []),
    )


def _constant_hooks():
    """(providers module, empty Constants) of a hypothesis that draws local constants,
    else None (older versions draw none: nothing to isolate)."""
    try:
        from hypothesis.internal.conjecture import providers
        from hypothesis.internal.constants_ast import Constants
    except ImportError:
        return None
    cache = getattr(getattr(providers, "CONSTANTS_CACHE", None), "cache", None)
    if not callable(getattr(providers, "_get_local_constants", None)) or cache is None:
        return None
    return providers, Constants()


@contextlib.contextmanager
def isolated_generation() -> Iterator[bool]:
    """Hypothesis draws, within the block, as if no module were local (module doc).

    Hypothesis picks a "constant" instead of a random value for some draws, from its own
    fixed pool and from a pool of the literals of the local modules imported so far; this
    empties the second pool (and the cache of what each draw may take from both, which
    would hold the local literals of earlier draws in this process), and restores both
    afterwards, so that a pytest run's own tests keep theirs. Yields whether hypothesis
    had local constants to hide (False for a version without them).
    """
    hooks = _constant_hooks()
    if hooks is None:
        yield False
        return
    providers, empty = hooks
    original = providers._get_local_constants
    providers._get_local_constants = lambda: empty
    providers.CONSTANTS_CACHE.cache.clear()
    try:
        yield True
    finally:
        providers._get_local_constants = original
        providers.CONSTANTS_CACHE.cache.clear()


def case_seed(run_seed: int, case_id: str) -> int:
    """The seed of one case: stable across runs, different between cases."""
    return zlib.crc32(f"{run_seed}:{case_id}".encode()) & 0xFFFFFFFF


def register_profiles() -> None:
    for name in LEVELS:
        settings.register_profile(f"optcheck-{name}", hypothesis_settings(name))
        try:
            settings.get_profile(name)
        except InvalidArgument:
            settings.register_profile(name, hypothesis_settings(name))


register_profiles()
